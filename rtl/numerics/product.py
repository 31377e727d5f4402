"""The product rule of the matrix engine: one exact multiply, one rounding to FP32."""

from types import SimpleNamespace

from amaranth.hdl import Mux, Signal, Value, signed
from amaranth.lib import data

from ..layouts import E8M0_BIAS, E8M0_NAN, Flags, Format, element_format
from .fpcore import (EXP_SHAPE, check_formats, decode, element_formats, encode, flag_bits,
                     normalise, unpacked_width, zext)
from .pipeline import Pipe, StreamPipeline


__all__ = ["PRODUCT_OPERANDS", "PRODUCT_RESULT", "product_f32", "ProductUnit"]


#: Input payload of :class:`ProductUnit`.
PRODUCT_OPERANDS = data.StructLayout({
    "a":       32,
    "b":       32,
    "fmt_a":   Format,
    "fmt_b":   Format,
    "scale_a": 8,
    "scale_b": 8,
})

#: Output payload of :class:`ProductUnit`.
PRODUCT_RESULT = data.StructLayout({
    "result":     32,
    "int_result": signed(16),
    "flags":      Flags,
})


def product_f32(m, a, b, fmt_a, fmt_b, scale_a, scale_b, *, formats, pipe=None, name="prod"):
    """Build ``RNE_f32(a · b · 2**(scale_a + scale_b − 254))`` for codes in any two formats.

    Combinational, unless ``pipe`` is given: then one :meth:`Pipe.cut` separates the decode and
    significand multiply from the normalise, round and pack.

    Parameters
    ----------
    a, b : Value
        Operand codes, in the low bits.
    fmt_a, fmt_b : Value or Format
        Their formats (run-time 4-bit :class:`Format` codes, or :class:`Format` members fixed at
        elaboration). A format outside ``formats`` gives a NaN and ``INVALID``.
    scale_a, scale_b : Value or int
        E8M0 scale codes (127 is ×1; 0xFF is NaN).
    formats : set of Format
        Operand formats to implement. The significand multiplier is as wide as the widest.
    pipe : Pipe or None
        Pipeline to cut once.

    Returns
    -------
    SimpleNamespace
        ``result`` (32-bit FP32 code), ``flags`` (3 bits, :class:`Flags` layout) and
        ``int_result`` (signed 16 bits: the exact product when both operands are INT8, else 0).
    """
    formats = check_formats(formats)
    width   = unpacked_width(formats)

    ua, known_a = decode(m, a, fmt_a, formats=formats, sig_width=width, name=f"{name}_a")
    ub, known_b = decode(m, b, fmt_b, formats=formats, sig_width=width, name=f"{name}_b")
    scale_a = Value.cast(scale_a)
    scale_b = Value.cast(scale_b)

    # Classification. An unknown format decodes as a NaN; only the product 0 × inf of two
    # operands that are not NaN makes a new NaN.
    nan_in   = ua.nan | ub.nan | (scale_a == E8M0_NAN) | (scale_b == E8M0_NAN)
    zero_inf = (ua.zero & ub.inf) | (ua.inf & ub.zero)
    sign     = Signal(name=f"{name}_sign")
    nan      = Signal(name=f"{name}_nan")
    inf      = Signal(name=f"{name}_inf")
    invalid  = Signal(name=f"{name}_invalid")
    m.d.comb += [
        sign   .eq(ua.sign ^ ub.sign),
        nan    .eq(nan_in | zero_inf),
        inf    .eq(ua.inf | ub.inf),
        invalid.eq(~known_a | ~known_b | (zero_inf & ~nan_in)),
    ]

    # The significand product is a fixed-point number with two integer bits, hence the +1.
    exp  = Signal(EXP_SHAPE, name=f"{name}_exp")
    prod = Signal(2 * width, name=f"{name}_sig")
    m.d.comb += [
        exp .eq(ua.exp + ub.exp + 1 + zext(scale_a) + zext(scale_b) - 2 * E8M0_BIAS),
        prod.eq(ua.sig * ub.sig),
    ]

    # INT8 × INT8 also returns the exact integer product, taken from the same multiplier: each
    # magnitude sits in the top 8 bits of its significand.
    int_result = Signal(signed(16), name=f"{name}_int")
    if Format.INT8 in element_formats(formats):
        both_int8 = _is_format(fmt_a, Format.INT8) & _is_format(fmt_b, Format.INT8)
        magnitude = prod[2 * (width - 8):][:15]
        m.d.comb += int_result.eq(Mux(both_int8, Mux(sign, -magnitude, magnitude), 0))

    if pipe is None:
        pipe = Pipe(enable=1, pipelined=False)
    s = pipe.cut(m, sign=sign, nan=nan, inf=inf, invalid=invalid, exp=exp, prod=prod,
                 int_result=int_result)

    norm_exp, norm_sig = normalise(m, s.exp, s.prod, name=f"{name}_norm")
    code, flags = encode(m, sign=s.sign, nan=s.nan, inf=s.inf, exp=norm_exp, sig=norm_sig,
                         fmt=Format.FP32, name=f"{name}_enc")
    result_flags = Signal(3, name=f"{name}_flags")
    m.d.comb += result_flags.eq(flags | flag_bits(invalid=s.invalid))
    return SimpleNamespace(result=code, flags=result_flags, int_result=s.int_result)


def _is_format(fmt, member):
    if isinstance(fmt, Format):
        return Value.cast(element_format(fmt) is member)
    return fmt == member


class ProductUnit(StreamPipeline):
    """Product of two codes in independently chosen formats, rounded once to FP32.

    Implements "Product" of ``docs/numerics.md``: decode both codes, multiply the significands
    exactly, add the exponents and ``scale_a + scale_b − 254``, and round once with
    round-to-nearest-even. NaN operands and NaN scales give 0x7FC00000; 0 × inf gives
    0x7FC00000 and ``INVALID``; so does a format code outside ``formats``. INT8 × INT8 also
    gives the exact integer product in ``int_result`` (0 otherwise).

    Pipelined, stage 1 decodes and multiplies the significands and stage 2 normalises, rounds
    and packs (:attr:`latency` 2); otherwise :attr:`latency` is 1.

    Parameters
    ----------
    formats : set of Format
        Operand formats implemented.
    pipelined : bool
        Insert the stage register.

    Members
    -------
    i : ``In(stream.Signature(PRODUCT_OPERANDS))``
        Operand codes (low bits), their formats and their E8M0 scale codes.
    o : ``Out(stream.Signature(PRODUCT_RESULT))``
        FP32 result, integer result and flags.
    """

    STAGES = 1

    def __init__(self, *, formats, pipelined=True):
        self._formats = check_formats(formats)
        super().__init__(PRODUCT_OPERANDS, PRODUCT_RESULT, pipelined=pipelined)

    @property
    def formats(self):
        """Operand formats implemented."""
        return self._formats

    def datapath(self, m, p, pipe):
        r = product_f32(m, p.a, p.b, p.fmt_a, p.fmt_b, p.scale_a, p.scale_b,
                        formats=self._formats, pipe=pipe)
        return {"result": r.result, "int_result": r.int_result, "flags": r.flags}
