"""Bit-exact numpy model of the number-format converters (``docs/numerics.md``).

Every function here is vectorised over arrays and mirrors the normative rules of the numerics
specification bit for bit:

- :func:`convert_from_f32` rounds FP32 bit patterns (optionally scaled by an E8M0 code) into any
  :class:`~rtl.layouts.Format`. It is written with integer operations only (sign, exponent,
  significand, guard and sticky bits, round to nearest even on the destination grid, gradual
  underflow, saturation or infinity), which is the algorithm the hardware converter implements.
  ``ml_dtypes`` is deliberately not used: the tests compare against it as an independent
  reference.
- :func:`convert_to_f32` and :func:`decode` widen codes back to FP32 / exact float64 values.
- :func:`mx_quantize` and :func:`mx_dequantize` implement OCP MX v1.0 block scaling.

Codes are returned as ``uint32`` arrays holding the narrow code in the low bits (INT8 as its
two's complement byte ``0..255``); flags are ``uint8`` arrays of :class:`~rtl.layouts.Flags` bits.
E8M0 scale codes ``s`` mean ``2**(s - 127)``, with ``0xFF`` meaning NaN.
"""

import numpy as np

from rtl.layouts import (
    E8M0_BIAS, E8M0_NAN, FLOAT_SPECS, FP32_CANONICAL_NAN, MX_BLOCK, Flags, Format, Specials,
    element_format, is_mx,
)


__all__ = [
    "as_format", "decode", "convert_from_f32", "convert_to_f32", "quantize", "dequantize",
    "mx_quantize", "mx_dequantize", "FLAG_INVALID", "FLAG_OVERFLOW", "FLAG_UNDERFLOW",
]


#: The :class:`~rtl.layouts.Flags` bits as plain integers, for building ``uint8`` flag arrays.
FLAG_INVALID   = int(Flags.INVALID.value)
FLAG_OVERFLOW  = int(Flags.OVERFLOW.value)
FLAG_UNDERFLOW = int(Flags.UNDERFLOW.value)

_F32_MANT_BITS = 23
_F32_BIAS      = 127
_F32_EXP_MASK  = 0xFF
_F32_SIGN_MASK = 0x7FFFFFFF


# --------------------------------------------------------------------------------------------
# Argument checking
# --------------------------------------------------------------------------------------------

def as_format(fmt):
    """Return ``fmt`` as a :class:`~rtl.layouts.Format`.

    Parameters
    ----------
    fmt : Format or int
        A format, or the integer code of one.

    Raises
    ------
    ValueError
        If ``fmt`` is neither a :class:`Format` nor the integer code of one.
    """
    if isinstance(fmt, Format):
        return fmt
    if isinstance(fmt, (int, np.integer)) and not isinstance(fmt, (bool, np.bool_)):
        try:
            return Format(int(fmt))
        except ValueError:
            pass
    known = ", ".join(f"{f.name}={f.value}" for f in Format)
    raise ValueError(f"unknown number format {fmt!r}; expected a rtl.layouts.Format ({known})")


def _as_scale(scale):
    """Return E8M0 scale codes as an int64 array, checking they are integers in 0..255."""
    s = np.asarray(scale)
    if s.dtype.kind not in "iu":
        raise ValueError(f"E8M0 scale codes must be integers 0..255, got dtype {s.dtype}")
    if s.size and (s.min() < 0 or s.max() > 0xFF):
        raise ValueError("E8M0 scale codes must lie in 0..255")
    return s.astype(np.int64)


def _is_float_dtype(dtype):
    """Whether ``dtype`` holds floating-point values (numpy or ml_dtypes floats)."""
    if dtype.kind == "f":
        return True
    # ml_dtypes' bfloat16/float8/float4 types are numpy "void-kind" extension types.
    return getattr(dtype.type, "__module__", "").startswith("ml_dtypes") and dtype.kind == "V"


