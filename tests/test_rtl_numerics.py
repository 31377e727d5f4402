# amaranth: UnusedElaboratable=no
"""Amaranth-pysim tests of ``rtl.numerics``: every unit bit-exact against outside references.

The references are numpy ``float32`` arithmetic, numpy ``float16`` and ``ml_dtypes`` casts
(clipped first for the saturating formats, as ``docs/numerics.md`` says), float64 for exact
products and ``fractions.Fraction`` for the flags' exact values. They share no code with the
RTL or with ``golden_model``.

Vectors stream through with random input gaps and random output backpressure. The seed is
printed; set ``NUMERICS_SEED`` to replay a run.
"""

import math
import os
import random
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.sim import Simulator

from rtl.layouts import FLOAT_SPECS, Flags, Format, Specials, element_format
from rtl.numerics import (F32ToFormat, FormatToF32, FP32Add, FP32Mul, ProductUnit)


INVALID   = Flags.INVALID.value
OVERFLOW  = Flags.OVERFLOW.value
UNDERFLOW = Flags.UNDERFLOW.value
NAN32     = 0x7FC00000
ALL       = frozenset(Format)

#: numpy dtypes of the element formats.
DTYPES = {
    Format.FP32:     np.float32,
    Format.FP16:     np.float16,
    Format.BF16:     ml_dtypes.bfloat16,
    Format.FP8_E4M3: ml_dtypes.float8_e4m3fn,
    Format.FP8_E5M2: ml_dtypes.float8_e5m2,
    Format.FP4_E2M1: ml_dtypes.float4_e2m1fn,
}
UINTS = {32: np.uint32, 16: np.uint16, 8: np.uint8, 4: np.uint8}


def _fv(fmt):
    """Return the 4-bit code of a :class:`Format` (or pass an unknown integer code through)."""
    return fmt.value if isinstance(fmt, Format) else fmt


def _seed(offset):
    seed = int(os.environ.get("NUMERICS_SEED", "20240611")) + offset
    print(f"seed {seed} (NUMERICS_SEED={seed - offset} replays)")
    return seed


# Stream driver -------------------------------------------------------------------------------

def _pack(layout, fields):
    bits = 0
    for name, field in layout:
        width = field.width
        bits |= (int(fields[name]) & ((1 << width) - 1)) << field.offset
    return bits


def _unpack(layout, bits):
    out = {}
    for name, field in layout:
        value = (bits >> field.offset) & ((1 << field.width) - 1)
        if Shape.cast(field.shape).signed and value >> (field.width - 1):
            value -= 1 << field.width
        out[name] = value
    return out


def run_stream(dut, inputs, *, seed, gaps=0.3, stalls=0.3):
    """Stream ``inputs`` (dicts of payload fields) through ``dut``; return the outputs in order.

    The producer idles before a transaction with probability ``gaps`` per cycle and the
    consumer holds ``o.ready`` low with probability ``stalls`` per cycle. Afterwards the unit
    must be empty.
    """
    i_layout = dut.i.payload.shape()
    o_layout = dut.o.payload.shape()
    packed   = [_pack(i_layout, x) for x in inputs]
    outputs  = []
    in_rng   = random.Random(seed)
    out_rng  = random.Random(seed + 1)

    async def producer(ctx):
        for bits in packed:
            while in_rng.random() < gaps:
                await ctx.tick()
            ctx.set(dut.i.payload.as_value(), bits)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        for _ in packed:
            while out_rng.random() < stalls:
                await ctx.tick()
            ctx.set(dut.o.ready, 1)
            bits, = await ctx.tick().sample(dut.o.payload.as_value()).until(dut.o.valid)
            ctx.set(dut.o.ready, 0)
            outputs.append(_unpack(o_layout, bits))
        for _ in range(dut.latency + 2):
            await ctx.tick()
            assert not ctx.get(dut.o.valid), "unit produced more outputs than inputs"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert len(outputs) == len(inputs)
    return outputs


def check(inputs, outputs, expected, fields):
    errors = []
    for n, (x, got, want) in enumerate(zip(inputs, outputs, expected)):
        for f in fields:
            if got[f] != want[f]:
                errors.append(f"#{n} {x}: {f} expected {want[f]:#x}, got {got[f]:#x}")
    assert not errors, f"{len(errors)} mismatches:\n" + "\n".join(errors[:20])


# References ----------------------------------------------------------------------------------

def f32(bits):
    return np.array([bits], np.uint32).view(np.float32)[0]


def bits32(x):
    return int(np.array([x], np.float32).view(np.uint32)[0])


def _max(fmt):
    return 127.0 if fmt is Format.INT8 else FLOAT_SPECS[fmt].max_value


def _overflows(v, fmt):
    """Whether finite ``v`` (a Fraction) rounds, with an unbounded exponent, above max."""
    if fmt is Format.INT8:
        r = round(v)  # Python rounds Fractions half to even
        return r > 127 or r < -128
    spec = FLOAT_SPECS[fmt]
    half = Fraction(2) ** (spec.emax - spec.mbits - 1)
    threshold = Fraction(spec.max_value) + half
    return abs(v) > threshold or (abs(v) == threshold and spec.max_code & 1)


