"""Amaranth-pysim tests of the vector unit's pieces against ``golden_model/vpu.py``."""

import os

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden_model import vpu
from rtl.layouts import VpuOp
from rtl.vpu import VectorALU
from verif.common.pack import pack, unpack
from verif.common.vectors import f32_mix


def _rng(offset):
    seed = int(os.environ.get("SEED", "20241124")) + offset
    print(f"seed {seed} (SEED={seed - offset} replays)")
    return np.random.default_rng(seed)


def _golden(op, a, b):
    fa, fb = a.view(np.float32), b.view(np.float32)
    if op is VpuOp.ADD:
        r, f = vpu.add(fa, fb, return_flags=True)
    elif op is VpuOp.SUB:
        r, f = vpu.sub(fa, fb, return_flags=True)
    elif op is VpuOp.MUL:
        r, f = vpu.mul(fa, fb, return_flags=True)
    else:
        fn = {VpuOp.MAX: vpu.vmax, VpuOp.LT: vpu.lt, VpuOp.LE: vpu.le, VpuOp.EQ: vpu.eq}[op]
        r, f = fn(fa, fb), np.zeros(a.shape, np.uint8)
    return np.asarray(r, np.float32).view(np.uint32), np.asarray(f, np.uint8)


def _lanes_int(words):
    return sum(int(w) << (32 * j) for j, w in enumerate(words))


@pytest.mark.parametrize("pipelined", [True, False])
def test_vector_alu(pipelined):
    rng = _rng(1)
    lanes, n = 4, 700
    ops = rng.choice(list(VpuOp), size=n)
    a = f32_mix(rng, n * lanes).reshape(n, lanes).astype(np.uint32)
    b = f32_mix(rng, n * lanes).reshape(n, lanes).astype(np.uint32)
    # Equal operands and zeros of both signs, for the compares and max.
    b[::7] = a[::7]
    a[::11, 0], b[::11, 0] = 0x80000000, 0
    expected = [_golden(op, a[i], b[i]) for i, op in enumerate(ops)]

    dut = VectorALU(lanes=lanes, pipelined=pipelined)
    got = []

    in_layout = dut.i.payload.shape()
    packed = pack(in_layout, op=[int(o.value) for o in ops],
                  a=[_lanes_int(x) for x in a], b=[_lanes_int(x) for x in b])

    async def source(ctx):
        for bits in packed:
            while rng.random() < 0.2:
                await ctx.tick()
            ctx.set(dut.i.payload.as_value(), bits)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        for _ in range(n):
            while rng.random() < 0.3:
                await ctx.tick()
            ctx.set(dut.o.ready, 1)
            bits, = await ctx.tick().sample(dut.o.payload.as_value()).until(dut.o.valid)
            ctx.set(dut.o.ready, 0)
            out = unpack(dut.o.payload.shape(), [bits])
            r, f = int(out["r"][0]), int(out["flags"][0])
            got.append(([(r >> (32 * j)) & 0xFFFFFFFF for j in range(lanes)],
                        [(f >> (3 * j)) & 7 for j in range(lanes)]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    assert len(got) == n, f"{len(got)} of {n} results"
    bad = []
    for i, ((r, f), (er, ef)) in enumerate(zip(got, expected)):
        if [int(x) for x in er] != r or [int(x) for x in ef] != f:
            bad.append((i, ops[i].name, [hex(x) for x in a[i]], [hex(x) for x in b[i]],
                        [hex(int(x)) for x in er], [hex(x) for x in r], list(ef), f))
    assert not bad, bad[:3]
