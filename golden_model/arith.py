"""Bit-exact numpy model of FP32 arithmetic and the matrix-engine product/accumulate rule.

Implements "FP32 add and multiply", "Product" and its accumulation rule from
``docs/numerics.md``:

- :func:`fadd`, :func:`fmul`: numpy float32 arithmetic (IEEE 754 binary32, round to nearest even,
  gradual underflow, no FMA) with every NaN result made 0x7FC00000, plus the spec's flags.
- :func:`product`: ``RNE_f32(a · b · 2**(sa+sb-254))`` from the exact product of two codes in
  independently chosen formats; :func:`int_product`: the exact INT8 × INT8 product.
- :func:`mac_reference`: the matrix engine's ``acc = RNE_f32(acc + p_k)`` for k = 0 … K−1 in
  order (or exact int32 accumulation for INT8 × INT8).

Why float64 is exact here: every decoded operand has at most 24 significant bits and a
magnitude in ``[2**-149, 2**128]``; a product of two has at most 48 bits (< 53) and magnitude
in ``[2**-298, 2**256]``, and scaling by ``2**±254`` keeps it inside ``[2**-552, 2**510]``,
well within float64's normal range. So the float64 product and ``np.ldexp`` are exact and the
single float64 → float32 cast (IEEE RNE) is the one rounding the spec asks for.
"""

from typing import NamedTuple

import numpy as np

from rtl.layouts import (
    E8M0_BIAS, E8M0_NAN, FP32_CANONICAL_NAN, MX_BLOCK, Format, element_format, is_mx,
)

from .formats import _as_f32_bits, _as_scale, _finish_f32, as_format, decode


__all__ = ["fadd", "fmul", "decode", "product", "int_product", "mac_reference", "MacResult"]


# --------------------------------------------------------------------------------------------
# FP32 add / multiply
# --------------------------------------------------------------------------------------------

def _f32_operands(a_bits, b_bits):
    """Broadcast two FP32 operands (bit patterns or float32 values) to float32 arrays."""
    a, b = np.broadcast_arrays(_as_f32_bits(a_bits), _as_f32_bits(b_bits))
    return a.view(np.float32), b.view(np.float32)


def _add_f32(fa, fb):
    """Return ``(fa + fb, flags)`` as float32 (NaN not yet canonical) and uint8 flags.

    Underflow is derived, not assumed: the float64 sum is tiny exactly when the exact sum is
    (2**-126 is a float64 value and rounding is monotonic), and a tiny sum of two FP32 values
    is a multiple of 2**-149 below 2**-126, hence exact in float64 and in float32. So the
    UNDERFLOW term below is always false, as IEEE 754 says it must be for addition.
    """
    with np.errstate(all="ignore"):
        r = fa + fb
        exact = fa.astype(np.float64) + fb.astype(np.float64)
    nan_in = np.isnan(fa) | np.isnan(fb)
    finite_in = np.isfinite(fa) & np.isfinite(fb)
    return r, _flags_f32(r, exact, nan_in, finite_in)


def _canonical_bits(r):
    """FP32 bits of float32 ``r`` with every NaN made 0x7FC00000."""
    return np.where(np.isnan(r), np.uint32(FP32_CANONICAL_NAN), r.view(np.uint32)).astype(np.uint32)


def _flags_f32(r, exact, nan_in, finite_in):
    """Flags of a float32 result ``r`` (see :func:`golden_model.formats._finish_f32`)."""
    return _finish_f32(r, exact, nan_in, finite_in)[1]


def fadd(a_bits, b_bits):
    """IEEE binary32 addition with canonical NaN and flags.

    Parameters
    ----------
    a_bits, b_bits : array_like
        FP32 bit patterns (uint32 / integers) or float32 values; broadcast together.

    Returns
    -------
    bits : numpy.ndarray of uint32
        ``a + b`` rounded to nearest even; every NaN is 0x7FC00000.
    flags : numpy.ndarray of uint8
        INVALID for ``inf - inf``; OVERFLOW for a finite sum rounded to ``±inf``.
    """
    r, flags = _add_f32(*_f32_operands(a_bits, b_bits))
    return _canonical_bits(r), flags


def fmul(a_bits, b_bits):
    """IEEE binary32 multiplication with canonical NaN and flags.

    Parameters
    ----------
    a_bits, b_bits : array_like
        FP32 bit patterns (uint32 / integers) or float32 values; broadcast together.

    Returns
    -------
    bits : numpy.ndarray of uint32
        ``a · b`` rounded to nearest even; every NaN is 0x7FC00000.
    flags : numpy.ndarray of uint8
        INVALID for ``0 · inf``; OVERFLOW for a finite product rounded to ``±inf``; UNDERFLOW
        for a nonzero exact product below 2**-126 whose rounding is inexact (the float64
        product is exact: 48 significant bits).
    """
    fa, fb = _f32_operands(a_bits, b_bits)
    with np.errstate(all="ignore"):
        r = fa * fb
        exact = fa.astype(np.float64) * fb.astype(np.float64)
    return _finish_f32(r, exact, np.isnan(fa) | np.isnan(fb), np.isfinite(fa) & np.isfinite(fb))


