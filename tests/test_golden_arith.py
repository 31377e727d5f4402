"""Golden-model arithmetic (``golden_model.arith``) against independent references.

- fadd/fmul: numpy float32 arithmetic (the spec's definition) and, independently, the float64
  operation rounded once to float32 (correct for + and × since 53 >= 2·24 + 2), with flags
  from integer significands.
- product: ml_dtypes decoding, exact float64 products and an ``np.rint`` grid rounding.
- mac_reference: a scalar Python loop, int64 matmul, a per-block MX loop, and tiling.

Set ``SEED`` to replay random data (printed with each failing test's output).
"""

import math
import os

import numpy as np
import pytest

from golden_model.arith import fadd, fmul, int_product, mac_reference, product
from golden_model.arith import product as _product
from golden_model.formats import mx_quantize
from rtl.layouts import Format

from .test_golden_formats import ml_decode, ref_grid_round


pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

SEED = int(os.environ.get("SEED", "20240611"))
F = Format
INVALID, OVERFLOW, UNDERFLOW = 1, 2, 4
CANON = 0x7FC00000
TINY = 2.0**-126


@pytest.fixture
def rng():
    print(f"SEED={SEED} (set the SEED environment variable to replay)")
    return np.random.default_rng(SEED)


# --------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------

def ref_round_f32(y):
    """RNE of exact float64 values to float32 with IEEE overflow, without a float64->32 cast."""
    r = ref_grid_round(np.asarray(y, np.float64), F.FP32)
    r = np.where(np.isfinite(y) & (np.abs(r) >= 2.0**128), np.copysign(np.inf, y), r)
    return r.astype(np.float32)                     # exact now (r is on the FP32 grid)


def f32_bits_canon(r):
    r = np.asarray(r, np.float32)
    return np.where(np.isnan(r), CANON, r.view(np.uint32)).astype(np.uint32)


def sig_exp(f):
    """Integer significand and exponent of float32 values: |f| = sig · 2**exp."""
    b = np.asarray(f, np.float32).view(np.uint32).astype(np.int64)
    e = (b >> 23) & 0xFF
    m = b & 0x7FFFFF
    return np.where(e > 0, m | 0x800000, m), np.where(e > 0, e, 1) - 150


def random_f32_pairs(rng, n):
    """Operand pairs rich in subnormals, zeros, specials, extreme exponents and cancellation."""
    def draw(size):
        kind = rng.integers(0, 8, size)
        sign = rng.integers(0, 2, size).astype(np.uint32) << 31
        mant = rng.integers(0, 1 << 23, size, dtype=np.uint32)
        exp = rng.integers(1, 255, size).astype(np.uint32)
        exp = np.where(kind == 1, 0, exp)                                  # subnormal / zero
        exp = np.where(kind == 2, rng.integers(240, 255, size), exp)        # huge
        exp = np.where(kind == 3, rng.integers(1, 30, size), exp)           # tiny
        bits = sign | (exp.astype(np.uint32) << 23) | mant
        special = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001,
                            0x7F800001, 0x00000001, 0x80000001, 0x7F7FFFFF, 0x00800000],
                           np.uint32)
        bits = np.where(kind == 4, rng.choice(special, size), bits)
        raw = rng.integers(0, 1 << 32, size, dtype=np.uint64).astype(np.uint32)
        return np.where(kind == 5, raw, bits).astype(np.uint32)
    a, b = draw(n), draw(n)
    pick = rng.integers(0, 4, n)
    # forced equal exponents (b keeps its sign and mantissa)
    same_exp = (b & 0x807FFFFF) | (a & 0x7F800000)
    b = np.where(pick == 1, same_exp, b)
    # b = -a ± a few ulp: massive cancellation
    near = ((a ^ 0x80000000).astype(np.int64) + rng.integers(-3, 4, n)) & 0xFFFFFFFF
    b = np.where(pick == 2, near.astype(np.uint32), b)
    return a, b


