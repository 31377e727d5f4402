"""The DMA engine: checks, then 2-D strided or page-gathering copies HBM ↔ scratchpad.

One command (``rtl.layouts.DMA_COMMAND``, ``docs/chip.md`` § DMA and § Checks) moves ``rows``
rows of ``row_bytes`` bytes. The engine first checks it (a refused command touches nothing and
gets its status), then streams the rows through one datapath:

* Everything moves in *units* of one HBM stripe (``S = hbm_channels·hbm_bytes_per_cycle``
  bytes): on the HBM side a unit is a stripe, on the scratchpad side it is ``k`` consecutive
  lines (``k = S / line``, one per scratchpad port, in different banks) or, when a line is
  wider than a stripe, an ``S``-byte piece of a line.
* A **row producer** per side yields row start addresses (strided: an accumulator; gathered:
  the next entry of the page list + ``hbm_stride``), and a **walker** per side turns rows into
  units ``{unit, lo, n}``: the unit index and the range of 4-byte words of the row in it. Both
  go from one row to the next without a bubble, so short rows pipeline.
* The **source** side issues the reads of its units (HBM reads, or scratchpad reads on ``k``
  ports) against *credits* for a data FIFO deep enough to cover ``hbm_latency``; the range
  ``{lo, n}`` of every issued unit waits in a metadata FIFO beside it.
* The **realigner** is a word FIFO of two stripes (a shift buffer): it appends the ``n`` valid
  words of a source unit at its fill level and hands a destination unit its ``n`` words,
  shifted to the unit's ``lo``, with a byte mask. Row boundaries do not concern it: the rows'
  words leave in the order they came. Sources and destinations may thus have any 4-byte
  alignment, and a unit per cycle flows in each direction.
* The **destination** side writes the units: scratchpad lines on ``k`` write ports (each
  port's ``ready`` respected separately) or masked HBM stripe writes.

A gathering load first reads the whole page list once and checks every entry (the *pre-scan*,
one stripe of entries per cycle), then reads it again while copying; entries are prefetched a
stripe at a time into a FIFO with their own credits. List and data reads share the HBM port
(list reads first). The status of a command is sent once its last write has been issued
(accepted by HBM or by the scratchpad).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..layouts import DMA_COMMAND, MAX_DIM, PAGE_ENTRY_BYTES, QUEUES, Status
from ..memory.hbm import HbmPortSignature
from ..memory.sram import SPAD_WRITE, SpadReadSignature


__all__ = ["DMA_STATUS", "DMA_REGION", "REGION", "DMA_COUNTERS", "dma_spad_ports", "DmaEngine"]


#: Completion of one DMA command.
DMA_STATUS = data.StructLayout({
    "status": Status,
})

#: A protected byte range ``[lo, hi)`` of HBM (a ring of an enabled queue): no store may
#: touch it while ``valid``.
DMA_REGION = data.StructLayout({
    "lo":    64,
    "hi":    64,
    "valid": 1,
})
REGION = DMA_REGION

#: Performance counters (cumulative since reset, 64 bits each).
DMA_COUNTERS = data.StructLayout({
    "busy":     64,   # cycles with a command in the engine (checks included)
    "rd_bytes": 64,   # HBM bytes read (rows and page lists): the mask bits of the reads
    "wr_bytes": 64,   # HBM bytes written: the mask bits of the writes
})


def _log2(x):
    return x.bit_length() - 1


def dma_spad_ports(cfg):
    """Scratchpad ports (read and write, each) of the DMA engine: the lines of a stripe."""
    stripe = cfg.hbm_channels * cfg.hbm_bytes_per_cycle
    return max(1, stripe // cfg.spad_line_bytes)


def _ones(width):
    return Const((1 << width) - 1, width)


def _shift(m, value, amount, *, unit, left, name):
    """``value`` shifted by ``amount`` units of ``unit`` bits, as a log-depth barrel shifter.

    Every stage is a signal of ``len(value)`` bits (the width never grows), so the shifter
    stays linear in the stage count in Verilog and in simulation.
    """
    width = len(value)
    cur = value
    for i in range(len(amount)):
        step = unit << i
        if step >= width:
            nxt = Mux(amount[i], 0, cur)
        elif left:
            nxt = Mux(amount[i], Cat(Const(0, step), cur[:width - step]), cur)
        else:
            nxt = Mux(amount[i], cur[step:], cur)
        stage = Signal(width, name=f"{name}_s{i}")
        m.d.comb += stage.eq(nxt)
        cur = stage
    return cur


def _expand(bits, factor):
    """Each bit of ``bits`` repeated ``factor`` times (word mask → byte or bit mask)."""
    return Cat(b.replicate(factor) for b in bits)


#: A row: its first byte address and its length in bytes (a multiple of 4, not 0).
_ROW = data.StructLayout({"addr": 64, "n": 32})


class _Walker(wiring.Component):
    """Turns a stream of rows into a stream of the stripe-sized units they cover.

    A unit is ``{unit, lo, n}``: the unit index (byte address ÷ ``stripe``) and the words
    ``lo … lo + n − 1`` (4-byte words of the unit) that belong to the row. A new row is taken
    in the cycle the last unit of the previous one leaves, so rows follow without a bubble.
    """

    def __init__(self, stripe):
        self._stripe = stripe
        words = stripe // 4
        self.unit_layout = data.StructLayout({
            "unit": 64 - _log2(stripe),
            "lo":   range(words),
            "n":    range(words + 1),
        })
        super().__init__({
            "rows":   In(stream.Signature(_ROW)),
            "units":  Out(stream.Signature(self.unit_layout)),
            "clear":  In(1),
            "active": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        sb, words = _log2(self._stripe), self._stripe // 4
        row = self.rows.payload
        unit = Signal(64 - sb)
        left = Signal(64 - sb)          # units after the current one
        lo_first = Signal(range(words))
        hi_last = Signal(range(words + 1))
        first = Signal()
        last = Signal()
        m.d.comb += last.eq(left == 0)

        lo = Signal(range(words))
        hi = Signal(range(words + 1))
        m.d.comb += [
            lo.eq(Mux(first, lo_first, 0)),
            hi.eq(Mux(last, hi_last, words)),
            self.units.valid.eq(self.active),
            self.units.payload.unit.eq(unit),
            self.units.payload.lo.eq(lo),
            self.units.payload.n.eq(hi - lo),
            self.rows.ready.eq(~self.active | (self.units.ready & last)),
        ]
        end = Signal(64)                # byte address of the last word of the row
        m.d.comb += end.eq(row.addr + row.n - 4)

        with m.If(self.units.valid & self.units.ready):
            m.d.sync += [unit.eq(unit + 1), left.eq(left - 1), first.eq(0)]
            with m.If(last):
                m.d.sync += self.active.eq(0)
        with m.If(self.rows.valid & self.rows.ready):
            m.d.sync += [
                self.active.eq(1),
                first.eq(1),
                unit.eq(row.addr[sb:]),
                left.eq(end[sb:] - row.addr[sb:]),
                lo_first.eq(row.addr[2:sb]),
                hi_last.eq(end[2:sb] + 1),
            ]
        with m.If(self.clear):
            m.d.sync += self.active.eq(0)
        return m


class DmaEngine(wiring.Component):
    """The DMA engine (see the module documentation for the datapath).

    Parameters
    ----------
    cfg : ChipConfig
    spad_addr_width : int
        Width of a scratchpad line address (``Scratchpad.addr_width``).

    Members
    -------
    cmd : ``In(stream.Signature(DMA_COMMAND))``
        Commands, taken one at a time.
    status : ``Out(stream.Signature(DMA_STATUS))``
        One status per command: its check's, or ``SUCCESS`` once its last write was issued.
    protect : ``In(data.ArrayLayout(DMA_REGION, 2·QUEUES))``
        HBM ranges no store may touch (the descriptor and completion rings of enabled queues);
        sampled while a store is checked.
    hbm : ``Out(HbmPortSignature(cfg))``
        Page-list reads, row reads and row writes.
    spad_read : ``Out(SpadReadSignature(...)).array(k)``
    spad_write : ``Out(stream.Signature(SPAD_WRITE(...))).array(k)``
        ``k = dma_spad_ports(cfg)`` scratchpad ports; port ``j`` carries the lines ``≡ j``
        (mod ``k``) of a stripe's worth of lines.
    counters : ``Out(DMA_COUNTERS)``
    """

    def __init__(self, cfg, *, spad_addr_width):
        self._cfg = cfg
        self.stripe = cfg.hbm_channels * cfg.hbm_bytes_per_cycle
        self.line_bytes = cfg.spad_line_bytes
        self.spad_ports = k = dma_spad_ports(cfg)
        self.spad_addr_width = spad_addr_width
        latency = cfg.hbm_latency
        #: Entries of the row-data FIFO: enough reads in flight to cover the latency.
        self.data_depth = max(4, latency + 8)
        #: Entries of the page-list FIFO (a stripe of entries each).
        self.list_depth = max(4, latency + 4)
        super().__init__({
            "cmd":        In(stream.Signature(DMA_COMMAND)),
            "status":     Out(stream.Signature(DMA_STATUS)),
            "protect":    In(data.ArrayLayout(DMA_REGION, 2 * QUEUES)),
            "hbm":        Out(HbmPortSignature(cfg)),
            "spad_read":  Out(SpadReadSignature(line_bits=8 * self.line_bytes,
                                                addr_width=spad_addr_width)).array(k),
            "spad_write": Out(stream.Signature(SPAD_WRITE(self.line_bytes, spad_addr_width)))
                          .array(k),
            "counters":   Out(DMA_COUNTERS),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        S, Lb, k = self.stripe, self.line_bytes, self.spad_ports
        sb, words = _log2(S), S // 4
        latency = cfg.hbm_latency
        wide_line = Lb > S                   # a unit is a piece of a line
        pieces = Lb // S if wide_line else 1
        entries = max(1, S // PAGE_ENTRY_BYTES)

        cmd = Signal(DMA_COMMAND)
        status = Signal(Status)

        # -- Checks (docs/chip.md § Checks; sums in wide arithmetic, never wrapping). ---------
        rows_m1 = Signal(16)                 # rows − 1 (rows ≤ MAX_DIM once SIZE_RANGE passed)
        spad_span = Signal(16 + 32 + 1)      # (rows − 1)·spad_stride + row_bytes
        hbm_span = Signal(16 + 64 + 1)       # (rows − 1)·hbm_stride + row_bytes
        spad_end = Signal(len(spad_span) + 1)
        hbm_end = Signal(len(hbm_span) + 1)
        list_end = Signal(65)
        entry_limit = Signal(65)             # hbm_stride + row_bytes: added to a page entry
        m.d.comb += [
            spad_end.eq(cmd.spad_addr + spad_span),
            hbm_end.eq(cmd.hbm_addr + hbm_span),
            list_end.eq(cmd.hbm_addr + (cmd.rows[:17] << 3)),
        ]
        reserved = Signal()
        size_bad = Signal()
        align_bad = Signal()
        range_bad = Signal()
        rows_overlap = Signal()
        touches_any = Signal()
        m.d.comb += [
            reserved.eq((cmd.reserved != 0) | (cmd.gather & cmd.store)),
            size_bad.eq((cmd.rows == 0) | (cmd.rows > MAX_DIM)
                        | (cmd.row_bytes == 0) | (cmd.row_bytes > cfg.spad_bytes)),
            align_bad.eq((cmd.spad_addr[:2] != 0) | (cmd.spad_stride[:2] != 0)
                         | (cmd.row_bytes[:2] != 0) | (cmd.hbm_stride[:2] != 0)
                         | (cmd.hbm_addr[:2] != 0) | (cmd.gather & cmd.hbm_addr[2])),
            range_bad.eq((spad_end > cfg.spad_bytes)
                         | Mux(cmd.gather, list_end > cfg.hbm_bytes, hbm_end > cfg.hbm_bytes)),
            rows_overlap.eq((rows_m1 != 0) & Mux(cmd.store, cmd.hbm_stride < cmd.row_bytes,
                                                 cmd.spad_stride < cmd.row_bytes)),
        ]

        def touches(lo, end):
            """Whether HBM bytes ``[lo, end)`` meet a valid protected range."""
            return Cat(r.valid & (r.lo < r.hi) & (lo < r.hi) & (r.lo < end)
                       for r in self.protect).any()

        m.d.comb += touches_any.eq(touches(cmd.hbm_addr, hbm_end))
        scan_addr = Signal(64)               # OVERLAP scan: the current store row
        scan_left = Signal(17)
        scan_hit = Signal()
        m.d.comb += scan_hit.eq(touches(scan_addr, scan_addr + cmd.row_bytes))

        # -- The unit streams: producers → walkers. -------------------------------------------
        m.submodules.src_walk = src_walk = _Walker(S)
        m.submodules.dst_walk = dst_walk = _Walker(S)
        m.submodules.list_walk = list_walk = _Walker(S)

        src_left = Signal(17)                # rows the source producer has still to give
        src_addr = Signal(64)
        src_stride = Signal(64)
        dst_left = Signal(17)
        dst_addr = Signal(64)
        dst_stride = Signal(64)
        list_pending = Signal()              # the page list, one "row", waits for its walker

        m.d.comb += [
            dst_walk.rows.valid.eq(dst_left != 0),
            dst_walk.rows.payload.addr.eq(dst_addr),
            dst_walk.rows.payload.n.eq(cmd.row_bytes),
            list_walk.rows.valid.eq(list_pending),
            list_walk.rows.payload.addr.eq(cmd.hbm_addr),
            list_walk.rows.payload.n.eq(cmd.rows[:17] << 3),
        ]
        with m.If(dst_walk.rows.valid & dst_walk.rows.ready):
            m.d.sync += [dst_left.eq(dst_left - 1), dst_addr.eq(dst_addr + dst_stride)]
        with m.If(list_walk.rows.valid & list_walk.rows.ready):
            m.d.sync += list_pending.eq(0)

        # Page-list FIFO (a stripe of entries per element) with its words' ranges.
        m.submodules.list_data = list_data = SyncFIFOBuffered(width=8 * S,
                                                              depth=self.list_depth)
        unit_range = data.StructLayout({"lo": range(words), "n": range(words + 1)})
        m.submodules.list_meta = list_meta = SyncFIFOBuffered(width=unit_range.size,
                                                              depth=self.list_depth)
        list_meta_out = Signal(unit_range)
        m.d.comb += list_meta_out.eq(list_meta.r_data)
        list_ready = Signal()
        m.d.comb += list_ready.eq(list_data.r_rdy & list_meta.r_rdy)

        # Gathering row producer: the next entry of the head stripe, + hbm_stride.
        slot = Signal(range(max(2, entries)))
        entry = Signal(64)
        slot_last = Signal()
        gather_pop = Signal()
        m.d.comb += [
            entry.eq(_shift(m, list_data.r_data, slot, unit=64, left=False, name="entry")[:64]),
            slot_last.eq((slot << 1) + 2 >= list_meta_out.lo + list_meta_out.n),
        ]
        with m.If(cmd.gather):
            m.d.comb += [
                src_walk.rows.valid.eq((src_left != 0) & list_ready),
                src_walk.rows.payload.addr.eq(entry + cmd.hbm_stride),
            ]
            with m.If(src_walk.rows.valid & src_walk.rows.ready):
                m.d.sync += [src_left.eq(src_left - 1), slot.eq(slot + 1)]
                with m.If(slot_last | (src_left == 1)):
                    m.d.comb += gather_pop.eq(1)
                    m.d.sync += slot.eq(0)
        with m.Else():
            m.d.comb += [
                src_walk.rows.valid.eq(src_left != 0),
                src_walk.rows.payload.addr.eq(src_addr),
            ]
            with m.If(src_walk.rows.valid & src_walk.rows.ready):
                m.d.sync += [src_left.eq(src_left - 1), src_addr.eq(src_addr + src_stride)]
        m.d.comb += src_walk.rows.payload.n.eq(cmd.row_bytes)

        # -- Source side: row-data FIFO with its units' ranges, and read credits. ------------
        m.submodules.src_data = src_data = SyncFIFOBuffered(width=8 * S, depth=self.data_depth)
        m.submodules.src_meta = src_meta = SyncFIFOBuffered(width=unit_range.size,
                                                            depth=self.data_depth)
        src_meta_out = Signal(unit_range)
        m.d.comb += src_meta_out.eq(src_meta.r_data)
        credits = Signal(range(self.data_depth + 1), init=self.data_depth)
        list_credits = Signal(range(self.list_depth + 1), init=self.list_depth)
        src_issue = Signal()                 # a source unit is issued (its data will come)
        src_pop = Signal()                   # the realigner takes the head source unit
        list_issue = Signal()
        list_pop = Signal()
        m.d.comb += [
            src_meta.w_en.eq(src_issue),
            src_meta.w_data.eq(Cat(src_walk.units.payload.lo, src_walk.units.payload.n)),
            src_data.r_en.eq(src_pop),
            src_meta.r_en.eq(src_pop),
            list_meta.w_en.eq(list_issue),
            list_meta.w_data.eq(Cat(list_walk.units.payload.lo, list_walk.units.payload.n)),
            list_data.r_en.eq(list_pop),
            list_meta.r_en.eq(list_pop),
            src_walk.units.ready.eq(src_issue),
            list_walk.units.ready.eq(list_issue),
        ]
        m.d.sync += [
            credits.eq(credits - src_issue + src_pop),
            list_credits.eq(list_credits - list_issue + list_pop),
        ]

        def word_mask(lo, n):
            """Byte mask of the words ``lo … lo + n − 1`` of a unit."""
            thermo = ~(_ones(words) << n)[:words]
            return _expand((thermo << lo)[:words], 4)

        phase_run = Signal()                 # rows are being copied
        phase_list = Signal()                # page-list reads allowed (pre-scan or copy)
        list_want = Signal()
        data_want = Signal()
        m.d.comb += [
            list_want.eq(phase_list & list_walk.units.valid & (list_credits != 0)),
            data_want.eq(phase_run & ~cmd.store & src_walk.units.valid & (credits != 0)),
        ]

        # HBM responses: list stripes are tagged in a shift register of the latency.
        resp_list = Signal(latency)
        m.d.sync += resp_list.eq(Cat(list_issue, resp_list[:-1]))
        m.d.comb += [
            list_data.w_en.eq(self.hbm.resp_valid & resp_list[-1]),
            list_data.w_data.eq(self.hbm.resp_data),
        ]

        # -- Realigner: a word FIFO of two stripes. --------------------------------------------
        buf = Signal(16 * S)
        fill = Signal(range(2 * words + 1))
        dst = dst_walk.units.payload
        out_valid = Signal()
        out_data = Signal(8 * S)
        out_mask = Signal(S)
        out_pop = Signal()
        m.d.comb += [
            out_valid.eq(phase_run & dst_walk.units.valid & (fill >= dst.n)),
            out_data.eq(_shift(m, buf[:8 * S], dst.lo, unit=32, left=True, name="out")),
            out_mask.eq(word_mask(dst.lo, dst.n)),
            dst_walk.units.ready.eq(out_pop),
        ]
        fill_left = Signal(range(2 * words + 1))
        buf_left = Signal(16 * S)
        m.d.comb += [
            fill_left.eq(fill - Mux(out_pop, dst.n, 0)),
            buf_left.eq(_shift(m, buf, Mux(out_pop, dst.n, 0), unit=32, left=False,
                                  name="drop")),
            src_pop.eq(phase_run & src_data.r_rdy & src_meta.r_rdy & (fill_left <= words)),
        ]
        incoming = Signal(8 * S)
        inserted = Signal(16 * S)
        keep = Signal(2 * words)
        m.d.comb += [
            incoming.eq(_shift(m, src_data.r_data, src_meta_out.lo, unit=32, left=False,
                               name="incoming")),
            inserted.eq(_shift(m, Cat(incoming, Const(0, 8 * S)), fill_left, unit=32, left=True,
                               name="insert")),
            keep.eq(~(_ones(2 * words) << fill_left)[:2 * words]),
        ]
        keep_bits = _expand(keep, 32)
        m.d.sync += [
            buf.eq((buf_left & keep_bits) | (inserted & ~keep_bits)),
            fill.eq(fill_left + Mux(src_pop, src_meta_out.n, 0)),
        ]

        # -- Loads: HBM reads in, scratchpad writes out. ---------------------------------------
        hreq = self.hbm.req
        with m.If(cmd.store):
            m.d.comb += [
                hreq.valid.eq(out_valid),
                hreq.payload.write.eq(1),
                hreq.payload.addr.eq(dst.unit),
                hreq.payload.data.eq(out_data),
                hreq.payload.mask.eq(out_mask),
                out_pop.eq(out_valid & hreq.ready),
            ]
        with m.Else():
            src = src_walk.units.payload
            lst = list_walk.units.payload
            m.d.comb += hreq.valid.eq(list_want | data_want)
            with m.If(list_want):
                m.d.comb += [
                    hreq.payload.addr.eq(lst.unit),
                    hreq.payload.mask.eq(word_mask(lst.lo, lst.n)),
                    list_issue.eq(hreq.ready),
                ]
            with m.Else():
                m.d.comb += [
                    hreq.payload.addr.eq(src.unit),
                    hreq.payload.mask.eq(word_mask(src.lo, src.n)),
                    src_issue.eq(data_want & hreq.ready),
                ]
            m.d.comb += [
                src_data.w_en.eq(self.hbm.resp_valid & ~resp_list[-1]),
                src_data.w_data.eq(self.hbm.resp_data),
            ]

            # Scratchpad writes: a unit is k lines (or a piece of a line).
            done = Signal(k)                  # ports whose line of the head unit is written
            accepted = []
            for j, port in enumerate(self.spad_write):
                if wide_line:
                    line = dst.unit >> _log2(pieces)
                    piece = dst.unit[:_log2(pieces)]
                    wdata = out_data.replicate(pieces)
                    wmask = (out_mask << (piece << sb))[:Lb]
                else:
                    line = (dst.unit << _log2(k)) | j
                    wdata = out_data[8 * Lb * j:8 * Lb * (j + 1)]
                    wmask = out_mask[Lb * j:Lb * (j + 1)]
                need = Signal(name=f"write_need{j}")
                m.d.comb += [
                    need.eq(wmask.any()),
                    port.valid.eq(out_valid & need & ~done[j]),
                    port.payload.addr.eq(line),
                    port.payload.data.eq(wdata),
                    port.payload.mask.eq(wmask),
                ]
                accepted.append(~need | done[j] | port.ready)
            m.d.comb += out_pop.eq(out_valid & Cat(accepted).all())
            with m.If(out_pop):
                m.d.sync += done.eq(0)
            with m.Else():
                m.d.sync += done.eq(done | Cat(p.valid & p.ready for p in self.spad_write))

        # -- Stores: scratchpad reads in (k ports, one unit at a time), HBM writes out. --------
        pending = Signal(k)                   # ports still to be granted the current unit
        have = Signal(k)                      # ports whose line of the unit has arrived
        hold = [Signal(8 * Lb, name=f"hold{j}") for j in range(k)]
        line_base = Signal(64 - sb)           # the unit being read
        piece_q = Signal(range(pieces))       # wide lines: the piece of the line in flight
        grants_done = Signal()
        m.d.comb += grants_done.eq(Cat(~pending[j] | self.spad_read[j].ready
                                       for j in range(k)).all())
        with m.If(cmd.store):
            m.d.comb += src_issue.eq(phase_run & src_walk.units.valid & (credits != 0)
                                     & grants_done)
        with m.If(src_issue & cmd.store):
            m.d.sync += [pending.eq(_ones(k)), line_base.eq(src_walk.units.payload.unit)]
        with m.Else():
            m.d.sync += pending.eq(pending & ~Cat(p.ready for p in self.spad_read))
        for j, port in enumerate(self.spad_read):
            if wide_line:
                m.d.comb += port.addr.eq(line_base >> _log2(pieces))
            else:
                m.d.comb += port.addr.eq((line_base << _log2(k)) | j)
            m.d.comb += port.valid.eq(pending[j])
        if wide_line:
            with m.If(self.spad_read[0].valid & self.spad_read[0].ready):
                m.d.sync += piece_q.eq(line_base[:_log2(pieces)])
        resp = Cat(p.resp for p in self.spad_read)
        complete = Signal()
        m.d.comb += complete.eq((have | resp).all() & resp.any())
        lines = [Mux(p.resp, p.data, h) for p, h in zip(self.spad_read, hold)]
        with m.If(cmd.store):
            if wide_line:
                m.d.comb += src_data.w_data.eq(
                    _shift(m, lines[0], piece_q, unit=8 * S, left=False, name="piece")[:8 * S])
            else:
                m.d.comb += src_data.w_data.eq(Cat(lines))
            m.d.comb += src_data.w_en.eq(complete)
        with m.If(complete):
            m.d.sync += have.eq(0)
        with m.Else():
            m.d.sync += have.eq(have | resp)
        for p, h in zip(self.spad_read, hold):
            with m.If(p.resp):
                m.d.sync += h.eq(p.data)

        # -- Control. ---------------------------------------------------------------------------
        prescan_left = Signal(17)             # list stripes the pre-scan has still to check
        list_stripes = Signal(17)
        m.d.comb += list_stripes.eq(
            ((cmd.hbm_addr + (cmd.rows[:17] << 3) - 8) >> sb)[:17] - cmd.hbm_addr[sb:][:17]
            + 1)

        def launch():
            """Start copying: load the row producers."""
            m.d.sync += [
                src_left.eq(cmd.rows[:17]),
                dst_left.eq(cmd.rows[:17]),
                src_addr.eq(Mux(cmd.store, cmd.spad_addr, cmd.hbm_addr)),
                src_stride.eq(Mux(cmd.store, cmd.spad_stride, cmd.hbm_stride)),
                dst_addr.eq(Mux(cmd.store, cmd.hbm_addr, cmd.spad_addr)),
                dst_stride.eq(Mux(cmd.store, cmd.hbm_stride, cmd.spad_stride)),
                slot.eq(cmd.hbm_addr[3:sb]),
                list_pending.eq(cmd.gather),
            ]

        # Pre-scan: every entry of a list stripe at once; the first bad one gives the status.
        scan_status = Signal(Status)
        scan_bad = Signal()
        bad_list = []
        for s in range(entries):
            e = list_data.r_data[64 * s:64 * (s + 1)]
            inside = ((2 * s >= list_meta_out.lo)
                      & (2 * s < list_meta_out.lo + list_meta_out.n))
            misaligned = e[:2] != 0
            outside = (e + entry_limit) > cfg.hbm_bytes
            bad_list.append((inside & (misaligned | outside), misaligned))
        m.d.comb += scan_bad.eq(Cat(b for b, _ in bad_list).any())
        for s, (bad, misaligned) in enumerate(bad_list):
            with (m.If(bad) if s == 0 else m.Elif(bad)):
                m.d.comb += scan_status.eq(Mux(misaligned, Status.ADDR_ALIGN,
                                               Status.ADDR_RANGE))

        m.d.comb += self.status.payload.status.eq(status)
        with m.FSM(name="dma"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += cmd.eq(self.cmd.payload)
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += [
                    rows_m1.eq(cmd.rows - 1),
                    spad_span.eq((cmd.rows - 1)[:16] * cmd.spad_stride + cmd.row_bytes),
                    hbm_span.eq((cmd.rows - 1)[:16] * cmd.hbm_stride + cmd.row_bytes),
                    entry_limit.eq(cmd.hbm_stride + cmd.row_bytes),
                    scan_addr.eq(cmd.hbm_addr),
                    scan_left.eq(cmd.rows[:17]),
                ]
                m.next = "DECIDE"
            with m.State("DECIDE"):
                with m.If(reserved):
                    m.d.sync += status.eq(Status.NONZERO_RESERVED)
                    m.next = "DONE"
                with m.Elif(size_bad):
                    m.d.sync += status.eq(Status.SIZE_RANGE)
                    m.next = "DONE"
                with m.Elif(align_bad):
                    m.d.sync += status.eq(Status.ADDR_ALIGN)
                    m.next = "DONE"
                with m.Elif(range_bad):
                    m.d.sync += status.eq(Status.ADDR_RANGE)
                    m.next = "DONE"
                with m.Elif(rows_overlap):
                    m.d.sync += status.eq(Status.OVERLAP)
                    m.next = "DONE"
                with m.Elif(cmd.store & touches_any):
                    m.next = "OVERLAP_SCAN"
                with m.Elif(cmd.gather):
                    m.d.sync += [list_pending.eq(1), prescan_left.eq(list_stripes)]
                    m.next = "PRESCAN"
                with m.Else():
                    launch()
                    m.next = "RUN"
            with m.State("OVERLAP_SCAN"):
                # The bounding range of the store meets a protected range: look row by row.
                m.d.sync += [scan_addr.eq(scan_addr + cmd.hbm_stride),
                             scan_left.eq(scan_left - 1)]
                with m.If(scan_hit):
                    m.d.sync += status.eq(Status.OVERLAP)
                    m.next = "DONE"
                with m.Elif(scan_left == 1):
                    launch()
                    m.next = "RUN"
            with m.State("PRESCAN"):
                m.d.comb += phase_list.eq(1)
                with m.If(list_ready):
                    m.d.comb += list_pop.eq(1)
                    m.d.sync += prescan_left.eq(prescan_left - 1)
                    with m.If(scan_bad):
                        m.d.sync += status.eq(scan_status)
                        m.d.comb += list_walk.clear.eq(1)
                        m.next = "DRAIN"
                    with m.Elif(prescan_left == 1):
                        launch()
                        m.next = "RUN"
            with m.State("DRAIN"):
                # A bad page entry: let the list reads in flight arrive, and drop them.
                m.d.comb += list_pop.eq(list_ready)
                with m.If((list_meta.level == 0) & (list_data.level == 0)):
                    m.next = "DONE"
            with m.State("RUN"):
                m.d.comb += [phase_run.eq(1), phase_list.eq(cmd.gather)]
                m.d.comb += list_pop.eq(gather_pop)
                with m.If((dst_left == 0) & ~dst_walk.active):
                    m.d.sync += status.eq(Status.SUCCESS)
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.status.valid.eq(1)
                with m.If(self.status.ready):
                    m.next = "IDLE"

        # -- Counters. -----------------------------------------------------------------------
        cnt = self.counters
        read_bytes = Signal(range(S + 1))
        with m.If(list_issue):
            m.d.comb += read_bytes.eq(list_walk.units.payload.n << 2)
        with m.Elif(src_issue & ~cmd.store):
            m.d.comb += read_bytes.eq(src_walk.units.payload.n << 2)
        m.d.sync += [
            cnt.busy.eq(cnt.busy + ~self.cmd.ready),
            cnt.rd_bytes.eq(cnt.rd_bytes + read_bytes),
            cnt.wr_bytes.eq(cnt.wr_bytes + Mux(cmd.store & out_pop, dst.n << 2, 0)),
        ]
        return m
