"""IEEE 754 binary32 adder and multiplier (round to nearest even, subnormals, no FTZ)."""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Mux, Signal
from amaranth.lib import data

from ..layouts import Flags, Format
from .fpcore import EXP_SHAPE, clz, decode_format, encode, flag_bits, normalise, shift_right_jam
from .pipeline import StreamPipeline
from .product import product_f32


__all__ = ["FP32_OPERANDS", "FP32_RESULT", "add_f32", "FP32Add", "FP32Mul"]


#: Input payload of :class:`FP32Add` and :class:`FP32Mul`.
FP32_OPERANDS = data.StructLayout({
    "a": 32,
    "b": 32,
})

#: Output payload of :class:`FP32Add` and :class:`FP32Mul`.
FP32_RESULT = data.StructLayout({
    "result": 32,
    "flags":  Flags,
})

# Guard, round and sticky bits kept below the significand through the alignment shift. With
# the sticky bit jammed (ORed with everything shifted past it) they give the correctly rounded
# sum: a shift of two or more leaves at most one bit of cancellation, and a shift of at most
# one loses nothing.
_GRS = 3


def add_f32(m, a_bits, b_bits, *, pipe, carry=None, name="add"):
    """Build ``RNE_f32(a + b)`` (the datapath of :class:`FP32Add`), cut twice by ``pipe``.

    Parameters
    ----------
    a_bits, b_bits : Value
        FP32 codes.
    pipe : Pipe
        Pipeline to cut (twice when pipelined).
    carry : dict of str to Value, optional
        Values to carry through the same pipeline registers, to stay aligned with the sum.

    Returns
    -------
    SimpleNamespace
        ``result`` (FP32 code), ``flags`` (3 bits, :class:`Flags` layout) and ``carry`` (a
        namespace of the carried values, delayed like the result).
    """
    carry = dict(carry or {})
    a = decode_format(m, a_bits, Format.FP32, sig_width=24, name=f"{name}_a")
    b = decode_format(m, b_bits, Format.FP32, sig_width=24, name=f"{name}_b")

    # Stage 1. The magnitude bits of two codes compare like the values they encode, so the
    # larger operand x is found without unpacking. The smaller, y, is aligned to x.
    swap = Signal(name=f"{name}_swap")
    diff = Signal(EXP_SHAPE, name=f"{name}_diff")
    m.d.comb += [
        swap.eq(b_bits[:31] > a_bits[:31]),
        diff.eq(Mux(swap, b.exp - a.exp, a.exp - b.exp)),
    ]
    x_sig = Cat(Const(0, _GRS), Mux(swap, b.sig, a.sig))
    y_sig = shift_right_jam(Cat(Const(0, _GRS), Mux(swap, a.sig, b.sig)), diff)
    s1 = pipe.cut(m,
        sign      = Mux(swap, b.sign, a.sign),
        sub       = a.sign ^ b.sign,
        exp       = Mux(swap, b.exp, a.exp),
        x_sig     = x_sig,
        y_sig     = y_sig,
        nan       = a.nan | b.nan | (a.inf & b.inf & (a.sign ^ b.sign)),
        invalid   = a.inf & b.inf & (a.sign ^ b.sign),
        inf       = a.inf | b.inf,
        inf_sign  = Mux(a.inf, a.sign, b.sign),
        zero_sign = a.sign & b.sign,
        **carry,
    )

    # Stage 2. x ≥ y, so the difference is non-negative. One more integer bit holds the
    # carry of a sum.
    total = Signal(24 + _GRS + 1, name=f"{name}_total")
    m.d.comb += total.eq(Mux(s1.sub, s1.x_sig - s1.y_sig, s1.x_sig + s1.y_sig))
    s2 = pipe.cut(m,
        sign      = Mux(total == 0, s1.zero_sign, s1.sign),
        exp       = s1.exp + 1,
        total     = total,
        lz        = clz(total),
        nan       = s1.nan,
        invalid   = s1.invalid,
        inf       = s1.inf,
        inf_sign  = s1.inf_sign,
        **{key: getattr(s1, key) for key in carry},
    )

    # Stage 3.
    norm_exp, norm_sig = normalise(m, s2.exp, s2.total, lz=s2.lz, name=f"{name}_norm")
    code, flags = encode(m, sign=Mux(s2.inf, s2.inf_sign, s2.sign), nan=s2.nan, inf=s2.inf,
                         exp=norm_exp, sig=norm_sig, fmt=Format.FP32, name=f"{name}_enc")
    result_flags = Signal(3, name=f"{name}_flags")
    m.d.comb += result_flags.eq(flags | flag_bits(invalid=s2.invalid))
    return SimpleNamespace(result=code, flags=result_flags,
                           carry=SimpleNamespace(**{key: getattr(s2, key) for key in carry}))


class FP32Add(StreamPipeline):
    """FP32 adder: ``result = RNE_f32(a + b)``.

    IEEE 754 binary32 with subnormal inputs and outputs; every NaN result is 0x7FC00000.
    ``inf − inf`` gives ``INVALID``; ``OVERFLOW`` and ``UNDERFLOW`` follow ``docs/numerics.md``
    (an underflowing sum is always exact, so the adder never raises ``UNDERFLOW``). An exact
    zero sum is +0 unless both operands are −0.

    Pipelined, the stages are: unpack, compare and align | add and count leading zeros |
    normalise, round and pack (:attr:`latency` 3); otherwise :attr:`latency` is 1.

    Parameters
    ----------
    pipelined : bool
        Insert the two stage registers.

    Members
    -------
    i : ``In(stream.Signature(FP32_OPERANDS))``
        Operands.
    o : ``Out(stream.Signature(FP32_RESULT))``
        Sum and flags.
    """

    STAGES = 2

    def __init__(self, *, pipelined=True):
        super().__init__(FP32_OPERANDS, FP32_RESULT, pipelined=pipelined)

    def datapath(self, m, p, pipe):
        r = add_f32(m, p.a, p.b, pipe=pipe)
        return {"result": r.result, "flags": r.flags}


class FP32Mul(StreamPipeline):
    """FP32 multiplier: ``result = RNE_f32(a × b)``.

    IEEE 754 binary32 with subnormal inputs and outputs; every NaN result is 0x7FC00000.
    ``0 × inf`` gives ``INVALID``; ``OVERFLOW`` and ``UNDERFLOW`` (tiny before rounding and
    inexact) follow ``docs/numerics.md``. It is :func:`product_f32` with both formats fixed to
    FP32 and unit scales.

    Pipelined, the stages are: unpack and multiply the significands | normalise, round and
    pack (:attr:`latency` 2); otherwise :attr:`latency` is 1.

    Parameters
    ----------
    pipelined : bool
        Insert the stage register.

    Members
    -------
    i : ``In(stream.Signature(FP32_OPERANDS))``
        Operands.
    o : ``Out(stream.Signature(FP32_RESULT))``
        Product and flags.
    """

    STAGES = 1

    def __init__(self, *, pipelined=True):
        super().__init__(FP32_OPERANDS, FP32_RESULT, pipelined=pipelined)

    def datapath(self, m, p, pipe):
        r = product_f32(m, p.a, p.b, Format.FP32, Format.FP32, 127, 127,
                        formats={Format.FP32}, pipe=pipe, name="mul")
        return {"result": r.result, "flags": r.flags}
