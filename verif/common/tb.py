"""Testbench base class shared by the cocotb tests of every block."""

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from rtl.config import ChipConfig


__all__ = ["TB", "dut_config"]


def dut_config():
    """Return the ``ChipConfig`` the DUT was generated from (``$DUT_CONFIG``, JSON)."""
    text = os.environ.get("DUT_CONFIG")
    if not text:
        raise RuntimeError("DUT_CONFIG is not set; run this module through its pytest runner")
    return ChipConfig.from_json(text)


class TB:
    """Clock, reset, configuration and a seeded RNG for one DUT.

    The RNG is seeded from cocotb's seed (``SEED=…`` on the pytest command line replays a run);
    the seed is logged at start.
    """

    def __init__(self, dut, *, clock="clk", reset="rst", period_ns=10):
        self.dut = dut
        self.log = dut._log
        self.clk = getattr(dut, clock)
        self.rst = getattr(dut, reset)
        self.period_ns = period_ns
        self.cfg = dut_config()
        self.meta = json.loads(os.environ.get("DUT_META", "{}"))
        self.seed = cocotb.RANDOM_SEED
        self.rng = np.random.default_rng(self.seed)
        self.log.info("seed %d (replay with SEED=%d)", self.seed, self.seed)
        Clock(self.clk, period_ns, unit="ns").start()

    async def reset(self, cycles=2):
        """Hold reset for ``cycles`` clocks, bracketed by idle clocks."""
        self.rst.value = 0
        await ClockCycles(self.clk, 1)
        self.rst.value = 1
        await ClockCycles(self.clk, cycles)
        self.rst.value = 0
        await ClockCycles(self.clk, 1)
