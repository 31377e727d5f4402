"""The memory delay line of the link test tops (rtl/link/delay.py)."""

import random

import pytest
from amaranth.sim import Simulator

from rtl.link.delay import DelayLine


@pytest.mark.parametrize("delay", [0, 1, 5, 15])
def test_delay_line_delays_by_delay_plus_one(delay):
    rng = random.Random(delay)
    dut = DelayLine(width=20, depth=16)
    values = [rng.getrandbits(20) for _ in range(60)]
    got = []

    async def tb(ctx):
        ctx.set(dut.delay, delay)
        for v in values:
            ctx.set(dut.i, v)
            await ctx.tick()
            got.append(ctx.get(dut.o))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    # A value presented before tick k is on `o` after tick k + delay.
    assert got[delay:] == values[:len(values) - delay]


def test_delay_line_parameters_are_checked():
    with pytest.raises(ValueError, match="power of two"):
        DelayLine(width=8, depth=12)
    with pytest.raises(ValueError, match="width"):
        DelayLine(width=0, depth=16)