def _underflows(v, r, fmt):
    """Whether nonzero exact ``v`` is tiny (below the smallest normal) and ``r`` inexact."""
    if fmt is Format.INT8 or v == 0:
        return False
    spec = FLOAT_SPECS[fmt]
    return abs(v) < Fraction(2) ** spec.emin and Fraction(float(r)) != v


def _to_code(r, fmt):
    """Return the code of the (already representable) float64 ``r`` in ``fmt``."""
    dtype = DTYPES[fmt]
    width = FLOAT_SPECS[fmt].width
    return int(np.array([r]).astype(dtype).view(UINTS[width])[0]) & ((1 << width) - 1)


def _round_to(vf, fmt):
    """Round finite float64 ``vf`` (a scaled FP32 value, exact) to ``fmt``; return a float64.

    Saturating formats are clipped first (docs/numerics.md). ml_dtypes casts float64 through
    float32, which is exact for a scaled FP32 value between FP32's smallest normal and 2**128
    (and overflows to inf above, as BF16 must); below the smallest normal (only BF16 has
    subnormals there) the value is rounded on the format's subnormal grid with numpy's
    ``rint`` instead, which avoids that double rounding.
    """
    spec = FLOAT_SPECS[fmt]
    if spec.saturate:
        vf = float(np.clip(vf, -spec.max_value, spec.max_value))
    with np.errstate(over="ignore"):
        if fmt is Format.FP32:
            return float(np.float32(vf))
        if fmt is Format.FP16:
            return float(np.float16(vf))
        if abs(vf) < 2.0 ** spec.emin:
            quantum = 2.0 ** (spec.emin - spec.mbits)
            return float(np.rint(vf / quantum) * quantum)
        return float(np.array([vf]).astype(DTYPES[fmt]).astype(np.float64)[0])


def ref_f32_to_format(x_bits, fmt, scale, formats=ALL):
    if fmt not in [f.value for f in formats]:
        return {"code": 0, "flags": INVALID}
    fmt = element_format(Format(fmt))
    x = f32(x_bits)
    if fmt is Format.INT8 or FLOAT_SPECS[fmt].canonical_nan is None:
        nan = {"code": 0, "flags": INVALID}
    else:
        nan = {"code": FLOAT_SPECS[fmt].canonical_nan, "flags": 0}
    if scale == 0xFF or np.isnan(x):
        return nan
    if np.isinf(x):
        if fmt is Format.INT8:
            return {"code": 0x80 if x < 0 else 0x7F, "flags": OVERFLOW}
        spec = FLOAT_SPECS[fmt]
        if spec.specials is Specials.IEEE:
            return {"code": _to_code(float(x), fmt), "flags": 0}
        return {"code": _to_code(math.copysign(spec.max_value, x), fmt), "flags": OVERFLOW}
    v  = Fraction(float(x)) * Fraction(2) ** (127 - scale)
    vf = float(x) * 2.0 ** (127 - scale)
    assert Fraction(vf) == v
    flags = OVERFLOW if _overflows(v, fmt) else 0
    if fmt is Format.INT8:
        r = int(np.clip(np.rint(vf), -128, 127))
        return {"code": r & 0xFF, "flags": flags}
    r = _round_to(vf, fmt)
    if _underflows(v, r, fmt):
        flags |= UNDERFLOW
    return {"code": _to_code(r, fmt), "flags": flags}


def decode_ref(code, fmt):
    """Return the value of ``code`` in ``fmt`` as a float64 (via numpy / ml_dtypes views)."""
    fmt = element_format(fmt)
    if fmt is Format.INT8:
        return float(np.array([code & 0xFF], np.uint8).view(np.int8)[0])
    width = FLOAT_SPECS[fmt].width
    raw = np.array([code & ((1 << width) - 1)], UINTS[width])
    return float(raw.view(DTYPES[fmt])[0])


def _result32(v, extra_flags=0):
    """RNE_f32 of exact float64 ``v`` with overflow/underflow flags."""
    with np.errstate(over="ignore"):
        r = np.float32(v)
    flags = extra_flags
    if _overflows(Fraction(v), Format.FP32):
        flags |= OVERFLOW
    if _underflows(Fraction(v), r, Format.FP32):
        flags |= UNDERFLOW
    return {"bits": bits32(r), "flags": flags}


def ref_format_to_f32(code, fmt, scale, formats=ALL):
    if fmt not in [f.value for f in formats]:
        return {"value": NAN32, "flags": INVALID}
    d = decode_ref(code, Format(fmt))
    if scale == 0xFF or math.isnan(d):
        return {"value": NAN32, "flags": 0}
    if math.isinf(d):
        return {"value": bits32(d), "flags": 0}
    r = _result32(d * 2.0 ** (scale - 127))
    return {"value": r["bits"], "flags": r["flags"]}


