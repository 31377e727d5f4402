"""Bit-exact numpy model of the matrix engine (MXU) command of ``docs/mxu.md``.

The engine computes ``C[M,N] (+)= A[M,K] · B[K,N]`` with the matrix-engine rule of
``docs/numerics.md`` (:func:`golden_model.arith.mac_reference`), reading A, B and the MX scales
from the scratchpad in the layouts of ``docs/mxu.md`` and reading/writing C in the accumulator.

- :func:`check_command`: the five checks of the command, in order, as a
  :class:`~rtl.layouts.Status`.
- :func:`pack_a`, :func:`pack_b`, :func:`pack_scales_a`, :func:`pack_scales_b` (and the
  ``unpack_*`` inverses): the scratchpad bytes of each operand, relative to its base address;
  :func:`operand_bytes` gives their sizes.
- :func:`read_c`, :func:`write_c`: C in the accumulator rows.
- :class:`MxuModel`: the engine over a scratchpad and an accumulator, decoding its operands
  from the scratchpad bytes (the scoreboard for the RTL).
- :func:`gemm`, :func:`tiled_gemm`: the product directly on code arrays, untiled and tile by
  tile (the result does not depend on the tiling; the tests check it).

Notation (``docs/mxu.md``): ``R = mxu_rows``, ``C = mxu_cols``, ``w`` the code width of a
format, ``KT = ceil(K/R)``, ``NT = ceil(N/C)``, ``KB = ceil(K/32)``, ``VA = R·w(fmt_a)/8`` and
``VB = C·w(fmt_b)/8`` bytes per vector. Codes are packed little-endian, ``w`` bits each (two
FP4 codes per byte, the lower-indexed one in the low nibble).
"""

import numpy as np

from rtl.layouts import (
    MAX_DIM, MAX_K, MX_BLOCK, MXU_COMMAND, Format, Status, code_width, element_format, is_mx,
)

from .arith import MacResult, mac_reference
from .commands import checked_fields, make_fields
from .formats import _as_codes, _as_scale, as_format


__all__ = [
    "MxuError", "make_command", "check_command", "validate_command", "operand_bytes",
    "pack_a", "pack_b", "pack_scales_a", "pack_scales_b",
    "unpack_a", "unpack_b", "unpack_scales_a", "unpack_scales_b",
    "read_c", "write_c", "MxuModel", "gemm", "tiled_gemm",
]


