"""Amaranth-pysim unit tests of the matrix engine's processing element and a 2×2 array.

No Verilator: these check the PE arithmetic (product then sum, integer mode, pass-through,
flags, weight buffers) and the array's skew, buffer releases and latency against the golden
model. The whole engine runs on Verilator in ``verif/mxu/``.
"""

import os

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden_model import arith, formats
from golden_model.arith import mac_reference
from rtl.layouts import E8M0_BIAS, Format
from rtl.mxu import ProcessingElement, SystolicArray
from verif.common.vectors import codes_mix


def _rng(offset):
    seed = int(os.environ.get("SEED", "20241124")) + offset
    print(f"seed {seed} (SEED={seed - offset} replays)")
    return np.random.default_rng(seed)


def _f32(rng, n):
    return formats.quantize(rng.standard_normal(n).astype(np.float32), Format.FP32)


PE_CASES = [(Format.BF16, Format.FP8_E4M3), (Format.FP32, Format.FP32),
            (Format.FP4_E2M1, Format.MXFP4), (Format.INT8, Format.INT8),
            (Format.FP16, Format.FP8_E5M2)]


@pytest.mark.parametrize("pipelined", [True, False])
@pytest.mark.parametrize("fmt_a, fmt_b", PE_CASES)
def test_pe(fmt_a, fmt_b, pipelined):
    rng = _rng(1)
    n = 120
    int_mode = fmt_a is Format.INT8 and fmt_b is Format.INT8
    a = codes_mix(rng, fmt_a, n)
    w = codes_mix(rng, fmt_b, 2)
    sa = rng.integers(120, 135, n) if fmt_a is Format.MXFP4 else np.full(n, E8M0_BIAS)
    sw = rng.integers(120, 135, 2) if fmt_b is Format.MXFP4 else np.full(2, E8M0_BIAS)
    sel = rng.integers(0, 2, n)
    en = rng.random(n) < 0.85
    if int_mode:
        psum = rng.integers(-1 << 31, 1 << 31, n).astype(np.int64) & 0xFFFFFFFF
    else:
        psum = _f32(rng, n).astype(np.int64)
    expected = []
    for i in range(n):
        if not en[i]:
            expected.append((int(psum[i]), 0))
        elif int_mode:
            p = int(arith.int_product(a[i], w[sel[i]]))
            expected.append(((int(psum[i]) + p) & 0xFFFFFFFF, 0))
        else:
            p, pf = arith.product(a[i], w[sel[i]], fmt_a, fmt_b, sa[i], sw[sel[i]])
            s, sf = arith.fadd(int(psum[i]), p)
            expected.append((int(s), int(pf) | int(sf)))

    dut = ProcessingElement(formats=set(Format), pipelined=pipelined)
    P, A = dut.product_latency, dut.add_latency
    got = []

    async def bench(ctx):
        ctx.set(dut.advance, 1)
        ctx.set(dut.fmt_a, fmt_a.value)
        ctx.set(dut.fmt_b, fmt_b.value)
        ctx.set(dut.int_mode, int(int_mode))
        for b in range(2):
            ctx.set(dut.w_we, 1)
            ctx.set(dut.w_buf, b)
            ctx.set(dut.w_data, {"code": int(w[b]), "scale": int(sw[b])})
            await ctx.tick()
        ctx.set(dut.w_we, 0)
        for t in range(n + P + A):
            if t < n:
                ctx.set(dut.a_in, {"code": int(a[t]), "scale": int(sa[t]), "sel": int(sel[t]),
                                   "en": int(en[t])})
            if 0 <= t - P < n:
                ctx.set(dut.psum_in, {"value": int(psum[t - P]), "flags": 0})
            if t - P - A >= 0:
                got.append((ctx.get(dut.psum_out.value), ctx.get(dut.psum_out.flags)))
            # A stall in the middle must change nothing.
            if t == n // 2:
                ctx.set(dut.advance, 0)
                await ctx.tick().repeat(3)
                ctx.set(dut.advance, 1)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(got) == n
    bad = [(i, expected[i], got[i]) for i in range(n) if expected[i] != got[i]]
    first = [(i, hex(e[0]), hex(g[0])) for i, e, g in bad[:4]]
    assert not bad, f"{len(bad)} mismatches, first: {first}"


@pytest.mark.parametrize("buffers", [2, 4])
@pytest.mark.parametrize("pipelined", [True, False])
@pytest.mark.parametrize("fmt_a, fmt_b", [(Format.BF16, Format.FP8_E4M3),
                                          (Format.FP32, Format.FP32), (Format.INT8, Format.INT8)])
