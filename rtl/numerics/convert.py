"""Format converters between FP32 and every operand format, with E8M0 scales."""

from amaranth.hdl import Signal
from amaranth.lib import data

from ..layouts import E8M0_BIAS, E8M0_NAN, Flags, Format, element_format
from .fpcore import (check_formats, decode, decode_format, element_formats, encode, flag_bits,
                     normalise, zext)
from .pipeline import StreamPipeline


__all__ = [
    "F32_TO_FORMAT_OPERANDS", "F32_TO_FORMAT_RESULT", "FORMAT_TO_F32_OPERANDS",
    "FORMAT_TO_F32_RESULT", "F32ToFormat", "FormatToF32", "f32_to_format", "format_to_f32",
]


#: Input payload of :class:`F32ToFormat`.
F32_TO_FORMAT_OPERANDS = data.StructLayout({
    "value": 32,
    "fmt":   Format,
    "scale": 8,
})

#: Output payload of :class:`F32ToFormat`.
F32_TO_FORMAT_RESULT = data.StructLayout({
    "code":  32,
    "flags": Flags,
})

#: Input payload of :class:`FormatToF32`.
FORMAT_TO_F32_OPERANDS = data.StructLayout({
    "code":  32,
    "fmt":   Format,
    "scale": 8,
})

#: Output payload of :class:`FormatToF32`.
FORMAT_TO_F32_RESULT = data.StructLayout({
    "value": 32,
    "flags": Flags,
})


class F32ToFormat(StreamPipeline):
    """Convert FP32 values to a format chosen per transaction, dividing by an E8M0 scale.

    Implements "Conversion FP32 → format F with scale code s" of ``docs/numerics.md``:
    ``value · 2**−(scale − 127)`` is computed exactly and rounded once to nearest-even on the
    grid of ``fmt``, with gradual underflow and, above the largest finite value, ±inf or ±max
    as the format says. NaN values and the NaN scale 0xFF give the canonical NaN of ``fmt`` (FP4
    and INT8: +0 and ``INVALID``). An MX format converts to its element format. A format code
    outside ``formats`` gives code 0 and ``INVALID``.

    Pipelined, stage 1 unpacks, applies the scale and normalises, and stage 2 rounds and
    packs into every implemented format and selects one (:attr:`latency` 2); otherwise
    :attr:`latency` is 1.

    Parameters
    ----------
    formats : set of Format
        Destination formats implemented.
    pipelined : bool
        Insert the stage register.

    Members
    -------
    i : ``In(stream.Signature(F32_TO_FORMAT_OPERANDS))``
        FP32 value, destination format and E8M0 scale code.
    o : ``Out(stream.Signature(F32_TO_FORMAT_RESULT))``
        Code in the low bits (INT8 as a two's-complement byte, upper bits zero) and flags.
    """

    STAGES = 1

    def __init__(self, *, formats, pipelined=True):
        self._formats = check_formats(formats)
        super().__init__(F32_TO_FORMAT_OPERANDS, F32_TO_FORMAT_RESULT, pipelined=pipelined)

    @property
    def formats(self):
        """Destination formats implemented."""
        return self._formats

    def datapath(self, m, p, pipe):
        return f32_to_format(m, p, pipe, formats=self._formats)


class FormatToF32(StreamPipeline):
    """Convert codes of a format chosen per transaction to FP32, multiplying by an E8M0 scale.

    Implements "Conversion format F → FP32 with scale code s" of ``docs/numerics.md``:
    ``RNE_f32(value · 2**(scale − 127))``, exact when the scale is 127. NaN codes and the NaN
    scale give 0x7FC00000, infinities stay infinite, and a format code outside ``formats``
    gives 0x7FC00000 and ``INVALID``. An MX format converts from its element format; INT8
    codes are integers.

    Pipelined, stage 1 decodes, applies the scale and normalises, and stage 2 rounds and packs
    (:attr:`latency` 2); otherwise :attr:`latency` is 1.

    Parameters
    ----------
    formats : set of Format
        Source formats implemented.
    pipelined : bool
        Insert the stage register.

    Members
    -------
    i : ``In(stream.Signature(FORMAT_TO_F32_OPERANDS))``
        Code (low bits), its format and E8M0 scale code.
    o : ``Out(stream.Signature(FORMAT_TO_F32_RESULT))``
        FP32 value and flags.
    """

    STAGES = 1

    def __init__(self, *, formats, pipelined=True):
        self._formats = check_formats(formats)
        super().__init__(FORMAT_TO_F32_OPERANDS, FORMAT_TO_F32_RESULT, pipelined=pipelined)

    @property
    def formats(self):
        """Source formats implemented."""
        return self._formats

    def datapath(self, m, p, pipe):
        return format_to_f32(m, p, pipe, formats=self._formats)


def f32_to_format(m, p, pipe, *, formats):
    """The datapath of :class:`F32ToFormat` on payload ``p`` (``F32_TO_FORMAT_OPERANDS``):
    ``{"code", "flags"}``. ``pipe`` makes its one cut."""
    u = decode_format(m, p.value, Format.FP32, sig_width=24, name="src")
    norm_exp, norm_sig = normalise(m, u.exp + E8M0_BIAS - zext(p.scale), u.sig)
    s = pipe.cut(m,
        sign = u.sign,
        nan  = u.nan | (p.scale == E8M0_NAN),
        inf  = u.inf,
        exp  = norm_exp,
        sig  = norm_sig,
        fmt  = p.fmt,
    )

    encoded = {f: encode(m, sign=s.sign, nan=s.nan, inf=s.inf, exp=s.exp, sig=s.sig, fmt=f,
                         name=f"enc_{f.name.lower()}")
               for f in element_formats(formats)}
    code  = Signal(32)
    flags = Signal(3)
    with m.Switch(s.fmt):
        for f in sorted(formats, key=lambda f: f.value):
            f_code, f_flags = encoded[element_format(f)]
            with m.Case(f):
                m.d.comb += [
                    code .eq(f_code),
                    flags.eq(f_flags),
                ]
        with m.Default():
            m.d.comb += [
                code .eq(0),
                flags.eq(flag_bits(invalid=1)),
            ]
    return {"code": code, "flags": flags}


def format_to_f32(m, p, pipe, *, formats):
    """The datapath of :class:`FormatToF32` on payload ``p`` (``FORMAT_TO_F32_OPERANDS``):
    ``{"value", "flags"}``. ``pipe`` makes its one cut."""
    u, known = decode(m, p.code, p.fmt, formats=formats, name="src")
    norm_exp, norm_sig = normalise(m, u.exp + zext(p.scale) - E8M0_BIAS, u.sig)
    s = pipe.cut(m,
        sign    = u.sign,
        nan     = u.nan | (p.scale == E8M0_NAN),
        inf     = u.inf,
        exp     = norm_exp,
        sig     = norm_sig,
        invalid = ~known,
    )

    code, flags = encode(m, sign=s.sign, nan=s.nan, inf=s.inf, exp=s.exp, sig=s.sig,
                         fmt=Format.FP32)
    return {"value": code, "flags": flags | flag_bits(invalid=s.invalid)}
