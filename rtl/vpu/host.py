"""The vector engine with its memories, behind one request/response stream (the block's host port).

:class:`VpuHost` is the unit the block-level regression and the benchmark take: a
:class:`~.engine.VectorEngine`, a :class:`~rtl.memory.Scratchpad` and an
:class:`~rtl.memory.Accumulator`, reached through a stream of :func:`host_op_layout` requests,
each answered by exactly one :func:`host_resp_layout` response, in order.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ..layouts import VPU_COMMAND, Status
from ..memory import Accumulator, Scratchpad
from .engine import VPU_COUNTERS, VectorEngine


__all__ = ["VpuHostOp", "host_data_width", "host_op_layout", "host_resp_layout", "VpuHost"]


class VpuHostOp(enum.Enum, shape=3):
    """Requests of the host port."""
    #: Write scratchpad line ``addr`` (a byte address, line-aligned) with ``data``.
    SPAD_WRITE = 0
    #: Write accumulator row ``addr`` with ``data`` (C words).
    ACC_WRITE  = 1
    #: Read accumulator row ``addr``; the response carries it.
    ACC_READ   = 2
    #: Run the vector-unit command in ``data`` (``VPU_COMMAND``); the response comes when it
    #: completes, its status in ``status`` and its FP flags in ``data``.
    VPU        = 3
    #: Read the performance counters (``VPU_COUNTERS``) into ``data``.
    COUNTERS   = 4
    #: Read scratchpad line ``addr`` (a byte address, line-aligned).
    SPAD_READ  = 5
    #: Read the sticky FP flags into ``data`` and clear them.
    FLAGS      = 6


def host_data_width(cfg):
    """Width of the ``data`` field of the host port for ``cfg``."""
    bits = max(8 * cfg.spad_line_bytes, 32 * cfg.mxu_cols, VPU_COMMAND.size, VPU_COUNTERS.size)
    return -(-bits // 32) * 32


def host_op_layout(cfg):
    return data.StructLayout({"op": VpuHostOp, "addr": 32, "data": host_data_width(cfg)})


def host_resp_layout(cfg):
    return data.StructLayout({"status": Status, "data": host_data_width(cfg)})


class VpuHost(wiring.Component):
    """Vector engine, scratchpad and accumulator behind a request/response host port.

    Parameters
    ----------
    cfg : ChipConfig
    shared_lane : bool
        One shared Verilog module for the lanes (Verilog generation).

    Members
    -------
    i : ``In(stream.Signature(host_op_layout(cfg)))``
        Requests. An unknown op gets ``BAD_OPCODE``; an address outside its memory or a
        scratchpad address that is not line-aligned gets ``ADDR_RANGE``/``ADDR_ALIGN`` and
        touches nothing.
    o : ``Out(stream.Signature(host_resp_layout(cfg)))``
        One response per request, in order.
    """

    def __init__(self, cfg, *, shared_lane=False):
        self._cfg = cfg
        self._spad = Scratchpad(line_bytes=cfg.spad_line_bytes, lines=cfg.spad_lines,
                                banks=cfg.spad_banks, read_ports=2, write_ports=2)
        self._acc = Accumulator(cols=cfg.mxu_cols, rows=cfg.acc_rows, banks=cfg.acc_banks)
        self._engine = VectorEngine(cfg, spad_addr_width=self._spad.addr_width,
                                    acc_addr_width=self._acc.addr_width, shared_lane=shared_lane)
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
        wiring.connect(m, engine.spad_read, spad.read[0])
        wiring.connect(m, engine.spad_write, spad.write[1])
        wiring.connect(m, engine.acc_read, acc.read[0])
        wiring.connect(m, engine.acc_write, acc.write[0])

        req = Signal(host_op_layout(cfg))
        line_shift = cfg.spad_line_bytes.bit_length() - 1
        resp = self.o.payload
        host_read = spad.read[1]

        with m.FSM(name="host"):
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [req.eq(self.i.payload), resp.status.eq(Status.SUCCESS),
                                 resp.data.eq(0)]
                    m.next = "EXEC"
            with m.State("EXEC"):
                with m.Switch(req.op):
                    with m.Case(VpuHostOp.SPAD_WRITE, VpuHostOp.SPAD_READ):
                        with m.If(req.addr[:line_shift] != 0):
                            m.d.sync += resp.status.eq(Status.ADDR_ALIGN)
                            m.next = "RESPOND"
                        with m.Elif(req.addr >= cfg.spad_bytes):
                            m.d.sync += resp.status.eq(Status.ADDR_RANGE)
                            m.next = "RESPOND"
                        with m.Elif(req.op == VpuHostOp.SPAD_WRITE):
                            m.d.comb += [
                                spad.write[0].valid.eq(1),
                                spad.write[0].payload.addr.eq(req.addr >> line_shift),
                                spad.write[0].payload.data.eq(req.data),
                                spad.write[0].payload.mask.eq(-1),
                            ]
                            m.next = "RESPOND"
                        with m.Else():
                            m.d.comb += [host_read.valid.eq(1),
                                         host_read.addr.eq(req.addr >> line_shift)]
                            with m.If(host_read.ready):
                                m.next = "SPAD_READ"
                    with m.Case(VpuHostOp.ACC_WRITE, VpuHostOp.ACC_READ):
                        with m.If(req.addr >= cfg.acc_rows):
                            m.d.sync += resp.status.eq(Status.ADDR_RANGE)
                            m.next = "RESPOND"
                        with m.Else():
                            m.d.comb += [
                                acc.host.valid.eq(1),
                                acc.host.payload.write.eq(req.op == VpuHostOp.ACC_WRITE),
                                acc.host.payload.row.eq(req.addr),
                                acc.host.payload.data.eq(req.data),
                                acc.host.payload.mask.eq(-1),
                            ]
                            with m.If(req.op == VpuHostOp.ACC_READ):
                                m.next = "ACC_READ"
                            with m.Else():
                                m.next = "RESPOND"
                    with m.Case(VpuHostOp.VPU):
                        m.d.comb += [
                            engine.cmd.valid.eq(1),
                            engine.cmd.payload.eq(req.data[:VPU_COMMAND.size]),
                        ]
                        with m.If(engine.cmd.ready):
                            m.next = "VPU"
                    with m.Case(VpuHostOp.COUNTERS):
                        m.d.sync += resp.data.eq(engine.counters)
                        m.next = "RESPOND"
                    with m.Case(VpuHostOp.FLAGS):
                        m.d.sync += resp.data.eq(engine.flags)
                        m.d.comb += engine.flags_clear.eq(1)
                        m.next = "RESPOND"
                    with m.Default():
                        m.d.sync += resp.status.eq(Status.BAD_OPCODE)
                        m.next = "RESPOND"
            with m.State("SPAD_READ"):
                m.d.sync += resp.data.eq(host_read.data)
                m.next = "RESPOND"
            with m.State("ACC_READ"):
                m.d.sync += resp.data.eq(acc.host_read)
                m.next = "RESPOND"
            with m.State("VPU"):
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