def ref_product(a, b, fmt_a, fmt_b, scale_a, scale_b, formats=ALL):
    known = [f.value for f in formats]
    int_result = 0
    if fmt_a == fmt_b == Format.INT8.value and fmt_a in known:
        int_result = int(decode_ref(a, Format.INT8) * decode_ref(b, Format.INT8))
    if fmt_a not in known or fmt_b not in known:
        return {"result": NAN32, "flags": INVALID, "int_result": int_result}
    x = decode_ref(a, Format(fmt_a))
    y = decode_ref(b, Format(fmt_b))
    if math.isnan(x) or math.isnan(y) or 0xFF in (scale_a, scale_b):
        return {"result": NAN32, "flags": 0, "int_result": int_result}
    if (x == 0 and math.isinf(y)) or (math.isinf(x) and y == 0):
        return {"result": NAN32, "flags": INVALID, "int_result": int_result}
    if math.isinf(x) or math.isinf(y):
        return {"result": bits32(x * y), "flags": 0, "int_result": int_result}
    # Exact in float64: significands of at most 24 bits, exponents within ±600.
    r = _result32(x * y * 2.0 ** (scale_a + scale_b - 254))
    return {"result": r["bits"], "flags": r["flags"], "int_result": int_result}


def ref_add(a, b):
    x, y = f32(a), f32(b)
    with np.errstate(all="ignore"):
        r = x + y
    if np.isnan(r):
        invalid = np.isinf(x) and np.isinf(y) and not (np.isnan(x) or np.isnan(y))
        return {"result": NAN32, "flags": INVALID if invalid else 0}
    if np.isinf(x) or np.isinf(y):
        return {"result": bits32(r), "flags": 0}
    v = Fraction(float(x)) + Fraction(float(y))
    flags = 0
    if _overflows(v, Format.FP32):
        flags |= OVERFLOW
    if _underflows(v, r, Format.FP32):
        flags |= UNDERFLOW
    return {"result": bits32(r), "flags": flags}


def ref_mul(a, b):
    x, y = f32(a), f32(b)
    with np.errstate(all="ignore"):
        r = x * y
    if np.isnan(r):
        invalid = not (np.isnan(x) or np.isnan(y))
        return {"result": NAN32, "flags": INVALID if invalid else 0}
    if np.isinf(x) or np.isinf(y):
        return {"result": bits32(r), "flags": 0}
    v = Fraction(float(x)) * Fraction(float(y))
    flags = 0
    if _overflows(v, Format.FP32):
        flags |= OVERFLOW
    if _underflows(v, r, Format.FP32):
        flags |= UNDERFLOW
    return {"result": bits32(r), "flags": flags}


# Vector generators ---------------------------------------------------------------------------

def rand_f32(rng, lo=-130, hi=130):
    """An FP32 code: mostly finite with its exponent in [lo, hi), often special or edgy."""
    kind = rng.random()
    sign = rng.getrandbits(1) << 31
    if kind < 0.05:
        return sign | rng.choice([0, 0x7F800000, 0x7FC00000, 0x7F800001, 0x7FFFFFFF,
                                  0x00000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFF])
    if kind < 0.15:
        return rng.getrandbits(32)
    exp = rng.randrange(lo, hi)
    field = min(max(exp + 127, 0), 255)
    if field == 255:
        field = 254
    if kind < 0.35:
        # Few significant bits, so that ties and exact cases are common.
        frac = rng.getrandbits(4) << rng.randrange(0, 20)
    else:
        frac = rng.getrandbits(23)
    return sign | (field << 23) | (frac & 0x7FFFFF)


def rand_scale(rng):
    return rng.choice([127, 127, 127, 0, 1, 254, 0xFF, rng.randrange(256), rng.randrange(100, 160)])


# Directed vectors ----------------------------------------------------------------------------

