"""The command processor: descriptor rings in HBM, unit queues, completions, CSRs, interrupt.

``docs/chip.md`` is the contract. The pieces:

* a **fetch engine** reads descriptors of every enabled queue from HBM, round-robin, into one
  prefetch FIFO per queue (``queue_depth`` entries), so a queue's next descriptor is on chip
  while the current one runs;
* one **executor** per queue takes its descriptors in order: header checks, then a unit command
  (DMA, GEMM, VPU) through that unit's arbiter, or a control operation it does itself (SIGNAL,
  WAIT with its timeout, WRITE, NOP);
* a shared **writer** puts WRITE values and completions into HBM;
* the **CSR block** decodes the bus from the table of ``rtl/cmd/regs.py``.

Every error — a descriptor's status or a refused CSR access — is latched in ``ERR_STATUS``
(first one; later ones set ``overflow``) and raises ``IRQ_STATUS.error``.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..dma.engine import DMA_COUNTERS, DMA_STATUS, REGION
from ..layouts import (COMPLETION, CPL_BYTES, DESC_BODIES, DESC_BYTES, DESCRIPTOR,
                       DMA_COMMAND, MAX_RING_LOG2, MXU_COMMAND, MXU_STATUS, QUEUES, SEM_COMMAND,
                       SEMAPHORES, VPU_COMMAND, VPU_STATUS, WRITE_COMMAND, DescFlags, Opcode,
                       Status)
from ..memory.hbm import HBM_CHANNEL_COUNTERS, HbmPortSignature
from ..mxu.engine import MXU_COUNTERS
from ..vpu.engine import VPU_COUNTERS
from .regs import (COUNTER_BASE as COUNTER_BASE_ADDR, CSR_ERR_QUEUE, COUNTERS, DEFAULT_WAIT_TIMEOUT,
                   HBM_COUNTERS, Access, QueueState,
                   register_map)


__all__ = ["CSR_REQUEST", "CSR_RESPONSE", "CsrSignature", "CommandProcessor"]


#: A CSR access.
CSR_REQUEST = data.StructLayout({"write": 1, "addr": 32, "data": 32})
#: Its answer: the register (reads) and ``SUCCESS`` or the refusal (docs/chip.md).
CSR_RESPONSE = data.StructLayout({"data": 32, "status": Status})


class CsrSignature(wiring.Signature):
    """The CSR bus, seen from the host: one response per request, in order."""

    def __init__(self):
        super().__init__({
            "req":  Out(stream.Signature(CSR_REQUEST)),
            "resp": In(stream.Signature(CSR_RESPONSE)),
        })


def _log2(x):
    return x.bit_length() - 1


def _round_robin(m, requests, start, name):
    """The index of the first set bit of ``requests`` at or after ``start`` (comb)."""
    n = len(requests)
    choice = Signal(range(n), name=f"{name}_choice")
    if n == 1:
        return choice
    rotated = Signal(n, name=f"{name}_rotated")
    with m.Switch(start):
        for k in range(n):
            with m.Case(k):
                m.d.comb += rotated.eq(Cat(requests[k:], requests[:k]) if k else requests)
    offset = Signal(range(n), name=f"{name}_offset")
    for k in reversed(range(n)):
        with m.If(rotated[k]):
            m.d.comb += offset.eq(k)
    total = Signal(range(2 * n), name=f"{name}_total")
    m.d.comb += [total.eq(start + offset),
                 choice.eq(Mux(total >= n, total - n, total))]
    return choice


class _Unit:
    """One unit as the queues see it: its command and status streams and its arbiter."""

    def __init__(self, name, opcode, cmd, status):
        self.name = name
        self.opcode = opcode
        self.cmd = cmd
        self.status = status
        self.busy = Signal(name=f"{name}_busy")     # owned by a queue
        self.owner = Signal(range(QUEUES), name=f"{name}_owner")
        self.sent = Signal(name=f"{name}_sent")     # the owner's command was taken
        self.asks = Signal(QUEUES, name=f"{name}_asks")
        self.rr = Signal(range(QUEUES), name=f"{name}_rr")


class CommandProcessor(wiring.Component):
    """Descriptor rings, unit queues, completions, CSRs and the interrupt of one chip.

    Parameters
    ----------
    cfg : ChipConfig

    Members
    -------
    csr : ``In(CsrSignature())``
        The CSR bus.
    hbm : ``Out(HbmPortSignature(cfg))``
        Descriptor reads, completion and WRITE writes.
    dma_cmd, mxu_cmd, vpu_cmd : ``Out(stream.Signature(...))``
        Commands to the units; their statuses come back on ``dma_status``, ``mxu_status``,
        ``vpu_status``.
    protect : ``Out(ArrayLayout(REGION, 2·QUEUES))``
        The rings of the enabled queues, which a DMA store must not touch.
    dma_counters, mxu_counters, vpu_counters, hbm_counters : ``In(...)``
        The units' performance counters, read through the CSRs.
    irq : ``Out(1)``
        The interrupt line.
    busy : ``Out(1)``
        A queue has work (or is resetting) or a unit is busy.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        self._regs = register_map(cfg)
        super().__init__({
            "csr":          In(CsrSignature()),
            "hbm":          Out(HbmPortSignature(cfg)),
            "dma_cmd":      Out(stream.Signature(DMA_COMMAND)),
            "dma_status":   In(stream.Signature(DMA_STATUS)),
            "mxu_cmd":      Out(stream.Signature(MXU_COMMAND)),
            "mxu_status":   In(stream.Signature(MXU_STATUS)),
            "vpu_cmd":      Out(stream.Signature(VPU_COMMAND)),
            "vpu_status":   In(stream.Signature(VPU_STATUS)),
            "protect":      Out(data.ArrayLayout(REGION, 2 * QUEUES)),
            "dma_counters": In(DMA_COUNTERS),
            "mxu_counters": In(MXU_COUNTERS),
            "vpu_counters": In(VPU_COUNTERS),
            "hbm_counters": In(data.ArrayLayout(HBM_CHANNEL_COUNTERS, cfg.hbm_channels)),
            "irq":          Out(1),
            "busy":         Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        stripe = cfg.hbm_channels * cfg.hbm_bytes_per_cycle
        stripe_shift = _log2(stripe)
        depth = cfg.queue_depth

        # -- Queue registers (CSR state) ---------------------------------------------------
        sq_base  = [Signal(64, name=f"q{q}_sq_base") for q in range(QUEUES)]
        cq_base  = [Signal(64, name=f"q{q}_cq_base") for q in range(QUEUES)]
        size_log2 = [Signal(range(MAX_RING_LOG2 + 1), name=f"q{q}_size_log2")
                     for q in range(QUEUES)]
        enable   = [Signal(name=f"q{q}_enable") for q in range(QUEUES)]
        tail     = [Signal(32, name=f"q{q}_tail") for q in range(QUEUES)]
        head     = [Signal(32, name=f"q{q}_head") for q in range(QUEUES)]
        fetched  = [Signal(32, name=f"q{q}_fetched") for q in range(QUEUES)]
        resetting = [Signal(name=f"q{q}_resetting") for q in range(QUEUES)]
        state    = [Signal(3, name=f"q{q}_state") for q in range(QUEUES)]
        sems     = Array(Signal(32, name=f"sem{s}") for s in range(SEMAPHORES))
        wait_timeout = Signal(32, init=DEFAULT_WAIT_TIMEOUT)
        irq_status = Signal(2)
        irq_enable = Signal(2)
        flags_sticky = Signal(3)
        err_valid = Signal()
        err_overflow = Signal()
        err_code = Signal(8)
        err_queue = Signal(4)
        err_csr = Signal()
        err_index = Signal(32)
        err_addr = Signal(64)

        def ring_slots(q):
            return Const(1, MAX_RING_LOG2 + 1) << size_log2[q]

        for q in range(QUEUES):
            sq_bytes = Signal(64, name=f"q{q}_sq_bytes")
            cq_bytes = Signal(64, name=f"q{q}_cq_bytes")
            m.d.comb += [
                sq_bytes.eq(Const(DESC_BYTES, 64) << size_log2[q]),
                cq_bytes.eq(Const(CPL_BYTES, 64) << size_log2[q]),
                self.protect[2 * q].lo.eq(sq_base[q]),
                self.protect[2 * q].hi.eq(sq_base[q] + sq_bytes),
                self.protect[2 * q].valid.eq(enable[q]),
                self.protect[2 * q + 1].lo.eq(cq_base[q]),
                self.protect[2 * q + 1].hi.eq(cq_base[q] + cq_bytes),
                self.protect[2 * q + 1].valid.eq(enable[q]),
            ]

        # -- HBM port: the writer has priority over the fetch engine ---------------------------
        wr_req = stream.Signature(self.hbm.req.payload.shape()).flip().create(path=("wr_req",))
        rd_req = stream.Signature(self.hbm.req.payload.shape()).flip().create(path=("rd_req",))
        with m.If(wr_req.valid):
            m.d.comb += [self.hbm.req.payload.eq(wr_req.payload),
                         self.hbm.req.valid.eq(1),
                         wr_req.ready.eq(self.hbm.req.ready)]
        with m.Else():
            m.d.comb += [self.hbm.req.payload.eq(rd_req.payload),
                         self.hbm.req.valid.eq(rd_req.valid),
                         rd_req.ready.eq(self.hbm.req.ready)]

        # -- Fetch engine --------------------------------------------------------------------
        fifos = []
        inflight = [Signal(range(depth + 1), name=f"q{q}_inflight") for q in range(QUEUES)]
        for q in range(QUEUES):
            fifo = SyncFIFOBuffered(width=DESCRIPTOR.size, depth=depth)
            m.submodules[f"q{q}_fifo"] = fifo
            fifos.append(fifo)

        parts = max(1, DESC_BYTES // stripe)
        per_stripe = max(1, stripe // DESC_BYTES)
        tag_layout = data.StructLayout({"queue": range(QUEUES), "last": 1,
                                        "sel": range(max(2, per_stripe))})
        m.submodules.fetch_tags = tags = SyncFIFO(width=tag_layout.size,
                                                  depth=cfg.hbm_latency + 2)
        f_queue = Signal(range(QUEUES))
        f_addr = Signal(64)          # byte address of the part being fetched
        f_part = Signal(range(max(2, parts)))
        f_active = Signal()
        rr = Signal(range(QUEUES))

        want = Signal(QUEUES)
        for q in range(QUEUES):
            room = (fifos[q].level + inflight[q]) < depth
            m.d.comb += want[q].eq(enable[q] & ~resetting[q] & (fetched[q] != tail[q]) & room)

        inflight_inc = Signal(QUEUES)
        inflight_dec = Signal(QUEUES)
        with m.If(~f_active & want.any()):
            choice = _round_robin(m, want, rr, "fetch")
            slot = Signal(32)
            m.d.comb += slot.eq(Array(fetched)[choice]
                                & ((Const(1, 33) << Array(size_log2)[choice]) - 1))
            m.d.sync += [
                f_active.eq(1),
                f_queue.eq(choice),
                f_addr.eq(Array(sq_base)[choice] + (slot << _log2(DESC_BYTES))),
                f_part.eq(0),
                rr.eq(Mux(choice == QUEUES - 1, 0, choice + 1)),
            ]
            m.d.comb += inflight_inc.eq(1 << choice)
            for q in range(QUEUES):
                with m.If(choice == q):
                    m.d.sync += fetched[q].eq(fetched[q] + 1)

        f_tag = data.View(tag_layout, tags.w_data)
        m.d.comb += [
            rd_req.valid.eq(f_active & tags.w_rdy),
            rd_req.payload.write.eq(0),
            rd_req.payload.addr.eq(f_addr >> stripe_shift),
            f_tag.queue.eq(f_queue),
            f_tag.last.eq(f_part == parts - 1),
            tags.w_en.eq(rd_req.valid & rd_req.ready),
        ]
        if per_stripe > 1:
            m.d.comb += [
                f_tag.sel.eq(f_addr[_log2(DESC_BYTES):stripe_shift]),
                rd_req.payload.mask.eq(
                    Const((1 << DESC_BYTES) - 1, stripe) << (f_tag.sel * DESC_BYTES)),
            ]
        else:
            m.d.comb += rd_req.payload.mask.eq(-1)
        with m.If(rd_req.valid & rd_req.ready):
            m.d.sync += [f_part.eq(f_part + 1), f_addr.eq(f_addr + stripe)]
            with m.If(f_part == parts - 1):
                m.d.sync += f_active.eq(0)

        # Responses, in request order.
        r_tag = data.View(tag_layout, tags.r_data)
        assembly = Signal(DESCRIPTOR.size)
        arrived = Signal(DESCRIPTOR.size)
        if per_stripe > 1:
            with m.Switch(r_tag.sel):
                for s in range(per_stripe):
                    with m.Case(s):
                        m.d.comb += arrived.eq(self.hbm.resp_data.word_select(s, DESCRIPTOR.size))
        elif parts > 1:
            m.d.comb += arrived.eq(Cat(assembly[8 * stripe:], self.hbm.resp_data))
            with m.If(self.hbm.resp_valid):
                m.d.sync += assembly.eq(arrived)
        else:
            m.d.comb += arrived.eq(self.hbm.resp_data)
        m.d.comb += tags.r_en.eq(self.hbm.resp_valid)
        for q in range(QUEUES):
            push = self.hbm.resp_valid & r_tag.last & (r_tag.queue == q)
            m.d.comb += [fifos[q].w_en.eq(push), fifos[q].w_data.eq(arrived),
                         inflight_dec[q].eq(push)]
        for q in range(QUEUES):
            with m.Switch(Cat(inflight_inc[q], inflight_dec[q])):
                with m.Case(0b01):
                    m.d.sync += inflight[q].eq(inflight[q] + 1)
                with m.Case(0b10):
                    m.d.sync += inflight[q].eq(inflight[q] - 1)

        # -- Units ---------------------------------------------------------------------------
        units = [
            _Unit("dma", Opcode.DMA, self.dma_cmd, self.dma_status),
            _Unit("mxu", Opcode.GEMM, self.mxu_cmd, self.mxu_status),
            _Unit("vpu", Opcode.VPU, self.vpu_cmd, self.vpu_status),
        ]
        for unit in units:
            with m.If(~unit.busy & unit.asks.any()):
                choice = _round_robin(m, unit.asks, unit.rr, unit.name)
                m.d.sync += [unit.busy.eq(1), unit.owner.eq(choice), unit.sent.eq(0),
                             unit.rr.eq(Mux(choice == QUEUES - 1, 0, choice + 1))]
            with m.If(unit.cmd.valid & unit.cmd.ready):
                m.d.sync += unit.sent.eq(1)
            m.d.comb += unit.status.ready.eq(unit.busy & unit.sent)
            with m.If(unit.status.valid & unit.status.ready):
                m.d.sync += unit.busy.eq(0)

        # -- The shared writer (WRITE values and completions) --------------------------------
        # A write is 8 or 16 bytes at an address aligned to its size: one request when a stripe
        # holds 16 bytes, else one per stripe it covers.
        chunk = min(stripe, CPL_BYTES)
        w_parts = CPL_BYTES // chunk
        w_req_valid = Signal(QUEUES)
        w_addr = [Signal(64, name=f"q{q}_w_addr") for q in range(QUEUES)]
        w_data = [Signal(8 * CPL_BYTES, name=f"q{q}_w_data") for q in range(QUEUES)]
        w_bytes = [Signal(range(CPL_BYTES + 1), name=f"q{q}_w_bytes") for q in range(QUEUES)]
        w_done = Signal(QUEUES)
        w_grant = Signal(range(QUEUES))
        for q in reversed(range(QUEUES)):
            with m.If(w_req_valid[q]):
                m.d.comb += w_grant.eq(q)
        w_part = Signal(range(max(2, w_parts)))
        g_addr = Signal(64)
        g_data = Signal(8 * CPL_BYTES)
        g_bytes = Signal(range(CPL_BYTES + 1))
        m.d.comb += [g_addr.eq(Array(w_addr)[w_grant]), g_data.eq(Array(w_data)[w_grant]),
                     g_bytes.eq(Array(w_bytes)[w_grant])]
        part_addr = Signal(64)
        m.d.comb += part_addr.eq(g_addr + w_part * chunk)
        byte_mask = Signal(CPL_BYTES)
        m.d.comb += byte_mask.eq((Const(1, CPL_BYTES + 1) << g_bytes) - 1)
        if stripe >= CPL_BYTES:
            off = Signal(range(stripe))
            m.d.comb += [
                off.eq(part_addr[:stripe_shift]),
                wr_req.payload.data.eq(g_data << (off * 8)),
                wr_req.payload.mask.eq(byte_mask << off),
            ]
        else:
            with m.Switch(w_part):
                for k in range(w_parts):
                    with m.Case(k):
                        m.d.comb += [
                            wr_req.payload.data.eq(g_data.word_select(k, 8 * stripe)),
                            wr_req.payload.mask.eq(byte_mask.word_select(k, stripe)),
                        ]
        m.d.comb += [
            wr_req.valid.eq(w_req_valid.any()),
            wr_req.payload.write.eq(1),
            wr_req.payload.addr.eq(part_addr >> stripe_shift),
        ]
        with m.If(wr_req.valid & wr_req.ready):
            with m.If((w_part == w_parts - 1) | (g_bytes <= (w_part + 1) * chunk)):
                m.d.sync += w_part.eq(0)
                m.d.comb += w_done.eq(1 << w_grant)
            with m.Else():
                m.d.sync += w_part.eq(w_part + 1)

        # -- Executors -----------------------------------------------------------------------
        sem_add = Signal(32)
        sem_add_valid = Signal()
        sem_add_index = Signal(range(SEMAPHORES))
        completions = []

        for q in range(QUEUES):
            desc = Signal(DESCRIPTOR, name=f"q{q}_desc")
            hdr = desc.header
            op = hdr.op
            status = Signal(8, name=f"q{q}_status")
            cflags = Signal(3, name=f"q{q}_flags")
            timer = Signal(32, name=f"q{q}_timer")
            fifo = fifos[q]
            done = Signal(name=f"q{q}_done")
            completions.append((done, status, cflags, hdr.flags[0]))
            slot = Signal(32, name=f"q{q}_slot")
            m.d.comb += slot.eq(head[q] & ((Const(1, 33) << size_log2[q]) - 1))

            # Header and control-operation checks (docs/chip.md § Checks), on the latched
            # descriptor; the units check their own bodies.
            known = Signal(name=f"q{q}_known")
            tail_bits = Signal(name=f"q{q}_tail_bits")
            with m.Switch(op):
                for code in Opcode:
                    with m.Case(code):
                        m.d.comb += known.eq(1)
                        size = DESC_BODIES[code].size if code in DESC_BODIES else 0
                        m.d.comb += tail_bits.eq(desc.body[size:] != 0)
            sem_cmd = data.View(SEM_COMMAND, desc.body[:SEM_COMMAND.size])
            dma_cmd = data.View(DMA_COMMAND, desc.body[:DMA_COMMAND.size])
            wr_cmd = data.View(WRITE_COMMAND, desc.body[:WRITE_COMMAND.size])
            is_sem = Signal(name=f"q{q}_is_sem")
            m.d.comb += is_sem.eq((op == Opcode.SIGNAL) | (op == Opcode.WAIT))
            is_write = Signal(name=f"q{q}_is_write")
            m.d.comb += is_write.eq(op == Opcode.WRITE)
            wr_end = Signal(65, name=f"q{q}_wr_end")
            m.d.comb += wr_end.eq(wr_cmd.addr + 8)
            wr_overlap = Signal(name=f"q{q}_wr_overlap")
            m.d.comb += wr_overlap.eq(Cat(
                r.valid & (wr_cmd.addr < r.hi) & (wr_end > r.lo) for r in self.protect).any())
            reserved = Signal(name=f"q{q}_reserved")
            m.d.comb += reserved.eq(
                (hdr.reserved != 0) | ((hdr.flags & ~DescFlags.IRQ.value) != 0) | tail_bits
                | (is_sem & (sem_cmd.reserved != 0))
                | ((op == Opcode.DMA) & ((dma_cmd.reserved != 0)
                                         | (dma_cmd.store & dma_cmd.gather))))
            check = Signal(8, name=f"q{q}_check")
            with m.If(~known):
                m.d.comb += check.eq(Status.BAD_OPCODE)
            with m.Elif(reserved):
                m.d.comb += check.eq(Status.NONZERO_RESERVED)
            with m.Elif(is_sem & (sem_cmd.sem >= SEMAPHORES)):
                m.d.comb += check.eq(Status.INDEX_RANGE)
            with m.Elif(is_write & (wr_cmd.addr[:3] != 0)):
                m.d.comb += check.eq(Status.ADDR_ALIGN)
            with m.Elif(is_write & (wr_end > cfg.hbm_bytes)):
                m.d.comb += check.eq(Status.ADDR_RANGE)
            with m.Elif(is_write & wr_overlap):
                m.d.comb += check.eq(Status.OVERLAP)

            cpl = Signal(COMPLETION, name=f"q{q}_cpl")
            m.d.comb += [
                cpl.index.eq(head[q]),
                cpl.cookie.eq(hdr.cookie),
                cpl.status.eq(status),
                cpl.flags.eq(cflags),
                cpl.phase.eq(~(head[q] >> size_log2[q])[0]),
                cpl.queue.eq(q),
            ]
            sem_value = Signal(32, name=f"q{q}_sem_value")
            m.d.comb += sem_value.eq(sems[sem_cmd.sem[:_log2(SEMAPHORES)]])

            with m.FSM(name=f"q{q}"):
                with m.State("IDLE"):
                    m.d.comb += state[q].eq(QueueState.IDLE)
                    with m.If(resetting[q]):
                        m.next = "RESET"
                    with m.Elif(fifo.r_rdy):
                        m.d.comb += fifo.r_en.eq(1)
                        m.d.sync += [desc.eq(fifo.r_data), cflags.eq(0), timer.eq(0)]
                        m.next = "CHECK"
                with m.State("CHECK"):
                    m.d.comb += state[q].eq(QueueState.DISPATCH)
                    m.d.sync += status.eq(check)
                    with m.If(resetting[q]):
                        m.next = "RESET"
                    with m.Elif(check != Status.SUCCESS):
                        m.next = "COMPLETE"
                    with m.Else():
                        with m.Switch(op):
                            with m.Case(Opcode.DMA, Opcode.GEMM, Opcode.VPU):
                                m.next = "DISPATCH"
                            with m.Case(Opcode.WAIT):
                                m.next = "WAIT"
                            with m.Case(Opcode.WRITE):
                                m.next = "WRITE"
                            with m.Default():
                                m.next = "COMPLETE"
                with m.State("DISPATCH"):
                    m.d.comb += state[q].eq(QueueState.DISPATCH)
                    for unit in units:
                        with m.If(op == unit.opcode):
                            mine = unit.busy & (unit.owner == q)
                            # Once granted, the command is sent even by a resetting queue
                            # (the unit runs it to its end and the result is dropped).
                            m.d.comb += unit.asks[q].eq(~mine & ~resetting[q])
                            with m.If(~mine & resetting[q]):
                                m.next = "RESET"
                            with m.If(mine & ~unit.sent):
                                m.d.comb += [
                                    unit.cmd.valid.eq(1),
                                    unit.cmd.payload.eq(desc.body[:unit.cmd.payload.shape().size]),
                                ]
                                with m.If(unit.cmd.ready):
                                    m.next = "RUN"
                with m.State("RUN"):
                    m.d.comb += state[q].eq(Mux(resetting[q], QueueState.RESET, QueueState.RUN))
                    for unit in units:
                        with m.If((op == unit.opcode) & unit.busy & (unit.owner == q)
                                  & unit.status.valid):
                            m.d.sync += status.eq(unit.status.payload.status)
                            if "flags" in unit.status.payload.shape().members:
                                m.d.sync += cflags.eq(unit.status.payload.flags)
                            # A reset discards the result of a command that ran to its end.
                            with m.If(resetting[q]):
                                m.next = "RESET"
                            with m.Else():
                                m.next = "COMPLETE"
                with m.State("WAIT"):
                    m.d.comb += state[q].eq(QueueState.WAIT)
                    m.d.sync += timer.eq(timer + 1)
                    with m.If(resetting[q]):
                        m.next = "RESET"
                    with m.Elif(sem_value >= sem_cmd.value):
                        m.next = "COMPLETE"
                    with m.Elif(timer >= wait_timeout):
                        m.d.sync += status.eq(Status.TIMEOUT)
                        m.next = "COMPLETE"
                with m.State("WRITE"):
                    m.d.comb += [state[q].eq(QueueState.RUN), w_req_valid[q].eq(1),
                                 w_addr[q].eq(wr_cmd.addr), w_data[q].eq(wr_cmd.value),
                                 w_bytes[q].eq(8)]
                    with m.If(w_done[q]):
                        m.next = "COMPLETE"
                with m.State("COMPLETE"):
                    # A started completion is always finished, even by a resetting queue.
                    m.d.comb += [
                        state[q].eq(QueueState.COMPLETE),
                        w_req_valid[q].eq(1),
                        w_addr[q].eq(cq_base[q] + (slot << _log2(CPL_BYTES))),
                        w_data[q].eq(cpl),
                        w_bytes[q].eq(CPL_BYTES),
                    ]
                    with m.If(w_done[q]):
                        m.d.comb += done.eq(1)
                        m.d.sync += head[q].eq(head[q] + 1)
                        with m.If((op == Opcode.SIGNAL) & (status == Status.SUCCESS)):
                            m.d.comb += [sem_add_valid.eq(1), sem_add.eq(sem_cmd.value),
                                         sem_add_index.eq(sem_cmd.sem)]
                        m.next = "IDLE"
                with m.State("RESET"):
                    # Let the fetches in flight land, then drop every prefetched descriptor.
                    m.d.comb += [state[q].eq(QueueState.RESET), fifo.r_en.eq(1)]
                    with m.If((inflight[q] == 0) & ~fifo.r_rdy & ~(f_active & (f_queue == q))):
                        m.d.sync += [resetting[q].eq(0), head[q].eq(0), tail[q].eq(0),
                                     fetched[q].eq(0), enable[q].eq(0)]
                        m.next = "IDLE"

        # -- Completion bookkeeping (the writer completes at most one queue per cycle) --------
        any_done = Signal()
        done_status = Signal(8)
        done_flags = Signal(3)
        done_irq = Signal()
        done_queue = Signal(range(QUEUES))
        for q, (done, status, cflags, irqf) in enumerate(completions):
            with m.If(done):
                m.d.comb += [any_done.eq(1), done_status.eq(status), done_flags.eq(cflags),
                             done_irq.eq(irqf), done_queue.eq(q)]
        done_index = Signal(32)
        done_addr = Signal(64)
        m.d.comb += [
            done_index.eq(Array(head)[done_queue]),
            done_addr.eq(Array(sq_base)[done_queue]
                         + ((done_index & ((Const(1, 33) << Array(size_log2)[done_queue]) - 1))
                            << _log2(DESC_BYTES))),
        ]
        desc_error = Signal()
        m.d.comb += desc_error.eq(any_done & (done_status != Status.SUCCESS))

        # -- CSR block ---------------------------------------------------------------------
        csr_req = self.csr.req.payload
        resp_pending = Signal()
        resp = self.csr.resp.payload
        # A reset (Q_CTRL.reset, CTRL.soft_reset) answers once it is over, so the host's next
        # access finds the queue idle and disabled.
        any_resetting = Signal()
        m.d.comb += [
            any_resetting.eq(Cat(resetting).any()),
            self.csr.req.ready.eq(~resp_pending),
            self.csr.resp.valid.eq(resp_pending & ~any_resetting),
        ]
        with m.If(self.csr.resp.valid & self.csr.resp.ready):
            m.d.sync += resp_pending.eq(0)
        accept = Signal()
        m.d.comb += accept.eq(self.csr.req.valid & self.csr.req.ready)
        csr_wr = Signal()
        m.d.comb += csr_wr.eq(accept & csr_req.write)
        wdata = csr_req.data
        refuse = Signal(8)          # the refusal of this access (0: none)
        rdata = Signal(32)

        # Counters: raw free-running values, minus a base captured by CTRL.clear_counters.
        cycles = Signal(64)
        desc_done = Signal(64)
        desc_errors = Signal(64)
        m.d.sync += cycles.eq(cycles + 1)
        with m.If(any_done):
            m.d.sync += desc_done.eq(desc_done + 1)
        with m.If(desc_error):
            m.d.sync += desc_errors.eq(desc_errors + 1)
        raw = [cycles, desc_done, desc_errors,
               self.dma_counters.busy, self.dma_counters.rd_bytes, self.dma_counters.wr_bytes,
               self.mxu_counters.busy, self.mxu_counters.macs, self.vpu_counters.busy]
        assert len(raw) == len(COUNTERS)
        for c in range(cfg.hbm_channels):
            ch = self.hbm_counters[c]
            raw += [ch.rd_bytes, ch.wr_bytes, ch.busy, ch.stall]
        assert len(HBM_COUNTERS) == 4
        bases = [Signal(64, name=f"counter{i}_base") for i in range(len(raw))]
        values = []
        for i, (r, b) in enumerate(zip(raw, bases)):
            v = Signal(64, name=f"counter{i}")
            m.d.comb += v.eq(r - b)
            values.append(v)
        hi_latch = Signal(32)

        soft_reset = Signal()
        err_clear = Signal()
        overflow_clear = Signal()
        irq_clear = Signal(2)
        flags_clear = Signal(3)
        sem_write = Signal()
        sem_write_index = Signal(range(SEMAPHORES))
        queue_busy = Signal(QUEUES)
        for q in range(QUEUES):
            m.d.comb += queue_busy[q].eq(resetting[q] | (enable[q] & (head[q] != tail[q]))
                                         | (state[q] != QueueState.IDLE))
        units_busy = Cat(u.busy for u in units)
        m.d.comb += self.busy.eq(queue_busy.any() | units_busy.any())

        def ring_ok(q):
            """(align_ok, range_ok) of the rings of queue q as programmed."""
            align = (sq_base[q][:_log2(DESC_BYTES)] == 0) & (cq_base[q][:_log2(CPL_BYTES)] == 0)
            sq_end = sq_base[q] + (Const(DESC_BYTES, 65) << size_log2[q])
            cq_end = cq_base[q] + (Const(CPL_BYTES, 65) << size_log2[q])
            return align, (sq_end <= cfg.hbm_bytes) & (cq_end <= cfg.hbm_bytes)

        with m.Switch(csr_req.addr):
            for reg in self._regs:
                with m.Case(reg.addr):
                    name = reg.name
                    q = reg.index
                    short = name.split("_", 1)[1] if name[0] == "Q" and name[1].isdigit() \
                        else name
                    if reg.access is Access.RO:
                        with m.If(csr_wr):
                            m.d.comb += refuse.eq(Status.CSR_READONLY)
                    # Read values.
                    if name in ("ID", "VERSION", "CONFIG0", "CONFIG1"):
                        m.d.comb += rdata.eq(reg.reset)
                    elif name == "STATUS":
                        m.d.comb += rdata.eq(Cat(queue_busy, Const(0, 8 - QUEUES), units_busy))
                    elif name == "IRQ_STATUS":
                        m.d.comb += rdata.eq(irq_status)
                    elif name == "IRQ_ENABLE":
                        m.d.comb += rdata.eq(irq_enable)
                        with m.If(csr_wr):
                            m.d.sync += irq_enable.eq(wdata[:2])
                    elif name == "ERR_STATUS":
                        m.d.comb += rdata.eq(Cat(err_code, err_queue, err_csr, Const(0, 17),
                                                 err_overflow, err_valid))
                    elif name == "ERR_INDEX":
                        m.d.comb += rdata.eq(err_index)
                    elif name == "ERR_ADDR_LO":
                        m.d.comb += rdata.eq(err_addr[:32])
                    elif name == "ERR_ADDR_HI":
                        m.d.comb += rdata.eq(err_addr[32:])
                    elif name == "WAIT_TIMEOUT":
                        m.d.comb += rdata.eq(wait_timeout)
                        with m.If(csr_wr):
                            m.d.sync += wait_timeout.eq(wdata)
                    elif name == "FLAGS":
                        m.d.comb += rdata.eq(flags_sticky)
                    elif name == "CTRL":
                        with m.If(csr_wr):
                            m.d.comb += soft_reset.eq(wdata[0])
                            with m.If(wdata[1]):
                                m.d.sync += [b.eq(r) for b, r in zip(bases, raw)]
                    elif short in ("SQ_BASE_LO", "SQ_BASE_HI", "CQ_BASE_LO", "CQ_BASE_HI",
                                   "SIZE_LOG2"):
                        target = {"SQ_BASE_LO": sq_base[q][:32], "SQ_BASE_HI": sq_base[q][32:],
                                  "CQ_BASE_LO": cq_base[q][:32], "CQ_BASE_HI": cq_base[q][32:],
                                  "SIZE_LOG2": size_log2[q]}[short]
                        m.d.comb += rdata.eq(target)
                        with m.If(csr_wr):
                            with m.If(enable[q] | resetting[q]):
                                m.d.comb += refuse.eq(Status.CSR_BUSY)
                            if short == "SIZE_LOG2":
                                with m.Elif(wdata > MAX_RING_LOG2):
                                    m.d.comb += refuse.eq(Status.SIZE_RANGE)
                            with m.Else():
                                m.d.sync += target.eq(wdata)
                    elif short == "CTRL":
                        m.d.comb += rdata.eq(Cat(enable[q], resetting[q]))
                        align_ok, range_ok = ring_ok(q)
                        with m.If(csr_wr):
                            with m.If(wdata[1]):
                                m.d.sync += resetting[q].eq(1)
                            with m.Elif(wdata[0] & ~enable[q] & ~align_ok):
                                m.d.comb += refuse.eq(Status.ADDR_ALIGN)
                            with m.Elif(wdata[0] & ~enable[q] & ~range_ok):
                                m.d.comb += refuse.eq(Status.ADDR_RANGE)
                            with m.Else():
                                m.d.sync += enable[q].eq(wdata[0])
                    elif short == "TAIL":
                        m.d.comb += rdata.eq(tail[q])
                        ahead = Signal(32, name=f"q{q}_ahead")
                        step = Signal(32, name=f"q{q}_step")
                        m.d.comb += [ahead.eq(wdata - head[q]), step.eq(wdata - tail[q])]
                        with m.If(csr_wr):
                            with m.If((ahead > ring_slots(q)) | (step > ring_slots(q))
                                      | resetting[q]):
                                m.d.comb += refuse.eq(Status.QUEUE_OVERFLOW)
                            with m.Else():
                                m.d.sync += tail[q].eq(wdata)
                    elif short == "HEAD":
                        m.d.comb += rdata.eq(head[q])
                    elif short == "STATE":
                        m.d.comb += rdata.eq(state[q])
                    elif name.startswith("SEM"):
                        m.d.comb += rdata.eq(sems[q])
                        with m.If(csr_wr):
                            m.d.comb += [sem_write.eq(1), sem_write_index.eq(q)]
                    elif name.endswith("_LO") and reg.addr >= COUNTER_BASE_ADDR:
                        m.d.comb += rdata.eq(values[q][:32])
                        with m.If(accept & ~csr_req.write):
                            m.d.sync += hi_latch.eq(values[q][32:])
                    elif name.endswith("_HI") and reg.addr >= COUNTER_BASE_ADDR:
                        m.d.comb += rdata.eq(hi_latch)
                    else:
                        raise AssertionError(f"register {name} has no implementation")
                    # W1C registers.
                    if name == "IRQ_STATUS":
                        with m.If(csr_wr):
                            m.d.comb += irq_clear.eq(wdata[:2])
                    elif name == "ERR_STATUS":
                        with m.If(csr_wr):
                            m.d.comb += [err_clear.eq(wdata[31]),
                                         overflow_clear.eq(wdata[30])]
                    elif name == "FLAGS":
                        with m.If(csr_wr):
                            m.d.comb += flags_clear.eq(wdata[:3])
            with m.Default():
                with m.If(accept):
                    m.d.comb += refuse.eq(Status.CSR_ADDR)
        with m.If(accept):
            m.d.sync += [resp_pending.eq(1), resp.data.eq(Mux(refuse != 0, 0, rdata)),
                         resp.status.eq(refuse)]

        # -- Semaphores ------------------------------------------------------------------------
        for s in range(SEMAPHORES):
            add = Mux(sem_add_valid & (sem_add_index == s), sem_add, 0)
            with m.If(soft_reset):
                m.d.sync += sems[s].eq(0)
            with m.Elif(sem_write & (sem_write_index == s)):
                m.d.sync += sems[s].eq(wdata + add)
            with m.Else():
                m.d.sync += sems[s].eq(sems[s] + add)

        # -- Errors, flags and the interrupt ---------------------------------------------------
        events = [
            (desc_error, done_status, done_queue, 0, done_index, done_addr),
            (refuse != 0, refuse, CSR_ERR_QUEUE, 1, 0, csr_req.addr),
        ]
        taken = err_valid & ~err_clear
        with m.If(overflow_clear):
            m.d.sync += err_overflow.eq(0)
        with m.If(err_clear):
            m.d.sync += [err_valid.eq(0), err_overflow.eq(0), err_code.eq(0), err_queue.eq(0),
                         err_csr.eq(0), err_index.eq(0), err_addr.eq(0)]
        for valid, code, queue, csr, index, addr in events:
            with m.If(valid):
                with m.If(~taken):
                    m.d.sync += [err_valid.eq(1), err_code.eq(code), err_queue.eq(queue),
                                 err_csr.eq(csr), err_index.eq(index), err_addr.eq(addr)]
                with m.Else():
                    m.d.sync += err_overflow.eq(1)
            taken = taken | valid
        error_set = Signal()
        m.d.comb += error_set.eq(desc_error | (refuse != 0))
        m.d.sync += irq_status.eq((irq_status & ~irq_clear)
                                  | Cat(any_done & done_irq, error_set))
        new_flags = Signal(3)
        m.d.comb += new_flags.eq(Mux(any_done, done_flags, 0))
        m.d.sync += flags_sticky.eq((flags_sticky & ~flags_clear) | new_flags)
        with m.If(soft_reset):
            m.d.sync += [err_valid.eq(0), err_overflow.eq(0), err_code.eq(0), err_queue.eq(0),
                         err_csr.eq(0), err_index.eq(0), err_addr.eq(0), irq_status.eq(0),
                         flags_sticky.eq(0)]
            m.d.sync += [resetting[q].eq(1) for q in range(QUEUES)]
        m.d.comb += self.irq.eq((irq_status & irq_enable).any())
        return m
