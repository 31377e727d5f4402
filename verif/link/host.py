"""Python side of a link test top: named registers and ``RUN``, in bulk exchanges.

A test top (:class:`rtl.link.testbench.LinkTestbench`) answers :data:`~rtl.link.host.HOST_REQUEST`
s one by one. :class:`TbHost` turns ``write(a_inject={...}, ab_chan={...})``,
``read("a_dl", "b_dl")`` and ``run(cycles)`` into one batch of requests each and decodes the
answers with the registers' own layouts, so a field's position is never restated here.

The transport is an ``async`` function ``exchange(requests) -> responses`` over lists of
payload integers. Under cocotb it wraps :class:`verif.common.harness.StreamHarness`; in-process
(:func:`inprocess_exchange`) it wraps the Verilated library of
:mod:`firmware.transports.verilator`, driven with :func:`asyncio.run`. Scenario code is the same
``async`` code either way.
"""

import enum as py_enum

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

from rtl.link.host import (HOST_REQUEST, HOST_RESPONSE, STATUS_DONE, STATUS_UNMAPPED,
                           HostOp, register_map)


__all__ = ["TbHost", "RegisterError", "as_dict", "inprocess_exchange", "harness_exchange"]

_REQ_W = Shape.cast(HOST_REQUEST).width
_RSP_W = Shape.cast(HOST_RESPONSE).width
_MASK64 = (1 << 64) - 1


class RegisterError(AssertionError):
    """A request named a register the top does not have, or the top refused it."""


def _pack(op, addr, value=0):
    return HOST_REQUEST.const({"op": op, "addr": addr, "data": value}).as_bits()


class TbHost:
    """Register access to a test top.

    Parameters
    ----------
    registers : list of (Field, layout or None)
        The top's registers in address order (``LinkTestbench.registers()``).
    exchange : async callable
        ``await exchange(list_of_request_ints)`` returns the list of response ints.
    """

    def __init__(self, registers, exchange):
        self._map = register_map([f for f, _ in registers])
        # Struct and array layouts decode reads; anything else (a plain width, an enum) is a
        # number.
        self._layouts = {f.name: layout if isinstance(layout, data.Layout) else None
                         for f, layout in registers}
        self._exchange = exchange
        self.cycles = 0

    def _encode(self, name, value):
        layout = self._layouts[name]
        if isinstance(value, dict):
            if layout is None:
                raise RegisterError(f"register {name} is a plain number, not a struct")
            value = layout.const(value).as_bits()
        if isinstance(value, py_enum.Enum):
            value = value.value
        return int(value)

    async def write(self, **values):
        """Write registers; a struct register takes a dict of its fields (others zero)."""
        reqs = []
        for name, value in values.items():
            if name not in self._map:
                raise RegisterError(f"no register {name!r}")
            addr, f = self._map[name]
            if not f.writable:
                raise RegisterError(f"register {name} is read-only")
            v = self._encode(name, value)
            if not 0 <= v < 1 << f.width:
                raise RegisterError(f"{v:#x} does not fit register {name} ({f.width} bits)")
            reqs += [_pack(HostOp.WRITE, addr + w, (v >> 64 * w) & _MASK64)
                     for w in range(f.words)]
        for r in await self._exchange(reqs):
            if HOST_RESPONSE.from_bits(r).status != 0:
                raise RegisterError("the top refused a write")

    async def read(self, *names):
        """Read registers: ``{name: value}``, a struct register as its layout's view."""
        reqs, spans = [], []
        for name in names:
            if name not in self._map:
                raise RegisterError(f"no register {name!r}")
            addr, f = self._map[name]
            spans.append((name, len(reqs), f))
            reqs += [_pack(HostOp.READ, addr + w) for w in range(f.words)]
        rsps = [HOST_RESPONSE.from_bits(r) for r in await self._exchange(reqs)]
        out = {}
        for name, lo, f in spans:
            value = 0
            for w in range(f.words):
                if rsps[lo + w].status == STATUS_UNMAPPED:
                    raise RegisterError(f"register {name} is not mapped")
                value |= int(rsps[lo + w].data) << 64 * w
            layout = self._layouts[name]
            out[name] = layout.from_bits(value) if layout is not None else value
        return out

    async def run(self, max_cycles):
        """Let the top run until its ``done`` condition or ``max_cycles``; return
        ``(cycles, done)``."""
        (r,) = await self._exchange([_pack(HostOp.RUN, 0, max_cycles)])
        rsp = HOST_RESPONSE.from_bits(r)
        self.cycles += int(rsp.data)
        return int(rsp.data), rsp.status == STATUS_DONE


def as_dict(view):
    """A register value as plain Python: a struct as ``{field: value}`` (nested structs
    flattened with ``.``), an array as a list, an enum as its integer."""
    if isinstance(view, data.Const):
        layout = view.shape()
        if isinstance(layout, data.ArrayLayout):
            return [as_dict(view[i]) for i in range(layout.length)]
        out = {}
        for name, _ in layout:
            v = as_dict(view[name])
            if isinstance(v, dict):
                out.update({f"{name}.{k}": x for k, x in v.items()})
            else:
                out[name] = v
        return out
    if isinstance(view, py_enum.Enum):
        return view.value
    return int(view)


def inprocess_exchange(top):
    """An ``exchange`` over a :class:`firmware.transports.verilator.StreamTop`."""
    in_words = top.in_words

    async def exchange(requests):
        rows = np.zeros((len(requests), in_words), np.uint32)
        for k, r in enumerate(requests):
            for w in range(in_words):
                rows[k, w] = (r >> 32 * w) & 0xFFFFFFFF
        got = top.run(rows, watchdog=0)
        if len(got) != len(requests):
            raise RegisterError(f"{len(got)} responses to {len(requests)} requests")
        return [sum(int(x) << 32 * w for w, x in enumerate(row)) for row in got]

    return exchange


def harness_exchange(harness):
    """An ``exchange`` over a cocotb :class:`verif.common.harness.StreamHarness`."""

    async def exchange(requests):
        if not requests:
            return []
        fields = {name: [] for name, _ in HOST_REQUEST}
        for r in requests:
            v = HOST_REQUEST.from_bits(r)
            fields["op"].append(int(v.op.value) if hasattr(v.op, "value") else int(v.op))
            fields["addr"].append(int(v.addr))
            fields["data"].append(int(v.data))
        # A RUN answers after up to its cycle count: allow for all of them.
        budget = sum(d for op, d in zip(fields["op"], fields["data"]) if op == HostOp.RUN.value)
        out = await harness.run(timeout_cycles=budget + 1000 * len(requests) + 200_000,
                                **fields)
        n = len(requests)
        return [HOST_RESPONSE.const({"data": int(out["data"][k]),
                                     "status": int(out["status"][k])}).as_bits()
                for k in range(n)]

    return exchange