def test_array_2x2(fmt_a, fmt_b, pipelined, buffers):
    """Weight tiles of 1 … 4 rows through a 2×2 array: skew, latency, weight buffers reused
    as early as ``freed`` allows (an early release would overwrite a weight still in use)."""
    rng = _rng(2)
    rows = cols = 2
    int_mode = fmt_a is Format.INT8 and fmt_b is Format.INT8
    ms = [int(v) for v in rng.integers(1, 5, 3 * buffers)]
    tiles = len(ms)
    w = [codes_mix(rng, fmt_b, rows * cols).reshape(rows, cols) for _ in range(tiles)]
    a = [codes_mix(rng, fmt_a, m * rows).reshape(m, rows) for m in ms]
    seeds = [(rng.integers(-1000, 1000, (m, cols)) & 0xFFFFFFFF if int_mode
              else _f32(rng, m * cols).reshape(m, cols)) for m in ms]
    expected = []
    for t in range(tiles):
        acc = seeds[t].astype(np.int32) if int_mode else seeds[t].astype(np.uint32)
        r = mac_reference(a[t], w[t], fmt_a, fmt_b, acc=acc)
        expected += [tuple(int(v) & 0xFFFFFFFF for v in row) for row in r.values]

    dut = SystolicArray(rows=rows, cols=cols, formats=set(Format), pipelined=pipelined,
                        buffers=buffers)
    lat = dut.latency
    got = []

    stalls = rng.random(4000) < 0.3     # cycles the array does not advance

    async def bench(ctx):
        ctx.set(dut.fmt_a, fmt_a.value)
        ctx.set(dut.fmt_b, fmt_b.value)
        ctx.set(dut.int_mode, int(int_mode))
        occ = [0] * rows           # tiles written and not yet freed, per row
        written = 0                # tiles written into every row
        tile, row = 0, 0           # next row vector to issue
        results_at = []            # advancing cycles at which results come out
        adv = 0                    # advancing cycles so far
        cyc = 0
        while len(got) < len(expected):
            assert cyc < len(stalls), "the array stopped producing results"
            advance = not stalls[cyc]
            ctx.set(dut.advance, int(advance))
            # Filler: the next tile into every row whose buffer is free, stalled or not.
            we = 0
            if written < tiles and all(o < buffers for o in occ):
                we = (1 << rows) - 1
                ctx.set(dut.w_buf, written % buffers)
                for r in range(rows):
                    for c in range(cols):
                        ctx.set(dut.w_data[r][c], {"code": int(w[written][r, c]),
                                                   "scale": E8M0_BIAS})
            ctx.set(dut.w_we, we)
            # Issuer: a tile's rows once the tile is written (written a cycle before).
            ctx.set(dut.release, 0)
            if advance and tile < tiles and tile < written:
                for r in range(rows):
                    ctx.set(dut.a[r], {"code": int(a[tile][row, r]), "scale": E8M0_BIAS,
                                       "sel": tile % buffers, "en": 1})
                for c in range(cols):
                    ctx.set(dut.seed[c], int(seeds[tile][row, c]))
                results_at.append(adv + lat)
                row += 1
                if row == ms[tile]:
                    ctx.set(dut.release, (1 << rows) - 1)
                    tile, row = tile + 1, 0
            else:
                for r in range(rows):
                    ctx.set(dut.a[r], {"code": 0, "scale": 0, "sel": 0, "en": 0})
            if advance and results_at and results_at[0] == adv:
                results_at.pop(0)
                got.append(tuple(ctx.get(dut.result[c].value) for c in range(cols)))
            freed = ctx.get(dut.freed) if advance else 0
            await ctx.tick()
            if we:
                written += 1
            for r in range(rows):
                occ[r] += (we >> r & 1) - (freed >> r & 1)
            adv += advance
            cyc += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == expected, [(tuple(map(hex, e)), tuple(map(hex, g)))
                             for e, g in zip(expected, got) if e != g][:4]


def _run_host(cfg, prog, *, stall_injection=False):
    """Drive a host-port program through MxuHost in pysim; return the responses."""
    from rtl.mxu.host import MxuHost
    dut = MxuHost(cfg, stall_injection=stall_injection)
    got = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for op, addr, data in prog.ops:
            ctx.set(dut.i.payload.op, op)
            ctx.set(dut.i.payload.addr, addr)
            ctx.set(dut.i.payload.data, data)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            for _ in range(20_000):
                if ctx.get(dut.o.valid):
                    break
                await ctx.tick()
            else:
                raise AssertionError(f"no response to request {len(got)} (op {op})")
            got.append((int(ctx.get(dut.o.payload.status).value), ctx.get(dut.o.payload.data)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("stall_injection", [False, True])
def test_engine_pysim(stall_injection):
    """The whole engine in pysim: GEMMs in mixed formats and a refused command, bit-exact."""
    from golden_model.mxu import MxuModel
    from rtl.config import TINY
    from verif.mxu.cocotb_mxu import Program, gemm
    rng = _rng(3)
    prog = Program(TINY, MxuModel(TINY))
    if stall_injection:
        prog.inject(int(rng.integers(1, 1 << 31)), 150, 150)
    gemm(prog, rng, Format.BF16, Format.MXFP4, 5, 9, 37, accumulate=True)
    cmd, _ = gemm(prog, rng, Format.INT8, Format.INT8, 2, 3, 13)
    prog.command(dict(cmd, m=0))
    gemm(prog, rng, Format.FP32, Format.FP8_E5M2, 9, 4, 6)
    got = _run_host(TINY, prog, stall_injection=stall_injection)
    bad = [(i, e, g) for i, (e, g) in enumerate(zip(prog.expected, got))
           if e[2] and (e[0], e[1]) != g or not e[2] and e[0] != g[0]]
    assert not bad, [(i, hex(e[1]), hex(g[1])) for i, e, g in bad[:4]]