# (value, fmt, scale) → (code, flags), written out by hand from docs/numerics.md.
F32_TO_FORMAT_DIRECTED = [
    ((bits32(464.0),  Format.FP8_E4M3, 127), (0x7E, 0)),          # tie 448/480 → 448
    ((bits32(-464.0), Format.FP8_E4M3, 127), (0xFE, 0)),
    ((bits32(470.0),  Format.FP8_E4M3, 127), (0x7E, OVERFLOW)),   # rounds to 480 > max
    ((0x7F800000,     Format.FP8_E4M3, 127), (0x7E, OVERFLOW)),   # +inf clamps
    ((0xFF800000,     Format.FP8_E4M3, 127), (0xFE, OVERFLOW)),
    ((0x7FC00000,     Format.FP8_E4M3, 127), (0x7F, 0)),
    ((0xFFC00001,     Format.FP8_E5M2, 127), (0x7E, 0)),          # NaN sign dropped
    ((0xFF800000,     Format.FP8_E5M2, 127), (0xFC, 0)),          # E5M2 keeps inf
    ((bits32(61440.0), Format.FP8_E5M2, 127), (0x7B, OVERFLOW)),  # tie → 65536 → max
    ((bits32(60000.0), Format.FP8_E5M2, 127), (0x7B, 0)),
    ((0x7FC00000,     Format.FP4_E2M1, 127), (0x0, INVALID)),
    ((0x7F800000,     Format.FP4_E2M1, 127), (0x7, OVERFLOW)),
    ((bits32(7.0),    Format.FP4_E2M1, 127), (0x7, OVERFLOW)),    # tie 6/8 → 8 → max
    ((bits32(6.9),    Format.FP4_E2M1, 127), (0x7, 0)),
    ((bits32(0.25),   Format.FP4_E2M1, 127), (0x0, UNDERFLOW)),   # tie 0/0.5 → 0
    ((bits32(-0.26),  Format.FP4_E2M1, 127), (0x9, UNDERFLOW)),
    ((bits32(-0.0),   Format.FP4_E2M1, 127), (0x8, 0)),
    ((bits32(12.0),   Format.FP4_E2M1, 128), (0x7, 0)),           # 12 / 2 = 6
    ((bits32(1.0),    Format.FP4_E2M1, 0xFF), (0x0, INVALID)),
    ((bits32(1.0),    Format.FP8_E4M3, 0xFF), (0x7F, 0)),
    ((bits32(1.0),    Format.FP16, 0xFF),     (0x7E00, 0)),
    ((bits32(65520.0), Format.FP16, 127),     (0x7C00, OVERFLOW)),
    ((bits32(65519.0), Format.FP16, 127),     (0x7BFF, 0)),
    ((bits32(2.0 ** -24), Format.FP16, 127),  (0x0001, 0)),       # min subnormal, exact
    ((bits32(2.0 ** -25), Format.FP16, 127),  (0x0000, UNDERFLOW)),  # tie → 0
    ((bits32(-1.5 * 2.0 ** -25), Format.FP16, 127), (0x8001, UNDERFLOW)),
    ((bits32(2.0 ** -14 - 2.0 ** -26), Format.FP16, 127), (0x0400, UNDERFLOW)),  # → min normal
    ((bits32(1.0 + 2.0 ** -8), Format.BF16, 127), (0x3F80, 0)),   # tie → even
    ((bits32(1.0 + 3 * 2.0 ** -8), Format.BF16, 127), (0x3F82, 0)),
    ((0x7F7FFFFF,     Format.BF16, 127),      (0x7F80, OVERFLOW)),
    ((0x00000001,     Format.BF16, 127),      (0x0000, UNDERFLOW)),
    ((0x80000001,     Format.FP32, 127),      (0x80000001, 0)),
    ((0x00000003,     Format.FP32, 126),      (0x00000006, 0)),   # scale 2^-1: divides by 2^-1
    ((0x00000003,     Format.FP32, 128),      (0x00000002, UNDERFLOW)),  # 1.5 ulp → 2 ulp
    ((0x7F7FFFFF,     Format.FP32, 126),      (0x7F800000, OVERFLOW)),
    ((bits32(2.5),    Format.INT8, 127),      (0x02, 0)),
    ((bits32(3.5),    Format.INT8, 127),      (0x04, 0)),
    ((bits32(-2.5),   Format.INT8, 127),      (0xFE, 0)),
    ((bits32(-0.4),   Format.INT8, 127),      (0x00, 0)),
    ((bits32(127.5),  Format.INT8, 127),      (0x7F, OVERFLOW)),
    ((bits32(-128.5), Format.INT8, 127),      (0x80, 0)),
    ((bits32(-128.6), Format.INT8, 127),      (0x80, OVERFLOW)),
    ((bits32(1000.0), Format.INT8, 130),      (0x7D, 0)),         # 1000 / 8 = 125
    ((0xFF800000,     Format.INT8, 127),      (0x80, OVERFLOW)),
    ((0x7FC00000,     Format.INT8, 127),      (0x00, INVALID)),
    ((bits32(3.0),    Format.MXFP8_E4M3, 126), (0x4C, 0)),        # 6.0
    ((bits32(3.0),    Format.MXFP4, 127),     (0x5, 0)),
    ((bits32(1.0),    9,  127),               (0x0, INVALID)),
    ((bits32(1.0),    15, 127),               (0x0, INVALID)),
]

# (code, fmt, scale) → (value bits, flags).
FORMAT_TO_F32_DIRECTED = [
    ((0x7F,   Format.FP8_E4M3, 127), (NAN32, 0)),
    ((0xFF,   Format.FP8_E4M3, 127), (NAN32, 0)),
    ((0x7E,   Format.FP8_E4M3, 127), (bits32(448.0), 0)),
    ((0x01,   Format.FP8_E4M3, 127), (bits32(2.0 ** -9), 0)),
    ((0x7C,   Format.FP8_E5M2, 127), (0x7F800000, 0)),
    ((0xFC,   Format.FP8_E5M2, 127), (0xFF800000, 0)),
    ((0x7D,   Format.FP8_E5M2, 127), (NAN32, 0)),
    ((0x8,    Format.FP4_E2M1, 127), (0x80000000, 0)),
    ((0xF,    Format.FP4_E2M1, 254), (0xFF800000, OVERFLOW)),
    ((0x1,    Format.FP4_E2M1, 0),   (bits32(2.0 ** -128), 0)),
    ((0x3,    Format.FP4_E2M1, 0),   (bits32(1.5 * 2.0 ** -127), 0)),
    ((0x1,    Format.FP16, 0),       (0x0, UNDERFLOW)),           # 2^-24 · 2^-127 → 0
    ((0x80,   Format.INT8, 127),     (bits32(-128.0), 0)),
    ((0x00,   Format.INT8, 127),     (0x0, 0)),
    ((0x7F,   Format.INT8, 1),       (bits32(127.0 * 2.0 ** -126), 0)),
    ((0x01,   Format.INT8, 0),       (0x00400000, 0)),            # 2^-127, subnormal, exact
    ((0x7FC0, Format.BF16, 127),     (NAN32, 0)),
    ((0x3F80, Format.BF16, 0xFF),    (NAN32, 0)),
    ((0x00000001, Format.FP32, 126), (0x0, UNDERFLOW)),           # tie → 0
    ((0x00000003, Format.FP32, 126), (0x2, UNDERFLOW)),           # 1.5 → 2
    ((0x7F000000, Format.FP32, 128), (0x7F800000, OVERFLOW)),
    ((0x3F800000, Format.FP32, 127), (0x3F800000, 0)),
    ((0x4C,   Format.MXFP8_E4M3, 128), (bits32(12.0), 0)),
    ((0x3F80, 9,  127),              (NAN32, INVALID)),
    ((0x3F80, 15, 127),              (NAN32, INVALID)),
]

