"""The x^58 + x^39 + 1 scrambler (rtl/link/scrambler.py and golden_model/link_pcs.py)
against a bit-serial LFSR written from the polynomial."""

import random

from amaranth.hdl import Module
from amaranth.sim import Simulator

from golden_model.link_pcs import Descrambler as GoldenDescrambler
from golden_model.link_pcs import Scrambler as GoldenScrambler
from rtl.link.scrambler import Descrambler, Scrambler


def _bit_serial(words):
    """Scramble bit by bit: each sent bit is the data bit XOR the bits sent 39 and 58 earlier
    (the history starts all ones, as the RTL's state)."""
    hist = [1] * 58
    out = []
    for d in words:
        w = 0
        for i in range(64):
            b = (d >> i & 1) ^ hist[-39] ^ hist[-58]
            hist.append(b)
            w |= b << i
        out.append(w)
    return out


def test_scrambler_and_descrambler_match_bit_serial_reference():
    rng = random.Random(58)
    words = [rng.getrandbits(64) for _ in range(40)] + [0, (1 << 64) - 1, 1 << 63]
    expect = _bit_serial(words)
    golden = GoldenScrambler()
    assert [golden(w) for w in words] == expect
    gd = GoldenDescrambler()
    # The descrambler synchronises itself after the first 58 bits.
    assert [gd(s) for s in expect][1:] == words[1:]

    scr, dsc = Scrambler(), Descrambler()
    m = Module()
    m.submodules.scr = scr
    m.submodules.dsc = dsc
    got, back = [], []

    async def tb(ctx):
        ctx.set(scr.en, 1)
        ctx.set(dsc.en, 1)
        for w in words:
            ctx.set(scr.i, w)
            s = ctx.get(scr.o)
            got.append(s)
            ctx.set(dsc.i, s)
            back.append(ctx.get(dsc.o))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert got == expect
    assert back[1:] == words[1:]


def test_one_flipped_wire_bit_flips_three_data_bits():
    rng = random.Random(3)
    words = [rng.getrandbits(64) for _ in range(4)]
    wire = _bit_serial(words)
    wire[1] ^= 1 << 10
    d = GoldenDescrambler()
    back = [d(s) for s in wire]
    diff = [a ^ b for a, b in zip(back, words)]
    assert diff[1] == (1 << 10 | 1 << 49) and diff[2] == 1 << 4 and diff[3] == 0
