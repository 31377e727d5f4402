"""Functional model of one DMA command (``DMA_COMMAND``, ``docs/chip.md`` § DMA and § Checks).

A command moves ``rows`` rows of ``row_bytes`` bytes between HBM and the scratchpad. Row ``r``
is at ``spad_addr + r·spad_stride`` in the scratchpad and at ``hbm_addr + r·hbm_stride`` in HBM;
with ``gather`` (loads only) at ``page_list[r] + hbm_stride``, ``page_list`` being the 64-bit
little-endian HBM byte addresses stored at ``hbm_addr``. ``store`` selects the direction
(0: HBM → scratchpad, 1: scratchpad → HBM).

- :func:`make_dma_command`: a complete command dict (fields not given are 0).
- :func:`check_dma`: the checks of ``docs/chip.md``, in order, as a :class:`~rtl.layouts.Status`.
- :func:`run_dma`: the checks, then the copy; memory is written only on ``SUCCESS``.

The checks, in order (every sum is a Python integer, so nothing wraps):

1. ``NONZERO_RESERVED``: ``reserved ≠ 0``, or ``gather`` with ``store``.
2. ``SIZE_RANGE``: ``rows`` 0 or above ``MAX_DIM``; ``row_bytes`` 0 or above ``spad_bytes``.
3. ``ADDR_ALIGN``: ``spad_addr``, ``spad_stride``, ``hbm_stride`` or ``row_bytes`` not a
   multiple of ``DMA_ALIGN``; ``hbm_addr`` not a multiple of ``DMA_ALIGN`` (strided) or of
   ``PAGE_ENTRY_BYTES`` (gathering: the page list).
4. ``ADDR_RANGE``: the last scratchpad row ends beyond ``spad_bytes``; the last HBM row
   (strided) or the page list (gathering) ends beyond ``hbm_bytes``.
5. ``OVERLAP``: ``rows > 1`` and the destination stride below ``row_bytes``; a store with a
   row that touches a protected range (the rings of the enabled queues).
6. Gathering only, the page entries, in order: entry ``r`` plus ``hbm_stride`` not a multiple
   of ``DMA_ALIGN`` → ``ADDR_ALIGN``, else its row ending beyond ``hbm_bytes`` →
   ``ADDR_RANGE``. The first failing entry gives the status; every entry is checked before any
   row is copied.

Since the destination rows of a command that passes do not overlap, and the source and the
destination are different memories, copying the rows in order equals copying them all at once;
the model does the latter.
"""

import numpy as np
from numpy.lib.stride_tricks import as_strided

from rtl.layouts import DMA_ALIGN, DMA_COMMAND, MAX_DIM, PAGE_ENTRY_BYTES, Status

from .commands import checked_fields, make_fields


__all__ = ["make_dma_command", "check_dma", "run_dma"]


def make_dma_command(**fields):
    """Return a complete command dict: the given :data:`DMA_COMMAND` fields, the others 0.

    Raises
    ------
    ValueError
        For a name that is not a field of :data:`~rtl.layouts.DMA_COMMAND`.
    """
    return make_fields(DMA_COMMAND, "DMA_COMMAND", fields)


def _fields(cmd):
    """The command's fields as Python ints, each checked against its width."""
    return checked_fields(DMA_COMMAND, "DMA_COMMAND", "a DMA command", cmd)


def _memory(mem, what):
    if not (isinstance(mem, np.ndarray) and mem.dtype == np.uint8 and mem.ndim == 1):
        raise ValueError(f"{what} must be a 1-D numpy uint8 array")
    return mem


def _touches(starts, length, protect):
    """Return whether any ``[start, start + length)`` meets any protected ``[lo, hi)``."""
    for lo, hi in protect:
        lo, hi = int(lo), int(hi)
        if lo < hi and np.any((starts < hi) & (starts + length > lo)):
            return True
    return False


def _static_checks(cfg, f, hbm_bytes, protect):
    """Checks 1 to 5 on parsed fields ``f``."""
    rows, length = f["rows"], f["row_bytes"]
    if f["reserved"] or (f["gather"] and f["store"]):
        return Status.NONZERO_RESERVED
    if not (0 < rows <= MAX_DIM and 0 < length <= cfg.spad_bytes):
        return Status.SIZE_RANGE
    hbm_align = PAGE_ENTRY_BYTES if f["gather"] else DMA_ALIGN
    if (f["spad_addr"] % DMA_ALIGN or f["spad_stride"] % DMA_ALIGN or length % DMA_ALIGN
            or f["hbm_stride"] % DMA_ALIGN or f["hbm_addr"] % hbm_align):
        return Status.ADDR_ALIGN
    spad_end = f["spad_addr"] + (rows - 1) * f["spad_stride"] + length
    if f["gather"]:
        hbm_end = f["hbm_addr"] + rows * PAGE_ENTRY_BYTES
    else:
        hbm_end = f["hbm_addr"] + (rows - 1) * f["hbm_stride"] + length
    if spad_end > cfg.spad_bytes or hbm_end > hbm_bytes:
        return Status.ADDR_RANGE
    dst_stride = f["hbm_stride"] if f["store"] else f["spad_stride"]
    if rows > 1 and dst_stride < length:
        return Status.OVERLAP
    if f["store"] and protect:
        # In range (check 4), so every start fits an int64 (a single row's stride is unused
        # and may be anything).
        stride = f["hbm_stride"] if rows > 1 else 0
        starts = f["hbm_addr"] + np.arange(rows, dtype=np.int64) * stride
        if _touches(starts, length, protect):
            return Status.OVERLAP
    return Status.SUCCESS