# (a, b) → (result, flags).
ADD_DIRECTED = [
    ((0x00000000, 0x80000000), (0x00000000, 0)),                  # +0 + −0 = +0
    ((0x80000000, 0x80000000), (0x80000000, 0)),
    ((bits32(1.5), bits32(-1.5)), (0x00000000, 0)),               # x − x = +0
    ((0x7F800000, 0xFF800000), (NAN32, INVALID)),
    ((0x7F800000, 0x7F800000), (0x7F800000, 0)),
    ((0xFF800000, bits32(1.0)), (0xFF800000, 0)),
    ((0x7F800001, bits32(1.0)), (NAN32, 0)),
    ((0x7F7FFFFF, 0x7F7FFFFF), (0x7F800000, OVERFLOW)),
    ((0x7F7FFFFF, 0x73000000), (0x7F800000, OVERFLOW)),           # + half ulp, odd → up
    ((0x7F7FFFFF, 0x72FFFFFF), (0x7F7FFFFF, 0)),
    ((0x00000001, 0x00000001), (0x00000002, 0)),
    ((0x00800000, 0x80000001), (0x007FFFFF, 0)),                  # normal → subnormal, exact
    ((bits32(1.0), 0x33800000), (bits32(1.0), 0)),                # 1 + 2^-24: tie → even
    ((bits32(1.0), 0x33800001), (0x3F800001, 0)),                 # just above the tie
    ((0x3F800001, 0x33800000), (0x3F800002, 0)),                  # tie, odd → up
    ((bits32(1.0), 0xB3800001), (0x3F7FFFFF, 0)),                 # 1 − (2^-24 + ε)
    ((bits32(1.0), 0x00000001), (bits32(1.0), 0)),                # far path, all sticky
    ((bits32(-1.0), 0x00000001), (0xBF800000, 0)),
    ((bits32(2.0 ** 24), bits32(-1.0)), (bits32(2.0 ** 24 - 1), 0)),
    ((bits32(2.0 ** 25), bits32(-1.0)), (bits32(2.0 ** 25), 0)),  # tie → even
]

# (a, b) → (result, flags).
MUL_DIRECTED = [
    ((0x00000000, 0x7F800000), (NAN32, INVALID)),
    ((0x80000000, 0xFF800000), (NAN32, INVALID)),
    ((0x7FC00000, 0x00000000), (NAN32, 0)),
    ((0xFF800000, bits32(-2.0)), (0x7F800000, 0)),
    ((0x80000000, bits32(3.0)), (0x80000000, 0)),
    ((0x7F7FFFFF, bits32(2.0)), (0x7F800000, OVERFLOW)),
    ((0x00000001, bits32(0.5)), (0x00000000, UNDERFLOW)),         # tie → 0
    ((0x00000003, bits32(0.5)), (0x00000002, UNDERFLOW)),         # 1.5 → 2
    ((0x00000001, bits32(2.0)), (0x00000002, 0)),                 # exact subnormal: no flag
    ((0x00000001, 0x00000001), (0x00000000, UNDERFLOW)),
    ((0x00800000, bits32(0.5)), (0x00400000, 0)),
    ((0x00FFFFFF, bits32(0.5)), (0x00800000, UNDERFLOW)),         # rounds up to min normal
    ((0x00400000, bits32(2.0 ** 24)), (0x0C000000, 0)),             # 2^-127 · 2^24
    ((bits32(1.0 + 2.0 ** -23), bits32(1.0 + 2.0 ** -23)), (0x3F800002, 0)),
    ((0x3F800001, 0x3FC00000), (0x3FC00002, 0)),                  # tie, odd → up
    ((0x3F800002, 0x3FC00000), (0x3FC00003, 0)),                  # exact
]


# Unit tests ----------------------------------------------------------------------------------

@pytest.mark.parametrize("pipelined, n_random", [(True, 3000), (False, 500)])
def test_f32_to_format(pipelined, n_random):
    rng = random.Random(_seed(1))
    fmts = list(Format) + [9, 15]
    inputs, expected = [], []
    for (value, fmt, scale), (code, flags) in F32_TO_FORMAT_DIRECTED:
        inputs.append({"value": value, "fmt": _fv(fmt), "scale": scale})
        expected.append({"code": code, "flags": flags})
        # The reference agrees with the hand-written expectation.
        assert ref_f32_to_format(value, _fv(fmt), scale) == expected[-1], (value, fmt, scale)
    for _ in range(n_random):
        fmt = rng.choice(fmts)
        el = element_format(fmt) if isinstance(fmt, Format) else None
        if el is None or el is Format.FP32:
            lo, hi = -150, 130
        elif el is Format.INT8:
            lo, hi = -3, 9
        else:
            spec = FLOAT_SPECS[el]
            lo, hi = spec.emin - spec.mbits - 3, spec.emax + 3
        scale = 127 if rng.random() < 0.7 else rand_scale(rng)
        value = rand_f32(rng, lo + scale - 127, hi + scale - 127)
        inputs.append({"value": value, "fmt": _fv(fmt), "scale": scale})
        expected.append(ref_f32_to_format(value, _fv(fmt), scale))
    dut = F32ToFormat(formats=ALL, pipelined=pipelined)
    assert dut.latency == (2 if pipelined else 1)
    outputs = run_stream(dut, inputs, seed=rng.randrange(1 << 30))
    check(inputs, outputs, expected, ["code", "flags"])


