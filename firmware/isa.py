"""Descriptor and completion encoding (``docs/chip.md`` § Descriptors and queues).

A descriptor slot is :data:`~rtl.layouts.DESC_BYTES` bytes, a completion entry
:data:`~rtl.layouts.CPL_BYTES` bytes; both are little-endian: bit ``i`` of the layout is bit
``i`` of the little-endian integer of the bytes. Every bit position comes from the Amaranth
layouts of :mod:`rtl.layouts` (the ``offset`` of each :class:`amaranth.lib.data.StructLayout`
field); nothing here restates one.

- Builders, each returning the 128 bytes of one slot and taking ``cookie=0, irq=False``:
  :func:`nop`, :func:`dma`, :func:`gemm`, :func:`vpu`, :func:`signal`, :func:`wait`,
  :func:`write`; :func:`raw` builds any bit pattern (for bad-input tests).
- :func:`decode_descriptor`, :func:`encode_completion`, :func:`decode_completion`.
- :func:`encode_fields`, :func:`decode_fields`: any (nested) struct layout ↔ Python int.
"""

from amaranth.hdl import Shape
from amaranth.lib import data

from rtl.layouts import (
    COMPLETION, CPL_BYTES, DESC_BODIES, DESC_BYTES, DESC_HEADER, DESCRIPTOR, DMA_COMMAND,
    MXU_COMMAND, SEM_COMMAND, VPU_COMMAND, WRITE_COMMAND, DescFlags, Opcode, Status,
)


__all__ = [
    "encode_fields", "decode_fields", "raw", "nop", "dma", "gemm", "vpu", "signal", "wait",
    "write", "decode_descriptor", "encode_completion", "decode_completion",
]


_BODY_OFFSET = DESCRIPTOR["body"].offset
_BODY_WIDTH = Shape.cast(DESCRIPTOR["body"].shape).width
_HEADER_OFFSET = DESCRIPTOR["header"].offset


def _int(value, what, width):
    """``value`` (an int or an Amaranth enum member) as a Python int that fits ``width`` bits."""
    if hasattr(value, "value") and not isinstance(value, int):
        value = value.value
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} = {value!r} is not an integer") from None
    if not 0 <= value < (1 << width):
        raise ValueError(f"{what} = {value:#x} does not fit {width} bits")
    return value


def encode_fields(layout, values, *, prefix=""):
    """The bits of ``values`` in ``layout``, as a Python int.

    ``values`` is a dict of field values (missing fields are 0; a nested struct field takes a
    dict, or an int of its bits) or already an int (returned after a width check). Values may
    be Amaranth enum members. Unknown names raise ``ValueError``.
    """
    width = Shape.cast(layout).width
    if not isinstance(values, dict):
        return _int(values, prefix or "value", width)
    if not isinstance(layout, data.StructLayout):
        raise ValueError(f"{prefix or 'value'}: a plain field takes an int, not a dict")
    names = {name for name, _ in layout}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown fields {sorted(prefix + n for n in unknown)}")
    bits = 0
    for name, field in layout:
        if name not in values:
            continue
        shape = field.shape
        what = prefix + name
        if isinstance(shape, data.StructLayout):
            v = encode_fields(shape, values[name], prefix=what + ".")
        else:
            v = _int(values[name], what, Shape.cast(shape).width)
        bits |= v << field.offset
    return bits


def decode_fields(layout, bits):
    """The fields of ``bits`` in ``layout`` as a dict of Python ints (nested dicts for nested
    struct fields). Enum-typed fields are returned as plain ints."""
    out = {}
    for name, field in layout:
        shape = field.shape
        width = Shape.cast(shape).width
        v = (bits >> field.offset) & ((1 << width) - 1)
        out[name] = decode_fields(shape, v) if isinstance(shape, data.StructLayout) else v
    return out


def _slot(header, body):
    word = header << _HEADER_OFFSET | body << _BODY_OFFSET
    return word.to_bytes(DESC_BYTES, "little")


def raw(op, body_int=0, flags=0, reserved=0, cookie=0):
    """One descriptor slot with the given header fields and body bits, unchecked beyond the
    field widths (``op`` may be any 8-bit code, ``body_int`` any body bit pattern)."""
    header = encode_fields(DESC_HEADER, {"op": op, "flags": flags, "reserved": reserved,
                                         "cookie": cookie})
    return _slot(header, _int(body_int, "body", _BODY_WIDTH))


