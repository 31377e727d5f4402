"""Operand fetch: walks a three-level loop of vector addresses and streams the vectors.

Every operand stream of a GEMM is such a walk (``docs/mxu.md``): for each K tile (outer), for
each N tile (middle), a run of vectors at consecutive addresses (inner). The fetcher reads each
scratchpad line once for all the consecutive vectors it holds, keeps up to ``depth`` entries
in flight, and so delivers one entry per cycle while its port is not contended. An entry is one
vector, or with ``max_vectors > 1`` up to that many consecutive vectors of one line and one
inner run (the B operand's rows of a weight tile, written into the array several at a time).
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..memory import SpadReadSignature


__all__ = ["FETCH_WALK", "OperandFetch"]


#: Parameters of one walk. The inner run of the last outer iteration has ``inner_last``
#: vectors (the last K tile may be short); the outer address steps once every
#: ``2**outer_every`` outer iterations (MX scales change every 32 / R K tiles).
FETCH_WALK = data.StructLayout({
    "base":        32,
    "vshift":      3,    # vector size is 2**vshift bytes
    "inner_n":     17,
    "inner_last":  17,
    "mid_n":       17,
    "mid_step":    32,
    "outer_n":     17,
    "outer_step":  32,
    "outer_every": 3,
})


class OperandFetch(wiring.Component):
    """Streams the vectors of one walk from the scratchpad.

    Parameters
    ----------
    line_bytes : int
        Scratchpad line size (a power of two).
    addr_width : int
        Width of a scratchpad line address.
    depth : int
        Entries buffered (and in flight).
    max_vectors : int
        Most vectors in one entry.

    Members
    -------
    start : ``In(1)``
        Begin ``walk`` (ignored while busy).
    walk : ``In(FETCH_WALK)``
        The walk, sampled with ``start``.
    busy : ``Out(1)``
        Not all vectors of the walk have been read from the scratchpad yet.
    o : ``Out(stream.Signature(line_bytes * 8))``
        The entries, in order: the first vector in the low bits, the others above it.
    count : ``Out(range(max_vectors + 1))``
        Vectors in the entry on ``o`` (1 … ``max_vectors``).
    spad : ``Out(SpadReadSignature)``
        Scratchpad read port.
    """

    def __init__(self, *, line_bytes, addr_width, depth=4, max_vectors=1):
        self._line_bytes = line_bytes
        self._depth = depth
        self._max_vectors = max_vectors
        line_bits = 8 * line_bytes
        super().__init__({
            "start": In(1),
            "walk":  In(FETCH_WALK),
            "busy":  Out(1),
            "o":     Out(stream.Signature(line_bits)),
            "count": Out(range(max_vectors + 1)),
            "spad":  Out(SpadReadSignature(line_bits=line_bits, addr_width=addr_width)),
        })

    def elaborate(self, platform):
        m = Module()
        line_bits = 8 * self._line_bytes
        offset_bits = self._line_bytes.bit_length() - 1

        walk = Signal(FETCH_WALK)
        outer_addr = Signal(32)
        mid_addr   = Signal(32)
        addr       = Signal(32)
        outer_i    = Signal(17)
        mid_i      = Signal(17)
        inner_i    = Signal(17)
        every_i    = Signal(8)
        first      = Signal()     # no line read yet: the next vector must read its line
        last_line  = Signal(32 - offset_bits)

        line = addr[offset_bits:]
        need_read = first | (line != last_line)
        inner_n = Mux(outer_i == walk.outer_n - 1, walk.inner_last, walk.inner_n)

        # Vectors of this entry: those left in the line and in the inner run, at most W.
        W = self._max_vectors
        count_bits = W.bit_length()
        n = Signal(range(W + 1))
        if W == 1:
            m.d.comb += n.eq(1)
        else:
            offset = addr[:offset_bits] if offset_bits else 0
            in_line = Signal(offset_bits + 1)
            left = Signal(17)
            m.d.comb += [
                in_line.eq((self._line_bytes - offset) >> walk.vshift),
                left.eq(inner_n - inner_i),
                n.eq(W),
            ]
            with m.If((in_line <= left) & (in_line < W)):
                m.d.comb += n.eq(in_line)
            with m.Elif((left < in_line) & (left < W)):
                m.d.comb += n.eq(left)

        # The FIFO holds the entries' lines; an entry that reuses the line of the one before
        # it stores no new line (read = 0) and is cut from the line last popped.
        entry = data.StructLayout({"line": line_bits, "read": 1, "offset": offset_bits or 1,
                                   "count": count_bits})
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=entry.size, depth=self._depth)
        in_flight = Signal()          # a vector between issue and the FIFO
        in_flight_read = Signal()
        in_flight_offset = Signal(offset_bits or 1)
        room = (fifo.level + in_flight) < self._depth

        go = Signal()
        m.d.comb += [
            self.spad.addr.eq(line),
            self.spad.valid.eq(self.busy & room & need_read),
            go.eq(self.busy & room & (~need_read | self.spad.ready)),
        ]

        with m.If(self.start & ~self.busy):
            m.d.sync += [
                walk.eq(self.walk),
                outer_addr.eq(self.walk.base),
                mid_addr.eq(self.walk.base),
                addr.eq(self.walk.base),
                outer_i.eq(0), mid_i.eq(0), inner_i.eq(0), every_i.eq(0),
                first.eq(1),
                self.busy.eq(1),
            ]
        with m.Elif(go):
            m.d.sync += [
                first.eq(0),
                last_line.eq(line),
                addr.eq(addr + (n << walk.vshift)),
                inner_i.eq(inner_i + n),
            ]
            with m.If(inner_i + n == inner_n):
                m.d.sync += [inner_i.eq(0), mid_i.eq(mid_i + 1)]
                with m.If(mid_i + 1 == walk.mid_n):
                    m.d.sync += [mid_i.eq(0), outer_i.eq(outer_i + 1)]
                    next_outer = Mux(every_i + 1 == (1 << walk.outer_every),
                                     outer_addr + walk.outer_step, outer_addr)
                    m.d.sync += [
                        every_i.eq(Mux(every_i + 1 == (1 << walk.outer_every), 0,
                                       every_i + 1)),
                        outer_addr.eq(next_outer),
                        mid_addr.eq(next_outer),
                        addr.eq(next_outer),
                    ]
                    with m.If(outer_i + 1 == walk.outer_n):
                        m.d.sync += self.busy.eq(0)
                with m.Else():
                    m.d.sync += [
                        mid_addr.eq(mid_addr + walk.mid_step),
                        addr.eq(mid_addr + walk.mid_step),
                    ]

        in_flight_count = Signal(count_bits)
        m.d.sync += [
            in_flight.eq(go),
            in_flight_read.eq(need_read),
            in_flight_offset.eq(addr[:offset_bits] if offset_bits else 0),
            in_flight_count.eq(n),
        ]
        w_entry = data.View(entry, fifo.w_data)
        m.d.comb += [
            fifo.w_en.eq(in_flight),
            w_entry.line.eq(self.spad.data),
            w_entry.read.eq(in_flight_read),
            w_entry.offset.eq(in_flight_offset),
            w_entry.count.eq(in_flight_count),
        ]

        r_entry = data.View(entry, fifo.r_data)
        current = Signal(line_bits)
        with m.If(fifo.r_rdy & fifo.r_en & r_entry.read):
            m.d.sync += current.eq(r_entry.line)
        line_out = Mux(r_entry.read, r_entry.line, current)
        m.d.comb += [
            self.o.valid.eq(fifo.r_rdy),
            self.o.payload.eq(line_out >> (r_entry.offset << 3)),
            self.count.eq(r_entry.count),
            fifo.r_en.eq(self.o.ready),
        ]
        return m