def check_f32_op(op, ref64, a, b, got):
    fa, fb = a.view(np.float32), b.view(np.float32)
    bits, flags = got
    assert bits.dtype == np.uint32 and flags.dtype == np.uint8
    with np.errstate(all="ignore"):
        want_np = f32_bits_canon(op(fa, fb))
        want_64 = f32_bits_canon(ref64(fa.astype(np.float64), fb.astype(np.float64))
                                 .astype(np.float32))
    assert (want_np == want_64).all()               # the two references agree with each other
    bad = np.flatnonzero(bits != want_np)
    assert bad.size == 0, f"{bad.size} mismatches, e.g. a=0x{a[bad[0]]:08x} b=0x{b[bad[0]]:08x}"
    r = bits.view(np.float32)
    nan_in = np.isnan(fa) | np.isnan(fb)
    finite_in = np.isfinite(fa) & np.isfinite(fb)
    want_flags = (np.where(np.isnan(r) & ~nan_in, INVALID, 0)
                  | np.where(np.isinf(r) & finite_in, OVERFLOW, 0)).astype(np.uint8)
    return flags, want_flags


# --------------------------------------------------------------------------------------------
# fadd / fmul
# --------------------------------------------------------------------------------------------

def test_fadd_random(rng):
    a, b = random_f32_pairs(rng, 1 << 20)
    flags, want = check_f32_op(np.add, np.add, a, b, fadd(a, b))
    # IEEE: a sum that is tiny is exact, so addition never underflows.
    assert (flags == want).all()
    assert (flags & INVALID).any() and (flags & OVERFLOW).any()           # the data reach them


def test_fmul_random(rng):
    a, b = random_f32_pairs(rng, 1 << 20)
    flags, want = check_f32_op(np.multiply, np.multiply, a, b, fmul(a, b))
    # UNDERFLOW from integer significands: exact = sa·sb·2**(ea+eb); tiny if below 2**-126,
    # inexact if it has bits below the subnormal quantum 2**-149.
    fa, fb = a.view(np.float32), b.view(np.float32)
    (ma, ea), (mb, eb) = sig_exp(fa), sig_exp(fb)
    prod = ma * mb                                                        # < 2**48
    e = ea + eb
    lost = np.clip(-149 - e, 0, 60)
    inexact = np.where(lost >= 48, prod != 0, (prod & ((np.int64(1) << lost) - 1)) != 0)
    tiny = (prod != 0) & (np.ldexp(prod.astype(np.float64), e) < TINY)
    finite = np.isfinite(fa) & np.isfinite(fb)
    want |= np.where(finite & tiny & inexact, UNDERFLOW, 0).astype(np.uint8)
    assert (flags == want).all()
    assert (flags & UNDERFLOW).any() and (flags & INVALID).any() and (flags & OVERFLOW).any()


def test_fadd_fmul_directed():
    def add(x, y):
        c, f = fadd(np.float32(x), np.float32(y))
        return int(c), int(f)

    def mul(x, y):
        c, f = fmul(np.float32(x), np.float32(y))
        return int(c), int(f)
    assert add(0.0, -0.0) == (0x00000000, 0)
    assert add(-0.0, -0.0) == (0x80000000, 0)
    assert add(1.5, -1.5) == (0x00000000, 0)                             # x - x = +0
    assert add(np.inf, -np.inf) == (CANON, INVALID)
    assert add(-np.nan, 1.0) == (CANON, 0)                                # NaN in: no flag
    assert add(3.4e38, 3.4e38) == (0x7F800000, OVERFLOW)
    assert add(np.inf, 1.0) == (0x7F800000, 0)
    assert mul(0.0, np.inf) == (CANON, INVALID)
    assert mul(-0.0, 5.0) == (0x80000000, 0)
    assert mul(2.0**-149, 0.5) == (0, UNDERFLOW)                          # tie to even zero
    assert mul(2.0**-149, 0.75) == (1, UNDERFLOW)
    # tininess before rounding: exact 2**-126 - 2**-150 rounds up to 2**-126 but is tiny
    assert mul(1 - 2.0**-24, 2.0**-126) == (0x00800000, UNDERFLOW)
    assert mul(2.0**-100, 2.0**-30) == (0x00080000, 0)                    # exact subnormal
    # float32 arrays are accepted as values, uint32 as bits; they broadcast
    bits, _ = fmul(np.array([1.0, 2.0], np.float32), np.uint32(0x40400000))
    assert bits.tolist() == [0x40400000, 0x40C00000]


# --------------------------------------------------------------------------------------------
# product
# --------------------------------------------------------------------------------------------