def _values_to_f32_bits(x):
    """Return FP32 bit patterns (uint32) of floating-point values.

    float32 is viewed as is. Narrower floats widen exactly. Wider floats (float64) are accepted
    only if every value is exactly an FP32 value: the converters take FP32 inputs, and silently
    rounding here would add a second rounding the hardware does not perform.
    """
    x = np.asarray(x)
    if x.dtype == np.float32:
        return x.view(np.uint32)
    if x.dtype.kind in "iu" or _is_float_dtype(x.dtype):
        x64 = x.astype(np.float64)
        with np.errstate(all="ignore"):
            x32 = x64.astype(np.float32)
        ok = (x32.astype(np.float64) == x64) | np.isnan(x64)
        if not ok.all():
            raise ValueError("input values are not all exactly representable in float32; "
                             "round them to float32 first (the converters take FP32 inputs)")
        return x32.view(np.uint32)
    raise ValueError(f"expected floating-point values, got dtype {x.dtype}")


def _as_f32_bits(x):
    """Return FP32 bit patterns from a uint32/integer bit array or from float values."""
    x = np.asarray(x)
    if x.dtype == np.uint32:
        return x
    if x.dtype.kind in "iu":
        if x.size and (x.min() < 0 or x.max() > 0xFFFFFFFF):
            raise ValueError("FP32 bit patterns must lie in 0..2**32-1")
        return x.astype(np.uint32)
    return _values_to_f32_bits(x)


def _as_codes(codes, efmt):
    """Return element codes of ``efmt`` as an int64 array, checking their range.

    INT8 codes may be given as two's complement bytes ``0..255`` or as signed values
    ``-128..127`` (for example an ``int8`` array); both map to the byte ``0..255``.
    """
    c = np.asarray(codes)
    if c.dtype.kind not in "iu":
        raise ValueError(f"codes must be integers, got dtype {c.dtype}")
    c = c.astype(np.int64)
    if efmt is Format.INT8:
        if c.size and (c.min() < -128 or c.max() > 0xFF):
            raise ValueError("INT8 codes must lie in -128..255")
        return c & 0xFF
    width = FLOAT_SPECS[efmt].width
    if c.size and (c.min() < 0 or c.max() >= (1 << width)):
        raise ValueError(f"{efmt.name} codes must lie in 0..{(1 << width) - 1}")
    return c


def _bit_length(v, top=32):
    """Vectorised ``int.bit_length`` of a non-negative int64 array below ``2**(2*top)``.

    A binary-search leading-zero count, as a hardware priority encoder would compute it.
    """
    v = v.copy()
    n = np.zeros(v.shape, np.int64)
    s = top
    while s >= 1:
        big = v >= (np.int64(1) << s)
        n += np.where(big, s, 0)
        v = np.where(big, v >> s, v)
        s //= 2
    return n + (v > 0)


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------

def decode(codes, fmt):
    """Return the exact values of element codes as float64.

    Parameters
    ----------
    codes : array_like of int
        Element codes of ``fmt`` (for FP32, the bit patterns). MX formats mean their element
        format; scales are not applied.
    fmt : Format or int

    Returns
    -------
    numpy.ndarray of float64
        Exact values (every format's values are float64 values). INT8 codes decode to the
        integers ``-128..127``; NaN codes decode to NaN; infinity codes to ``±inf``; ``-0``
        codes to ``-0.0``.
    """
    efmt = element_format(as_format(fmt))
    c = _as_codes(codes, efmt)
    if efmt is Format.INT8:
        return np.where(c >= 0x80, c - 0x100, c).astype(np.float64)
    spec = FLOAT_SPECS[efmt]
    top = (1 << spec.ebits) - 1
    mmax = (1 << spec.mbits) - 1
    sign = (c >> (spec.width - 1)) & 1
    field = (c >> spec.mbits) & top
    mant = c & mmax
    # Subnormals (field 0) have no hidden bit and the exponent of field 1.
    sig = np.where(field > 0, mant | (1 << spec.mbits), mant)
    val = np.ldexp(sig.astype(np.float64), np.maximum(field, 1) - spec.bias - spec.mbits)
    if spec.specials is Specials.IEEE:
        val = np.where(field == top, np.where(mant == 0, np.inf, np.nan), val)
    elif spec.specials is Specials.FN:
        val = np.where((field == top) & (mant == mmax), np.nan, val)
    # Negating keeps NaN a NaN and turns +0.0 into -0.0, as the sign bit says.
    return np.where(sign == 1, -val, val)


