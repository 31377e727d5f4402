"""One chip: HBM, DMA, scratchpad, accumulator, matrix engine, vector unit, command processor.

``docs/chip.md`` is the programmer's model. :class:`Chip` has the host port a driver uses (the
CSR bus, the bulk memory port and the interrupt); :class:`ChipHost` puts both behind one
request/response stream, the shape the regression harness drives in bulk.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .cmd.processor import CommandProcessor, CsrSignature
from .dma.engine import DmaEngine, dma_spad_ports
from .layouts import Status
from .memory import Accumulator, Scratchpad
from .memory.hbm import Hbm
from .mxu.engine import MatrixEngine
from .vpu.engine import VectorEngine


__all__ = ["mem_request_layout", "mem_response_layout", "Chip", "ChipHostOp",
           "chip_host_request_layout", "chip_host_response_layout", "ChipHost"]


def _stripe(cfg):
    return cfg.hbm_channels * cfg.hbm_bytes_per_cycle


def mem_request_layout(cfg):
    """A bulk memory access: one HBM stripe at byte address ``addr`` (stripe-aligned)."""
    s = _stripe(cfg)
    return data.StructLayout({"write": 1, "addr": 64, "data": 8 * s, "mask": s})


def mem_response_layout(cfg):
    """Its answer: the stripe (reads) and ``SUCCESS``, ``ADDR_ALIGN`` or ``ADDR_RANGE``."""
    return data.StructLayout({"status": Status, "data": 8 * _stripe(cfg)})


class Chip(wiring.Component):
    """One M890 chip.

    Parameters
    ----------
    cfg : ChipConfig
    hbm_storage : ``"verilog"`` or ``"memory"``
        The HBM channel storage: the Verilog behavioural model (generated Verilog) or an
        Amaranth ``Memory`` (Amaranth simulation of small capacities).
    shared_units : bool
        Emit the PE and the vector lane as shared Verilog modules.

    Members
    -------
    csr : ``In(CsrSignature())``
        The CSR bus.
    mem_req : ``In(stream.Signature(mem_request_layout(cfg)))``
        Bulk HBM accesses; ``mem_resp`` answers each, in order.
    irq : ``Out(1)``
        The interrupt.
    busy : ``Out(1)``
        A queue has work or a unit is busy.
    """

    def __init__(self, cfg, *, hbm_storage="verilog", shared_units=True):
        self._cfg = cfg
        k = dma_spad_ports(cfg)
        self._spad = Scratchpad(line_bytes=cfg.spad_line_bytes, lines=cfg.spad_lines,
                                banks=cfg.spad_banks, read_ports=5 + k, write_ports=1 + k)
        self._acc = Accumulator(cols=cfg.mxu_cols, rows=cfg.acc_rows, banks=cfg.acc_banks,
                                read_ports=2, write_ports=2)
        aw = dict(spad_addr_width=self._spad.addr_width, acc_addr_width=self._acc.addr_width)
        self._mxu = MatrixEngine(cfg, shared_pe=shared_units, **aw)
        self._vpu = VectorEngine(cfg, shared_lane=shared_units, **aw)
        self._dma = DmaEngine(cfg, spad_addr_width=self._spad.addr_width)
        self._cp = CommandProcessor(cfg)
        self._hbm = Hbm(cfg, ports=3, storage=hbm_storage)
        super().__init__({
            "csr":      In(CsrSignature()),
            "mem_req":  In(stream.Signature(mem_request_layout(cfg))),
            "mem_resp": Out(stream.Signature(mem_response_layout(cfg))),
            "irq":      Out(1),
            "busy":     Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        m.submodules.spad = spad = self._spad
        m.submodules.acc  = acc  = self._acc
        m.submodules.mxu  = mxu  = self._mxu
        m.submodules.vpu  = vpu  = self._vpu
        m.submodules.dma  = dma  = self._dma
        m.submodules.cp   = cp   = self._cp
        m.submodules.hbm  = hbm  = self._hbm
        k = dma_spad_ports(cfg)

        # Scratchpad: reads — matrix engine 0–3, vector unit 4, DMA 5…; writes — vector unit 0
        # (never waits), DMA 1….
        for n in range(4):
            wiring.connect(m, mxu.spad[n], spad.read[n])
        wiring.connect(m, vpu.spad_read, spad.read[4])
        wiring.connect(m, vpu.spad_write, spad.write[0])
        for n in range(k):
            wiring.connect(m, dma.spad_read[n], spad.read[5 + n])
            wiring.connect(m, dma.spad_write[n], spad.write[1 + n])
        # Accumulator: matrix engine port 0, vector unit port 1; the host side is unused.
        wiring.connect(m, mxu.acc_read, acc.read[0])
        wiring.connect(m, mxu.acc_write, acc.write[0])
        wiring.connect(m, vpu.acc_read, acc.read[1])
        wiring.connect(m, vpu.acc_write, acc.write[1])
        m.d.comb += acc.host.valid.eq(0)

        # HBM ports, by priority: command processor, DMA, host.
        wiring.connect(m, cp.hbm, hbm.port[0])
        wiring.connect(m, dma.hbm, hbm.port[1])
        wiring.connect(m, cp.dma_cmd, dma.cmd)
        wiring.connect(m, dma.status, cp.dma_status)
        wiring.connect(m, cp.mxu_cmd, mxu.cmd)
        wiring.connect(m, mxu.status, cp.mxu_status)
        wiring.connect(m, cp.vpu_cmd, vpu.cmd)
        wiring.connect(m, vpu.status, cp.vpu_status)
        m.d.comb += [
            dma.protect.eq(cp.protect),
            cp.dma_counters.eq(dma.counters),
            cp.mxu_counters.eq(mxu.counters),
            cp.vpu_counters.eq(vpu.counters),
            cp.hbm_counters.eq(hbm.counters),
            vpu.flags_clear.eq(0),
            self.irq.eq(cp.irq),
            self.busy.eq(cp.busy),
        ]
        wiring.connect(m, wiring.flipped(self.csr), cp.csr)

        # The bulk memory port: every request is answered hbm_latency cycles after it is taken
        # (refused ones too, so the answers stay in order), through a FIFO with room reserved
        # for every request in flight.
        self._host_memory(m, hbm.port[2])
        return m

    def _host_memory(self, m, port):
        cfg = self._cfg
        stripe = _stripe(cfg)
        shift = stripe.bit_length() - 1
        lat = cfg.hbm_latency
        depth = lat + 4
        m.submodules.mem_fifo = fifo = SyncFIFOBuffered(
            width=mem_response_layout(cfg).size, depth=depth)
        req = self.mem_req.payload
        in_flight = Signal(range(depth + 1))
        refusal = Signal(8)
        with m.If(req.addr[:shift] != 0):
            m.d.comb += refusal.eq(Status.ADDR_ALIGN)
        with m.Elif(req.addr >= cfg.hbm_bytes):
            m.d.comb += refusal.eq(Status.ADDR_RANGE)
        room = (fifo.level + in_flight) < depth
        m.d.comb += [
            port.req.valid.eq(self.mem_req.valid & room & (refusal == 0)),
            port.req.payload.write.eq(req.write),
            port.req.payload.addr.eq(req.addr >> shift),
            port.req.payload.data.eq(req.data),
            # A read returns the whole stripe.
            port.req.payload.mask.eq(Mux(req.write, req.mask, -1)),
            self.mem_req.ready.eq(room & ((refusal != 0) | port.req.ready)),
        ]
        taken = self.mem_req.valid & self.mem_req.ready
        # Answers travel down a delay line of (valid, is-read, status), lat cycles long.
        line = [Signal(data.StructLayout({"valid": 1, "read": 1, "status": 8}),
                       name=f"mem_delay{i}") for i in range(lat)]
        m.d.sync += [
            line[0].valid.eq(taken),
            line[0].read.eq(~req.write & (refusal == 0)),
            line[0].status.eq(refusal),
        ]
        for a, b in zip(line, line[1:]):
            m.d.sync += b.eq(a)
        out = line[-1]
        entry = data.View(mem_response_layout(cfg), fifo.w_data)
        m.d.comb += [
            fifo.w_en.eq(out.valid),
            entry.status.eq(out.status),
            entry.data.eq(Mux(out.read, port.resp_data, 0)),
        ]
        with m.If(taken & ~out.valid):
            m.d.sync += in_flight.eq(in_flight + 1)
        with m.Elif(~taken & out.valid):
            m.d.sync += in_flight.eq(in_flight - 1)
        m.d.comb += [
            self.mem_resp.valid.eq(fifo.r_rdy),
            self.mem_resp.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.mem_resp.ready),
        ]


class ChipHostOp(enum.Enum, shape=3):
    """Requests of :class:`ChipHost`."""
    #: Write the stripe at ``addr`` with ``data`` under ``mask``.
    MEM_WRITE = 0
    #: Read the stripe at ``addr``.
    MEM_READ  = 1
    #: Write ``data[:32]`` to CSR ``addr``.
    CSR_WRITE = 2
    #: Read CSR ``addr``.
    CSR_READ  = 3
    #: Answer once the interrupt line is high.
    WAIT_IRQ  = 4
    #: Answer once no queue has work and every unit is idle.
    WAIT_IDLE = 5


def _host_width(cfg):
    return max(8 * _stripe(cfg), 32)


def chip_host_request_layout(cfg):
    w = _host_width(cfg)
    return data.StructLayout({"op": ChipHostOp, "addr": 64, "data": w, "mask": w // 8})


def chip_host_response_layout(cfg):
    return data.StructLayout({"status": Status, "data": _host_width(cfg)})


class ChipHost(wiring.Component):
    """A :class:`Chip` behind one request stream ``i`` and one response stream ``o``.

    Memory requests are pipelined; a CSR or wait request waits until every earlier memory
    request has been answered, so answers come in request order and a doorbell written after
    a descriptor always finds it in HBM.
    """

    def __init__(self, cfg, **chip_kwargs):
        self._cfg = cfg
        self._chip = Chip(cfg, **chip_kwargs)
        super().__init__({
            "i": In(stream.Signature(chip_host_request_layout(cfg))),
            "o": Out(stream.Signature(chip_host_response_layout(cfg))),
        })

    @property
    def latency(self):
        return None

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        m.submodules.chip = chip = self._chip
        stripe = _stripe(cfg)
        req = self.i.payload
        is_mem = (req.op == ChipHostOp.MEM_WRITE) | (req.op == ChipHostOp.MEM_READ)
        outstanding = Signal(range(cfg.hbm_latency + 8))
        mem_taken = chip.mem_req.valid & chip.mem_req.ready
        mem_answered = chip.mem_resp.valid & chip.mem_resp.ready
        with m.If(mem_taken & ~mem_answered):
            m.d.sync += outstanding.eq(outstanding + 1)
        with m.Elif(~mem_taken & mem_answered):
            m.d.sync += outstanding.eq(outstanding - 1)

        m.d.comb += [
            chip.mem_req.payload.write.eq(req.op == ChipHostOp.MEM_WRITE),
            chip.mem_req.payload.addr.eq(req.addr),
            chip.mem_req.payload.data.eq(req.data[:8 * stripe]),
            chip.mem_req.payload.mask.eq(req.mask[:stripe]),
            chip.csr.req.payload.write.eq(req.op == ChipHostOp.CSR_WRITE),
            chip.csr.req.payload.addr.eq(req.addr),
            chip.csr.req.payload.data.eq(req.data[:32]),
        ]
        # Memory answers go straight out.
        m.d.comb += [
            self.o.valid.eq(chip.mem_resp.valid),
            self.o.payload.status.eq(chip.mem_resp.payload.status),
            self.o.payload.data.eq(chip.mem_resp.payload.data),
            chip.mem_resp.ready.eq(self.o.ready),
        ]
        answer = Signal(chip_host_response_layout(cfg))
        with m.FSM(name="host"):
            with m.State("IDLE"):
                with m.If(self.i.valid & is_mem):
                    m.d.comb += [chip.mem_req.valid.eq(1), self.i.ready.eq(chip.mem_req.ready)]
                with m.Elif(self.i.valid & (outstanding == 0) & ~chip.mem_resp.valid):
                    with m.Switch(req.op):
                        with m.Case(ChipHostOp.CSR_WRITE, ChipHostOp.CSR_READ):
                            m.d.comb += chip.csr.req.valid.eq(1)
                            with m.If(chip.csr.req.ready):
                                m.d.comb += self.i.ready.eq(1)
                                m.next = "CSR"
                        with m.Case(ChipHostOp.WAIT_IRQ):
                            with m.If(chip.irq):
                                m.d.comb += self.i.ready.eq(1)
                                m.d.sync += [answer.status.eq(Status.SUCCESS), answer.data.eq(0)]
                                m.next = "ANSWER"
                        with m.Case(ChipHostOp.WAIT_IDLE):
                            with m.If(~chip.busy):
                                m.d.comb += self.i.ready.eq(1)
                                m.d.sync += [answer.status.eq(Status.SUCCESS), answer.data.eq(0)]
                                m.next = "ANSWER"
                        with m.Default():
                            m.d.comb += self.i.ready.eq(1)
                            m.d.sync += [answer.status.eq(Status.BAD_OPCODE), answer.data.eq(0)]
                            m.next = "ANSWER"
            with m.State("CSR"):
                m.d.comb += chip.csr.resp.ready.eq(1)
                with m.If(chip.csr.resp.valid):
                    m.d.sync += [answer.status.eq(chip.csr.resp.payload.status),
                                 answer.data.eq(chip.csr.resp.payload.data)]
                    m.next = "ANSWER"
            with m.State("ANSWER"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(answer),
                             chip.mem_resp.ready.eq(0)]
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m