def test_f32_to_format_subset():
    """Formats outside the implemented set are unknown, including their MX aliases."""
    formats = {Format.FP32, Format.MXFP8_E4M3, Format.INT8}
    rng = random.Random(_seed(2))
    inputs, expected = [], []
    for _ in range(120):
        fmt = rng.choice(list(Format) + [12])
        value = rand_f32(rng, -12, 10)
        scale = rand_scale(rng)
        inputs.append({"value": value, "fmt": _fv(fmt), "scale": scale})
        expected.append(ref_f32_to_format(value, _fv(fmt), scale, formats))
    outputs = run_stream(F32ToFormat(formats=formats), inputs, seed=rng.randrange(1 << 30))
    check(inputs, outputs, expected, ["code", "flags"])


def _all_narrow_codes():
    for fmt in (Format.FP8_E4M3, Format.FP8_E5M2, Format.INT8, Format.MXFP8_E4M3):
        for code in range(256):
            yield code, fmt
    for fmt in (Format.FP4_E2M1, Format.MXFP4):
        for code in range(16):
            yield code, fmt


@pytest.mark.parametrize("pipelined, n_random", [(True, 2000), (False, 400)])
def test_format_to_f32(pipelined, n_random):
    rng = random.Random(_seed(3))
    inputs, expected = [], []
    for (code, fmt, scale), (value, flags) in FORMAT_TO_F32_DIRECTED:
        inputs.append({"code": code, "fmt": _fv(fmt), "scale": scale})
        expected.append({"value": value, "flags": flags})
        assert ref_format_to_f32(code, _fv(fmt), scale) == expected[-1], (code, fmt, scale)
    if pipelined:
        # Every code of the 8- and 4-bit formats, unscaled (exact) and with a random scale.
        for code, fmt in _all_narrow_codes():
            inputs.append({"code": code, "fmt": fmt.value, "scale": 127})
            scale = rand_scale(rng)
            inputs.append({"code": code, "fmt": fmt.value, "scale": scale})
    for _ in range(n_random):
        fmt = rng.choice([Format.FP32, Format.FP32, Format.FP16, Format.BF16, 10])
        if fmt is Format.FP32:
            code = rand_f32(rng, -150, 130)
        else:
            code = rng.getrandbits(16)
        inputs.append({"code": code, "fmt": _fv(fmt), "scale": rand_scale(rng)})
    expected += [ref_format_to_f32(x["code"], x["fmt"], x["scale"])
                 for x in inputs[len(expected):]]
    dut = FormatToF32(formats=ALL, pipelined=pipelined)
    outputs = run_stream(dut, inputs, seed=rng.randrange(1 << 30))
    check(inputs, outputs, expected, ["value", "flags"])


def test_format_to_f32_subset():
    """A narrow-only converter (8-bit significands) still rounds scaled values onto FP32."""
    formats = {Format.INT8, Format.MXFP4}
    rng = random.Random(_seed(8))
    inputs = []
    for code in range(256):
        inputs.append({"code": code, "fmt": Format.INT8.value, "scale": rand_scale(rng)})
    for code in range(16):
        for fmt in (Format.MXFP4, Format.FP4_E2M1, Format.FP8_E4M3):
            inputs.append({"code": code, "fmt": fmt.value, "scale": rand_scale(rng)})
    expected = [ref_format_to_f32(x["code"], x["fmt"], x["scale"], formats) for x in inputs]
    outputs = run_stream(FormatToF32(formats=formats), inputs, seed=rng.randrange(1 << 30))
    check(inputs, outputs, expected, ["value", "flags"])


@pytest.mark.parametrize("pipelined, n_random", [(True, 4000), (False, 600)])
def test_fp32_add(pipelined, n_random):
    rng = random.Random(_seed(4))
    inputs, expected = [], []
    for (a, b), (result, flags) in ADD_DIRECTED:
        inputs.append({"a": a, "b": b})
        expected.append({"result": result, "flags": flags})
        assert ref_add(a, b) == expected[-1], (hex(a), hex(b))
    for _ in range(n_random):
        a = rand_f32(rng)
        kind = rng.random()
        if kind < 0.4:
            # Close exponents and opposite signs: cancellation.
            b = (a ^ (rng.getrandbits(1) << 31)) + rng.randrange(-(1 << 24), 1 << 24)
        elif kind < 0.6:
            # Exponents 20 … 30 apart: the far path with bits shifted into the sticky bit.
            b = (a & 0x807FFFFF) | ((max(0, ((a >> 23) & 0xFF) - rng.randrange(20, 31))) << 23)
            b ^= rng.getrandbits(1) << 31
        else:
            b = rand_f32(rng)
        b &= 0xFFFFFFFF
        inputs.append({"a": a, "b": b})
        expected.append(ref_add(a, b))
    dut = FP32Add(pipelined=pipelined)
    assert dut.latency == (3 if pipelined else 1)
    outputs = run_stream(dut, inputs, seed=rng.randrange(1 << 30))
    check(inputs, outputs, expected, ["result", "flags"])