# --------------------------------------------------------------------------------------------
# FP32 -> format
# --------------------------------------------------------------------------------------------

def convert_from_f32(x_bits, fmt, scale=E8M0_BIAS):
    """Convert FP32 values into codes of ``fmt``, dividing by an E8M0 scale first.

    Implements "Conversion FP32 → format F with scale code s" of ``docs/numerics.md`` with
    integer operations only: the result is ``RNE_F(x · 2**-(s-127))`` with gradual underflow,
    overflow to ``±inf`` (FP32/FP16/BF16) or saturation to ``±max`` (FP8, FP4, INT8), the
    documented special cases for NaN, infinity and the NaN scale, and the spec's flags.

    Parameters
    ----------
    x_bits : array_like
        FP32 bit patterns (uint32 or any integer dtype in ``0..2**32-1``), or float32 values
        (viewed as their bits). Other float dtypes must hold values exact in float32.
    fmt : Format or int
        Destination format; MX formats mean their element format.
    scale : int or array_like of int, optional
        E8M0 scale codes, broadcastable against ``x_bits``. Default 127 (×1).

    Returns
    -------
    codes : numpy.ndarray of uint32
        Destination codes (the narrow code in the low bits; INT8 as its byte ``0..255``), with
        the broadcast shape of ``x_bits`` and ``scale``.
    flags : numpy.ndarray of uint8
        :class:`~rtl.layouts.Flags` bits per element.
    """
    efmt = element_format(as_format(fmt))
    bits, s = np.broadcast_arrays(_as_f32_bits(x_bits).astype(np.int64), _as_scale(scale))
    is_int = efmt is Format.INT8

    sign = (bits >> 31) & 1
    efield = (bits >> _F32_MANT_BITS) & _F32_EXP_MASK
    frac = bits & ((1 << _F32_MANT_BITS) - 1)
    is_nan = (efield == _F32_EXP_MASK) & (frac != 0)
    is_inf = (efield == _F32_EXP_MASK) & (frac == 0)
    nan_scale = s == E8M0_NAN

    # |v| = M · 2**e exactly, with the scale folded into e (v = x · 2**-(s-127)).
    normal = efield > 0
    m = np.where(normal, frac | (1 << _F32_MANT_BITS), frac)
    e = np.where(normal, efield, 1) - (_F32_BIAS + _F32_MANT_BITS) - (s - E8M0_BIAS)
    msb = _bit_length(m, top=16) - 1          # floor(log2 M); -1 for zero
    exp_v = msb + e                            # floor(log2 |v|) for v != 0

    # q: exponent of the destination grid's quantum (ulp) at |v|. A float format's ulp is
    # 2**(max(exp_v, emin) - mbits): below the smallest normal the grid stays at the subnormal
    # spacing (gradual underflow); above max it keeps max's spacing (so ties beyond max round
    # like any other). INT8's grid is the integers.
    if is_int:
        q = np.zeros_like(e)
    else:
        spec = FLOAT_SPECS[efmt]
        q = np.maximum(exp_v, spec.emin) - spec.mbits

    # Align M to the quantum: drop `shift` low bits (rounding) or append -shift zero bits.
    # Clamps keep int64 shifts defined: M < 2**24, so dropping >= 26 bits leaves only sticky
    # bits, and a left shift of 38 already overflows every destination (INT8 is the only
    # format whose left shift can exceed mbits).
    shift = q - e
    rs = np.clip(shift, 0, 26)
    ls = np.clip(-shift, 0, 38)
    kept = m >> rs
    rem = m - (kept << rs)                     # the dropped bits
    half = (np.int64(1) << rs) >> 1            # weight of the guard bit (0 if nothing dropped)
    inexact = rem != 0
    # Round to nearest, ties to even: up if above half, or exactly half and the kept LSB is odd.
    round_up = (rem > half) | (inexact & (rem == half) & ((kept & 1) == 1))
    r = (kept + round_up) << ls                # rounded magnitude in units of 2**q

    finite = ~is_nan & ~is_inf & ~nan_scale
    flags = np.zeros(bits.shape, np.uint8)

    if is_int:
        # Saturate to [-128, 127]; one zero (a negative value rounding to 0 gives code 0).
        limit = np.where(sign == 1, 128, 127)
        ovf = r > limit
        r = np.minimum(r, limit)
        code = np.where(sign == 1, (-r) & 0xFF, r)
        nan_code, inf_mag_code = None, None
    else:
        # Magnitude code: ((q + mbits + bias - 1) << mbits) + r covers normals (r carries the
        # hidden bit into the exponent field), subnormals (q + mbits + bias == 1, r < 2**mbits)
        # and the carry out of rounding (r == 2**(mbits+1)) alike. It grows monotonically with
        # the value, so "rounded magnitude above max finite" is simply mag > max_code.
        mag = ((q + spec.mbits + spec.bias - 1) << spec.mbits) + r
        mag = np.where(r == 0, 0, mag)
        ovf = mag > spec.max_code
        top = (1 << spec.ebits) - 1
        inf_mag_code = (top << spec.mbits) if spec.specials is Specials.IEEE else None
        mag = np.where(ovf, spec.max_code if spec.saturate else inf_mag_code, mag)
        code = (sign << (spec.width - 1)) | mag
        nan_code = spec.canonical_nan
        # Tininess before rounding: the exact |v| is below the smallest normal.
        tiny = (m != 0) & (exp_v < spec.emin)
        flags |= np.where(finite & tiny & inexact, FLAG_UNDERFLOW, 0).astype(np.uint8)
    flags |= np.where(finite & ovf, FLAG_OVERFLOW, 0).astype(np.uint8)

    # Infinity (with a non-NaN scale): kept if the format has infinities, else clamped.
    if inf_mag_code is not None:
        inf_code = (sign << (spec.width - 1)) | inf_mag_code
        code = np.where(is_inf, inf_code, code)
    else:
        if is_int:
            inf_code = np.where(sign == 1, 0x80, 0x7F)
        else:
            inf_code = (sign << (spec.width - 1)) | spec.max_code
        inf_clamped = is_inf & ~nan_scale
        code = np.where(inf_clamped, inf_code, code)
        flags |= np.where(inf_clamped, FLAG_OVERFLOW, 0).astype(np.uint8)

    # NaN input or NaN scale: the canonical NaN, or +0 and INVALID if the format has no NaN.
    nan_out = is_nan | nan_scale
    if nan_code is not None:
        code = np.where(nan_out, nan_code, code)
    else:
        code = np.where(nan_out, 0, code)
        flags |= np.where(nan_out, FLAG_INVALID, 0).astype(np.uint8)
    return code.astype(np.uint32), flags


