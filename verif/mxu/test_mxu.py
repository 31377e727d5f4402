"""Runners of the matrix-engine regression on Verilator (cocotb tests in cocotb_mxu.py).

``make test`` runs the TINY (4×4) array with every test and the ZW810E (8×8) array with the
sweep; ``make sim`` adds the M890 (16×16) array, the unpipelined PEs and a longer sweep.
"""

import os

import pytest

from rtl.config import M890, TINY, ZW810E
from verif.common.harness import run_stream_harness

pytestmark = pytest.mark.sim

#: Cycles without a response before a batch counts as hung: one response comes at the end of
#: a whole GEMM, which takes up to ~10^6 cycles with stalls injected.
WATCHDOG = int(os.environ.get("MXU_WATCHDOG", 4_000_000))


def _run(cfg, name, testcase=None, scale="1"):
    run_stream_harness("mxu_tb", cfg, test_module="verif.mxu.cocotb_mxu", name=name,
                       testcase=testcase, watchdog=WATCHDOG, extra_env={"MXU_SCALE": scale})


def test_mxu_tiny():
    _run(TINY, "mxu-TINY")


def test_mxu_zw810e_sweep():
    _run(ZW810E, "mxu-ZW810E", testcase="gemm_sweep", scale="0.5")


@pytest.mark.slow
def test_mxu_m890():
    _run(M890, "mxu-M890")


@pytest.mark.slow
def test_mxu_unpipelined():
    _run(TINY.replace(fp_pipeline=False), "mxu-TINY-comb")