# --------------------------------------------------------------------------------------------
# Products
# --------------------------------------------------------------------------------------------

def _product_values(va, vb, sa, sb):
    """Round ``va · vb · 2**(sa+sb-254)`` (float64 values, int64 scale codes) to float32.

    Returns the float32 result (NaN not canonical) and its flags.
    """
    nan_in = np.isnan(va) | np.isnan(vb) | (sa == E8M0_NAN) | (sb == E8M0_NAN)
    with np.errstate(all="ignore"):
        exact = np.ldexp(va * vb, np.where(nan_in, 0, sa + sb - 2 * E8M0_BIAS))
        exact = np.where(nan_in, np.nan, exact)             # a NaN scale makes the product NaN
        r = exact.astype(np.float32)
    finite_in = np.isfinite(va) & np.isfinite(vb)
    return r, _flags_f32(r, exact, nan_in, finite_in)


def product(a_codes, b_codes, fmt_a, fmt_b, scale_a=E8M0_BIAS, scale_b=E8M0_BIAS):
    """The matrix engine's product of two codes in independently chosen formats.

    ``p = RNE_f32(a · b · 2**(sa + sb − 254))`` from the exact product.

    Parameters
    ----------
    a_codes, b_codes : array_like of int
        Codes of ``fmt_a`` / ``fmt_b`` (FP32: bit patterns; INT8: bytes or signed values);
        broadcast together with the scales.
    fmt_a, fmt_b : Format or int
        Operand formats (MX formats mean their element format; pass the block's scale).
    scale_a, scale_b : int or array_like of int, optional
        E8M0 scale codes, default 127.

    Returns
    -------
    bits : numpy.ndarray of uint32
        FP32 result. A NaN operand or NaN scale gives 0x7FC00000 without a flag (this takes
        precedence over ``0 · inf``); ``0 · inf`` gives 0x7FC00000 with INVALID; ``±inf ·
        nonzero`` gives ``±inf``; a zero product's sign is the XOR of the operand signs (an
        INT8 zero counts as +0).
    flags : numpy.ndarray of uint8
        INVALID, OVERFLOW (finite product rounded to ±inf), UNDERFLOW (tiny and inexact).
    """
    va, vb = decode(a_codes, fmt_a), decode(b_codes, fmt_b)
    va, vb, sa, sb = np.broadcast_arrays(va, vb, _as_scale(scale_a), _as_scale(scale_b))
    r, flags = _product_values(va, vb, sa, sb)
    return _canonical_bits(r), flags


def int_product(a_codes, b_codes):
    """Exact INT8 × INT8 product as int32 (it fits 16 bits: −16256 … 16384).

    Parameters
    ----------
    a_codes, b_codes : array_like of int
        INT8 codes (bytes ``0..255`` or signed ``-128..127``); broadcast together.

    Returns
    -------
    numpy.ndarray of int32
    """
    return (_int8_values(a_codes) * _int8_values(b_codes)).astype(np.int32)


def _int8_values(codes):
    """Signed int64 values of INT8 codes."""
    return decode(codes, Format.INT8).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Matrix multiply-accumulate
# --------------------------------------------------------------------------------------------

class MacResult(NamedTuple):
    """Result of :func:`mac_reference`; unpacks as ``(values, flags)``.

    Attributes
    ----------
    values : numpy.ndarray
        ``[M, N]``. For a floating-point accumulation: ``uint32`` FP32 bit patterns (NaN
        canonical). For INT8 × INT8: ``int32`` integers (the exact sum, wrapped modulo 2**32).
    flags : numpy.ndarray of uint8
        ``[M, N]`` :class:`~rtl.layouts.Flags` bits ORed over every product and every
        accumulator add of that output (always 0 for INT8 × INT8).
    """
    values: np.ndarray
    flags: np.ndarray

    @property
    def sticky(self):
        """The flags ORed over all outputs, as the flag CSR would record them (an int)."""
        return int(np.bitwise_or.reduce(self.flags, axis=None)) if self.flags.size else 0


