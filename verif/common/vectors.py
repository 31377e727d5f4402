"""Random operand generators that reach the corners of floating-point units.

Uniform random bit patterns almost never produce subnormals, exact ties, cancellation or
overflow; these generators mix such classes in deliberately. All take a numpy ``Generator`` so a
seed replays them.
"""

import numpy as np

from rtl.layouts import FLOAT_SPECS, Format, code_width, element_format


__all__ = ["f32_mix", "f32_pairs", "codes_mix", "all_codes", "F32_SPECIALS"]

#: ±0, ±inf, NaNs (quiet, signalling, negative), max, min normal, min/max subnormal, 1, −1.
F32_SPECIALS = np.array([
    0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001,
    0x7FBFFFFF, 0x7F7FFFFF, 0xFF7FFFFF, 0x00800000, 0x80800000, 0x00000001, 0x80000001,
    0x007FFFFF, 0x807FFFFF, 0x3F800000, 0xBF800000,
], dtype=np.uint32)


def _bits(sign, exp, man):
    return ((sign.astype(np.uint32) << 31) | (exp.astype(np.uint32) << 23)
            | man.astype(np.uint32)).astype(np.uint32)


def f32_mix(rng, n, *, exp_range=None):
    """``n`` FP32 bit patterns: uniform bits, subnormals, specials, values in ``exp_range``.

    ``exp_range`` (unbiased, inclusive) concentrates a third of the values where a narrow
    format's interesting region lies (its subnormals, its max, its rounding ties).
    """
    parts = []
    k = n // 8
    parts.append(rng.integers(0, 1 << 32, size=3 * k, dtype=np.uint64).astype(np.uint32))
    sign = rng.integers(0, 2, size=k)
    parts.append(_bits(sign, np.zeros(k, np.int64), rng.integers(0, 1 << 23, size=k)))
    parts.append(rng.choice(F32_SPECIALS, size=k // 2))
    lo, hi = exp_range if exp_range else (-30, 30)
    m = n - sum(len(p) for p in parts)
    sign = rng.integers(0, 2, size=m)
    exp = rng.integers(lo, hi + 1, size=m) + 127
    exp = np.clip(exp, 0, 254)
    man = rng.integers(0, 1 << 23, size=m)
    # Half of these have only a few mantissa bits set: exact ties and exactly representable
    # values of the narrow formats, which uniform mantissas would almost never hit.
    few = rng.random(m) < 0.5
    shift = rng.integers(10, 23, size=m)
    man = np.where(few, (man >> shift) << shift, man)
    parts.append(_bits(sign, exp, man))
    out = np.concatenate(parts)
    rng.shuffle(out)
    return out


def f32_pairs(rng, n):
    """``n`` operand pairs for FP32 add/mul: mixed classes, plus near-equal exponents (for
    cancellation and carries) and wide exponent gaps (for sticky bits)."""
    a = f32_mix(rng, n)
    b = f32_mix(rng, n)
    sel = rng.random(n)
    # A quarter: b's exponent within ±2 of a's, sign random -> cancellation in add.
    near = sel < 0.25
    ea = (a >> 23) & 0xFF
    eb = np.clip(ea.astype(np.int64) + rng.integers(-2, 3, size=n), 0, 254).astype(np.uint32)
    b = np.where(near, (b & 0x807FFFFF) | (eb << 23), b)
    # A few: b = -a (exact zero results) and b = a.
    neg = (sel >= 0.25) & (sel < 0.28)
    b = np.where(neg, a ^ 0x80000000, b)
    same = (sel >= 0.28) & (sel < 0.30)
    b = np.where(same, a, b)
    return a.astype(np.uint32), b.astype(np.uint32)


def all_codes(fmt):
    """Every code of ``fmt``'s element format, as uint32."""
    return np.arange(1 << code_width(fmt), dtype=np.uint32)


def codes_mix(rng, fmt, n):
    """``n`` random codes of ``fmt`` with its special codes over-represented."""
    fmt = element_format(fmt)
    w = code_width(fmt)
    codes = rng.integers(0, 1 << w, size=n, dtype=np.uint64).astype(np.uint32)
    if fmt is Format.INT8:
        return codes
    spec = FLOAT_SPECS[fmt]
    sign = np.uint32(1 << (w - 1))
    specials = [0, spec.max_code, 1, (1 << spec.mbits) - 1, 1 << spec.mbits]
    top = ((1 << spec.ebits) - 1) << spec.mbits
    if spec.canonical_nan is not None:
        specials += [spec.canonical_nan, top | ((1 << spec.mbits) - 1)]
    if spec.specials.value == "ieee":
        specials += [top, top | 1]
    specials = np.array(specials, dtype=np.uint32)
    specials = np.concatenate([specials, specials | sign])
    k = n // 10
    codes[:k] = rng.choice(specials, size=k)
    # Subnormal codes (exponent field 0).
    codes[k:2 * k] = rng.integers(0, 1 << spec.mbits, size=k) | (rng.integers(0, 2, size=k)
                                                                 * int(sign))
    rng.shuffle(codes)
    return codes
