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


def _unary_inputs(rng, scale, thresholds, lo, hi):
    near = (np.asarray(thresholds, np.float32)[:, None].view(np.uint32).astype(np.int64)
            + np.arange(-3, 4)[None, :]).ravel().astype(np.uint32)
    return np.concatenate([
        f32_mix(rng, int(600 * scale)).astype(np.uint32),
        rng.uniform(lo, hi, int(1500 * scale)).astype(np.float32).view(np.uint32),
        rng.uniform(-1, 1, int(300 * scale)).astype(np.float32).view(np.uint32),
        near,
        np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 1, 0x80000001,
                  0x7F7FFFFF, 0xFF7FFFFF, 0x00800000, 0x7E800000, 0x7E800001], np.uint32),
    ])


def _run_unary(dut, xs):
    got = []

    async def source(ctx):
        ctx.set(dut.o.ready, 1)
        for x in xs:
            ctx.set(dut.i.payload, int(x))
            ctx.set(dut.i.valid, 1)
            await ctx.tick()
        ctx.set(dut.i.valid, 0)

    async def monitor(ctx):
        async for _clk, _rst, valid, result, flags in ctx.tick().sample(
                dut.o.valid, dut.o.payload.result, dut.o.payload.flags):
            if valid:
                got.append((result, flags))
            if len(got) >= len(xs):
                return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_process(monitor)
    sim.run_until(1e-8 * (len(xs) + 10))
    return got


SFU_CASES = {
    # function: (thresholds to probe ±3 codes around, range of the uniform sample, scale of the
    # short sample). The short scales keep each short test under about 50 s on one core (pysim
    # costs about 0.05, 0.2, 0.3 and 0.6 s per rsqrt, exp, sigmoid and silu input in range).
    "exp": ([vpu.EXP_TINY_X, 88.7228394, 88.72284, -87.33654, -103.97, -103.98, -120.0, 90.0,
             0.5 / vpu.LOG2E, -0.5 / vpu.LOG2E], (-125, 95), 0.1),
    "recip": ([2.0 ** 126, -2.0 ** 126, 2.0 ** -126, 2.0 ** -127, 2.0 ** -128, 2.0 ** -149,
               1.0, 1.5, 3.0], (-1e6, 1e6), 0.1),
    # Subnormals and their neighbours, the ROM rows (odd / even exponent) and columns, negative
    # numbers (NaN + INVALID; −2**-149 ± 3 codes also hits −0 and NaN codes).
    "rsqrt": ([2.0 ** -149, 2.0 ** -148, 2.0 ** -127, 2.0 ** -126, 0.5, 1.0, 1.0 + 2.0 ** -6,
               2.0, 3.0, 4.0, 2.0 ** 126, 2.0 ** 127, -2.0 ** -149, -1.0, -2.0 ** 127],
              (-2, 300), 0.1),
    # SIGMOID_LO (the branch point), EXP_TINY_X (UNDERFLOW), the subnormal and zero ends of
    # exp, −_EXP_LO / ±_EXP_HI (the clamp of exp(−x)), where 1 + e**−x rounds to 1, 0.
    "sigmoid": ([vpu.SIGMOID_LO, -vpu.SIGMOID_LO, vpu.EXP_TINY_X, -87.33654, -103.97208,
                 -103.98, vpu._EXP_LO, -vpu._EXP_LO, vpu._EXP_HI, -vpu._EXP_HI, 16.635532,
                 -0.5 / vpu.LOG2E, 2.0 ** -126],
                (-110, 30), 0.05),
    # As sigmoid, plus silu's own ends: |silu(x)| < 2**-126 from −91.85677 on, 0 below
    # −108.6603, and −0 below _EXP_LO.
    "silu": ([vpu.SIGMOID_LO, vpu.EXP_TINY_X, -91.85677, -108.6603, vpu._EXP_LO, vpu._EXP_HI,
              -vpu._EXP_HI, 16.635532, -0.5 / vpu.LOG2E, 2.0 ** -126, -2.0 ** -126],
             (-125, 30), 0.02),
}


@pytest.mark.parametrize("size", [
    pytest.param("short"),
    pytest.param("long", marks=pytest.mark.slow),
])
@pytest.mark.parametrize("function", sorted(SFU_CASES))
def test_sfu(function, size):
    """Each special function in RTL equals golden_model.vpu bit for bit, flags included.

    (Amaranth's simulator evaluates these 20- to 60-operation chains slowly: the short sample
    runs in ``make test``, the long one under ``make sim``.)
    """
    from rtl.vpu import sfu
    rng = _rng(2)
    thresholds, (lo, hi), short = SFU_CASES[function]
    xs = _unary_inputs(rng, short if size == "short" else 1.0, thresholds, lo, hi)
    want_v, want_f = getattr(vpu, function)(xs.view(np.float32), return_flags=True)
    want_v = want_v.view(np.uint32)
    unit = getattr(sfu, f"{function.capitalize()}Unit")
    got = _run_unary(unit(), xs)
    assert len(got) == len(xs)
    bad = [(hex(int(x)), hex(int(e)), hex(int(g[0])), int(f), int(g[1]))
           for x, e, f, g in zip(xs, want_v, want_f, got)
           if int(e) != int(g[0]) or int(f) != int(g[1])]
    assert not bad, f"{len(bad)} of {len(xs)} differ: {bad[:5]}"