def ref_product(a_codes, b_codes, fa, fb, sa=127, sb=127):
    """Reference product bits and flags from ml_dtypes values and the rint rounding."""
    va, vb = ml_decode(a_codes, fa), ml_decode(b_codes, fb)
    va, vb, sa, sb = np.broadcast_arrays(va, vb, np.asarray(sa, np.int64),
                                         np.asarray(sb, np.int64))
    nan_in = np.isnan(va) | np.isnan(vb) | (sa == 255) | (sb == 255)
    zero_inf = ((va == 0) & np.isinf(vb)) | (np.isinf(va) & (vb == 0))
    with np.errstate(all="ignore"):
        y = va * vb * np.ldexp(1.0, np.where(nan_in, 0, sa + sb - 254))   # exact (see arith)
    r = ref_round_f32(np.where(nan_in | zero_inf, 0, y))
    bits = np.where(nan_in | zero_inf, CANON, r.view(np.uint32)).astype(np.uint32)
    finite = np.isfinite(va) & np.isfinite(vb)
    flags = (np.where(zero_inf & ~nan_in, INVALID, 0)
             | np.where(~nan_in & finite & np.isinf(r), OVERFLOW, 0)
             | np.where(~nan_in & finite & (y != 0) & (np.abs(y) < TINY)
                        & (r.astype(np.float64) != y), UNDERFLOW, 0))
    return bits, flags.astype(np.uint8), y


def all_pairs(na, nb):
    a, b = np.meshgrid(np.arange(na), np.arange(nb), indexing="ij")
    return a.ravel(), b.ravel()


@pytest.mark.parametrize("fa,fb", [(F.FP8_E4M3, F.FP8_E4M3), (F.FP8_E5M2, F.FP8_E5M2),
                                   (F.FP4_E2M1, F.FP4_E2M1), (F.FP8_E4M3, F.FP4_E2M1),
                                   (F.INT8, F.FP8_E4M3), (F.MXFP8_E4M3, F.MXFP4)],
                         ids=lambda f: f.name)
def test_product_exhaustive_narrow(fa, fb):
    width = {F.FP8_E4M3: 8, F.FP8_E5M2: 8, F.FP4_E2M1: 4, F.INT8: 8, F.MXFP8_E4M3: 8,
             F.MXFP4: 4}
    a, b = all_pairs(1 << width[fa], 1 << width[fb])
    ea = {F.MXFP8_E4M3: F.FP8_E4M3, F.MXFP4: F.FP4_E2M1}.get(fa, fa)
    eb = {F.MXFP8_E4M3: F.FP8_E4M3, F.MXFP4: F.FP4_E2M1}.get(fb, fb)
    want_bits, want_flags, y = ref_product(a, b, ea, eb)
    bits, flags = product(a, b, fa, fb)
    assert (bits == want_bits).all() and (flags == want_flags).all()
    # Unscaled narrow products are exact in FP32: no flag but INVALID (E5M2 0·inf).
    ok = bits != CANON
    assert (bits[ok].view(np.float32).astype(np.float64) == y[ok]).all()
    assert ((flags & (OVERFLOW | UNDERFLOW)) == 0).all()


@pytest.mark.parametrize("fa,fb", [(F.FP8_E4M3, F.FP8_E4M3), (F.FP8_E5M2, F.FP8_E5M2),
                                   (F.FP4_E2M1, F.FP8_E4M3)], ids=lambda f: f.name)
def test_product_scaled(fa, fb, rng):
    a, b = all_pairs(1 << 8 if fa is not F.FP4_E2M1 else 16, 1 << 8)
    sa = rng.integers(0, 256, a.size)
    sb = rng.integers(0, 256, a.size)
    # aim half of the pairs at the FP32 overflow / underflow edges
    edge = rng.random(a.size) < 0.5
    sa = np.where(edge, rng.choice([0, 1, 2, 252, 253, 254], a.size), sa)
    want_bits, want_flags, _ = ref_product(a, b, fa, fb, sa, sb)
    bits, flags = product(a, b, fa, fb, sa, sb)
    assert (bits == want_bits).all() and (flags == want_flags).all()
    assert (flags & OVERFLOW).any() and (flags & UNDERFLOW).any()


