"""Special functions of the vector unit, step for step as ``golden_model/vpu.py``.

Each function is built from the same FP32 adders and multipliers as the rest of the chip
(``add_f32``, ``product_f32``: round to nearest even, subnormals, no FMA) and exact integer
steps on bit patterns, in the order the golden model documents, so results match bit for bit.
The constants (coefficients, ROMs) are imported from the golden model: written once.
"""

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden_model import vpu as gold

from ..layouts import FP32_CANONICAL_NAN, Format
from ..numerics import Pipe, add_f32, product_f32
from ..numerics.fpcore import clz, flag_bits


__all__ = ["exp_f32", "recip_f32", "rsqrt_f32", "sigmoid_f32", "silu_f32",
           "ExpUnit", "RecipUnit", "RsqrtUnit", "SigmoidUnit", "SiluUnit"]


def _bits(f32):
    return int(np.asarray(f32, np.float32).view(np.uint32))


_INF = 0x7F800000
#: |EXP_TINY_X|: finite x <= EXP_TINY_X iff x is negative and |x| >= this.
_TINY = _bits(gold.EXP_TINY_X) & 0x7FFFFFFF


class _Ops:
    """Combinational FP32 operations with unique signal names."""

    def __init__(self, m, name):
        self.m, self.name, self.n = m, name, 0

    def _tag(self):
        self.n += 1
        return f"{self.name}_{self.n}"

    def mul(self, a, b):
        a, b = _c32(a), _c32(b)
        return product_f32(self.m, a, b, Format.FP32, Format.FP32, 127, 127,
                           formats={Format.FP32}, name=self._tag()).result

    def add(self, a, b):
        a, b = _c32(a), _c32(b)
        return add_f32(self.m, a, b, pipe=Pipe(enable=1, pipelined=False),
                       name=self._tag()).result

    def sig(self, value, width, signed_=False):
        s = Signal(width, name=self._tag())
        self.m.d.comb += s.eq(value)
        return s


def _c32(v):
    return Const(v, 32) if isinstance(v, int) else v


def _negate(bits):
    """The FP32 code with its sign flipped (exact)."""
    return Cat(bits[:31], ~bits[31])


def _rint(m, t, name):
    """Round FP32 ``t`` (|t| < 256) to the nearest integer, ties to even: signed 10 bits."""
    e = t[23:31]
    sig = Cat(t[:23], Const(1, 1))
    # t = sig · 2**(e − 150); the integer part is sig >> (150 − e), 16 ≤ shift ≤ 24 here.
    shift = Signal(6, name=f"{name}_shift")
    m.d.comb += shift.eq((150 - e)[:6])
    int_part = Signal(9, name=f"{name}_int")
    rem = Signal(24, name=f"{name}_rem")
    half = Signal(24, name=f"{name}_half")
    m.d.comb += [
        int_part.eq(sig >> shift),
        rem.eq(sig & ((Const(1, 25) << shift) - 1)),
        half.eq(Const(1, 25) << (shift - 1)[:6]),
    ]
    up = (rem > half) | ((rem == half) & int_part[0])
    mag = Signal(9, name=f"{name}_mag")
    m.d.comb += mag.eq(Mux(e < 126, 0, int_part + up))      # |t| < 0.5 → 0
    n = Signal(range(-512, 512), name=f"{name}_n")
    m.d.comb += n.eq(Mux(t[31], -mag, mag))
    return n, mag


def _int_to_f32(m, sign, mag, name):
    """FP32 of the integer ±mag (mag < 512, exact)."""
    out = Signal(32, name=f"{name}_f")
    with m.If(mag == 0):
        m.d.comb += out.eq(0)
    for msb in range(9):
        with m.Elif(mag[msb:] == 1):
            frac = (mag << (23 - msb))[:23] if msb else Const(0, 23)
            m.d.comb += out.eq(Cat(frac, Const(127 + msb, 8), sign))
    return out


def _pow2(k):
    """FP32 2**k for a signed k in [−126, 127], built in the exponent field."""
    return Cat(Const(0, 23), (k + 127)[:8], Const(0, 1))


def _scale2(ops, m, v, n, name):
    """``v · 2**n`` as two multiplies (the first exact, the second the only rounding)."""
    n1 = Signal(range(-512, 512), name=f"{name}_n1")
    n2 = Signal(range(-512, 512), name=f"{name}_n2")
    m.d.comb += [n1.eq(n >> 1), n2.eq(n - (n >> 1))]
    return ops.mul(ops.mul(v, _pow2(n1)), _pow2(n2))