@pytest.mark.parametrize("pipelined, n_random", [(True, 3000), (False, 500)])
def test_fp32_mul(pipelined, n_random):
    rng = random.Random(_seed(5))
    inputs, expected = [], []
    for (a, b), (result, flags) in MUL_DIRECTED:
        inputs.append({"a": a, "b": b})
        expected.append({"result": result, "flags": flags})
        assert ref_mul(a, b) == expected[-1], (hex(a), hex(b))
    for _ in range(n_random):
        a = rand_f32(rng, -130, 130)
        if rng.random() < 0.5:
            # Products near the overflow and underflow thresholds.
            target = rng.choice([-126, -140, -149, 127, 128])
            ea = ((a >> 23) & 0xFF) - 127
            b = rand_f32(rng, target - ea - 1, target - ea + 2)
        else:
            b = rand_f32(rng)
        inputs.append({"a": a, "b": b})
        expected.append(ref_mul(a, b))
    dut = FP32Mul(pipelined=pipelined)
    assert dut.latency == (2 if pipelined else 1)
    outputs = run_stream(dut, inputs, seed=rng.randrange(1 << 30))
    check(inputs, outputs, expected, ["result", "flags"])


def _rand_code(rng, fmt):
    if not isinstance(fmt, Format):
        return rng.getrandbits(32)
    fmt = element_format(fmt)
    if fmt is Format.FP32:
        return rand_f32(rng)
    width = 8 if fmt is Format.INT8 else FLOAT_SPECS[fmt].width
    return rng.getrandbits(width)


PRODUCT_DIRECTED = [
    # (a, b, fmt_a, fmt_b, scale_a, scale_b) → (result, flags, int_result)
    ((0x80, 0x80, Format.INT8, Format.INT8, 127, 127), (bits32(16384.0), 0, 16384)),
    ((0x7F, 0x80, Format.INT8, Format.INT8, 127, 127), (bits32(-16256.0), 0, -16256)),
    ((0x00, 0xFF, Format.INT8, Format.INT8, 127, 127), (0x80000000, 0, 0)),  # +0 · −1 = −0
    ((0x00, 0xBF800000, Format.INT8, Format.FP32, 127, 127), (0x80000000, 0, 0)),
    ((0x7E, 0x7E, Format.FP8_E4M3, Format.FP8_E4M3, 127, 127), (bits32(448.0 ** 2), 0, 0)),
    ((0x00, 0x7C, Format.FP8_E4M3, Format.FP8_E5M2, 127, 127), (NAN32, INVALID, 0)),
    ((0x7C, 0x7C, Format.FP8_E5M2, Format.FP8_E5M2, 127, 127), (0x7F800000, 0, 0)),
    ((0x7F, 0x38, Format.FP8_E4M3, Format.FP8_E4M3, 127, 127), (NAN32, 0, 0)),
    ((0x38, 0x38, Format.FP8_E4M3, Format.FP8_E4M3, 0xFF, 127), (NAN32, 0, 0)),
    ((0x7, 0x7, Format.MXFP4, Format.MXFP4, 254, 254), (0x7F800000, OVERFLOW, 0)),
    ((0x1, 0x1, Format.MXFP4, Format.MXFP4, 0, 0), (0x0, UNDERFLOW, 0)),
    ((0x3, 0x1, Format.FP4_E2M1, Format.FP4_E2M1, 0, 106), (0x2, UNDERFLOW, 0)),  # 1.5 ulp → 2
    ((0x7F7FFFFF, 0x3F800001, Format.FP32, Format.FP32, 127, 127), (0x7F800000, OVERFLOW, 0)),
    ((0x3C00, 0x3F80, Format.FP16, Format.BF16, 127, 127), (0x3F800000, 0, 0)),
    ((0x3F800001, 0x3FC00000, Format.FP32, Format.FP32, 127, 127), (0x3FC00002, 0, 0)),  # tie
    ((0x3F800003, 0x3FC00000, Format.FP32, Format.FP32, 127, 127), (0x3FC00004, 0, 0)),  # tie
    ((0x3F800001, 0x3FC00000, Format.FP32, Format.FP32, 127, 128), (0x40400002, 0, 0)),
    ((0x3F800001, 0x3FC00000, Format.FP32, Format.FP32, 0, 124), (0x000C0000, UNDERFLOW, 0)),
    ((0x3C00, 0x3F80, 9, Format.BF16, 127, 127), (NAN32, INVALID, 0)),
    ((0x3C00, 0x3F80, Format.FP16, 15, 127, 127), (NAN32, INVALID, 0)),
]