def test_product_wide(rng):
    # BF16 x E4M3 (sampled from all 2**24 pairs) and FP32 x FP32 (rounds once)
    n = 1 << 20
    a = rng.integers(0, 1 << 16, n)
    b = rng.integers(0, 256, n)
    wb, wf, y = ref_product(a, b, F.BF16, F.FP8_E4M3)
    bits, flags = product(a, b, F.BF16, F.FP8_E4M3)
    assert (bits == wb).all() and (flags == wf).all()
    ok = (bits != CANON) & (np.abs(y) >= TINY) & (np.abs(y) < 2.0**128)
    assert (bits[ok].view(np.float32).astype(np.float64) == y[ok]).all()  # exact when normal

    x, z = (v.astype(np.int64) for v in random_f32_pairs(rng, n))
    s1, s2 = rng.integers(100, 155, n), rng.integers(100, 155, n)
    for sa, sb in ((127, 127), (s1, s2)):
        wb, wf, _ = ref_product(x, z, F.FP32, F.FP32, sa, sb)
        bits, flags = product(x, z, F.FP32, F.FP32, sa, sb)
        assert (bits == wb).all() and (flags == wf).all()
    # unscaled FP32 x FP32 is fmul
    x32, z32 = x.astype(np.uint32), z.astype(np.uint32)
    assert (product(x, z, F.FP32, F.FP32)[0] == fmul(x32, z32)[0]).all()


def test_product_directed():
    def product(*args):
        bits, flags = _product(*args)
        return int(bits), int(flags)
    one, inf_e5, nan_e4 = 0x38, 0x7C, 0x7F            # E4M3 1.0, E5M2 inf, E4M3 NaN
    assert product(nan_e4, 0, F.FP8_E4M3, F.FP8_E4M3) == (CANON, 0)
    assert product(one, one, F.FP8_E4M3, F.FP8_E4M3, 0xFF, 127) == (CANON, 0)
    assert product(0, inf_e5, F.FP8_E5M2, F.FP8_E5M2) == (CANON, INVALID)
    # NaN scale wins over 0 x inf: a NaN operand gives no INVALID
    assert product(0, inf_e5, F.FP8_E5M2, F.FP8_E5M2, 127, 0xFF) == (CANON, 0)
    assert product(0xFC, 0x3C, F.FP8_E5M2, F.FP8_E5M2) == (0xFF800000, 0)   # -inf x 1
    assert product(0x80, 0x38, F.FP8_E4M3, F.FP8_E4M3) == (0x80000000, 0)   # -0 x 1
    assert product(0, 0xB8, F.INT8, F.FP8_E4M3) == (0x80000000, 0)          # INT8 0 is +0
    assert product(0x7E, 0x7E, F.FP8_E4M3, F.FP8_E4M3, 254, 254) == (0x7F800000, OVERFLOW)
    assert product(one, one, F.FP8_E4M3, F.FP8_E4M3, 0, 0) == (0, UNDERFLOW)  # 2**-254
    assert product(one, one, F.FP8_E4M3, F.FP8_E4M3, 0, 254) == (0x3F800000, 0)


def test_int_product():
    a, b = all_pairs(256, 256)
    got = int_product(a, b)
    want = a.astype(np.uint8).view(np.int8).astype(np.int64) * \
        b.astype(np.uint8).view(np.int8).astype(np.int64)
    assert got.dtype == np.int32 and (got == want).all()
    assert got.max() == 16384 and got.min() == -16256
    assert int_product(np.int8(-128), np.int8(-1)) == 128


# --------------------------------------------------------------------------------------------
# mac_reference
# --------------------------------------------------------------------------------------------

def scalar_mac(a, b, fa, fb, sa, sb, acc0=None):
    """One output at a time, one k at a time, in Python scalars (np.float32 for the adds)."""
    m_len, k_len = a.shape
    n_len = b.shape[1]
    va, vb = ml_decode(a, fa), ml_decode(b, fb)
    out = np.zeros((m_len, n_len), np.uint32)
    flags = np.zeros((m_len, n_len), np.uint8)
    for m in range(m_len):
        for n in range(n_len):
            acc = np.float32(0.0) if acc0 is None else np.float32(acc0[m, n])
            fl = 0
            for k in range(k_len):
                x, y = float(va[m, k]), float(vb[k, n])
                s = int(sa[m, k]) + int(sb[k, n]) - 254
                if math.isnan(x) or math.isnan(y) or sa[m, k] == 255 or sb[k, n] == 255:
                    p = np.float32(np.nan)
                elif (x == 0 and math.isinf(y)) or (math.isinf(x) and y == 0):
                    p, fl = np.float32(np.nan), fl | INVALID
                else:
                    exact = math.ldexp(x * y, s)
                    p = ref_round_f32(np.array([exact]))[0]
                    if math.isfinite(x) and math.isfinite(y) and math.isinf(p):
                        fl |= OVERFLOW
                    if exact != 0 and abs(exact) < TINY and float(p) != exact:
                        fl |= UNDERFLOW
                with np.errstate(all="ignore"):
                    new = np.float32(acc + p)
                if math.isnan(new) and not (math.isnan(acc) or math.isnan(p)):
                    fl |= INVALID
                if math.isinf(new) and math.isfinite(acc) and math.isfinite(p):
                    fl |= OVERFLOW
                acc = new
            out[m, n] = CANON if math.isnan(acc) else np.float32(acc).view(np.uint32)
            flags[m, n] = fl
    return out, flags