def _build(op, layout, values, cookie, irq):
    flags = DescFlags.IRQ.value if irq else 0
    return raw(op.value, encode_fields(layout, values), flags=flags, cookie=cookie)


def nop(*, cookie=0, irq=False):
    """A ``NOP`` descriptor."""
    return raw(Opcode.NOP.value, 0, flags=DescFlags.IRQ.value if irq else 0, cookie=cookie)


def dma(*, cookie=0, irq=False, **fields):
    """A ``DMA`` descriptor: ``fields`` of :data:`~rtl.layouts.DMA_COMMAND` (others 0)."""
    return _build(Opcode.DMA, DMA_COMMAND, fields, cookie, irq)


def gemm(cmd, *, cookie=0, irq=False):
    """A ``GEMM`` descriptor: ``cmd`` a dict of :data:`~rtl.layouts.MXU_COMMAND` fields (as
    :func:`golden_model.mxu.make_command` makes) or the command's bits as an int."""
    return _build(Opcode.GEMM, MXU_COMMAND, cmd, cookie, irq)


def vpu(cmd, *, cookie=0, irq=False):
    """A ``VPU`` descriptor: ``cmd`` a (nested) dict of :data:`~rtl.layouts.VPU_COMMAND`
    fields (as :func:`golden_model.vpu.make_vpu_command` makes) or the bits as an int."""
    return _build(Opcode.VPU, VPU_COMMAND, cmd, cookie, irq)


def signal(sem, value, *, cookie=0, irq=False):
    """A ``SIGNAL`` descriptor: semaphore ``sem`` += ``value``."""
    return _build(Opcode.SIGNAL, SEM_COMMAND, {"sem": sem, "value": value}, cookie, irq)


def wait(sem, value, *, cookie=0, irq=False):
    """A ``WAIT`` descriptor: wait until semaphore ``sem`` ≥ ``value``."""
    return _build(Opcode.WAIT, SEM_COMMAND, {"sem": sem, "value": value}, cookie, irq)


def write(addr, value, *, cookie=0, irq=False):
    """A ``WRITE`` descriptor: the 64-bit ``value`` to HBM byte address ``addr``."""
    return _build(Opcode.WRITE, WRITE_COMMAND, {"addr": addr, "value": value}, cookie, irq)


def _word(buf, nbytes, what):
    buf = bytes(buf)
    if len(buf) != nbytes:
        raise ValueError(f"{what} must be {nbytes} bytes, not {len(buf)}")
    return int.from_bytes(buf, "little")


def decode_descriptor(buf):
    """Decode one descriptor slot (:data:`~rtl.layouts.DESC_BYTES` bytes).

    Returns a dict: the header fields ``op``, ``flags``, ``reserved``, ``cookie`` (ints),
    ``body`` (the body bits as an int), ``opcode`` (the :class:`~rtl.layouts.Opcode`, or
    ``None`` if ``op`` is not one) and ``cmd`` (the body decoded by the opcode's layout of
    :data:`~rtl.layouts.DESC_BODIES`, or ``None`` for NOP and unknown opcodes).
    """
    word = _word(buf, DESC_BYTES, "a descriptor")
    header = decode_fields(DESC_HEADER, (word >> _HEADER_OFFSET)
                           & ((1 << DESC_HEADER.size) - 1))
    body = (word >> _BODY_OFFSET) & ((1 << _BODY_WIDTH) - 1)
    try:
        opcode = Opcode(header["op"])
    except ValueError:
        opcode = None
    layout = DESC_BODIES.get(opcode)
    return {**header, "body": body, "opcode": opcode,
            "cmd": None if layout is None else decode_fields(layout, body)}


def encode_completion(index, cookie, status, flags=0, phase=1, queue=0, *, reserved=0,
                      reserved2=0):
    """The :data:`~rtl.layouts.CPL_BYTES` bytes of one completion entry."""
    bits = encode_fields(COMPLETION, {
        "index": index, "cookie": cookie, "status": status, "flags": flags,
        "reserved": reserved, "phase": phase, "queue": queue, "reserved2": reserved2})
    return bits.to_bytes(CPL_BYTES, "little")


def decode_completion(buf):
    """Decode one completion entry: a dict of every :data:`~rtl.layouts.COMPLETION` field as an
    int, except ``status``, a :class:`~rtl.layouts.Status` (an int if the code is none)."""
    out = decode_fields(COMPLETION, _word(buf, CPL_BYTES, "a completion"))
    try:
        out["status"] = Status(out["status"])
    except ValueError:
        pass
    return out