@pytest.mark.parametrize("pipelined, n_random", [(True, 3000), (False, 500)])
def test_product(pipelined, n_random):
    rng = random.Random(_seed(6))
    fmts = list(Format) * 4 + [9, 15]
    inputs, expected = [], []
    fields = ("a", "b", "fmt_a", "fmt_b", "scale_a", "scale_b")
    for args, (result, flags, int_result) in PRODUCT_DIRECTED:
        x = dict(zip(fields, (_fv(v) for v in args)))
        inputs.append(x)
        expected.append({"result": result, "flags": flags, "int_result": int_result})
        assert ref_product(**x) == expected[-1], args
    for _ in range(n_random):
        fmt_a = rng.choice(fmts) if rng.random() < 0.9 else Format.INT8
        fmt_b = rng.choice(fmts) if rng.random() < 0.9 else Format.INT8
        if rng.random() < 0.1:
            fmt_a = fmt_b = Format.INT8
        x = {"a": _rand_code(rng, fmt_a), "b": _rand_code(rng, fmt_b),
             "fmt_a": _fv(fmt_a), "fmt_b": _fv(fmt_b),
             "scale_a": 127 if rng.random() < 0.5 else rand_scale(rng),
             "scale_b": 127 if rng.random() < 0.5 else rand_scale(rng)}
        inputs.append(x)
        expected.append(ref_product(**x))
    dut = ProductUnit(formats=ALL, pipelined=pipelined)
    assert dut.latency == (2 if pipelined else 1)
    outputs = run_stream(dut, inputs, seed=rng.randrange(1 << 30))
    check(inputs, outputs, expected, ["result", "flags", "int_result"])


def test_product_subset():
    """A unit built for fewer formats treats the others as unknown; no INT8 → int_result 0."""
    formats = {Format.FP8_E4M3, Format.BF16}
    rng = random.Random(_seed(7))
    inputs, expected = [], []
    for _ in range(150):
        fmt_a = rng.choice([Format.FP8_E4M3, Format.BF16, Format.INT8, Format.FP32])
        fmt_b = rng.choice([Format.FP8_E4M3, Format.BF16, Format.INT8])
        x = {"a": _rand_code(rng, fmt_a), "b": _rand_code(rng, fmt_b),
             "fmt_a": _fv(fmt_a), "fmt_b": _fv(fmt_b),
             "scale_a": rand_scale(rng), "scale_b": rand_scale(rng)}
        inputs.append(x)
        expected.append(ref_product(**x, formats=formats))
    outputs = run_stream(ProductUnit(formats=formats), inputs, seed=rng.randrange(1 << 30))
    check(inputs, outputs, expected, ["result", "flags", "int_result"])


# Stream behaviour, construction, Verilog ---------------------------------------------------

def test_full_throughput():
    """With no gaps and no backpressure a pipelined unit accepts one transaction per cycle."""
    dut = FP32Add()
    n = 40
    cycles = 0

    async def tb(ctx):
        nonlocal cycles
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        sent = received = 0
        while received < n:
            ctx.set(dut.i.payload.a, bits32(float(sent)))
            ctx.set(dut.i.payload.b, bits32(1.0))
            ctx.set(dut.i.valid, sent < n)
            _, _, ready, valid, result = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload.result)
            if sent < n:
                assert ready
                sent += 1
            if valid:
                assert result == bits32(float(received + 1))
                received += 1
            cycles += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert cycles == n + dut.latency


def test_valid_not_combinational_from_ready():
    dut = FP32Mul()

    async def tb(ctx):
        ctx.set(dut.i.valid, 1)
        for _ in range(4):
            await ctx.tick()
        for ready in (0, 1, 0):
            ctx.set(dut.o.ready, ready)
            assert ctx.get(dut.o.valid) == 1
            assert ctx.get(dut.i.ready) == ready

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("make, message", [
    (lambda: FP32Add(pipelined=1), "pipelined must be a bool, not 1"),
    (lambda: FP32Mul(pipelined="yes"), "pipelined must be a bool, not 'yes'"),
    (lambda: F32ToFormat(formats=set()), "formats must be a non-empty set of Format members"),
    (lambda: FormatToF32(formats={"FP16"}), "formats must be a non-empty set of Format members"),
    (lambda: ProductUnit(formats=Format.FP16), "formats must be a non-empty set of Format"),
    (lambda: ProductUnit(formats={Format.FP16}, pipelined=None), "pipelined must be a bool"),
])
def test_constructor_validation(make, message):
    with pytest.raises((TypeError, ValueError), match=message):
        make()


def test_positional_arguments_refused():
    with pytest.raises(TypeError):
        F32ToFormat({Format.FP16})


def test_verilog():
    units = [FP32Add(), FP32Add(pipelined=False), FP32Mul(), FP32Mul(pipelined=False),
             F32ToFormat(formats=ALL), F32ToFormat(formats=ALL, pipelined=False),
             FormatToF32(formats=ALL), FormatToF32(formats={Format.INT8}, pipelined=False),
             ProductUnit(formats=ALL), ProductUnit(formats={Format.MXFP4}, pipelined=False)]
    for unit in units:
        text = verilog.convert(unit, name="top")
        assert "module top(" in text
        for port in ("i__valid", "i__ready", "o__valid", "o__ready", "i__payload",
                     "o__payload"):
            assert port in text


def test_stream_pipeline_needs_a_datapath():
    from rtl.numerics import StreamPipeline
    with pytest.raises(TypeError, match="must define datapath"):
        StreamPipeline(8, 8, pipelined=True)