def codes_for(fmt, shape, rng, specials=False):
    """Random codes of ``fmt``; NaN/inf codes only if ``specials``."""
    width = {F.FP32: 32, F.FP16: 16, F.BF16: 16, F.FP8_E4M3: 8, F.FP8_E5M2: 8, F.FP4_E2M1: 4,
             F.INT8: 8}[fmt]
    if fmt is F.FP32:
        c = np.ldexp(rng.uniform(1, 2, shape), rng.integers(-20, 20, shape)).astype(np.float32)
        c = c * rng.choice(np.float32([-1, 1]), shape)
        c = c.view(np.uint32).astype(np.int64)
    else:
        c = rng.integers(0, 1 << width, shape)
    if not specials and fmt is not F.INT8:
        v = ml_decode(c, fmt)
        c = np.where(np.isfinite(v), c, 0)
    return c


@pytest.mark.parametrize("fa,fb,specials", [
    (F.FP8_E4M3, F.FP8_E4M3, False), (F.BF16, F.FP8_E4M3, False), (F.BF16, F.BF16, False),
    (F.FP32, F.FP32, False), (F.FP8_E5M2, F.FP16, True), (F.INT8, F.FP8_E4M3, False),
    (F.FP8_E5M2, F.FP8_E5M2, True)], ids=str)
def test_mac_matches_scalar_loop(fa, fb, specials, rng):
    m, k, n = 3, 48, 4
    a, b = codes_for(fa, (m, k), rng, specials), codes_for(fb, (k, n), rng, specials)
    sa = np.full((m, k), 127)
    sb = np.full((k, n), 127)
    want = scalar_mac(a, b, fa, fb, sa, sb)
    got = mac_reference(a, b, fa, fb)
    assert got.values.dtype == np.uint32 and got.flags.dtype == np.uint8
    assert (got.values == want[0]).all() and (got.flags == want[1]).all()
    assert got.sticky == int(np.bitwise_or.reduce(want[1], axis=None))
    # per-row / per-column scales (FP8 per-channel use), and an initial accumulator
    row = rng.integers(110, 145, (m, 1))
    col = rng.integers(110, 145, (1, n))
    acc0 = rng.standard_normal((m, n)).astype(np.float32)
    want = scalar_mac(a, b, fa, fb, np.broadcast_to(row, (m, k)), np.broadcast_to(col, (k, n)),
                      acc0)
    got = mac_reference(a, b, fa, fb, row, col, acc=acc0)
    assert (got.values == want[0]).all() and (got.flags == want[1]).all()
    assert (mac_reference(a, b, fa, fb, row, col, acc=acc0.view(np.uint32)).values
            == got.values).all()


def test_mac_overflow_and_invalid_flags():
    # E5M2 57344 * 57344 = 3.3e9; at scale 2**127 each, the sum overflows in the adder
    a = np.full((1, 4), 0x7B)
    b = np.full((4, 1), 0x7B)
    big = mac_reference(a, b, F.FP8_E5M2, F.FP8_E5M2, np.full((1, 1), 127 + 48),
                        np.full((1, 1), 127 + 48))
    assert big.values[0, 0] == 0x7F800000 and big.flags[0, 0] == OVERFLOW
    # +inf then -inf products: the add is invalid
    a = np.array([[0x7C, 0xFC]])
    b = np.array([[0x3C], [0x3C]])
    r = mac_reference(a, b, F.FP8_E5M2, F.FP8_E5M2)
    assert r.values[0, 0] == CANON and r.flags[0, 0] == INVALID and r.sticky == INVALID


def test_mac_int8(rng):
    a = rng.integers(-128, 128, (5, 300))
    b = rng.integers(0, 256, (300, 7))                # bytes, two's complement
    bs = b.astype(np.uint8).view(np.int8).astype(np.int64)
    acc = rng.integers(-2**30, 2**30, (5, 7))
    got = mac_reference(a, b, F.INT8, F.INT8, acc=acc)
    assert got.values.dtype == np.int32 and (got.flags == 0).all()
    assert (got.values == a.astype(np.int64) @ bs + acc).all()
    # int32 wraps (documented choice): the exact sum modulo 2**32
    a = np.full((1, 2), -128)
    got = mac_reference(a, np.full((2, 1), -128), F.INT8, F.INT8, acc=np.array([[2**31 - 1]]))
    assert got.values[0, 0] == 2**31 - 1 + 2 * 16384 - 2**32
    with pytest.raises(ValueError, match="scales other than 127"):
        mac_reference(a, np.full((2, 1), 1), F.INT8, F.INT8, 130)


