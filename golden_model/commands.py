"""Command dicts of any flat command layout (``MXU_COMMAND``, ``DMA_COMMAND``, …).

A command is a dict with one Python int per field of its Amaranth ``StructLayout``. Builders
fill missing fields with 0; the models check that every field is present and fits its width.
A value that does not fit is a caller error (the hardware field could not hold it), not a
status, and raises ``ValueError``.
"""

import enum

import numpy as np


__all__ = ["make_fields", "checked_fields"]


def _widths(layout):
    return {name: field.width for name, field in layout}


def _plain(value):
    return value.value if isinstance(value, enum.Enum) else value


def make_fields(layout, layout_name, fields):
    """A complete command dict of ``layout``: ``fields`` (ints or enum members), others 0.

    Raises ``ValueError`` for a name that is not a field of the layout.
    """
    widths = _widths(layout)
    unknown = set(fields) - set(widths)
    if unknown:
        raise ValueError(f"unknown {layout_name} fields: {sorted(unknown)}")
    cmd = dict.fromkeys(widths, 0)
    cmd.update({name: int(_plain(value)) for name, value in fields.items()})
    return cmd


def checked_fields(layout, layout_name, what, cmd):
    """The fields of ``cmd`` as Python ints, each checked against its width in ``layout``."""
    widths = _widths(layout)
    missing = set(widths) - set(cmd)
    unknown = set(cmd) - set(widths)
    if missing or unknown:
        raise ValueError(f"{what} needs exactly the {layout_name} fields; missing "
                         f"{sorted(missing)}, unknown {sorted(unknown)}")
    out = {}
    for name, width in widths.items():
        value = _plain(cmd[name])
        if not isinstance(value, (int, np.integer)) or not 0 <= int(value) < (1 << width):
            raise ValueError(f"command field {name} = {value!r} is not a {width}-bit unsigned "
                             f"integer")
        out[name] = int(value)
    return out
