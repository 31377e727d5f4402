"""Host access to named registers of a test top, over one request and one response stream.

A test top built of link endpoints, channel models and traffic blocks has hundreds of
configuration and counter bits. :class:`HostRegisters` maps each of them to 64-bit registers
at consecutive addresses (a field wider than 64 bits takes several, low word first), and adds
a ``RUN`` request that lets the design run for up to ``data`` cycles and answers when ``done``
rises or the cycles are up. A test then configures, runs and reads back in three bulk
exchanges, with the host (cocotb or the in-process Verilator harness) off the cycle path.

:func:`register_map` gives the same addresses in Python without elaborating anything.
"""

from dataclasses import dataclass

from amaranth.hdl import Module, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["HostOp", "HOST_REQUEST", "HOST_RESPONSE", "Field", "register_map", "HostRegisters"]


class HostOp(enum.Enum, shape=2):
    READ  = 0   # response: the register's value
    WRITE = 1   # response: 0 (the write has taken effect)
    RUN   = 2   # run until ``done`` or ``data`` cycles; response: cycles run, status 1 if done


HOST_REQUEST = data.StructLayout({
    "op":   HostOp,
    "addr": 16,
    "data": 64,
})

HOST_RESPONSE = data.StructLayout({
    "data":   64,
    "status": 8,    # RUN: 1 done, 0 out of cycles; READ of an unmapped address: 2
})

#: Status codes of a response.
STATUS_TIMEOUT, STATUS_DONE, STATUS_UNMAPPED = 0, 1, 2


@dataclass(frozen=True)
class Field:
    """A named register field: ``width`` bits, ``writable`` by the host or read-only."""
    name: str
    width: int
    writable: bool

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"field name must be an identifier, not {self.name!r}")
        if not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"width of {self.name} must be a positive integer, "
                             f"not {self.width!r}")

    @property
    def words(self):
        return (self.width + 63) // 64


def register_map(fields):
    """``{name: (address, field)}``: fields at consecutive 64-bit register addresses."""
    out, addr = {}, 0
    for f in fields:
        if f.name in out:
            raise ValueError(f"duplicate register field {f.name!r}")
        out[f.name] = (addr, f)
        addr += f.words
    if addr > 1 << 16:
        raise ValueError(f"{addr} registers do not fit a 16-bit address")
    return out


class HostRegisters(wiring.Component):
    """The register file and the ``RUN`` sequencer.

    Parameters
    ----------
    fields : list of Field
        The registers, in address order.

    Members
    -------
    i : ``In(stream.Signature(HOST_REQUEST))``, o : ``Out(stream.Signature(HOST_RESPONSE))``
        Requests, each answered once and in order.
    done : ``In(1)``
        The condition a ``RUN`` waits for.
    running : ``Out(1)``
        A ``RUN`` is in progress.
    <name> : ``Out(width)`` for a writable field, ``In(width)`` for a read-only one.
    <name>_we : ``Out(1)``
        Writable fields: pulses in the cycle after a write to any word of the field.
    """

    def __init__(self, fields):
        self._map = register_map(fields)
        members = {
            "i":       In(stream.Signature(HOST_REQUEST)),
            "o":       Out(stream.Signature(HOST_RESPONSE)),
            "done":    In(1),
            "running": Out(1),
        }
        for f in fields:
            if f.name in members or f.name.endswith("_we") and f.name[:-3] in self._map:
                raise ValueError(f"register field name {f.name!r} clashes with a port")
            members[f.name] = Out(f.width) if f.writable else In(f.width)
            if f.writable:
                members[f.name + "_we"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        req = self.i.payload
        rsp_valid = Signal()
        rsp = Signal(HOST_RESPONSE)
        m.d.comb += [self.o.valid.eq(rsp_valid), self.o.payload.eq(rsp)]
        with m.If(self.o.ready):
            m.d.sync += rsp_valid.eq(0)

        for name, (_, f) in self._map.items():
            if f.writable:
                m.d.sync += getattr(self, name + "_we").eq(0)

        remaining = Signal(64)
        elapsed = Signal(64)
        with m.FSM(name="host"):
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(~rsp_valid)
                with m.If(self.i.valid & ~rsp_valid):
                    m.d.sync += [rsp.data.eq(0), rsp.status.eq(STATUS_UNMAPPED)]
                    with m.Switch(req.op):
                        with m.Case(HostOp.READ):
                            m.d.sync += rsp_valid.eq(1)
                            self._read(m, req.addr, rsp)
                        with m.Case(HostOp.WRITE):
                            m.d.sync += rsp_valid.eq(1)
                            self._write(m, req.addr, req.data, rsp)
                        with m.Case(HostOp.RUN):
                            m.d.sync += [remaining.eq(req.data), elapsed.eq(0)]
                            m.next = "RUN"
                        with m.Default():
                            m.d.sync += rsp_valid.eq(1)
            with m.State("RUN"):
                m.d.comb += self.running.eq(1)
                with m.If(self.done | (remaining == 0)):
                    m.d.sync += [rsp_valid.eq(1), rsp.data.eq(elapsed),
                                 rsp.status.eq(self.done)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [remaining.eq(remaining - 1), elapsed.eq(elapsed + 1)]
        return m

    def _read(self, m, addr, rsp):
        with m.Switch(addr):
            for name, (base, f) in self._map.items():
                sig = getattr(self, name)
                for w in range(f.words):
                    with m.Case(base + w):
                        m.d.sync += [rsp.data.eq(sig[64 * w:64 * (w + 1)]), rsp.status.eq(0)]

    def _write(self, m, addr, value, rsp):
        with m.Switch(addr):
            for name, (base, f) in self._map.items():
                if not f.writable:
                    continue
                sig = getattr(self, name)
                for w in range(f.words):
                    with m.Case(base + w):
                        chunk = sig[64 * w:min(64 * (w + 1), f.width)]
                        m.d.sync += [chunk.eq(value[:len(chunk)]), rsp.status.eq(0),
                                     getattr(self, name + "_we").eq(1)]