def _operand_scales(scale, fmt, shape, k_axis, name):
    """Expand a scale argument to the full operand shape (int64 E8M0 codes).

    MX operands take one scale per 32 along K (``[M, KB]`` for A, ``[KB, N]`` for B, with
    ``KB = ceil(K/32)``: if K is not a multiple of 32 the last block is partial). Other formats
    take anything broadcastable to the operand (a scalar, per row ``[M, 1]`` of A, per column
    ``[1, N]`` of B, or the full shape); ``None`` means 127.
    """
    if is_mx(fmt):
        if scale is None:
            raise ValueError(f"{name}: {fmt.name} operands need their E8M0 block scales")
        s = _as_scale(scale)
        k_len = shape[k_axis]
        want = list(shape)
        want[k_axis] = -(-k_len // MX_BLOCK)
        if s.shape != tuple(want):
            partial = (f"; K = {k_len} is not a multiple of the MX block size {MX_BLOCK}, so the "
                       f"last block is partial" if k_len % MX_BLOCK else "")
            raise ValueError(f"{name}: {fmt.name} scales have shape {s.shape}, expected "
                             f"{tuple(want)} (one per {MX_BLOCK} along K{partial})")
        return np.take(np.repeat(s, MX_BLOCK, axis=k_axis), np.arange(k_len), axis=k_axis)
    s = _as_scale(E8M0_BIAS if scale is None else scale)
    try:
        return np.broadcast_to(s, shape)
    except ValueError:
        raise ValueError(f"{name}: scale shape {s.shape} does not broadcast to the operand "
                         f"shape {shape}") from None


def mac_reference(a_codes, b_codes, fmt_a, fmt_b, scale_a=None, scale_b=None, acc=None):
    """Reference matrix multiply-accumulate ``C = acc + A·B`` in the engine's exact order.

    For each output, ``acc_k = RNE_f32(acc_(k−1) + p_k)`` for k = 0 … K−1 strictly in order,
    with ``p_k`` per :func:`product` and ``acc_(−1)`` = +0.0 or ``acc``. It is a Python loop
    over k vectorised over (m, n); no BLAS call, whose summation order is unspecified. NaNs are
    made canonical at the end. Passing a K-tile's result as the next tile's ``acc`` therefore
    gives the same bits as one call over the whole K.

    If both formats are INT8 the accumulation is instead exact in int32 (see Returns).

    Parameters
    ----------
    a_codes : array_like of int, shape [M, K]
    b_codes : array_like of int, shape [K, N]
    fmt_a, fmt_b : Format or int
    scale_a, scale_b : array_like of int, optional
        E8M0 scale codes. MX formats require them: ``[M, KB]`` for A and ``[KB, N]`` for B,
        ``KB = ceil(K/32)`` (if K is not a multiple of 32 the last block is partial).
        Other formats default to 127 and accept a scalar, per-row ``[M, 1]`` (A) /
        per-column ``[1, N]`` (B) scales, or the full operand shape. INT8 × INT8 accepts only
        127 (or None).
    acc : array_like, optional
        Initial accumulator, broadcastable to [M, N]: FP32 bits (uint32) or float32 values;
        for INT8 × INT8, integers (int32 range).

    Returns
    -------
    MacResult
        ``(values, flags)``. ``values`` is ``uint32`` FP32 bits ``[M, N]``, except for
        INT8 × INT8 where it is ``int32`` ``[M, N]``: the exact sum wrapped to 32 bits (the
        spec does not say what an int32 overflow does; a 32-bit adder wraps). ``flags`` is
        ``uint8 [M, N]``; :attr:`MacResult.sticky` ORs it over the outputs.
    """
    fmt_a, fmt_b = as_format(fmt_a), as_format(fmt_b)
    a = np.asarray(a_codes)
    b = np.asarray(b_codes)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"mac_reference: expected A [M, K] and B [K, N], got {a.shape} and "
                         f"{b.shape}")
    m, k_len = a.shape
    n = b.shape[1]
    sa = _operand_scales(scale_a, fmt_a, a.shape, 1, "scale_a")
    sb = _operand_scales(scale_b, fmt_b, b.shape, 0, "scale_b")

    if element_format(fmt_a) is Format.INT8 and element_format(fmt_b) is Format.INT8:
        if (sa != E8M0_BIAS).any() or (sb != E8M0_BIAS).any():
            raise ValueError("mac_reference: INT8 x INT8 accumulates exact integers; scales "
                             "other than 127 are not supported")
        ai, bi = _int8_values(a), _int8_values(b)
        total = np.zeros((m, n), np.int64)
        if acc is not None:
            acc = np.asarray(acc)
            if acc.dtype.kind not in "iu":
                raise ValueError("mac_reference: an INT8 x INT8 accumulator must be integers")
            total = total + acc.astype(np.int64)
        for k in range(k_len):
            total += ai[:, k, None] * bi[None, k, :]
        wrapped = ((total + 2**31) % 2**32) - 2**31
        return MacResult(wrapped.astype(np.int32), np.zeros((m, n), np.uint8))

    va, vb = decode(a, fmt_a), decode(b, fmt_b)
    if acc is None:
        total = np.zeros((m, n), np.float32)
    else:
        total = np.broadcast_to(_as_f32_bits(acc), (m, n)).view(np.float32).copy()
    flags = np.zeros((m, n), np.uint8)
    for k in range(k_len):
        p, pflags = _product_values(va[:, k, None], vb[None, k, :], sa[:, k, None],
                                    sb[None, k, :])
        total, aflags = _add_f32(total, p)
        flags |= pflags | aflags
    return MacResult(_canonical_bits(total), flags)
