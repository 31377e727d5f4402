"""Combinational floating-point building blocks.

These functions add logic to a :class:`Module` and return the resulting values; they have no
streams and no registers, so the stream units of this package, the matrix-engine processing
elements and the vector unit all build their datapaths from them. The rules they implement are
those of ``docs/numerics.md``; the encodings come from :mod:`rtl.layouts`.

Unpacked floats
---------------
:func:`decode` turns a code into an *unpacked float* (:func:`unpacked_layout`):

``sign``
    Sign bit (INT8: 1 for negative values).
``nan``, ``inf``, ``zero``
    Classification. A code of an unknown format decodes as a NaN.
``exp`` (signed)
    Exponent, such that the value is ``(-1)**sign * sig * 2**(exp - (len(sig) - 1))``, i.e.
    ``sig`` is a fixed-point number with one integer bit.
``sig``
    Significand with its explicit leading bit, left-justified in the unpacked width.

Decoded significands are **not normalised**: a normal number has the leading bit of ``sig``
set and its true exponent in ``exp``; a subnormal has ``exp = emin`` of its format and leading
zeros in ``sig``; an INT8 code has ``exp = 7`` and its magnitude in the top 8 bits of ``sig``
(so it has leading zeros unless it is −128). :func:`normalise` shifts any of these until the
leading bit is set, adjusting ``exp``; :func:`round_pack` expects normalised input.

Flags are returned as raw 3-bit values laid out as :class:`rtl.layouts.Flags` (build them with
:func:`flag_bits`), so that flags of several sources combine with ``|``.
"""

from amaranth.hdl import Cat, Const, Mux, Signal, Value, signed
from amaranth.lib import data

from ..layouts import FLOAT_SPECS, Flags, Format, Specials, element_format


__all__ = [
    "EXP_SHAPE", "check_formats", "element_formats", "unpacked_width", "unpacked_layout",
    "flag_bits", "zext",
    "decode_format", "decode", "clz", "normalise", "shift_right_jam", "round_pack", "encode",
]


#: Shape of every exponent in this package. Wide enough for the product of two scaled FP32
#: operands (|exp| < 600, minus the normalisation shift).
EXP_SHAPE = signed(12)


def check_formats(formats):
    """Validate a ``formats`` constructor argument; return it as a frozenset of :class:`Format`.

    Raises
    ------
    TypeError
        If ``formats`` is not a collection of :class:`Format` members.
    ValueError
        If ``formats`` is empty.
    """
    if isinstance(formats, (str, bytes)) or not hasattr(formats, "__iter__"):
        raise TypeError(f"formats must be a non-empty set of Format members, not {formats!r}")
    result = frozenset(formats)
    if not all(isinstance(f, Format) for f in result):
        raise TypeError(f"formats must be a non-empty set of Format members, not {formats!r}")
    if not result:
        raise ValueError(f"formats must be a non-empty set of Format members, not {formats!r}")
    return result


def element_formats(formats):
    """Return the element formats of ``formats`` (MX formats replaced by their elements), in
    encoding order."""
    return sorted({element_format(f) for f in formats}, key=lambda f: f.value)


def unpacked_width(formats):
    """Return the unpacked significand width that holds every format of ``formats``."""
    return max(8 if f is Format.INT8 else FLOAT_SPECS[f].mbits + 1
               for f in element_formats(formats))


def unpacked_layout(sig_width):
    """Return the layout of an unpacked float with a ``sig_width``-bit significand."""
    return data.StructLayout({
        "sign": 1,
        "nan":  1,
        "inf":  1,
        "zero": 1,
        "exp":  EXP_SHAPE,
        "sig":  sig_width,
    })


def flag_bits(*, invalid=0, overflow=0, underflow=0):
    """Return the :class:`Flags` bits raised by the given conditions, as a 3-bit value."""
    return (Mux(invalid,   Flags.INVALID.value,   0) |
            Mux(overflow,  Flags.OVERFLOW.value,  0) |
            Mux(underflow, Flags.UNDERFLOW.value, 0))


def zext(value):
    """Return ``value`` zero-extended by one bit and cast to signed, for exponent arithmetic."""
    return Cat(value, Const(0, 1)).as_signed()


