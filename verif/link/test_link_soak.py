"""The link soak under ``make sim``: ≥ 10^7 DATA flits through every fault class of G1.

In-process on the Verilated ``link_tb`` top (:mod:`scripts.soak_link`), Python off the cycle
path. ``LINK_SOAK_FLITS`` changes the target; ``SEED`` replays a run. Progress goes to the
captured output and, line by line, to ``build/sim/runs/link-soak/progress.log``.
"""

import json
import os

import pytest

from scripts import soak_link
from verif.common.runner import seed_from_env


@pytest.mark.sim
@pytest.mark.slow
def test_link_soak():
    flits = int(float(os.environ.get("LINK_SOAK_FLITS", "1e7")))
    seed = seed_from_env()
    soak_link.OUT.mkdir(parents=True, exist_ok=True)
    with open(soak_link.OUT / "progress.log", "w") as f:
        def log(msg):
            print(msg, flush=True)
            f.write(msg + "\n")
            f.flush()

        summary = soak_link.run(flits, seed, log=log)
    (soak_link.OUT / "soak.json").write_text(json.dumps(summary, indent=2) + "\n")
    assert summary["data_flits"] >= flits
    # The faults happened: bit errors, drops and replays, and at least one retrain per round.
    for key in ("flits_hit", "flits_dropped", "crc_errors", "replays", "replay_rollovers",
                "retrains"):
        assert summary[key] > 0, f"the soak saw no {key}: {summary}"