def quantize(x, fmt, scale=E8M0_BIAS):
    """Return the codes of ``fmt`` nearest to ``x · 2**-(scale-127)`` (flags discarded).

    Parameters
    ----------
    x : array_like of float
        Values: float32, or any float/integer dtype whose values are exact in float32 (unlike
        :func:`convert_from_f32`, integer arrays are values here, not bit patterns).
    fmt : Format or int
    scale : int or array_like of int, optional
        E8M0 scale codes, broadcastable against ``x``.

    Returns
    -------
    numpy.ndarray of uint32
    """
    return convert_from_f32(_values_to_f32_bits(x), fmt, scale)[0]


# --------------------------------------------------------------------------------------------
# format -> FP32
# --------------------------------------------------------------------------------------------

def convert_to_f32(codes, fmt, scale=E8M0_BIAS):
    """Convert codes of ``fmt`` to FP32, multiplying by an E8M0 scale.

    Implements "Conversion format F → FP32 with scale code s": ``RNE_f32(value · 2**(s-127))``.
    The scaled value is computed exactly in float64 (every decoded value times any scale
    ``2**-127 .. 2**127`` stays inside float64's normal range with at most 24 significant bits),
    so the single float64 → float32 cast, which is IEEE round to nearest even with gradual
    underflow and overflow to infinity, is the only rounding.

    Parameters
    ----------
    codes : array_like of int
        Codes of ``fmt`` (MX formats mean their element format).
    fmt : Format or int
    scale : int or array_like of int, optional
        E8M0 scale codes, broadcastable against ``codes``.

    Returns
    -------
    bits : numpy.ndarray of uint32
        FP32 bit patterns; NaN codes and the NaN scale give 0x7FC00000.
    flags : numpy.ndarray of uint8
        OVERFLOW (finite value rounded to ±inf) and UNDERFLOW (tiny and inexact).
    """
    v, s = np.broadcast_arrays(decode(codes, fmt), _as_scale(scale))
    nan_out = np.isnan(v) | (s == E8M0_NAN)
    with np.errstate(all="ignore"):
        y = np.ldexp(v, np.where(s == E8M0_NAN, 0, s - E8M0_BIAS))
        r = y.astype(np.float32)
    return _finish_f32(r, y, nan_out, finite_in=np.isfinite(v))