def decode_format(m, code, fmt, *, sig_width, name="dec"):
    """Decode ``code`` as a code of the fixed format ``fmt``; combinational.

    Parameters
    ----------
    code : Value
        The code, in the low bits (upper bits are ignored).
    fmt : Format
        Its format (an MX format decodes as its element format).
    sig_width : int
        Width of the unpacked significand, at least the precision of ``fmt`` (8 for INT8).

    Returns
    -------
    data.View of :func:`unpacked_layout` ``(sig_width)``
    """
    fmt  = element_format(fmt)
    code = Value.cast(code)
    u    = Signal(unpacked_layout(sig_width), name=name)

    if fmt is Format.INT8:
        if sig_width < 8:
            raise ValueError(f"sig_width must be at least 8 for INT8, not {sig_width!r}")
        byte = code[:8]
        # −(−128) is 128, which the 8-bit magnitude holds unsigned.
        mag  = Mux(byte[7], -byte.as_signed(), byte)[:8]
        m.d.comb += [
            u.sign.eq(byte[7]),
            u.zero.eq(byte == 0),
            u.exp .eq(7),
            u.sig .eq(mag << (sig_width - 8)),
        ]
        return u

    spec = FLOAT_SPECS[fmt]
    if sig_width < spec.mbits + 1:
        raise ValueError(f"sig_width must be at least {spec.mbits + 1} for {fmt.name}, "
                         f"not {sig_width!r}")
    frac   = code[:spec.mbits]
    field  = code[spec.mbits:spec.mbits + spec.ebits]
    top    = (1 << spec.ebits) - 1
    normal = field != 0
    if spec.specials is Specials.IEEE:
        nan = (field == top) & frac.any()
        inf = (field == top) & ~frac.any()
    elif spec.specials is Specials.FN:
        nan = (field == top) & frac.all()
        inf = 0
    else:
        nan = inf = 0
    m.d.comb += [
        u.sign.eq(code[spec.width - 1]),
        u.nan .eq(nan),
        u.inf .eq(inf),
        u.zero.eq(~normal & ~frac.any()),
        u.exp .eq(Mux(normal, zext(field) - spec.bias, spec.emin)),
        u.sig .eq(Cat(frac, normal) << (sig_width - spec.mbits - 1)),
    ]
    return u


def decode(m, code, fmt, *, formats, sig_width=None, name="dec"):
    """Decode ``code`` in a format chosen at run time among ``formats``; combinational.

    Parameters
    ----------
    code : Value
        The code, in the low bits.
    fmt : Value or Format
        Format code (4 bits, :class:`Format` encoding). A :class:`Format` member selects the
        format at elaboration time.
    formats : set of Format
        Formats the decoder implements. Any other ``fmt`` decodes as a NaN and is reported as
        unknown.
    sig_width : int or None
        Unpacked significand width; by default :func:`unpacked_width` ``(formats)``.

    Returns
    -------
    (data.View, Value)
        The unpacked float and a 1-bit value, high when ``fmt`` is one of ``formats``.
    """
    formats = check_formats(formats)
    if sig_width is None:
        sig_width = unpacked_width(formats)
    if isinstance(fmt, Format):
        if fmt not in formats:
            raise ValueError(f"fmt must be one of formats, not {fmt!r}")
        return decode_format(m, code, fmt, sig_width=sig_width, name=name), Const(1, 1)

    decoded = {f: decode_format(m, code, f, sig_width=sig_width, name=f"{name}_{f.name.lower()}")
               for f in element_formats(formats)}
    u     = Signal(unpacked_layout(sig_width), name=name)
    known = Signal(name=f"{name}_known")
    with m.Switch(fmt):
        for f in sorted(formats, key=lambda f: f.value):
            with m.Case(f):
                m.d.comb += [
                    u    .eq(decoded[element_format(f)]),
                    known.eq(1),
                ]
        with m.Default():
            m.d.comb += [
                u    .nan.eq(1),
                known.eq(0),
            ]
    return u, known


def _clz_tree(v):
    # ``len(v)`` is a power of two ≥ 2. Returns (all zero, leading zeros) of width log2(len(v)).
    if len(v) == 2:
        return ~(v[0] | v[1]), ~v[1]
    half = len(v) // 2
    zero_lo, count_lo = _clz_tree(v[:half])
    zero_hi, count_hi = _clz_tree(v[half:])
    return (zero_hi & zero_lo,
            Mux(zero_hi, Cat(count_lo, Const(1, 1)), Cat(count_hi, Const(0, 1))))


