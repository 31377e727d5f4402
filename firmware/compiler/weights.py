"""Weights in the chip's formats, cut into blocks the scratchpad can hold.

A linear layer ``y = x·Wᵀ (+ b)`` (``W`` as stored by Hugging Face: ``out × in``) is the
matrix-engine operand ``B = Wᵀ`` (``K = in`` rows, ``N = out`` columns). :func:`pack_linear`
quantizes it to one of :data:`WEIGHT_FORMATS` and cuts it into *blocks* of ``nb`` columns
(and, if one column of ``K`` codes is still too large, of ``kb`` rows). A block is everything
one DMA brings into a weight buffer of the scratchpad, laid out for the matrix engine
(``docs/mxu.md`` § Operand layouts), each part aligned to one vector of the vector unit:

    [B codes] [MX scales of B] [per-column FP32 scales] [FP32 bias]

Formats:

- ``fp32``, ``bf16``: the codes of the weights (BF16 rounded to nearest even).
- ``fp8``: FP8 E4M3 with one power-of-two scale per output channel: column ``n`` is stored as
  ``W[n]·2^-e_n`` with ``e_n`` the smallest exponent that keeps its largest magnitude within
  448, and the block carries ``2^e_n`` as FP32; the vector unit multiplies the matrix engine's
  result by it, which is exact (a power of two) unless the product leaves the normal range.
- ``mxfp4``: OCP MXFP4, FP4 E2M1 elements with one E8M0 scale per 32 elements along ``K``
  (the matrix engine applies the scales itself).

The activations (operand A) stay FP32, so every product is rounded once and accumulated in
FP32 by the matrix-engine rule.
"""

from dataclasses import dataclass

import numpy as np

from golden_model.formats import mx_quantize, quantize
from golden_model.mxu import pack_b, pack_scales_b
from rtl.layouts import E8M0_BIAS, MX_BLOCK, Format, code_width, is_mx

from ..errors import UnsupportedConfig


__all__ = ["WEIGHT_FORMATS", "Block", "PackedLinear", "pack_linear", "block_columns",
           "quantize_weights"]


#: Names of the weight formats and their matrix-engine operand formats.
WEIGHT_FORMATS = {
    "fp32":  Format.FP32,
    "bf16":  Format.BF16,
    "fp8":   Format.FP8_E4M3,
    "mxfp4": Format.MXFP4,
}

_FP8_MAX = 448.0