def _ceil_div(a, b):
    return -(-a // b)


class MxuError(ValueError):
    """A matrix-engine command or operand that the engine would reject.

    Attributes
    ----------
    status : Status
        The status the engine reports for it.
    """

    def __init__(self, status, message):
        super().__init__(f"{Status(status).name}: {message}")
        self.status = Status(status)


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------

def make_command(**fields):
    """Return a complete command dict: the given :data:`MXU_COMMAND` fields, the others 0.

    ``fmt_a`` / ``fmt_b`` may be given as :class:`~rtl.layouts.Format` members; they are stored
    as their integer codes.

    Raises
    ------
    ValueError
        For a name that is not a field of :data:`~rtl.layouts.MXU_COMMAND`.
    """
    return make_fields(MXU_COMMAND, "MXU_COMMAND", fields)


def _fields(cmd):
    """The command's fields as Python ints, each checked against its width (a value that
    does not fit is a caller error, ``ValueError``, not a status)."""
    return checked_fields(MXU_COMMAND, "MXU_COMMAND", "an MXU command", cmd)


def _implemented(cfg, code):
    """Return the :class:`Format` of ``code`` if ``cfg`` implements it, else ``None``."""
    try:
        fmt = Format(code)
    except ValueError:
        return None
    return fmt if fmt in cfg.formats else None


def _vector_bytes(lanes, fmt):
    """Bytes of one vector of ``lanes`` codes of ``fmt`` (``VA`` with R lanes, ``VB`` with C)."""
    bits = lanes * code_width(fmt)
    if bits % 8:
        raise ValueError(f"a vector of {lanes} {Format(fmt).name} codes is not a whole number "
                         f"of bytes; the layout of docs/mxu.md needs at least 2 lanes")
    return bits // 8


def _geometry(cfg, f, fmt_a, fmt_b):
    """Sizes of a command whose fields ``f`` passed checks 1 to 3."""
    r, c = cfg.mxu_rows, cfg.mxu_cols
    kt, nt, kb = _ceil_div(f["k"], r), _ceil_div(f["n"], c), _ceil_div(f["k"], MX_BLOCK)
    va, vb = _vector_bytes(r, fmt_a), _vector_bytes(c, fmt_b)
    return {
        "kt": kt, "nt": nt, "kb": kb, "va": va, "vb": vb,
        "a": kt * f["m"] * va,
        "b": nt * f["k"] * vb,
        "sa": kb * f["m"] if is_mx(fmt_a) else 0,
        "sb": kb * nt * c if is_mx(fmt_b) else 0,
        "c_rows": nt * f["m"],
    }


def _check(cfg, f, addresses=True):
    """Checks 1 to 3 (and 4, 5 if ``addresses``) of ``docs/mxu.md`` on parsed fields ``f``.

    Returns ``(status, message)``; ``status`` is SUCCESS if all of them pass.
    """
    if f["reserved"]:
        return Status.NONZERO_RESERVED, f"reserved = {f['reserved']:#x}"
    fmt_a, fmt_b = _implemented(cfg, f["fmt_a"]), _implemented(cfg, f["fmt_b"])
    if fmt_a is None or fmt_b is None:
        return Status.BAD_FORMAT, (f"fmt_a = {f['fmt_a']}, fmt_b = {f['fmt_b']}; {cfg.name} "
                                   f"implements {sorted(x.value for x in cfg.formats)}")
    m, n, k = f["m"], f["n"], f["k"]
    if not (0 < m <= MAX_DIM and 0 < n <= MAX_DIM and 0 < k <= MAX_K):
        return Status.SIZE_RANGE, (f"M = {m}, N = {n}, K = {k} (1 ≤ M, N ≤ {MAX_DIM}, "
                                   f"1 ≤ K ≤ {MAX_K})")
    if not addresses:
        return Status.SUCCESS, ""
    g = _geometry(cfg, f, fmt_a, fmt_b)
    if (f["a_addr"] % g["va"] or f["b_addr"] % g["vb"]
            or (is_mx(fmt_b) and f["sb_addr"] % cfg.mxu_cols)):
        return Status.ADDR_ALIGN, (f"a_addr = {f['a_addr']:#x} (multiple of {g['va']}), "
                                   f"b_addr = {f['b_addr']:#x} (multiple of {g['vb']}), "
                                   f"sb_addr = {f['sb_addr']:#x} (MX B: multiple of "
                                   f"{cfg.mxu_cols})")
    ends = [("A", f["a_addr"] + g["a"]), ("B", f["b_addr"] + g["b"])]
    if is_mx(fmt_a):
        ends.append(("A scales", f["sa_addr"] + g["sa"]))
    if is_mx(fmt_b):
        ends.append(("B scales", f["sb_addr"] + g["sb"]))
    for what, end in ends:
        if end > cfg.spad_bytes:
            return Status.ADDR_RANGE, (f"{what} end at byte {end:#x}, beyond the "
                                       f"{cfg.spad_bytes:#x}-byte scratchpad")
    if f["c_row"] + g["c_rows"] > cfg.acc_rows:
        return Status.ADDR_RANGE, (f"C rows {f['c_row']} … {f['c_row'] + g['c_rows'] - 1}, "
                                   f"beyond the {cfg.acc_rows} accumulator rows")
    return Status.SUCCESS, ""


def check_command(cfg, cmd):
    """Return the status of a matrix-engine command, per the checks of ``docs/mxu.md``.

    In order: (1) ``reserved ≠ 0`` → NONZERO_RESERVED; (2) ``fmt_a`` or ``fmt_b`` not a
    :class:`~rtl.layouts.Format` in ``cfg.formats`` → BAD_FORMAT; (3) M, N or K zero, M or N
    above ``MAX_DIM``, K above ``MAX_K`` → SIZE_RANGE; (4) ``a_addr`` not a multiple of VA,
    ``b_addr`` of VB or (MX B) ``sb_addr`` of C → ADDR_ALIGN; (5) an operand byte at or beyond
    ``spad_bytes`` or a C row at or beyond ``acc_rows`` → ADDR_RANGE. Addresses and sizes are
    Python integers (no wrap-around). The MX scale addresses are checked only for MX operands.

    Parameters
    ----------
    cfg : ChipConfig
    cmd : dict
        Every field of :data:`~rtl.layouts.MXU_COMMAND` (``fmt_a``, ``fmt_b``: any 4-bit code).

    Returns
    -------
    Status
        ``Status.SUCCESS`` if all checks pass, else the first failing check's status.

    Raises
    ------
    ValueError
        If ``cmd`` lacks a field, has an unknown one, or a value does not fit its field.
    """
    return _check(cfg, _fields(cmd))[0]


def validate_command(cfg, cmd):
    """Raise :class:`MxuError` (with the :func:`check_command` status) unless ``cmd`` passes."""
    _checked(cfg, cmd, addresses=True)


def _checked(cfg, cmd, addresses):
    """Parse ``cmd`` and raise :class:`MxuError` unless its checks pass."""
    f = _fields(cmd)
    status, message = _check(cfg, f, addresses)
    if status is not Status.SUCCESS:
        raise MxuError(status, message)
    return f, Format(f["fmt_a"]), Format(f["fmt_b"])


def operand_bytes(cfg, cmd):
    """Return the sizes of the regions a command uses (for allocating them).

    Only checks 1 to 3 apply (the addresses are not looked at).

    Parameters
    ----------
    cfg : ChipConfig
    cmd : dict
        A command (see :func:`check_command`).

    Returns
    -------
    dict
        ``"a"``, ``"b"``, ``"sa"``, ``"sb"``: bytes of A, B, the A scales and the B scales in
        the scratchpad (``KT·M·VA``, ``NT·K·VB``, ``KB·M``, ``KB·NT·C``; 0 for the scales of a
        non-MX operand); ``"c_rows"``: accumulator rows of C (``NT·M``). Also the alignments
        ``"a_align"`` (VA), ``"b_align"`` (VB) and ``"sb_align"`` (C, or 1 for non-MX B).

    Raises
    ------
    MxuError
        If check 1, 2 or 3 fails.
    """
    f, fmt_a, fmt_b = _checked(cfg, cmd, addresses=False)
    g = _geometry(cfg, f, fmt_a, fmt_b)
    out = {key: g[key] for key in ("a", "b", "sa", "sb", "c_rows")}
    out.update(a_align=g["va"], b_align=g["vb"], sb_align=cfg.mxu_cols if is_mx(fmt_b) else 1)
    return out


# --------------------------------------------------------------------------------------------
# Operand packing
# --------------------------------------------------------------------------------------------

def _operand_format(fmt):
    try:
        return as_format(fmt)
    except ValueError as e:
        raise MxuError(Status.BAD_FORMAT, str(e)) from None


def _check_dims(**dims):
    limits = {"m": MAX_DIM, "n": MAX_DIM, "k": MAX_K, "kb": _ceil_div(MAX_K, MX_BLOCK)}
    for name, value in dims.items():
        if not 0 < value <= limits[name]:
            raise MxuError(Status.SIZE_RANGE, f"{name.upper()} = {value} is out of range")


def _pad_codes(shape, width, fill):
    """Codes for unused positions: 0, a constant, or random ``width``-bit codes."""
    if fill is None:
        return np.zeros(shape, np.int64)
    if isinstance(fill, np.random.Generator):
        return fill.integers(0, 1 << width, shape, dtype=np.int64)
    value = int(fill)
    if not 0 <= value < (1 << width):
        raise ValueError(f"fill = {fill!r} is not a {width}-bit code")
    return np.full(shape, value, np.int64)


def _vectors(codes, lanes, width, fill):
    """Split ``codes [rows, L]`` along L into vectors of ``lanes``: ``[ceil(L/lanes), rows,
    lanes]``, the positions past L filled per ``fill``."""
    rows, length = codes.shape
    count = _ceil_div(length, lanes)
    out = _pad_codes((rows, count * lanes), width, fill)
    out[:, :length] = codes
    return out.reshape(rows, count, lanes).transpose(1, 0, 2)


def _to_bytes(codes, width):
    """Pack codes ``[..., L]`` little-endian at ``width`` bits into bytes ``[..., L·width/8]``."""
    codes = codes.astype(np.uint64)
    if width == 4:
        return (codes[..., 0::2] | (codes[..., 1::2] << np.uint64(4))).astype(np.uint8)
    shifts = np.arange(0, width, 8, dtype=np.uint64)
    b = (codes[..., None] >> shifts) & np.uint64(0xFF)
    return b.reshape(*codes.shape[:-1], -1).astype(np.uint8)


def _from_bytes(data, width):
    """Inverse of :func:`_to_bytes`: bytes ``[..., B]`` to int64 codes ``[..., 8·B/width]``."""
    data = np.asarray(data, np.uint8).astype(np.int64)
    if width == 4:
        return np.stack([data & 0xF, data >> 4], axis=-1).reshape(*data.shape[:-1], -1)
    per = width // 8
    parts = data.reshape(*data.shape[:-1], -1, per)
    return (parts << np.arange(0, width, 8, dtype=np.int64)).sum(axis=-1)


def _codes_2d(codes, fmt, what):
    fmt = _operand_format(fmt)
    c = np.asarray(codes)
    if c.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D code array, got shape {c.shape}")
    c = _as_codes(c, element_format(fmt))       # INT8 codes given signed become bytes
    return c, fmt


def _region(data, size, what):
    data = np.asarray(data, np.uint8)
    if data.ndim != 1 or data.size < size:
        raise ValueError(f"{what}: expected at least {size} bytes, got {data.shape}")
    return data[:size]


def pack_a(cfg, a_codes, fmt_a, fill=None):
    """Scratchpad bytes of operand A, relative to ``a_addr``.

    Vector ``(kt, m)`` (``VA`` bytes at offset ``(kt·M + m)·VA``) holds ``A[m, kt·R + i]``
    for ``i < R``.

    Parameters
    ----------
    cfg : ChipConfig
    a_codes : array_like of int, shape [M, K]
        Element codes of ``fmt_a`` (INT8 also as signed values).
    fmt_a : Format or int
    fill : None, int or numpy.random.Generator, optional
        Codes at the unused positions ``kt·R + i ≥ K``: 0 (None), a constant code, or random
        codes drawn from the generator.

    Returns
    -------
    numpy.ndarray of uint8, shape [KT·M·VA]
    """
    a, fmt = _codes_2d(a_codes, fmt_a, "pack_a")
    _check_dims(m=a.shape[0], k=a.shape[1])
    width = code_width(fmt)
    _vector_bytes(cfg.mxu_rows, fmt)
    return _to_bytes(_vectors(a, cfg.mxu_rows, width, fill), width).reshape(-1)


def pack_b(cfg, b_codes, fmt_b, fill=None):
    """Scratchpad bytes of operand B, relative to ``b_addr``.

    Vector ``(nt, k)`` (``VB`` bytes at offset ``(nt·K + k)·VB``) holds ``B[k, nt·C + i]``
    for ``i < C``.

    Parameters
    ----------
    cfg : ChipConfig
    b_codes : array_like of int, shape [K, N]
    fmt_b : Format or int
    fill : None, int or numpy.random.Generator, optional
        Codes at the unused positions ``nt·C + i ≥ N`` (see :func:`pack_a`).

    Returns
    -------
    numpy.ndarray of uint8, shape [NT·K·VB]
    """
    b, fmt = _codes_2d(b_codes, fmt_b, "pack_b")
    _check_dims(k=b.shape[0], n=b.shape[1])
    width = code_width(fmt)
    _vector_bytes(cfg.mxu_cols, fmt)
    return _to_bytes(_vectors(b, cfg.mxu_cols, width, fill), width).reshape(-1)


def _scales_2d(scales, what):
    s = np.asarray(scales)
    if s.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D scale array, got shape {s.shape}")
    return _as_scale(s)


def pack_scales_a(cfg, scale_a, fill=None):
    """Scratchpad bytes of the E8M0 scales of an MX operand A, relative to ``sa_addr``.

    Byte ``kb·M + m`` is ``scale_a[m, kb]``. There are no unused positions; ``fill`` is
    accepted for symmetry with the other packers and ignored.

    Parameters
    ----------
    cfg : ChipConfig
    scale_a : array_like of int, shape [M, KB]

    Returns
    -------
    numpy.ndarray of uint8, shape [KB·M]
    """
    del cfg, fill
    s = _scales_2d(scale_a, "pack_scales_a")
    _check_dims(m=s.shape[0], kb=s.shape[1])
    return np.ascontiguousarray(s.T).reshape(-1).astype(np.uint8)


def pack_scales_b(cfg, scale_b, fill=None):
    """Scratchpad bytes of the E8M0 scales of an MX operand B, relative to ``sb_addr``.

    Vector ``(kb, nt)`` (C bytes at offset ``(kb·NT + nt)·C``) holds ``scale_b[kb, nt·C + i]``.

    Parameters
    ----------
    cfg : ChipConfig
    scale_b : array_like of int, shape [KB, N]
    fill : None, int or numpy.random.Generator, optional
        Bytes at the unused positions ``nt·C + i ≥ N`` (see :func:`pack_a`).

    Returns
    -------
    numpy.ndarray of uint8, shape [KB·NT·C]
    """
    s = _scales_2d(scale_b, "pack_scales_b")
    _check_dims(kb=s.shape[0], n=s.shape[1])
    # [NT, KB, C] -> [KB, NT, C]
    return _vectors(s, cfg.mxu_cols, 8, fill).transpose(1, 0, 2).reshape(-1).astype(np.uint8)


def unpack_a(cfg, data, m, k, fmt_a):
    """Inverse of :func:`pack_a`: codes ``[M, K]`` (int64) from the bytes at ``a_addr``."""
    fmt = _operand_format(fmt_a)
    r, width = cfg.mxu_rows, code_width(fmt)
    kt, va = _ceil_div(k, r), _vector_bytes(r, fmt)
    v = _from_bytes(_region(data, kt * m * va, "unpack_a").reshape(kt, m, va), width)
    return v.transpose(1, 0, 2).reshape(m, kt * r)[:, :k]


def unpack_b(cfg, data, k, n, fmt_b):
    """Inverse of :func:`pack_b`: codes ``[K, N]`` (int64) from the bytes at ``b_addr``."""
    fmt = _operand_format(fmt_b)
    c, width = cfg.mxu_cols, code_width(fmt)
    nt, vb = _ceil_div(n, c), _vector_bytes(c, fmt)
    v = _from_bytes(_region(data, nt * k * vb, "unpack_b").reshape(nt, k, vb), width)
    return v.transpose(1, 0, 2).reshape(k, nt * c)[:, :n]


def unpack_scales_a(cfg, data, m, k):
    """Inverse of :func:`pack_scales_a`: scales ``[M, KB]`` (int64), ``KB = ceil(K/32)``."""
    del cfg
    kb = _ceil_div(k, MX_BLOCK)
    return _region(data, kb * m, "unpack_scales_a").reshape(kb, m).T.astype(np.int64)


def unpack_scales_b(cfg, data, k, n):
    """Inverse of :func:`pack_scales_b`: scales ``[KB, N]`` (int64), ``KB = ceil(K/32)``."""
    c = cfg.mxu_cols
    kb, nt = _ceil_div(k, MX_BLOCK), _ceil_div(n, c)
    v = _region(data, kb * nt * c, "unpack_scales_b").reshape(kb, nt * c)
    return v[:, :n].astype(np.int64)


# --------------------------------------------------------------------------------------------
# Accumulator
# --------------------------------------------------------------------------------------------

def _int_accumulation(fmt_a, fmt_b):
    """Whether the engine accumulates exact int32 (INT8 × INT8) rather than FP32."""
    return element_format(fmt_a) is Format.INT8 and element_format(fmt_b) is Format.INT8


def _check_acc(cfg, acc):
    if not isinstance(acc, np.ndarray) or acc.dtype != np.uint32 \
            or acc.shape != (cfg.acc_rows, cfg.mxu_cols):
        raise ValueError(f"the accumulator must be a uint32 array of shape "
                         f"({cfg.acc_rows}, {cfg.mxu_cols})")


def _c_rows(cfg, cmd):
    """Parsed fields, int-ness and the ``[M, NT·C]`` view geometry of C."""
    f = _fields(cmd)
    status, message = _check(cfg, f, addresses=False)
    if status is Status.SUCCESS and f["c_row"] + _ceil_div(f["n"], cfg.mxu_cols) * f["m"] \
            > cfg.acc_rows:
        status, message = Status.ADDR_RANGE, "C lies beyond the accumulator rows"
    if status is not Status.SUCCESS:
        raise MxuError(status, message)
    return f, _int_accumulation(Format(f["fmt_a"]), Format(f["fmt_b"]))


def read_c(cfg, acc, cmd):
    """Return C of a command from the accumulator.

    ``C[m, nt·C + c]`` is word ``c`` of row ``c_row + nt·M + m``.

    Parameters
    ----------
    cfg : ChipConfig
    acc : numpy.ndarray of uint32, shape [acc_rows, C]
    cmd : dict
        The command (its m, n, fmt_a, fmt_b, c_row are used; checks 1 to 3 and the C range
        apply, else :class:`MxuError`).

    Returns
    -------
    numpy.ndarray, shape [M, N]
        A copy: ``uint32`` FP32 bits, or ``int32`` for INT8 × INT8.
    """
    _check_acc(cfg, acc)
    f, integer = _c_rows(cfg, cmd)
    out = np.zeros((f["m"], f["n"]), np.uint32)
    for rows, cols in _c_tiles(cfg, f):
        out[:, cols] = acc[rows, :cols.stop - cols.start]
    return out.view(np.int32) if integer else out


def _c_tiles(cfg, f):
    """``(rows, cols)`` slices per N tile ``nt``: accumulator rows ``c_row + nt·M + m`` hold
    ``C[m, nt·C + c]`` for the columns ``cols`` of C."""
    m, n, c = f["m"], f["n"], cfg.mxu_cols
    for nt in range(_ceil_div(n, c)):
        row0 = f["c_row"] + nt * m
        yield slice(row0, row0 + m), slice(nt * c, min(n, (nt + 1) * c))


def _as_words(values):
    """32-bit words of C values: uint32 bits, or integers in the int32/uint32 range."""
    v = np.asarray(values)
    if v.dtype == np.float32:
        return v.view(np.uint32)
    if v.dtype.kind not in "iu":
        raise ValueError(f"C values must be uint32 bits, integers or float32, not {v.dtype}")
    v = v.astype(np.int64)
    if v.size and (v.min() < -(1 << 31) or v.max() >= 1 << 32):
        raise ValueError("C values must lie in -2**31 … 2**32-1")
    return (v & 0xFFFFFFFF).astype(np.uint32)


def write_c(cfg, acc, cmd, values):
    """Write C of a command into the accumulator, in place (inverse of :func:`read_c`).

    Words ``c`` with ``nt·C + c ≥ N`` and all other rows are left untouched.

    Parameters
    ----------
    cfg : ChipConfig
    acc : numpy.ndarray of uint32, shape [acc_rows, C]
        Modified in place.
    cmd : dict
        The command (see :func:`read_c`).
    values : array_like, shape [M, N]
        ``uint32`` FP32 bits (or float32 values), or int32 integers (two's complement words).
    """
    _check_acc(cfg, acc)
    f, _ = _c_rows(cfg, cmd)
    m, n = f["m"], f["n"]
    words = _as_words(values)
    if words.shape != (m, n):
        raise ValueError(f"write_c: values have shape {words.shape}, expected {(m, n)}")
    for rows, cols in _c_tiles(cfg, f):
        acc[rows, :cols.stop - cols.start] = words[:, cols]


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------

class MxuModel:
    """Functional model of the matrix engine over its scratchpad and accumulator.

    Parameters
    ----------
    cfg : ChipConfig

    Attributes
    ----------
    cfg : ChipConfig
    spad : numpy.ndarray of uint8, shape [spad_bytes]
        The scratchpad, by byte address.
    acc : numpy.ndarray of uint32, shape [acc_rows, mxu_cols]
        The accumulator words (FP32 bits, or int32 two's complement).
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.spad = np.zeros(cfg.spad_bytes, np.uint8)
        self.acc = np.zeros((cfg.acc_rows, cfg.mxu_cols), np.uint32)

    def load(self, cmd, a_codes, b_codes, scale_a=None, scale_b=None, fill=None):
        """Pack the operands of ``cmd`` into the scratchpad at its addresses.

        A convenience for tests and drivers: :func:`pack_a`, :func:`pack_b` and (MX only)
        :func:`pack_scales_a`, :func:`pack_scales_b`, written at ``a_addr``, ``b_addr``,
        ``sa_addr``, ``sb_addr``. ``cmd`` must pass all checks (else :class:`MxuError`) and
        the arrays must have its shapes. ``fill`` is passed to the packers.
        """
        f, fmt_a, fmt_b = _checked(self.cfg, cmd, addresses=True)
        m, n, k = f["m"], f["n"], f["k"]
        a, b = np.asarray(a_codes), np.asarray(b_codes)
        if a.shape != (m, k) or b.shape != (k, n):
            raise ValueError(f"load: A {a.shape} and B {b.shape} do not match the command's "
                             f"M = {m}, N = {n}, K = {k}")
        regions = [(f["a_addr"], pack_a(self.cfg, a, fmt_a, fill)),
                   (f["b_addr"], pack_b(self.cfg, b, fmt_b, fill))]
        kb = _ceil_div(k, MX_BLOCK)
        for mx, scale, shape, addr, pack in (
                (is_mx(fmt_a), scale_a, (m, kb), f["sa_addr"], pack_scales_a),
                (is_mx(fmt_b), scale_b, (kb, n), f["sb_addr"], pack_scales_b)):
            if not mx:
                continue
            if scale is None or np.shape(scale) != shape:
                raise ValueError(f"load: MX scales of shape {shape} needed, got "
                                 f"{None if scale is None else np.shape(scale)}")
            regions.append((addr, pack(self.cfg, scale, fill)))
        for addr, data in regions:
            self.spad[addr:addr + data.size] = data

    def execute(self, cmd):
        """Execute one command.

        The command is checked (:func:`check_command`); an error changes nothing. Otherwise
        A, B and the MX scales are decoded from :attr:`spad` per the layouts of
        ``docs/mxu.md``, the initial sums are the C words of :attr:`acc` (``accumulate = 1``)
        or +0 / integer 0, the sums are computed by :func:`~golden_model.arith.mac_reference`,
        and C is written back to :attr:`acc` (words ``nt·C + c ≥ N`` untouched).

        Parameters
        ----------
        cmd : dict
            Every field of :data:`~rtl.layouts.MXU_COMMAND`.

        Returns
        -------
        status : Status
        flags : int
            The :class:`~rtl.layouts.Flags` bits ORed over every product and sum of the
            command (0 on error and for INT8 × INT8).
        """
        cfg = self.cfg
        status = check_command(cfg, cmd)
        if status is not Status.SUCCESS:
            return status, 0
        f, fmt_a, fmt_b = _checked(cfg, cmd, addresses=True)
        g = _geometry(cfg, f, fmt_a, fmt_b)
        m, n, k = f["m"], f["n"], f["k"]

        def region(addr, size):
            return self.spad[addr:addr + size]

        a = unpack_a(cfg, region(f["a_addr"], g["a"]), m, k, fmt_a)
        b = unpack_b(cfg, region(f["b_addr"], g["b"]), k, n, fmt_b)
        sa = unpack_scales_a(cfg, region(f["sa_addr"], g["sa"]), m, k) if is_mx(fmt_a) else None
        sb = unpack_scales_b(cfg, region(f["sb_addr"], g["sb"]), k, n) if is_mx(fmt_b) else None
        init = read_c(cfg, self.acc, cmd) if f["accumulate"] else None
        result = mac_reference(a, b, fmt_a, fmt_b, sa, sb, acc=init)
        write_c(cfg, self.acc, cmd, result.values)
        return Status.SUCCESS, result.sticky


# --------------------------------------------------------------------------------------------
# Direct products (no memories)
# --------------------------------------------------------------------------------------------

def gemm(a_codes, b_codes, fmt_a, fmt_b, scale_a=None, scale_b=None, acc=None):
    """``C = acc + A·B`` by the matrix-engine rule: :func:`~golden_model.arith.mac_reference`.

    Parameters and result are those of :func:`~golden_model.arith.mac_reference` (MX scales
    ``[M, ceil(K/32)]`` and ``[ceil(K/32), N]``).

    Returns
    -------
    MacResult
    """
    return mac_reference(a_codes, b_codes, fmt_a, fmt_b, scale_a, scale_b, acc)


def _tile_scales(scale, fmt, shape, k_axis, k0, k1, rows):
    """Scales of the K range ``[k0, k1)`` and the ``rows`` slice of the other axis.

    Returns ``(format, scales)`` for :func:`mac_reference`. An MX operand keeps its block
    scales when the range starts a block or lies inside one; otherwise it is expressed in its
    element format with one scale per element (the same products: the MX rule only repeats
    each block scale over its 32 elements).
    """
    if scale is None and not is_mx(fmt):
        return fmt, None
    s = _as_scale(scale)
    if is_mx(fmt):
        first, last = k0 // MX_BLOCK, (k1 - 1) // MX_BLOCK
        blocks = np.take(s, np.arange(first, last + 1), axis=k_axis)
        if k0 % MX_BLOCK == 0 or first == last:
            return fmt, np.take(blocks, rows, axis=1 - k_axis)
        s = np.repeat(blocks, MX_BLOCK, axis=k_axis)
        offset = k0 - first * MX_BLOCK
        s = np.take(s, np.arange(offset, offset + k1 - k0), axis=k_axis)
        return element_format(fmt), np.take(s, rows, axis=1 - k_axis)
    s = np.broadcast_to(s, shape)
    return fmt, np.take(np.take(s, np.arange(k0, k1), axis=k_axis), rows, axis=1 - k_axis)


def tiled_gemm(a_codes, b_codes, fmt_a, fmt_b, scale_a=None, scale_b=None, acc=None, *,
               tile_m, tile_n, tile_k):
    """:func:`gemm` computed tile by tile: the result must not depend on the tile sizes.

    Each ``tile_m × tile_n`` block of C is computed by one :func:`mac_reference` call per K
    tile of ``tile_k``, in increasing k, each starting from the previous one's sums (the first
    from ``acc``). With the rule "accumulate strictly in order of k" this equals :func:`gemm`
    bit for bit, values and flags; the tests use it to check that invariance.

    Parameters
    ----------
    a_codes, b_codes, fmt_a, fmt_b, scale_a, scale_b, acc
        As for :func:`gemm`.
    tile_m, tile_n, tile_k : int
        Tile sizes (≥ 1); the last tile along an axis may be smaller.

    Returns
    -------
    MacResult
    """
    fmt_a, fmt_b = as_format(fmt_a), as_format(fmt_b)
    a, b = np.asarray(a_codes), np.asarray(b_codes)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"tiled_gemm: expected A [M, K] and B [K, N], got {a.shape} and "
                         f"{b.shape}")
    if min(tile_m, tile_n, tile_k) < 1:
        raise ValueError("tiled_gemm: tile sizes must be at least 1")
    m_len, k_len = a.shape
    n_len = b.shape[1]
    integer = _int_accumulation(fmt_a, fmt_b)
    values = np.zeros((m_len, n_len), np.int32 if integer else np.uint32)
    flags = np.zeros((m_len, n_len), np.uint8)
    if acc is not None:
        acc = np.broadcast_to(np.asarray(acc), (m_len, n_len))
    for m0 in range(0, m_len, tile_m):
        rows = np.arange(m0, min(m0 + tile_m, m_len))
        for n0 in range(0, n_len, tile_n):
            cols = np.arange(n0, min(n0 + tile_n, n_len))
            part = None if acc is None else acc[np.ix_(rows, cols)]
            part_flags = np.zeros((rows.size, cols.size), np.uint8)
            for k0 in range(0, k_len, tile_k):
                k1 = min(k0 + tile_k, k_len)
                fa, sa = _tile_scales(scale_a, fmt_a, a.shape, 1, k0, k1, rows)
                fb, sb = _tile_scales(scale_b, fmt_b, b.shape, 0, k0, k1, cols)
                r = mac_reference(a[rows, k0:k1], b[k0:k1][:, cols], fa, fb, sa, sb, acc=part)
                part, part_flags = r.values, part_flags | r.flags
            values[np.ix_(rows, cols)] = part
            flags[np.ix_(rows, cols)] = part_flags
    return MacResult(values, flags)