def clz(value):
    """Return the number of leading zeros of ``value`` (``len(value)`` if it is zero).

    A log-depth tree of 2:1 multiplexers; combinational.
    """
    value = Value.cast(value)
    n = len(value)
    if n == 0:
        raise ValueError("value must have a nonzero width")
    if n == 1:
        return ~value[0]
    k = (n - 1).bit_length()
    zero, count = _clz_tree(Cat(Const(0, (1 << k) - n), value))
    return Mux(zero, n, count)


def normalise(m, exp, sig, *, lz=None, name="norm"):
    """Shift ``sig`` left until its leading bit is set; combinational.

    Parameters
    ----------
    exp : Value
        Exponent of ``sig`` (see the module docstring for the convention).
    sig : Value
        Significand.
    lz : Value or None
        Leading zeros of ``sig``, if already computed (for example in an earlier stage);
        by default :func:`clz` ``(sig)``.

    Returns
    -------
    (Value, Value)
        Exponent (:data:`EXP_SHAPE`) and significand (``len(sig)`` bits) of the same value. A
        zero significand stays zero (its exponent is then meaningless).
    """
    sig = Value.cast(sig)
    if lz is None:
        lz = clz(sig)
    out_exp = Signal(EXP_SHAPE, name=f"{name}_exp")
    out_sig = Signal(len(sig),  name=f"{name}_sig")
    m.d.comb += [
        out_exp.eq(exp - lz),
        out_sig.eq(sig << lz),
    ]
    return out_exp, out_sig


def shift_right_jam(value, amount):
    """Return ``value >> amount`` with every bit shifted out ORed into the result's LSB.

    ``amount`` must be non-negative; amounts beyond ``len(value)`` shift everything out.
    Combinational.
    """
    value  = Value.cast(value)
    amount = Value.cast(amount)
    n      = len(value)
    limit  = Mux(amount > n, n, amount)[:n.bit_length()]
    wide   = Cat(Const(0, n), value) >> limit
    return Cat(wide[n] | wide[:n].any(), wide[n + 1:])


def round_pack(m, *, sign, exp, sig, sticky, fmt, name="rnd"):
    """Round a finite value to nearest-even on the grid of ``fmt`` and encode it; combinational.

    The value is ``(-1)**sign * (sig + δ) * 2**(exp - (len(sig) - 1))`` where ``δ`` is some
    amount in (0, 1) if ``sticky`` is set and 0 otherwise. ``sig`` must be normalised (leading
    bit set) or zero; a zero gives a zero of sign ``sign`` (INT8: 0).

    Floating-point formats get gradual underflow onto the subnormal grid, overflow to ±inf or
    ±max as ``FLOAT_SPECS[fmt].saturate`` says, ``OVERFLOW`` when the rounded magnitude exceeds
    the largest finite value, and ``UNDERFLOW`` when the exact value is nonzero, below the
    smallest normal and inexact. INT8 rounds to an integer and saturates to [−128, 127]
    (``OVERFLOW`` when it does).

    Returns
    -------
    (Value, Value)
        The code (``code_width(fmt)`` bits; INT8 as a two's-complement byte) and the flags.
    """
    fmt = element_format(fmt)
    sig = Value.cast(sig)
    if fmt is Format.INT8:
        return _round_pack_int8(m, sign=sign, exp=exp, sig=sig, sticky=sticky, name=name)

    spec = FLOAT_SPECS[fmt]
    prec = spec.mbits + 1
    # Keep a guard bit and at least one sticky bit below the kept precision.
    if len(sig) < prec + 2:
        sig = Cat(Const(0, prec + 2 - len(sig)), sig)
    n = len(sig)
    nonzero = sig[n - 1]

    # Below the smallest normal the value moves onto the subnormal grid: shift right so that
    # the exponent becomes emin, folding the lost bits into the sticky bit.
    tiny  = Signal(name=f"{name}_tiny")
    shift = Signal(EXP_SHAPE.width, name=f"{name}_shift")
    den   = Signal(n, name=f"{name}_den")
    m.d.comb += [
        tiny .eq(exp < spec.emin),
        shift.eq(Mux(tiny, spec.emin - exp, 0)),
        den  .eq(shift_right_jam(sig, shift)),
    ]
    mant    = den[n - prec:]
    guard   = den[n - prec - 1]
    rest    = den[:n - prec - 1].any() | sticky
    inexact = guard | rest
    up      = guard & (rest | mant[0])

    # The leading bit of ``mant`` adds one to the biased exponent field, so a subnormal (leading
    # bit 0, exponent field 0) and a normal share one adder, and a rounding carry out of the
    # mantissa moves to the next binade (or from the subnormals to the smallest normal).
    huge   = exp > spec.emax
    biased = (Mux(tiny, spec.emin, exp) + (spec.bias - 1))[:spec.ebits]
    field  = Signal(spec.ebits + spec.mbits + 1, name=f"{name}_field")
    ovf    = Signal(name=f"{name}_ovf")
    m.d.comb += [
        field.eq(Cat(Const(0, spec.mbits), biased) + mant + up),
        ovf  .eq(nonzero & (huge | (field > spec.max_code))),
    ]
    if spec.saturate:
        ovf_code = spec.max_code
    else:
        ovf_code = ((1 << spec.ebits) - 1) << spec.mbits

    code  = Signal(spec.width, name=f"{name}_code")
    flags = Signal(3,          name=f"{name}_flags")
    m.d.comb += [
        code .eq(Cat(Mux(~nonzero, 0, Mux(ovf, ovf_code, field[:spec.ebits + spec.mbits])),
                     sign)),
        flags.eq(flag_bits(overflow=ovf, underflow=nonzero & tiny & inexact)),
    ]
    return code, flags