def _page_rows(cfg, f, hbm):
    """Check 6: ``(status, row addresses)`` of a gathering command that passed checks 1 to 5."""
    rows, length, offset = f["rows"], f["row_bytes"], f["hbm_stride"]
    base = f["hbm_addr"]
    entries = hbm[base:base + rows * PAGE_ENTRY_BYTES].view("<u8")
    # offset is a multiple of DMA_ALIGN, so (entry + offset) % DMA_ALIGN == entry % DMA_ALIGN.
    misaligned = (entries % np.uint64(DMA_ALIGN)) != 0
    limit = hbm.size - length - offset       # a row fits iff entry <= limit
    if limit < 0:
        outside = np.ones(rows, bool)
    else:
        outside = entries > np.uint64(limit)
    bad = np.flatnonzero(misaligned | outside)
    if bad.size:
        return (Status.ADDR_ALIGN if misaligned[bad[0]] else Status.ADDR_RANGE), None
    return Status.SUCCESS, entries.astype(np.int64) + offset


def _check(cfg, f, hbm, protect):
    status = _static_checks(cfg, f, hbm.size, protect)
    if status is not Status.SUCCESS or not f["gather"]:
        return status, None
    return _page_rows(cfg, f, hbm)


def check_dma(cfg, cmd, *, hbm, protect=()):
    """Return the status of a DMA command, per the checks of ``docs/chip.md`` (see above).

    Parameters
    ----------
    cfg : ChipConfig
    cmd : dict
        Every field of :data:`~rtl.layouts.DMA_COMMAND` (:func:`make_dma_command`).
    hbm : numpy.ndarray of uint8
        The HBM image, by byte address (its size is the HBM capacity); a gathering command
        reads its page list from it.
    protect : iterable of (lo, hi)
        Byte ranges ``[lo, hi)`` of HBM that a store must not touch (the rings of the enabled
        queues).

    Returns
    -------
    Status
        ``Status.SUCCESS`` if all checks pass, else the first failing check's status.

    Raises
    ------
    ValueError
        If ``cmd`` lacks a field, has an unknown one, or a value does not fit its field.
    """
    hbm = _memory(hbm, "hbm")
    return _check(cfg, _fields(cmd), hbm, tuple(protect))[0]


def _rows_view(mem, start, stride, rows, length):
    """A ``[rows, length]`` view of ``mem`` whose row ``r`` starts at ``start + r·stride``."""
    if rows == 1:
        # The stride of a single row is never used (and may exceed what numpy accepts).
        stride = 0
    return as_strided(mem[start:], shape=(rows, length), strides=(stride, 1))


def run_dma(cfg, cmd, hbm, spad, *, protect=()):
    """Check, then execute one DMA command on ``hbm`` and ``spad`` (in place).

    The checks are those of :func:`check_dma`; on an error nothing is written. Otherwise every
    row is copied from the source memory to the destination memory.

    Parameters
    ----------
    cfg : ChipConfig
    cmd : dict
        Every field of :data:`~rtl.layouts.DMA_COMMAND`.
    hbm, spad : numpy.ndarray of uint8
        The HBM image and the scratchpad (``cfg.spad_bytes`` bytes), by byte address.
    protect : iterable of (lo, hi)
        As for :func:`check_dma`.

    Returns
    -------
    Status
    """
    hbm, spad = _memory(hbm, "hbm"), _memory(spad, "spad")
    if spad.size != cfg.spad_bytes:
        raise ValueError(f"spad has {spad.size} bytes, not spad_bytes = {cfg.spad_bytes}")
    f = _fields(cmd)
    status, gathered = _check(cfg, f, hbm, tuple(protect))
    if status is not Status.SUCCESS:
        return status
    rows, length = f["rows"], f["row_bytes"]
    spad_rows = _rows_view(spad, f["spad_addr"], f["spad_stride"], rows, length)
    if gathered is not None:
        # Destination rows (scratchpad) do not overlap, so rows * length <= spad_bytes.
        spad_rows[...] = hbm[gathered[:, None] + np.arange(length)]
        return Status.SUCCESS
    hbm_rows = _rows_view(hbm, f["hbm_addr"], f["hbm_stride"], rows, length)
    if f["store"]:
        hbm_rows[...] = spad_rows
    else:
        spad_rows[...] = hbm_rows
    return Status.SUCCESS
