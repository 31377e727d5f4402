"""Runners of the chip-level regression (pyuvm tests in cocotb_chip.py, env in env.py).

``make test`` runs every test on TINY with 1 MiB of HBM (the whole HBM is read back and
compared at the end of each test, so a small HBM keeps that cheap); ``make sim`` adds a
longer random run (``CHIP_SCALE=5``: ≥ 1,000 mutated descriptors) and M890.

``test_programs_on_model`` needs no simulator: every generator of ``programs.py`` against the
golden model (the statuses each program intends).
"""

import os

import numpy as np
import pytest

from rtl.config import M890, TINY
from verif.common.harness import run_stream_harness

#: TINY with a 1 MiB HBM (ChipConfig names must be identifiers).
TINY_1M = TINY.replace(name="TINY_HBM1M", hbm_bytes=1 << 20)
M890_8M = M890.replace(name="M890_HBM8M", hbm_bytes=8 << 20)

#: Cycles without a response before a batch counts as hung: a WAIT_IDLE answers once, at the
#: end of all the work of a program.
WATCHDOG = int(os.environ.get("CHIP_WATCHDOG", 4_000_000))


def _run(cfg, name, testcase=None, scale="1"):
    run_stream_harness("chip", cfg, test_module="verif.chip.cocotb_chip", name=name,
                       testcase=testcase, watchdog=WATCHDOG,
                       extra_env={"CHIP_SCALE": scale})


@pytest.mark.sim
def test_chip_tiny():
    _run(TINY_1M, "chip-TINY")


@pytest.mark.sim
@pytest.mark.slow
def test_chip_tiny_random_long():
    _run(TINY_1M, "chip-TINY-long", testcase=["RandomMutationTest", "MixedWorkTest"],
         scale="5")


@pytest.mark.sim
@pytest.mark.slow
def test_chip_m890():
    _run(M890_8M, "chip-M890")


def test_programs_on_model():
    """The generators against the golden model alone: every intended status holds."""
    from golden_model.chip import ChipModel
    from verif.chip import programs as P
    cfg = TINY_1M
    rng = np.random.default_rng(7)
    state, mm, model = P.HostState(cfg), P.MemoryMap(cfg), ChipModel(cfg)
    progs = [P.mixed_program(cfg, state, mm, rng, f"mixed {i}", specials=0.03 * i)
             for i in range(3)]
    progs += list(P.directed_error_programs(cfg, state, mm, rng))
    progs.append(P.random_mutation_program(cfg, state, mm, rng, "mutation", 100,
                                           model_hbm=model.hbm))
    progs.append(P.dump_program(cfg, state, mm))
    for prog in progs:
        status, data = P.replay(model, prog)
        assert P.check_intent(model, prog, status, data) == [], prog.name
