"""Numerics units on Verilator, bit-exact against the golden model, vectors streamed in bulk.

The same module serves every numerics top (``$DUT_TOP``): converters, FP32 adder, FP32
multiplier and the product unit, each wrapped in ``stream_harness``. Vector counts scale with
``$NUMERICS_SCALE`` (1 in ``make test``, larger under ``make sim``).
"""

import os
import time

import cocotb
import numpy as np

from golden_model import arith, formats
from rtl.layouts import (
    E8M0_NAN, FLOAT_SPECS, FP32_CANONICAL_NAN, Flags, Format, element_format,
)
from rtl.tops import build_top
from verif.common.harness import StreamHarness
from verif.common.scoreboard import ScoreboardError, compare_bulk
from verif.common.tb import TB
from verif.common.vectors import all_codes, codes_mix, f32_mix, f32_pairs


TOP = os.environ.get("DUT_TOP", "")
SCALE = float(os.environ.get("NUMERICS_SCALE", "1"))
INVALID = Flags.INVALID.value
#: Format codes that name no format (the enum is 4 bits wide).
UNKNOWN_FORMATS = [9, 10, 12, 15]


def _n(base):
    return max(1, int(base * SCALE))


def _scales(rng, n, p_other=0.15):
    """Mostly 127 (×1), sometimes any E8M0 code including 0xFF (NaN)."""
    s = np.full(n, 127, dtype=np.uint32)
    other = rng.random(n) < p_other
    s[other] = rng.integers(0, 256, size=int(other.sum()))
    s[rng.random(n) < 0.005] = E8M0_NAN
    return s


def _exp_range(fmt):
    fmt = element_format(fmt)
    if fmt is Format.INT8:
        return (-3, 8)
    spec = FLOAT_SPECS[fmt]
    return (spec.emin - spec.mbits - 3, spec.emax + 2)


def _float_formats(cfg):
    return sorted((f for f in cfg.formats), key=lambda f: f.value)


# Each case builder returns a list of (label, inputs, expected) groups.

def cases_f32_to_format(rng, cfg):
    groups = []
    for fmt in _float_formats(cfg):
        n = _n(500_000 if fmt in (Format.FP32, Format.FP16, Format.BF16) else 150_000)
        x = f32_mix(rng, n, exp_range=_exp_range(fmt))
        s = _scales(rng, n)
        codes, flags = formats.convert_from_f32(x, fmt, s)
        groups.append((fmt.name, {"value": x, "fmt": fmt.value, "scale": s},
                       {"code": codes, "flags": flags}))
    for code in UNKNOWN_FORMATS:
        x = f32_mix(rng, 64)
        groups.append((f"fmt={code}", {"value": x, "fmt": code, "scale": 127},
                       {"code": np.zeros(64, np.uint32), "flags": np.full(64, INVALID)}))
    return groups