def _exp_range(x):
    """The clamp conditions of the exp datapath for FP32 code ``x``: ``(is_nan, above, below)``,
    above = ``x > _EXP_HI`` (incl. +inf), below = ``x < _EXP_LO`` (incl. −inf)."""
    sign, mag = x[31], x[:31]
    is_nan = mag > _INF
    above = ~sign & ~is_nan & (mag > (_bits(gold._EXP_HI) & 0x7FFFFFFF))
    below = sign & ~is_nan & (mag > (_bits(gold._EXP_LO) & 0x7FFFFFFF))
    return is_nan, above, below


def _exp_parts(ops, m, x, name):
    """Cody–Waite + Horner ``(p, n)``, e**x ≈ p · 2**n, as :func:`golden_model.vpu._exp_parts`.

    x is clamped to [_EXP_LO, _EXP_HI] first (NaN → 0, as ``nan_to_num``); ``n`` is a signed
    10-bit signal in [−174, 130]. The callers select the out-of-range results.
    """
    is_nan, above, below = _exp_range(x)
    hi, lo = _bits(gold._EXP_HI), _bits(gold._EXP_LO)
    xc = ops.sig(Mux(is_nan, 0, Mux(above, hi, Mux(below, lo, x))), 32)

    t = ops.mul(xc, _bits(gold.LOG2E))
    n, n_mag = _rint(m, t, f"{name}_rint")
    nf = _int_to_f32(m, t[31] & (n_mag != 0), n_mag, name)
    r = ops.add(xc, _negate(ops.mul(nf, _bits(gold.LN2_HI))))
    r = ops.add(r, _negate(ops.mul(nf, _bits(gold.LN2_LO))))
    p = Const(_bits(gold.EXP_COEFFS[6]), 32)
    for c in gold.EXP_COEFFS[5::-1]:
        p = ops.add(ops.mul(p, r), _bits(c))
    return p, n


def exp_f32(m, x, *, name="exp"):
    """Build ``e**x`` for FP32 code ``x`` exactly as :func:`golden_model.vpu.exp`.

    Returns ``(result, flags)``: the FP32 code and the 3 flag bits.
    """
    ops = _Ops(m, name)
    sign, mag = x[31], x[:31]
    is_nan, above, below = _exp_range(x)
    p, n = _exp_parts(ops, m, x, name)
    # p · 2**n as two multiplies by powers of two built in the exponent field.
    y = _scale2(ops, m, p, n, name)

    result = Signal(32, name=f"{name}_result")
    m.d.comb += result.eq(Mux(is_nan, FP32_CANONICAL_NAN,
                              Mux(above, _INF, Mux(below, 0, y))))
    finite = mag < _INF
    flags = Signal(3, name=f"{name}_flags")
    m.d.comb += flags.eq(flag_bits(overflow=finite & (result == _INF),
                                   underflow=finite & sign & (mag >= _TINY)))
    return result, flags


def _normalize(m, a, name):
    """Positive finite nonzero FP32 ``a`` as ``m · 2**e``, m in [1, 2) (FP32 code), e signed."""
    efield, frac = a[23:31], a[:23]
    sub = efield == 0
    shift = Signal(6, name=f"{name}_shift")
    m.d.comb += shift.eq(clz(frac) + 1)
    frac_n = Signal(23, name=f"{name}_frac")
    e = Signal(range(-256, 256), name=f"{name}_e")
    m.d.comb += [
        frac_n.eq(Mux(sub, (frac << shift)[:23], frac)),
        e.eq(Mux(sub, -126 - shift, efield - 127)),
    ]
    return Cat(frac_n, Const(0x7F, 8), Const(0, 1)), e, frac_n