def _round_pack_int8(m, *, sign, exp, sig, sticky, name):
    # Integer part, guard and sticky of the value: the integer part has at most 8 bits unless
    # exp > 7, which saturates.
    if len(sig) < 9:
        sig = Cat(Const(0, 9 - len(sig)), sig)
    n       = len(sig)
    nonzero = sig[n - 1]
    big     = exp > 7
    shifted = Signal(n + 2, name=f"{name}_shifted")
    m.d.comb += shifted.eq(shift_right_jam(Cat(Const(0, 2), sig), Mux(big, 0, (n - 1) - exp)))
    integer = shifted[2:11]
    guard   = shifted[1]
    rest    = shifted[0] | sticky
    up      = guard & (rest | integer[0])

    mag   = Signal(9, name=f"{name}_mag")
    limit = Mux(sign, 128, 127)
    ovf   = Signal(name=f"{name}_ovf")
    sat   = Signal(8, name=f"{name}_sat")
    m.d.comb += [
        mag.eq(integer + up),
        ovf.eq(nonzero & (big | (mag > limit))),
        sat.eq(Mux(ovf, limit, mag)),
    ]
    code  = Signal(8, name=f"{name}_code")
    flags = Signal(3, name=f"{name}_flags")
    m.d.comb += [
        code .eq(Mux(sign, -sat, sat)),
        flags.eq(flag_bits(overflow=ovf)),
    ]
    return code, flags


def encode(m, *, sign, nan, inf, exp, sig, sticky=0, fmt, name="enc"):
    """Encode a NaN, an infinity or a finite value into ``fmt`` by the conversion rules.

    A NaN gives the canonical NaN of ``fmt`` (FP4, INT8: +0 and ``INVALID``); an infinity
    gives ±inf if ``fmt`` has infinities, otherwise ±max (INT8: 127 / −128) and ``OVERFLOW``;
    anything else goes through :func:`round_pack` (``sig`` normalised). Combinational.

    Returns
    -------
    (Value, Value)
        The code and the flags, as :func:`round_pack`.
    """
    fmt = element_format(fmt)
    rounded, rounded_flags = round_pack(m, sign=sign, exp=exp, sig=sig, sticky=sticky, fmt=fmt,
                                        name=name)
    if fmt is Format.INT8:
        width     = 8
        nan_code  = None
        inf_code  = Mux(sign, 0x80, 0x7F)
        inf_flags = flag_bits(overflow=1)
    else:
        spec     = FLOAT_SPECS[fmt]
        width    = spec.width
        nan_code = spec.canonical_nan
        if spec.specials is Specials.IEEE:
            inf_code  = Cat(Const(((1 << spec.ebits) - 1) << spec.mbits, width - 1), sign)
            inf_flags = 0
        else:
            inf_code  = Cat(Const(spec.max_code, width - 1), sign)
            inf_flags = flag_bits(overflow=1)

    code  = Signal(width, name=f"{name}_out")
    flags = Signal(3,     name=f"{name}_out_flags")
    with m.If(nan):
        if nan_code is None:
            m.d.comb += flags.eq(flag_bits(invalid=1))
        else:
            m.d.comb += code.eq(nan_code)
    with m.Elif(inf):
        m.d.comb += [
            code .eq(inf_code),
            flags.eq(inf_flags),
        ]
    with m.Else():
        m.d.comb += [
            code .eq(rounded),
            flags.eq(rounded_flags),
        ]
    return code, flags