def _finish_f32(r, exact, nan_in, finite_in):
    """Canonicalise and flag a float32 result ``r`` rounded from the float64 value ``exact``.

    Parameters
    ----------
    r : ndarray of float32
        The rounded result.
    exact : ndarray of float64
        The exact result, or a float64 value equal to it whenever it is tiny (see callers).
    nan_in : ndarray of bool
        Where an operand (or scale) was NaN: the result is NaN without INVALID there.
    finite_in : ndarray of bool
        Where all operands were finite: an infinite result there is an OVERFLOW.

    Returns
    -------
    bits : ndarray of uint32
    flags : ndarray of uint8
    """
    r_nan = np.isnan(r)
    r_inf = np.isinf(r)
    invalid = r_nan & ~nan_in
    overflow = r_inf & finite_in & ~nan_in
    with np.errstate(all="ignore"):
        mag = np.abs(exact)
        tiny = (mag > 0) & (mag < 2.0 ** -126)
        underflow = tiny & (r.astype(np.float64) != exact) & ~nan_in
    flags = (np.where(invalid, FLAG_INVALID, 0) | np.where(overflow, FLAG_OVERFLOW, 0)
             | np.where(underflow, FLAG_UNDERFLOW, 0)).astype(np.uint8)
    bits = np.where(r_nan | nan_in, np.uint32(FP32_CANONICAL_NAN), r.view(np.uint32))
    return bits.astype(np.uint32), flags


def dequantize(codes, fmt, scale=E8M0_BIAS):
    """Return ``RNE_f32(value(codes) · 2**(scale-127))`` as float32 values (flags discarded).

    See :func:`convert_to_f32`.
    """
    return convert_to_f32(codes, fmt, scale)[0].view(np.float32)


# --------------------------------------------------------------------------------------------
# MX block scaling
# --------------------------------------------------------------------------------------------

def _check_mx(fmt):
    fmt = as_format(fmt)
    if not is_mx(fmt):
        raise ValueError(f"{fmt.name} is not an MX format (expected MXFP8_E4M3 or MXFP4)")
    return fmt


