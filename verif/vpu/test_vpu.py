"""Runners of the vector-engine regression on Verilator (cocotb tests in cocotb_vpu.py).

``make test`` runs the TINY configuration (4 lanes) with every test; ``make sim`` adds ZW810E
(8 lanes: the elementwise sweep and the fused ops) and M890 (16 lanes, everything). The wider
configurations cost mostly Verilator build time (several minutes each).
"""

import os

import pytest

from rtl.config import M890, TINY, ZW810E
from verif.common.harness import run_stream_harness

pytestmark = pytest.mark.sim

#: Cycles without a response before a batch counts as hung.
WATCHDOG = int(os.environ.get("VPU_WATCHDOG", 2_000_000))


def _run(cfg, name, testcase=None, scale="1"):
    run_stream_harness("vpu", cfg, test_module="verif.vpu.cocotb_vpu", name=name,
                       testcase=testcase, watchdog=WATCHDOG, extra_env={"VPU_SCALE": scale})


def test_vpu_tiny():
    _run(TINY, "vpu-TINY")


@pytest.mark.slow
def test_vpu_zw810e_sweep():
    _run(ZW810E, "vpu-ZW810E", testcase=["elementwise_sweep", "reductions_and_fused"], scale="0.5")


@pytest.mark.slow
def test_vpu_m890():
    _run(M890, "vpu-M890")
