"""The matrix engine with its memories, behind one request/response stream (the block's host port).

:class:`MxuHost` is the unit the block-level regression, the benchmark and FPGA builds take:
a :class:`~.engine.MatrixEngine`, a :class:`~rtl.memory.Scratchpad` and an
:class:`~rtl.memory.Accumulator`, reached through a stream of :func:`host_op_layout`
requests, each answered by exactly one :func:`host_resp_layout` response, in order.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ..layouts import MXU_COMMAND, Status
from ..memory import Accumulator, Scratchpad
from .engine import MXU_COUNTERS, MatrixEngine


__all__ = ["HostOp", "host_data_width", "host_op_layout", "host_resp_layout", "MxuHost"]


class HostOp(enum.Enum, shape=3):
    """Requests of the host port."""
    #: Write scratchpad line ``addr`` (a byte address, line-aligned) with ``data``.
    SPAD_WRITE = 0
    #: Write accumulator row ``addr`` with ``data`` (C words).
    ACC_WRITE  = 1
    #: Read accumulator row ``addr``; the response carries it.
    ACC_READ   = 2
    #: Run the matrix-engine command in ``data`` (``MXU_COMMAND``); the response comes when
    #: it completes, its status in ``status`` and its FP flags in ``data``.
    MXU        = 3
    #: Read the performance counters (``MXU_COUNTERS``) into ``data``.
    COUNTERS   = 4
    #: Test builds only: set the stall injection (``{seed, a_prob, o_prob}``) from ``data``.
    INJECT     = 5


def host_data_width(cfg):
    """Width of the ``data`` field of the host port for ``cfg``."""
    bits = max(8 * cfg.spad_line_bytes, 32 * cfg.mxu_cols, MXU_COMMAND.size, MXU_COUNTERS.size)
    return -(-bits // 32) * 32


def host_op_layout(cfg):
    return data.StructLayout({"op": HostOp, "addr": 32, "data": host_data_width(cfg)})


def host_resp_layout(cfg):
    return data.StructLayout({"status": Status, "data": host_data_width(cfg)})


class MxuHost(wiring.Component):
    """Matrix engine, scratchpad and accumulator behind a request/response host port.

    Parameters
    ----------
    cfg : ChipConfig
    stall_injection : bool
        Build the engine's stall injection and accept ``INJECT`` (test builds).
    shared_pe : bool
        One shared Verilog module for the PEs (Verilog generation; see ``SystolicArray``).

    Members
    -------
    i : ``In(stream.Signature(host_op_layout(cfg)))``
        Requests. An unknown op gets ``BAD_OPCODE``; an address outside its memory or a
        scratchpad address that is not line-aligned gets ``ADDR_RANGE``/``ADDR_ALIGN`` and
        writes nothing.
    o : ``Out(stream.Signature(host_resp_layout(cfg)))``
        One response per request, in order.
    """

    def __init__(self, cfg, *, stall_injection=False, shared_pe=False):
        self._cfg = cfg
        self._stall_injection = stall_injection
        self._spad = Scratchpad(line_bytes=cfg.spad_line_bytes, lines=cfg.spad_lines,
                                banks=cfg.spad_banks, read_ports=4)
        self._acc = Accumulator(cols=cfg.mxu_cols, rows=cfg.acc_rows, banks=cfg.acc_banks)
        self._engine = MatrixEngine(cfg, spad_addr_width=self._spad.addr_width,
                                    acc_addr_width=self._acc.addr_width,
                                    stall_injection=stall_injection, shared_pe=shared_pe)
        super().__init__({
            "i": In(stream.Signature(host_op_layout(cfg))),
            "o": Out(stream.Signature(host_resp_layout(cfg))),
        })

    @property
    def latency(self):
        return None

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        m.submodules.spad   = spad   = self._spad
        m.submodules.acc    = acc    = self._acc
        m.submodules.engine = engine = self._engine
        for n in range(4):
            wiring.connect(m, engine.spad[n], spad.read[n])
        wiring.connect(m, engine.acc_read, acc.read[0])
        wiring.connect(m, engine.acc_write, acc.write[0])

        req = Signal(host_op_layout(cfg))
        line_shift = cfg.spad_line_bytes.bit_length() - 1
        resp = self.o.payload

        if self._stall_injection:
            # No stalls until a test asks for them.
            inject = Signal(engine.inject.shape(), init={"seed": 1, "a_prob": 255, "o_prob": 255})
            m.d.comb += engine.inject.eq(inject)

        with m.FSM(name="host"):
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [req.eq(self.i.payload), resp.status.eq(Status.SUCCESS),
                                 resp.data.eq(0)]
                    m.next = "EXEC"
            with m.State("EXEC"):
                with m.Switch(req.op):
                    with m.Case(HostOp.SPAD_WRITE):
                        with m.If(req.addr[:line_shift] != 0):
                            m.d.sync += resp.status.eq(Status.ADDR_ALIGN)
                        with m.Elif(req.addr >= cfg.spad_bytes):
                            m.d.sync += resp.status.eq(Status.ADDR_RANGE)
                        with m.Else():
                            m.d.comb += [
                                spad.write[0].valid.eq(1),
                                spad.write[0].payload.addr.eq(req.addr >> line_shift),
                                spad.write[0].payload.data.eq(req.data),
                                spad.write[0].payload.mask.eq(-1),
                            ]
                        m.next = "RESPOND"
                    with m.Case(HostOp.ACC_WRITE, HostOp.ACC_READ):
                        with m.If(req.addr >= cfg.acc_rows):
                            m.d.sync += resp.status.eq(Status.ADDR_RANGE)
                            m.next = "RESPOND"
                        with m.Else():
                            m.d.comb += [
                                acc.host.valid.eq(1),
                                acc.host.payload.write.eq(req.op == HostOp.ACC_WRITE),
                                acc.host.payload.row.eq(req.addr),
                                acc.host.payload.data.eq(req.data),
                                acc.host.payload.mask.eq(-1),
                            ]
                            with m.If(req.op == HostOp.ACC_READ):
                                m.next = "ACC_READ"
                            with m.Else():
                                m.next = "RESPOND"
                    with m.Case(HostOp.MXU):
                        m.d.comb += [
                            engine.cmd.valid.eq(1),
                            engine.cmd.payload.eq(req.data[:MXU_COMMAND.size]),
                        ]
                        with m.If(engine.cmd.ready):
                            m.next = "MXU"
                    with m.Case(HostOp.COUNTERS):
                        m.d.sync += resp.data.eq(engine.counters)
                        m.next = "RESPOND"
                    with m.Case(HostOp.INJECT):
                        if self._stall_injection:
                            m.d.sync += inject.eq(req.data[:inject.shape().size])
                        else:
                            m.d.sync += resp.status.eq(Status.BAD_OPCODE)
                        m.next = "RESPOND"
                    with m.Default():
                        m.d.sync += resp.status.eq(Status.BAD_OPCODE)
                        m.next = "RESPOND"
            with m.State("ACC_READ"):
                m.d.sync += resp.data.eq(acc.host_read)
                m.next = "RESPOND"
            with m.State("MXU"):
                m.d.comb += engine.status.ready.eq(1)
                with m.If(engine.status.valid):
                    m.d.sync += [
                        resp.status.eq(engine.status.payload.status),
                        resp.data.eq(engine.status.payload.flags),
                    ]
                    m.next = "RESPOND"
            with m.State("RESPOND"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m
