"""Flit framing: a flit of 32 words to and from beats of striped lanes.

A flit goes out in ``32 / W`` beats, ``W`` the current width (1 … ``lanes``, a power of two):
word ``i`` on logical lane ``i mod W`` of beat ``i div W``. Word 0 is a control block whose
payload is :data:`~.layouts.FLIT_HEADER` (type byte ``SOF``); words 1–31 are data blocks.
Logical lanes at or above ``W`` carry nothing (zero). ``docs/link_dll.md`` § Framing.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import FLIT, FLIT_WORDS, BlockType, beat_layout
from .params import LinkParams


__all__ = ["FlitTx", "FlitRx", "RX_FLIT"]

#: What :class:`FlitRx` delivers: the words of a flit, or a framing error (words undefined).
RX_FLIT = data.StructLayout({"words": FLIT, "framing_error": 1})


def _check_params(params):
    if not isinstance(params, LinkParams):
        raise TypeError(f"params must be a LinkParams, not {params!r}")


def _widths(lanes):
    return [1 << i for i in range(lanes.bit_length()) if 1 << i <= lanes]


class FlitTx(wiring.Component):
    """Cuts flits into beats.

    Parameters
    ----------
    params : LinkParams

    Members
    -------
    flit : ``In(stream.Signature(FLIT))``
        Flits. Taken when the previous flit's last beat leaves (or when idle), so a flit
        follows the previous one with no gap; not taken while ``width`` is not a legal width.
    width : ``In(range(lanes + 1))``
        Current width, sampled when a flit is taken (a flit keeps the width it started with).
    beat : ``Out(stream.Signature(beat_layout(lanes)))``
        Beats; ``valid`` is a register (the PCS may drop ``ready`` while it sends markers).
        Latency: the first beat of a flit is valid the cycle after the flit is taken.
    """

    def __init__(self, params):
        _check_params(params)
        self._p = params
        super().__init__({
            "flit":  In(stream.Signature(FLIT)),
            "width": In(range(params.lanes + 1)),
            "beat":  Out(stream.Signature(beat_layout(params.lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        L = self._p.lanes
        widths = _widths(L)

        sr    = Signal(64 * FLIT_WORDS)    # words not yet sent, the next one in bits 0–63
        busy  = Signal()
        first = Signal()                   # the next beat starts the flit
        left  = Signal(range(FLIT_WORDS + 1))
        w     = Signal(range(L + 1))       # width of the flit in flight

        width_ok = Signal()
        m.d.comb += width_ok.eq(0)
        for x in widths:
            with m.If(self.width == x):
                m.d.comb += width_ok.eq(1)

        last_beat = left == w
        m.d.comb += [
            self.beat.valid.eq(busy),
            self.flit.ready.eq(width_ok & (~busy | (last_beat & self.beat.ready))),
        ]
        for lane in range(L):
            blk = self.beat.payload[lane]
            with m.If(lane < w):
                m.d.comb += [
                    blk.data.eq(sr.word_select(lane, 64)),
                    blk.ctrl.eq(first if lane == 0 else 0),
                ]

        with m.If(self.beat.valid & self.beat.ready):
            m.d.sync += [
                first.eq(0),
                left.eq(left - w),
            ]
            with m.Switch(w):
                for x in widths:
                    with m.Case(x):
                        m.d.sync += sr.eq(sr >> (64 * x))
            with m.If(last_beat):
                m.d.sync += busy.eq(0)
        with m.If(self.flit.valid & self.flit.ready):
            m.d.sync += [
                sr.eq(self.flit.payload),
                busy.eq(1),
                first.eq(1),
                left.eq(FLIT_WORDS),
                w.eq(self.width),
            ]
        return m


class FlitRx(wiring.Component):
    """Reassembles flits from beats and reports framing errors.

    An ``SOF`` control block on logical lane 0 starts a flit; after its 32nd word the flit is
    delivered. A control block inside a flit, or a data block outside one, is a framing error:
    one ``framing_error`` flit is delivered and everything up to the next ``SOF`` on lane 0 is
    dropped (an ``SOF`` on lane 0 that cuts a flit short both reports the error and starts the
    next flit). Other control blocks between flits (IDLE, TS, …) are ignored.

    Parameters
    ----------
    params : LinkParams

    Members
    -------
    beat : ``In(stream.Signature(beat_layout(lanes)))``
        Beats from the PCS (``ready`` is always 1); lanes at or above ``width`` are ignored.
    width : ``In(range(lanes + 1))``
        Current width.
    flit : ``Out(stream.Signature(RX_FLIT))``
        Valid for one cycle per flit or framing error, the cycle after the beat that ends it
        (no back-pressure: ``ready`` is ignored).
    """

    def __init__(self, params):
        _check_params(params)
        self._p = params
        super().__init__({
            "beat":  In(stream.Signature(beat_layout(params.lanes))),
            "width": In(range(params.lanes + 1)),
            "flit":  Out(stream.Signature(RX_FLIT)),
        })

    def elaborate(self, platform):
        m = Module()
        L = self._p.lanes
        widths = _widths(L)
        IDLE, IN, HUNT = 0, 1, 2

        state = Signal(2, init=IDLE)
        cnt   = Signal(range(FLIT_WORDS + 1))   # words of the current flit received
        buf   = Signal(64 * FLIT_WORDS)         # the last 32 words, the newest in word 31

        m.d.comb += self.beat.ready.eq(1)

        # The lanes of a beat are taken in order, lane 0 first: unrolled, each lane's step
        # sees the state the lanes before it left.
        st, n = state, cnt
        done = Const(0)
        err = Const(0)
        for lane in range(L):
            blk = self.beat.payload[lane]
            sof = blk.ctrl & (blk.data[:8] == BlockType.SOF.value) if lane == 0 else Const(0)
            st_n = Signal(2, name=f"st_{lane}")
            n_n = Signal(range(FLIT_WORDS + 1), name=f"n_{lane}")
            done_n = Signal(name=f"done_{lane}")
            err_n = Signal(name=f"err_{lane}")
            m.d.comb += [st_n.eq(st), n_n.eq(n), done_n.eq(done), err_n.eq(err)]
            with m.If(lane < self.width):
                with m.Switch(st):
                    with m.Case(IN):
                        with m.If(blk.ctrl):
                            m.d.comb += [err_n.eq(1), st_n.eq(HUNT)]
                            with m.If(sof):
                                m.d.comb += [st_n.eq(IN), n_n.eq(1)]
                        with m.Elif(n == FLIT_WORDS - 1):
                            m.d.comb += [done_n.eq(1), st_n.eq(IDLE), n_n.eq(0)]
                        with m.Else():
                            m.d.comb += n_n.eq(n + 1)
                    with m.Case(IDLE):
                        with m.If(sof):
                            m.d.comb += [st_n.eq(IN), n_n.eq(1)]
                        with m.Elif(~blk.ctrl):
                            m.d.comb += [err_n.eq(1), st_n.eq(HUNT)]
                    with m.Default():
                        with m.If(sof):
                            m.d.comb += [st_n.eq(IN), n_n.eq(1)]
            st, n, done, err = st_n, n_n, done_n, err_n

        m.d.sync += self.flit.valid.eq(0)
        with m.If(self.beat.valid):
            m.d.sync += [
                state.eq(st),
                cnt.eq(n),
                self.flit.valid.eq(done | err),
                self.flit.payload.framing_error.eq(err),
            ]
            words = Cat(*[self.beat.payload[lane].data for lane in range(L)])
            with m.Switch(self.width):
                for x in widths:
                    with m.Case(x):
                        m.d.sync += buf.eq(Cat(buf[64 * x:], words[:64 * x]))
        m.d.comb += self.flit.payload.words.eq(buf)
        return m