def recip_f32(m, x, *, name="recip"):
    """Build ``1/x`` for FP32 code ``x`` exactly as :func:`golden_model.vpu.recip`."""
    ops = _Ops(m, name)
    sign, mag = x[31], x[:31]
    is_nan = mag > _INF
    ok = (mag < _INF) & (mag != 0)
    a = Mux(ok, Cat(mag, Const(0, 1)), 0x3F800000)
    mm, e, frac = _normalize(m, ops.sig(a, 32), name)
    lut = Array(Const(_bits(v), 32) for v in gold.RECIP_LUT)
    y = ops.sig(lut[mm[16:23]], 32)
    y = ops.mul(y, ops.add(0x40000000, _negate(ops.mul(mm, y))))          # y·(2 − m·y)
    y = ops.add(y, ops.mul(y, ops.add(0x3F800000, _negate(ops.mul(mm, y)))))
    n = Signal(range(-512, 512), name=f"{name}_n")
    m.d.comb += n.eq(-e)
    y = _scale2(ops, m, y, n, name)
    result = Signal(32, name=f"{name}_result")
    m.d.comb += result.eq(Mux(is_nan, FP32_CANONICAL_NAN,
                              Cat(Mux(mag == 0, _INF, Mux(mag == _INF, 0, y[:31])), sign)))
    flags = Signal(3, name=f"{name}_flags")
    big = mag > 0x7E800000            # |x| > 2**126
    m.d.comb += flags.eq(flag_bits(overflow=ok & (y[:31] == _INF),
                                   underflow=ok & big & (frac != 0)))
    return result, flags


def _rsqrt_core(ops, m, mm, odd, name):
    """1/sqrt(M), M = m·2**odd in [1, 4), exactly as :func:`golden_model.vpu._rsqrt_core`:
    seed ``RSQRT_LUT[odd, top 6 fraction bits of m]``, ``y = y·(1.5 − h·(y·y))``, then
    ``y = y + y·(0.5 − h·(y·y))``, with ``h = 0.5·M``."""
    lut = Array(Const(_bits(v), 32) for v in gold.RSQRT_LUT.ravel())       # [odd, idx] row-major
    y = ops.sig(lut[Cat(mm[17:23], odd)], 32)
    # h = (odd ? m·2 : m)·0.5 is exact: m with the exponent field 127 (M in [2, 4)) or 126.
    h = ops.sig(Cat(mm[:23], Mux(odd, Const(127, 8), Const(126, 8)), Const(0, 1)), 32)
    y = ops.mul(y, ops.add(0x3FC00000, _negate(ops.mul(h, ops.mul(y, y)))))   # 1.5 − h·y²
    return ops.add(y, ops.mul(y, ops.add(0x3F000000, _negate(ops.mul(h, ops.mul(y, y))))))


def rsqrt_f32(m, x, *, name="rsqrt"):
    """Build ``1/sqrt(x)`` for FP32 code ``x`` exactly as :func:`golden_model.vpu.rsqrt`.

    Returns ``(result, flags)``; the only flag is INVALID, for x < 0 (incl. −inf, not −0).
    """
    ops = _Ops(m, name)
    sign, mag = x[31], x[:31]
    is_nan = mag > _INF
    ok = ~sign & (mag < _INF) & (mag != 0)
    neg = sign & (mag != 0) & ~is_nan
    mm, e, _ = _normalize(m, ops.sig(Mux(ok, x, 0x3F800000), 32), name)
    odd = e[0]                                      # e & 1 (two's complement)
    n = Signal(range(-512, 512), name=f"{name}_n")
    m.d.comb += n.eq(-((e - odd) >> 1))             # e − odd is even: an exact halving
    y = _scale2(ops, m, _rsqrt_core(ops, m, mm, odd, name), n, name)
    result = Signal(32, name=f"{name}_result")
    m.d.comb += result.eq(Mux(neg | is_nan, FP32_CANONICAL_NAN,
                              Mux(mag == 0, Cat(Const(_INF, 31), sign),
                                  Mux(mag == _INF, 0, y))))
    flags = Signal(3, name=f"{name}_flags")
    m.d.comb += flags.eq(flag_bits(invalid=neg))
    return result, flags


def _below(x, bound):
    """``x < bound`` for FP32 code ``x`` and a negative float32 ``bound`` (false for NaN)."""
    return x[31] & (x[:31] > (_bits(bound) & 0x7FFFFFFF)) & (x[:31] <= _INF)