def mx_block_reference(a, sa, b, sb, fa, fb):
    """Sequential accumulation written block by block: for block j, its scales, then its 32 k."""
    m_len, k_len = a.shape
    va, vb = ml_decode(a, fa), ml_decode(b, fb)
    acc = np.zeros((m_len, b.shape[1]), np.float32)
    for j in range(k_len // 32):
        scale = np.ldexp(1.0, sa[:, j, None].astype(np.int64) + sb[None, j, :] - 254)
        for k in range(32 * j, 32 * j + 32):
            p = ref_round_f32(va[:, k, None] * vb[None, k, :] * scale)
            acc = (acc + p).astype(np.float32)
    return f32_bits_canon(acc)


def test_mac_mx(rng):
    m, k, n = 6, 128, 5
    x = rng.standard_normal((m, k)).astype(np.float32) * np.float32(2.0**20)
    w = rng.standard_normal((n, k)).astype(np.float32) * np.float32(2.0**-20)
    a, sa = mx_quantize(x, F.MXFP8_E4M3)
    bt, sbt = mx_quantize(w, F.MXFP4)
    b, sb = bt.T, sbt.T                               # B is [K, N], its scales [K/32, N]
    got = mac_reference(a, b, F.MXFP8_E4M3, F.MXFP4, sa, sb)
    want = mx_block_reference(a, sa, b, sb, F.FP8_E4M3, F.FP4_E2M1)
    assert (got.values == want).all() and (got.flags == 0).all()
    # tiling: K tiles of 32 with the accumulator carried give the same bits
    acc = None
    for t in range(0, k, 32):
        acc = mac_reference(a[:, t:t + 32], b[t:t + 32], F.MXFP8_E4M3, F.MXFP4,
                            sa[:, t // 32:t // 32 + 1], sb[t // 32:t // 32 + 1], acc=acc).values
    assert (acc == got.values).all()
    # a NaN block scale poisons exactly the outputs that use it
    sa2 = sa.copy()
    sa2[2, 1] = 0xFF
    got2 = mac_reference(a, b, F.MXFP8_E4M3, F.MXFP4, sa2, sb)
    assert (got2.values[2] == CANON).all()
    assert (np.delete(got2.values, 2, axis=0) == np.delete(got.values, 2, axis=0)).all()


def test_mac_tiling_bf16(rng):
    m, k, n = 8, 96, 8
    a = codes_for(F.BF16, (m, k), rng)
    b = codes_for(F.FP8_E4M3, (k, n), rng)
    whole = mac_reference(a, b, F.BF16, F.FP8_E4M3)
    acc = None
    for t0, t1 in ((0, 17), (17, 64), (64, 96)):
        acc = mac_reference(a[:, t0:t1], b[t0:t1], F.BF16, F.FP8_E4M3, acc=acc).values
    assert (acc == whole.values).all()


def test_mac_bad_arguments():
    a = np.zeros((2, 64), np.int64)
    b = np.zeros((64, 3), np.int64)
    with pytest.raises(ValueError, match="need their E8M0 block scales"):
        mac_reference(a, b, F.MXFP4, F.FP8_E4M3)
    with pytest.raises(ValueError, match="expected"):
        mac_reference(a, b, F.MXFP4, F.FP8_E4M3, np.zeros((2, 64), np.uint8), None)
    with pytest.raises(ValueError, match="multiple of the MX block"):
        mac_reference(a[:, :40], b[:40], F.MXFP4, F.FP8_E4M3, np.zeros((2, 1), np.uint8))
    with pytest.raises(ValueError, match="expected A"):
        mac_reference(a, b[:10], F.FP8_E4M3, F.FP8_E4M3)
    with pytest.raises(ValueError, match="does not broadcast"):
        mac_reference(a, b, F.FP8_E4M3, F.FP8_E4M3, np.full((3, 1), 127))
    with pytest.raises(ValueError, match="unknown number format"):
        mac_reference(a, b, 12, F.FP8_E4M3)

