"""Link soak: ≥ 10^7 DATA flits through every fault class of G1, on the Verilated link.

Loads the regression's ``link_tb`` top (two 4-lane endpoints back to back through channel
models, 6-bit sequence numbers, RTL traffic generators and checkers) in-process and runs
:func:`verif.link.scenarios.soak`: the fault phases in turn (error-free, BER 1e-5 and 1e-4,
bursts ≤ and > 32 bits, flit drops, ACK loss, credit corruption, a replay storm, a retrain
request), each a single ``RUN`` of the RTL, until the target is reached. Python only
configures each phase and reads the counters back. After every phase every message must have
been delivered once, in order, intact; at the end the endpoints' flit counts must agree with
the channels' ledgers. Progress is printed after every phase; the summary is written to
``build/sim/runs/link-soak/soak.json`` (or ``--json``).

Usage: ``python -m scripts.soak_link [--flits 1e7] [--seed N] [--messages 20000]``.
``SEED`` in the environment is the default seed. Exit status 1 if a check fails.
"""

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from verif.common.runner import BUILD, seed_from_env  # noqa: E402
from verif.link import scenarios as S  # noqa: E402

OUT = BUILD / "sim" / "runs" / "link-soak"


def run(flits, seed, *, messages=20_000, log=print):
    """Soak the link with at least ``flits`` DATA flits from ``seed``; return the summary
    (raises :class:`verif.link.scenarios.LinkCheckError` on a failed check)."""
    log(f"link soak: seed {seed} (replay with --seed {seed}, or SEED={seed} under pytest), "
        f"at least {flits:,} DATA flits, {messages:,} messages per VC each way per phase")
    t0 = time.monotonic()
    link, _model = S.open_inprocess("link_tb", S.TINY_L4, log=log)
    load = time.monotonic() - t0
    summary = asyncio.run(S.soak(link, random.Random(seed), flits=flits, messages=messages,
                                 log=log))
    summary.update(seed=seed, target_flits=flits, build_and_load_seconds=round(load, 1))
    summary["flits_per_second"] = round(summary["data_flits"] / summary["seconds"])
    summary["cycles_per_second"] = round(summary["cycles"] / summary["seconds"])
    return summary


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flits", type=float, default=1e7, help="DATA flits, at least")
    ap.add_argument("--seed", type=lambda x: int(x, 0), default=None)
    ap.add_argument("--messages", type=int, default=20_000,
                    help="messages per VC each way per fault phase")
    ap.add_argument("--json", type=Path, default=OUT / "soak.json")
    args = ap.parse_args(argv)
    seed = seed_from_env() if args.seed is None else args.seed

    def log(msg):
        print(msg, flush=True)

    try:
        summary = run(int(args.flits), seed, messages=args.messages, log=log)
    except S.LinkCheckError as e:
        print(f"link soak FAILED (seed {seed}): {e}", flush=True)
        return 1
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"link soak passed: {summary['data_flits']:,} DATA flits in {summary['seconds']} s "
          f"({summary['flits_per_second']:,} flits/s); {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