def _align(x, a):
    return -(-x // a) * a


@dataclass(frozen=True)
class Block:
    """One DMA's worth of a linear: columns ``n0 … n0+nb−1``, rows ``k0 … k0+kb−1``.

    Offsets are bytes from the start of the block; ``None`` where the part is absent.
    """
    n0: int
    nb: int
    k0: int
    kb: int
    offset: int          # of the block in the linear's packed bytes
    nbytes: int
    sb_off: int | None   # MX scales of B
    scale_off: int | None  # per-column FP32 scales (fp8)
    bias_off: int | None   # per-column FP32 bias (on the last K block only)
    last: bool             # the last K block of its columns (epilogues follow it)


@dataclass
class PackedLinear:
    """A linear layer packed for the chip: ``data`` holds every block back to back."""
    name: str
    k: int
    n: int
    fmt: Format
    blocks: list
    data: np.ndarray
    addr: int = 0        # HBM address once loaded

    @property
    def nbytes(self):
        return int(self.data.size)


def quantize_weights(w, fmt):
    """Quantize ``w`` (``out × in``, float32) to ``fmt``.

    Returns ``(b_codes [K, N], mx_scales [KB, N] or None, col_scale [N] float32 or None)``:
    the matrix-engine codes of ``B = wᵀ`` and what goes with them.
    """
    w = np.asarray(w, np.float32)
    n, k = w.shape
    if fmt is Format.FP32:
        return np.ascontiguousarray(w.T).view(np.uint32), None, None
    if fmt is Format.BF16:
        return quantize(np.ascontiguousarray(w.T), Format.BF16), None, None
    if fmt is Format.FP8_E4M3:
        amax = np.abs(w).max(axis=1).astype(np.float64)
        with np.errstate(divide="ignore"):
            e = np.where(amax > 0, np.ceil(np.log2(np.maximum(amax, 1e-300) / _FP8_MAX)), 0)
        e = e.astype(np.int64)
        # Make e the smallest exponent with amax·2^-e ≤ 448 (the log may be off by one).
        e = np.where(amax * np.exp2(-(e - 1).astype(np.float64)) <= _FP8_MAX, e - 1, e)
        e = np.where(amax * np.exp2(-e.astype(np.float64)) > _FP8_MAX, e + 1, e)
        e = np.clip(np.where(amax > 0, e, 0), -126, 127)
        codes = quantize(w, Format.FP8_E4M3, scale=(E8M0_BIAS + e)[:, None].astype(np.int64))
        return np.ascontiguousarray(codes.T), None, np.exp2(e.astype(np.float64)).astype(
            np.float32)
    if fmt is Format.MXFP4:
        kp = _align(k, MX_BLOCK)
        wp = np.zeros((n, kp), np.float32)
        wp[:, :k] = w
        codes, scales = mx_quantize(wp, Format.MXFP4)
        return np.ascontiguousarray(codes[:, :k].T), np.ascontiguousarray(scales.T), None
    raise UnsupportedConfig(f"weight format {fmt.name} is not one of "
                            f"{', '.join(WEIGHT_FORMATS)}")


def _block_bytes(cfg, fmt, nb, kb, has_scale, has_bias):
    """``(total, parts)`` of a block of ``nb`` columns and ``kb`` rows."""
    C = cfg.mxu_cols
    vb = 4 * cfg.vpu_lanes
    nt = -(-nb // C)
    codes = _align(nt * kb * C * code_width(fmt) // 8, vb)
    mx = _align(-(-kb // MX_BLOCK) * nt * C, vb) if is_mx(fmt) else 0
    scale = _align(4 * nb, vb) if has_scale else 0
    bias = _align(4 * nb, vb) if has_bias else 0
    return codes + mx + scale + bias, (codes, mx, scale, bias)


def block_columns(cfg, fmt, k, n, max_bytes, *, has_scale=False, has_bias=False, group=1):
    """``(nb, kb)``: columns and rows per block so that a block fits ``max_bytes``.

    Columns come in multiples of ``C·group``; ``K`` is split (in multiples of 32) only when a
    block of ``C·group`` columns over the whole ``K`` does not fit. Blocks are balanced so the
    last one is not a sliver.
    """
    step = cfg.mxu_cols * group
    if _block_bytes(cfg, fmt, step, k, has_scale, has_bias)[0] <= max_bytes:
        ncols = _align(n, step)
        nb = step
        while nb + step <= ncols and _block_bytes(cfg, fmt, nb + step, k, has_scale,
                                                 has_bias)[0] <= max_bytes:
            nb += step
        nblocks = -(-n // nb)
        nb = _align(-(-n // nblocks), step)
        return nb, k
    kb = MX_BLOCK
    if _block_bytes(cfg, fmt, step, kb, has_scale, has_bias)[0] > max_bytes:
        raise UnsupportedConfig(f"a weight block of {step} columns × {kb} rows of "
                                f"{fmt.name} does not fit the {max_bytes}-byte weight buffer")
    while kb + MX_BLOCK < k and _block_bytes(cfg, fmt, step, kb + MX_BLOCK, has_scale,
                                            has_bias)[0] <= max_bytes:
        kb += MX_BLOCK
    return step, kb


def pack_linear(cfg, name, w, fmt, max_bytes, *, bias=None, nb=None, kb=None):
    """Quantize ``w`` (``out × in``) to ``fmt`` and pack it in blocks of at most
    ``max_bytes`` (or of ``nb`` columns × ``kb`` rows when given).

    Returns a :class:`PackedLinear`.
    """
    w = np.asarray(w, np.float32)
    n, k = w.shape
    codes, mx_scales, col_scale = quantize_weights(w, fmt)
    has_scale, has_bias = col_scale is not None, bias is not None
    if nb is None or kb is None:
        nb2, kb2 = block_columns(cfg, fmt, k, n, max_bytes, has_scale=has_scale,
                                 has_bias=has_bias)
        nb, kb = nb or nb2, kb or kb2
    parts, blocks, offset = [], [], 0
    for n0 in range(0, n, nb):
        nv = min(nb, n - n0)
        for k0 in range(0, k, kb):
            kv = min(kb, k - k0)
            last = k0 + kv == k
            total, (cb, mb, sb, bb) = _block_bytes(cfg, fmt, nv, kv, has_scale and last,
                                                   has_bias and last)
            if total > max_bytes:
                raise UnsupportedConfig(f"{name}: a block of {total} bytes exceeds the "
                                        f"{max_bytes}-byte weight buffer")
            buf = np.zeros(total, np.uint8)
            b = pack_b(cfg, codes[k0:k0 + kv, n0:n0 + nv], fmt, fill=0)
            buf[:b.size] = b
            sb_off = scale_off = bias_off = None
            if is_mx(fmt):
                sb_off = cb
                s = pack_scales_b(cfg, mx_scales[k0 // MX_BLOCK:-(-(k0 + kv) // MX_BLOCK),
                                                 n0:n0 + nv], fill=0)
                buf[sb_off:sb_off + s.size] = s
            if has_scale and last:
                scale_off = cb + mb
                buf[scale_off:scale_off + 4 * nv] = col_scale[n0:n0 + nv].view(np.uint8)
            if has_bias and last:
                bias_off = cb + mb + sb
                bv = np.asarray(bias, np.float32)[n0:n0 + nv]
                buf[bias_off:bias_off + 4 * nv] = bv.view(np.uint8)
            blocks.append(Block(n0=n0, nb=nv, k0=k0, kb=kv, offset=offset, nbytes=total,
                                sb_off=sb_off, scale_off=scale_off, bias_off=bias_off,
                                last=last))
            parts.append(buf)
            offset += total
    return PackedLinear(name=name, k=k, n=n, fmt=fmt, blocks=blocks,
                        data=np.concatenate(parts))
