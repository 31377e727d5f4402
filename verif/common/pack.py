"""Pack and unpack stream payloads between numpy arrays and flat integers.

The bit positions come from the Amaranth layouts themselves (``data.StructLayout`` offsets), so
a testbench never restates where a field lives. Whole arrays are packed at once; this is the
bulk path, so it avoids per-element calls into Amaranth.
"""

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data


__all__ = ["fields_of", "pack", "unpack", "to_hex_lines", "from_hex_lines", "layout_width"]


def layout_width(layout):
    return Shape.cast(layout).width


def fields_of(layout):
    """Return ``[(name, offset, width, signed), ...]`` of a struct layout (or a plain shape)."""
    if isinstance(layout, data.StructLayout):
        out = []
        for name, field in layout:
            shape = Shape.cast(field.shape)
            out.append((name, field.offset, shape.width, shape.signed))
        return out
    shape = Shape.cast(layout)
    return [(None, 0, shape.width, shape.signed)]


def pack(layout, count=None, /, **values):
    """Pack field arrays into a list of Python ints, one per element.

    Fields that are not given are zero. Scalars broadcast. Signed fields may be given negative.
    ``layout`` and ``count`` (the number of elements, by default the longest field) are
    positional-only, so that any field name (``n``, ``count``) can be passed.
    """
    fields = fields_of(layout)
    known = {f[0] for f in fields}
    unknown = set(values) - known
    if unknown:
        raise KeyError(f"no such field(s) in layout: {sorted(unknown)}")
    n = count
    if n is None:
        n = max((np.size(v) for v in values.values()), default=0)
    words = [0] * n
    for name, offset, width, _signed in fields:
        if name not in values:
            continue
        v = values[name]
        # A list of Python ints may mix values below and above 2**63, which numpy would turn
        # into float64 (silently losing bits); keep them as Python ints.
        v = np.array(v, dtype=object) if isinstance(v, (list, tuple)) else np.asarray(v)
        v = np.broadcast_to(v, (n,))
        mask = (1 << width) - 1
        col = [(int(x) & mask) << offset for x in v.tolist()]
        words = [w | c for w, c in zip(words, col)]
    return words


def unpack(layout, words):
    """Unpack a list of ints into ``{field: np.ndarray}`` (uint64, int64 if signed, or Python
    ints in an object array for fields wider than 64 bits)."""
    out = {}
    for name, offset, width, signed in fields_of(layout):
        mask = (1 << width) - 1
        vals = [(w >> offset) & mask for w in words]
        if signed:
            half = 1 << (width - 1)
            vals = [v - (1 << width) if v >= half else v for v in vals]
            out[name] = np.array(vals, dtype=np.int64)
        elif width > 64:
            # Wider than any numpy integer: keep Python ints.
            arr = np.empty(len(vals), dtype=object)
            arr[:] = vals
            out[name] = arr
        else:
            out[name] = np.array(vals, dtype=np.uint64)
    return out


def to_hex_lines(words, width):
    digits = (width + 3) // 4
    return "\n".join(format(w, f"0{digits}x") for w in words) + "\n"


def from_hex_lines(text):
    vals = []
    for line in text.split():
        if line.startswith("//") or line.startswith("@"):
            continue
        vals.append(int(line, 16))
    return vals