def _check_blocks(shape, what):
    if len(shape) == 0 or shape[-1] % MX_BLOCK != 0:
        raise ValueError(f"{what}: the last axis (length {shape[-1] if shape else None}) must be "
                         f"a multiple of the MX block size {MX_BLOCK}")


def mx_quantize(x, fmt, return_flags=False):
    """Quantize ``x`` to an MX format: one E8M0 scale per 32 elements along the last axis.

    Per block: a NaN or infinity anywhere gives scale 0xFF (and elements per conversion rule
    1); otherwise the scale is ``floor(log2(amax)) - emax(elem)`` clamped to ``[-127, 127]``
    (``amax = 0`` gives ``-127``), plus 127. ``floor(log2(amax))`` is taken from the bits of
    ``amax`` (exponent field, or the leading one of a subnormal's fraction), never from a
    floating-point logarithm. Elements are then converted with that scale (RNE, saturating).

    Parameters
    ----------
    x : array_like of float
        Values (float32 or exact in float32), last axis a multiple of 32.
    fmt : Format or int
        ``MXFP8_E4M3`` or ``MXFP4``.
    return_flags : bool, optional
        Also return the element conversion flags.

    Returns
    -------
    codes : numpy.ndarray of uint32
        Element codes, shape of ``x``.
    scales : numpy.ndarray of uint8
        E8M0 scale codes, shape ``x.shape[:-1] + (x.shape[-1] // 32,)``.
    flags : numpy.ndarray of uint8
        Only if ``return_flags``: per-element flags.
    """
    fmt = _check_mx(fmt)
    bits = _values_to_f32_bits(x)
    _check_blocks(bits.shape, "mx_quantize")
    emax = FLOAT_SPECS[element_format(fmt)].emax
    blocks = bits.reshape(*bits.shape[:-1], -1, MX_BLOCK).astype(np.int64)
    mag = blocks & _F32_SIGN_MASK
    # Integer order of |x| bit patterns is the order of |x| (for non-NaN values).
    special = (mag >= 0x7F800000).any(axis=-1)
    amax = mag.max(axis=-1, initial=0)
    a_field = amax >> _F32_MANT_BITS
    a_frac = amax & ((1 << _F32_MANT_BITS) - 1)
    floor_log2 = np.where(a_field > 0, a_field - _F32_BIAS,
                          _bit_length(a_frac, top=16) - 1 - (_F32_BIAS - 1 + _F32_MANT_BITS))
    e = np.where(amax == 0, -127, np.clip(floor_log2 - emax, -127, 127))
    scales = np.where(special, E8M0_NAN, e + E8M0_BIAS).astype(np.uint8)
    codes, flags = convert_from_f32(bits, fmt, np.repeat(scales, MX_BLOCK, axis=-1))
    if return_flags:
        return codes, scales, flags
    return codes, scales


def mx_dequantize(codes, scales, fmt):
    """Return the float32 values of MX ``codes`` with their per-block E8M0 ``scales``.

    Each element is ``RNE_f32(value · 2**(s-127))`` per :func:`convert_to_f32` (a NaN scale
    makes its whole block NaN).

    Parameters
    ----------
    codes : array_like of int
        Element codes, last axis a multiple of 32.
    scales : array_like of int
        E8M0 codes, shape ``codes.shape[:-1] + (codes.shape[-1] // 32,)``.
    fmt : Format or int
        ``MXFP8_E4M3`` or ``MXFP4``.

    Returns
    -------
    numpy.ndarray of float32
    """
    fmt = _check_mx(fmt)
    codes = np.asarray(codes)
    scales = np.asarray(scales)
    _check_blocks(codes.shape, "mx_dequantize")
    want = codes.shape[:-1] + (codes.shape[-1] // MX_BLOCK,)
    if scales.shape != want:
        raise ValueError(f"mx_dequantize: scales have shape {scales.shape}, expected {want} "
                         f"(one per {MX_BLOCK} codes along the last axis)")
    return dequantize(codes, fmt, np.repeat(scales, MX_BLOCK, axis=-1))