def cases_format_to_f32(rng, cfg):
    groups = []
    for fmt in _float_formats(cfg):
        if fmt is Format.FP32:
            codes = f32_mix(rng, _n(300_000))
        else:
            base = all_codes(fmt)
            codes = np.concatenate([base, codes_mix(rng, fmt, _n(50_000))])
        s = np.concatenate([np.full(len(codes) // 2, 127, np.uint32),
                            _scales(rng, len(codes) - len(codes) // 2, p_other=0.6)])
        bits, flags = formats.convert_to_f32(codes, fmt, s)
        groups.append((fmt.name, {"code": codes, "fmt": fmt.value, "scale": s},
                       {"value": bits, "flags": flags}))
    for code in UNKNOWN_FORMATS:
        groups.append((f"fmt={code}", {"code": np.arange(64), "fmt": code, "scale": 127},
                       {"value": np.full(64, FP32_CANONICAL_NAN, np.uint32),
                        "flags": np.full(64, INVALID)}))
    return groups


def _binary_f32(op):
    def cases(rng, cfg):
        a, b = f32_pairs(rng, _n(1_000_000))
        r, flags = op(a, b)
        return [("random", {"a": a, "b": b}, {"result": r, "flags": flags})]
    return cases


cases_fp32_add = _binary_f32(arith.fadd)
cases_fp32_mul = _binary_f32(arith.fmul)


def _product_group(label, a, b, fa, fb, sa, sb):
    r, flags = arith.product(a, b, fa, fb, sa, sb)
    ir = (arith.int_product(a, b) if fa is Format.INT8 and fb is Format.INT8
          else np.zeros(len(a), np.int64))
    return (label, {"a": a, "b": b, "fmt_a": fa.value, "fmt_b": fb.value, "scale_a": sa,
                    "scale_b": sb},
            {"result": r, "int_result": ir, "flags": flags})


def cases_product(rng, cfg):
    groups = []
    fmts = [f for f in _float_formats(cfg)]
    # Every code pair of the 4- and 8-bit formats, unscaled.
    for f in (Format.FP4_E2M1, Format.FP8_E4M3, Format.FP8_E5M2, Format.INT8):
        if f not in cfg.formats:
            continue
        c = all_codes(f)
        a, b = (x.ravel() for x in np.meshgrid(c, c, indexing="ij"))
        groups.append(_product_group(f"{f.name} all pairs", a, b, f, f, 127, 127))
    # ≥ 10^6 random pairs each for the wide formats, specials over-represented.
    for f in (Format.FP16, Format.BF16, Format.FP32):
        if f not in cfg.formats:
            continue
        n = _n(1_000_000)
        if f is Format.FP32:
            a, b = f32_pairs(rng, n)
        else:
            a, b = codes_mix(rng, f, n), codes_mix(rng, f, n)
        groups.append(_product_group(f"{f.name} random", a, b, f, f, 127, 127))
    # Mixed formats and scales: every ordered format pair.
    for fa in fmts:
        for fb in fmts:
            n = _n(6_000)
            a = f32_mix(rng, n) if fa is Format.FP32 else codes_mix(rng, fa, n)
            b = f32_mix(rng, n) if fb is Format.FP32 else codes_mix(rng, fb, n)
            groups.append(_product_group(f"{fa.name}x{fb.name} scaled", a, b, fa, fb,
                                         _scales(rng, n, 0.5), _scales(rng, n, 0.5)))
    for code in UNKNOWN_FORMATS:
        a = codes_mix(rng, Format.FP8_E4M3, 32)
        groups.append((f"fmt_a={code}", {"a": a, "b": a, "fmt_a": code, "fmt_b": 3,
                                         "scale_a": 127, "scale_b": 127},
                       {"result": np.full(32, FP32_CANONICAL_NAN, np.uint32),
                        "int_result": np.zeros(32, np.int64), "flags": np.full(32, INVALID)}))
        groups.append((f"fmt_b={code}", {"a": a, "b": a, "fmt_a": 3, "fmt_b": code,
                                         "scale_a": 127, "scale_b": 127},
                       {"result": np.full(32, FP32_CANONICAL_NAN, np.uint32),
                        "int_result": np.zeros(32, np.int64), "flags": np.full(32, INVALID)}))
    return groups


CASES = {
    "f32_to_format": cases_f32_to_format,
    "format_to_f32": cases_format_to_f32,
    "fp32_add":      cases_fp32_add,
    "fp32_mul":      cases_fp32_mul,
    "product":       cases_product,
}


async def _setup(dut):
    tb = TB(dut)
    comp = build_top(TOP, tb.cfg)
    harness = StreamHarness(dut, comp.i.payload.shape(), comp.o.payload.shape())
    harness.idle()
    await tb.reset()
    return tb, harness


@cocotb.test()
async def sweep(dut):
    """Every case of this unit, half with random gaps and backpressure, half at full rate."""
    tb, harness = await _setup(dut)
    t0 = time.monotonic()
    groups = CASES[TOP](tb.rng, tb.cfg)
    t_gold = time.monotonic() - t0
    total = 0
    for label, ins, exp in groups:
        n = len(next(iter(exp.values())))
        ins = {k: np.broadcast_to(np.asarray(v), (n,)) for k, v in ins.items()}
        half = n // 2
        for lo, hi, vp, rp in ((0, half, 0.8, 0.6), (half, n, 1.0, 1.0)):
            if hi <= lo:
                continue
            part = {k: v[lo:hi] for k, v in ins.items()}
            got = await harness.run(valid_prob=vp, ready_prob=rp,
                                    seed=int(tb.rng.integers(1, 1 << 31)), **part)
            compare_bulk(f"{TOP} {label}", {k: np.asarray(v)[lo:hi] for k, v in exp.items()},
                         got, part, log=tb.log)
        total += n
    rate = harness.vectors / harness.wall if harness.wall else 0.0
    tb.log.info("%s: %d vectors bit-exact in %d groups; golden %.1f s; simulation %.1f s "
                "(%.0f vectors/s incl. packing), %d cycles", TOP, total, len(groups), t_gold,
                harness.wall, rate, harness.cycles)
    _record_throughput(TOP, total, harness.wall, harness.cycles)


@cocotb.test()
async def full_rate_throughput(dut):
    """With no gaps and no backpressure the unit accepts one vector per cycle."""
    tb, harness = await _setup(dut)
    groups = CASES[TOP](tb.rng, tb.cfg)
    label, ins, exp = groups[0]
    n = min(20_000, len(next(iter(exp.values()))))
    ins = {k: np.broadcast_to(np.asarray(v), (len(next(iter(exp.values()))),))[:n]
           for k, v in ins.items()}
    got = await harness.run(**ins)
    compare_bulk(f"{TOP} {label}", {k: np.asarray(v)[:n] for k, v in exp.items()}, got, ins,
                 log=tb.log)
    latency = int(os.environ.get("DUT_LATENCY", "0"))
    # n transfers in, n out, plus the pipeline fill and the harness's one-cycle start.
    assert harness.cycles <= n + latency + 4, \
        f"{n} vectors took {harness.cycles} cycles; expected one per cycle"


@cocotb.test(expect_error=ScoreboardError)
async def corrupted_model_is_caught(dut):
    """A golden model that is off by one ulp on a few results must make the check fail."""
    tb, harness = await _setup(dut)
    label, ins, exp = CASES[TOP](tb.rng, tb.cfg)[0]
    n = 4096
    ins = {k: np.broadcast_to(np.asarray(v), (len(next(iter(exp.values()))),))[:n]
           for k, v in ins.items()}
    key = next(iter(exp))
    bad = {k: np.asarray(v)[:n].astype(np.int64).copy() for k, v in exp.items()}
    bad[key][::97] ^= 1
    got = await harness.run(**ins)
    compare_bulk(f"{TOP} corrupted {label}", bad, got, ins, log=tb.log)


def _record_throughput(top, vectors, wall, cycles):
    path = os.environ.get("NUMERICS_THROUGHPUT_FILE")
    if not path:
        return
    import json
    with open(path, "w") as f:
        json.dump({"top": top, "vectors": vectors, "wall_s": wall, "cycles": cycles}, f)