def sigmoid_f32(m, x, *, name="sigmoid"):
    """Build ``1/(1 + e**−x)`` for FP32 code ``x`` exactly as :func:`golden_model.vpu.sigmoid`:
    ``recip(1 + exp(−x))`` for ``x >= SIGMOID_LO``, ``exp(x)`` below.

    The golden model evaluates both exps and selects; here one :func:`exp_f32` gets the
    selected argument (``x`` below SIGMOID_LO, ``−x`` otherwise), which gives the same values
    since exp is a function of its argument alone. The exp and recip flags are not used:
    the only flag is UNDERFLOW, for finite ``x <= EXP_TINY_X``.
    """
    ops = _Ops(m, name)
    mag = x[:31]
    lo = ops.sig(_below(x, gold.SIGMOID_LO), 1)
    e, _ = exp_f32(m, ops.sig(Mux(lo, x, _negate(x)), 32), name=f"{name}_exp")
    hi, _ = recip_f32(m, ops.add(0x3F800000, e), name=f"{name}_recip")
    result = Signal(32, name=f"{name}_result")
    m.d.comb += result.eq(Mux(lo, e, hi))
    flags = Signal(3, name=f"{name}_flags")
    m.d.comb += flags.eq(flag_bits(underflow=(mag < _INF) & x[31] & (mag >= _TINY)))
    return result, flags


def silu_f32(m, x, *, name="silu"):
    """Build ``x · sigmoid(x)`` for FP32 code ``x`` exactly as :func:`golden_model.vpu.silu`.

    For ``x >= SIGMOID_LO``: ``x · sigmoid(x)`` (:func:`sigmoid_f32`). Below: the unscaled
    ``p, n`` of exp(x) (``_exp_parts``), then ``(x·p) · 2**n``; x < _EXP_LO gives −0.
    The only flag is UNDERFLOW: finite nonzero x with a result below 2**-126 in magnitude.
    """
    ops = _Ops(m, name)
    mag = x[:31]
    is_nan = mag > _INF
    lo = ops.sig(_below(x, gold.SIGMOID_LO), 1)
    # The golden fillers of the unused branch (sigmoid(0), exp parts of −30), kept for the
    # correspondence; their results are never selected.
    s, _ = sigmoid_f32(m, ops.sig(Mux(lo, 0, x), 32), name=f"{name}_sigmoid")
    hi = ops.mul(x, s)
    xl = ops.sig(Mux(lo, x, _bits(np.float32(-30.0))), 32)
    p, n = _exp_parts(ops, m, xl, f"{name}_lo")
    low = _scale2(ops, m, ops.mul(xl, p), n, f"{name}_lo")
    result = Signal(32, name=f"{name}_result")
    m.d.comb += result.eq(Mux(is_nan, FP32_CANONICAL_NAN,
                              Mux(lo, Mux(_below(x, gold._EXP_LO), 0x80000000, low), hi)))
    flags = Signal(3, name=f"{name}_flags")
    m.d.comb += flags.eq(flag_bits(
        underflow=(mag < _INF) & (mag != 0) & (result[:31] < 0x00800000)))
    return result, flags


class _UnaryUnit(wiring.Component):
    """One lane of a unary function (combinational, one output register): the unit-level
    test vehicle of the ``*_f32`` builders.

    Members
    -------
    i : ``In(stream.Signature(32))``
    o : ``Out(stream.Signature({"result": 32, "flags": 3}))``
    """

    FUNCTION = None

    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(32)),
            "o": Out(stream.Signature(data.StructLayout({"result": 32, "flags": 3}))),
        })

    def elaborate(self, platform):
        m = Module()
        result, flags = type(self).FUNCTION(m, self.i.payload)
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)
        with m.If(advance):
            m.d.sync += [
                self.o.valid.eq(self.i.valid),
                self.o.payload.result.eq(result),
                self.o.payload.flags.eq(flags),
            ]
        return m


class ExpUnit(_UnaryUnit):
    """One lane of :func:`exp_f32`."""
    FUNCTION = staticmethod(exp_f32)


class RecipUnit(_UnaryUnit):
    """One lane of :func:`recip_f32`."""
    FUNCTION = staticmethod(recip_f32)



class RsqrtUnit(_UnaryUnit):
    """One lane of :func:`rsqrt_f32`."""
    FUNCTION = staticmethod(rsqrt_f32)


class SigmoidUnit(_UnaryUnit):
    """One lane of :func:`sigmoid_f32`."""
    FUNCTION = staticmethod(sigmoid_f32)


class SiluUnit(_UnaryUnit):
    """One lane of :func:`silu_f32`."""
    FUNCTION = staticmethod(silu_f32)
