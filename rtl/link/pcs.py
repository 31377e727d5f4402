"""The physical coding sublayer of the interchip link: lanes of 64b/66b, markers, deskew.

::

    beat ─► PcsTx ─ per lane: IDLE / AM insertion, BIP-8 ─► LaneTx (scramble, sync) ─► o[lane]
    i[lane] ─► LaneRx (bit-slip lock, descramble, hi-BER) ─► marker check ─► deskew FIFO ─► beat

One 66-bit block per lane per cycle in both directions (the gearbox of a real SerDes is
abstracted). ``docs/link_pcs.md`` describes the state machines, the timing and the counters;
``golden_model/link_pcs.py`` is the bit-exact model of the transmitter and a reference decoder
of the receiver.
"""

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .layouts import (AM_BLOCK, AM_MAGIC, BLOCK, BLOCK_BITS, PCS_LANE_COUNTERS, SYNC_CTRL,
                      SYNC_DATA, BlockType, beat_layout, lane_active)
from .params import LinkParams
from .scrambler import Descrambler, Scrambler


__all__ = ["LaneTx", "LaneRx", "PcsTx", "PcsRx", "bip8_fold"]


def _check_params(params):
    if not isinstance(params, LinkParams):
        raise TypeError(f"params must be a LinkParams, not {params!r}")


def bip8_fold(payload):
    """The XOR of the eight bytes of a 64-bit payload value (one block's BIP-8 contribution)."""
    out = payload[0:8]
    for b in range(1, 8):
        out = out ^ payload[8 * b:8 * b + 8]
    return out


class LaneTx(wiring.Component):
    """One transmit lane: scrambles a block and prepends its sync header.

    Parameters
    ----------
    params : LinkParams

    Members
    -------
    i : ``In(BLOCK)``
        The block to send this cycle (there is one every cycle).
    o : ``Out(66)``
        The 66-bit block, registered: ``i`` of the previous cycle. Bits 0–1 are the sync header
        (``SYNC_CTRL`` if ``ctrl`` else ``SYNC_DATA``), bits 2–65 the scrambled payload.
    """

    def __init__(self, params):
        _check_params(params)
        self._params = params
        super().__init__({
            "i": In(BLOCK),
            "o": Out(BLOCK_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.scrambler = scr = Scrambler()
        m.d.comb += [
            scr.i .eq(self.i.data),
            scr.en.eq(1),
        ]
        m.d.sync += self.o.eq(Cat(Mux(self.i.ctrl, SYNC_CTRL, SYNC_DATA)[:2], scr.o))
        return m


class LaneRx(wiring.Component):
    """One receive lane: block lock by bit-slip, descrambling and the hi-BER monitor.

    Parameters
    ----------
    params : LinkParams
        ``lock_good`` (≥ 2), ``lock_window``, ``lock_bad``, ``hi_ber_window`` and
        ``hi_ber_count`` are used.

    Members
    -------
    i : ``In(66)``
        The next 66 bits of the lane's serial stream, bit 0 earliest; the block boundary is
        anywhere in it.
    o : ``Out(BLOCK)``
        The descrambled block, registered. The block taken in cycle ``t`` is the 66-bit window
        at bit ``slip`` of ``Cat(i at t - 1, i at t)``; it is on ``o`` in cycle ``t + 1``.
        ``ctrl`` is set for a ``SYNC_CTRL`` header only (an invalid header reads as data).
    o_valid : ``Out(1)``
        ``locked`` and the sync header of ``o`` is valid.
    locked : ``Out(1)``
        Block lock, updated with the block on ``o`` (the block that completes the lock is
        delivered valid; the block that loses it is not).
    hi_ber : ``Out(1)``
        ``hi_ber_count`` invalid headers within a ``hi_ber_window``-block window; low while
        unlocked and after a window with fewer.
    bad_headers : ``Out(32)``
        Invalid sync headers received while locked.
    lock_losses : ``Out(32)``
        Times block lock was lost.
    """

    def __init__(self, params):
        _check_params(params)
        if params.lock_good < 2:
            raise ValueError(f"lock_good must be at least 2 (the descrambler needs one block "
                             f"at a slip before its output is good), not {params.lock_good}")
        self._params = params
        super().__init__({
            "i":           In(BLOCK_BITS),
            "o":           Out(BLOCK),
            "o_valid":     Out(1),
            "locked":      Out(1),
            "hi_ber":      Out(1),
            "bad_headers": Out(32),
            "lock_losses": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        p = self._params

        prev = Signal(BLOCK_BITS)
        slip = Signal(range(BLOCK_BITS))
        blk  = Signal(BLOCK_BITS)
        m.d.sync += prev.eq(self.i)
        m.d.comb += blk.eq(Cat(prev, self.i).bit_select(slip, BLOCK_BITS))
        header_ok = Signal()
        m.d.comb += header_ok.eq(blk[0] ^ blk[1])

        # The descrambler runs on every window, even while hunting, so that its 58 bits of
        # history are right one block after the window last moved.
        m.submodules.descrambler = desc = Descrambler()
        o_header_ok = Signal()
        m.d.comb += [
            desc.i .eq(blk[2:]),
            desc.en.eq(1),
        ]
        m.d.sync += [
            self.o.ctrl.eq(blk[:2] == SYNC_CTRL),
            self.o.data.eq(desc.o),
            o_header_ok.eq(header_ok),
        ]
        m.d.comb += self.o_valid.eq(self.locked & o_header_ok)

        # Block lock (IEEE 802.3 cl. 49 style): hunt by slipping one bit after each invalid
        # header; lock_good valid headers in a row lock; lock_bad invalid ones in a tumbling
        # window of lock_window blocks unlock. Losing lock does not slip: a lane hit by a burst
        # relocks at the same offset, and a moved boundary gives an invalid header soon enough.
        good = Signal(range(p.lock_good + 1))
        win  = Signal(range(p.lock_window + 1))
        bad  = Signal(range(p.lock_bad + 1))
        with m.If(~self.locked):
            with m.If(header_ok):
                with m.If(good == p.lock_good - 1):
                    m.d.sync += [
                        self.locked.eq(1),
                        good.eq(0), win.eq(0), bad.eq(0),
                    ]
                with m.Else():
                    m.d.sync += good.eq(good + 1)
            with m.Else():
                m.d.sync += [
                    good.eq(0),
                    slip.eq(Mux(slip == BLOCK_BITS - 1, 0, slip + 1)),
                ]
        with m.Else():
            window_end = win == p.lock_window - 1
            m.d.sync += win.eq(Mux(window_end, 0, win + 1))
            with m.If(~header_ok):
                m.d.sync += self.bad_headers.eq(self.bad_headers + 1)
            with m.If(~header_ok & (bad == p.lock_bad - 1)):
                m.d.sync += [
                    self.locked.eq(0),
                    self.lock_losses.eq(self.lock_losses + 1),
                    good.eq(0), win.eq(0), bad.eq(0),
                ]
            with m.Elif(window_end):
                m.d.sync += bad.eq(0)
            with m.Elif(~header_ok):
                m.d.sync += bad.eq(bad + 1)

        # hi-BER: a tumbling window of hi_ber_window locked blocks. The flag rises as soon as
        # the count reaches hi_ber_count and is re-decided at the end of every window.
        hb_win = Signal(range(p.hi_ber_window + 1))
        hb_cnt = Signal(range(p.hi_ber_count + 1))
        hb_next = Signal(range(p.hi_ber_count + 2))
        m.d.comb += hb_next.eq(hb_cnt + ~header_ok)
        hb_hit = hb_next >= p.hi_ber_count
        with m.If(~self.locked):
            m.d.sync += [hb_win.eq(0), hb_cnt.eq(0), self.hi_ber.eq(0)]
        with m.Elif(hb_win == p.hi_ber_window - 1):
            m.d.sync += [hb_win.eq(0), hb_cnt.eq(0), self.hi_ber.eq(hb_hit)]
        with m.Else():
            m.d.sync += [
                hb_win.eq(hb_win + 1),
                hb_cnt.eq(Mux(hb_hit, p.hi_ber_count, hb_next)),
            ]
            with m.If(hb_hit):
                m.d.sync += self.hi_ber.eq(1)
        return m


def _idle_block():
    return BLOCK.const({"ctrl": 1, "data": BlockType.IDLE.value})


class PcsTx(wiring.Component):
    """The transmit PCS: striping onto physical lanes, IDLE fill, alignment markers.

    Parameters
    ----------
    params : LinkParams
        ``lanes`` and ``am_period`` are used.

    Members
    -------
    beat : ``In(stream.Signature(beat_layout(lanes)))``
        Blocks to send, one per logical lane (striped) or physical lane (raw). ``ready`` is low
        in the marker cycle, one cycle in ``am_period`` (the first after reset); it does not
        depend on ``valid``.
    raw : ``In(1)``
        Block ``j`` of a beat goes to physical lane ``j`` (training), ignoring ``width`` and
        ``offset`` except in the markers' width field.
    width : ``In(range(lanes + 1))``, offset : ``In(range(max(lanes, 2)))``
        Striped: block ``j < width`` goes to physical lane ``offset + j`` (``offset + width``
        must not exceed ``lanes``); the other lanes send IDLE. ``width`` is also the markers'
        width field.
    o : ``Out(data.ArrayLayout(66, lanes))``
        Each physical lane's 66-bit block, one cycle after the beat is taken.

    Every physical lane sends a block every cycle: the beat's block when a beat is taken, IDLE
    for an inactive lane or when ``beat.valid`` is low, and in the marker cycle an
    :data:`AM_BLOCK` (its lane ID, ``width``, and the BIP-8 of the payloads, before scrambling,
    of every block the lane sent since its previous marker).
    """

    def __init__(self, params):
        _check_params(params)
        self._params = params
        L = params.lanes
        super().__init__({
            "beat":   In(stream.Signature(beat_layout(L))),
            "raw":    In(1),
            "width":  In(range(L + 1)),
            "offset": In(range(max(L, 2))),
            "o":      Out(data.ArrayLayout(BLOCK_BITS, L)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self._params
        L = p.lanes

        phase = Signal(range(p.am_period))    # am_period is a power of two: wraps by itself
        m.d.sync += phase.eq(phase + 1)
        marker = Signal()
        m.d.comb += [
            marker.eq(phase == 0),
            self.beat.ready.eq(~marker),
        ]
        take = self.beat.valid & ~marker

        for lane in range(L):
            m.submodules[f"lane{lane}"] = tx = LaneTx(p)
            blk = Signal(BLOCK, name=f"blk{lane}")
            bip = Signal(8, name=f"bip{lane}")
            am = Signal(AM_BLOCK, name=f"am{lane}")
            m.d.comb += [
                am.type   .eq(BlockType.AM),
                am.lane   .eq(lane),
                am.width  .eq(self.width),
                am.bip    .eq(bip),
                am.bip_inv.eq(~bip),
                am.magic  .eq(AM_MAGIC),
            ]

            # The beat's block for this physical lane, and whether it is in use.
            striped = Signal(BLOCK, name=f"striped{lane}")
            active = Signal(name=f"active{lane}")
            for off in range(L):
                j = lane - off
                if j < 0:
                    continue
                with m.If(self.offset == off):
                    m.d.comb += [
                        striped.eq(self.beat.payload[j]),
                        active.eq(j < self.width),
                    ]

            m.d.comb += blk.eq(_idle_block())
            with m.If(marker):
                m.d.comb += blk.eq(Cat(Const(1, 1), am.as_value()))
            with m.Elif(take & self.raw):
                m.d.comb += blk.eq(self.beat.payload[lane])
            with m.Elif(take & active):
                m.d.comb += blk.eq(striped)

            m.d.sync += bip.eq(Mux(marker, 0, bip ^ bip8_fold(blk.data)))
            m.d.comb += [
                tx.i.eq(blk),
                self.o[lane].eq(tx.o),
            ]
        return m


class _Align(enum.Enum, shape=2):
    IDLE    = 0   # waiting for every active lane to be locked, in phase and between markers
    COLLECT = 1   # filling the FIFOs from each lane's next marker on
    ALIGNED = 2   # popping in lock-step


class PcsRx(wiring.Component):
    """The receive PCS: per-lane lock and marker checks, deskew, beat delivery.

    Parameters
    ----------
    params : LinkParams
        ``lanes``, ``am_period``, ``max_skew`` (``2 * max_skew + 2 ≤ am_period``, so that a
        marker period tells skews apart) and the :class:`LaneRx` parameters.

    Members
    -------
    i : ``In(data.ArrayLayout(66, lanes))``
        The next 66 bits of each physical lane's serial stream.
    width : ``In(range(lanes + 1))``, offset : ``In(range(max(lanes, 2)))``
        The active lanes are ``offset … offset + width - 1``; change them with ``realign``.
    realign : ``In(1)``
        Drop alignment (no ``deskew_error``) and align again.
    lane_o : ``Out(data.ArrayLayout(BLOCK, lanes))``, lane_valid : ``Out(lanes)``
        Each physical lane's descrambled blocks before deskew (:class:`LaneRx` ``o`` and
        ``o_valid``); training reads its TS blocks here.
    locked, hi_ber : ``Out(lanes)``
        Each lane's block lock and hi-BER flag.
    counters : ``Out(data.ArrayLayout(PCS_LANE_COUNTERS, lanes))``
        Each lane's counters (cumulative, wrapping).
    beat : ``Out(stream.Signature(beat_layout(lanes)))``
        Deskewed beats: block ``j < width`` is from physical lane ``offset + j`` (blocks
        ``j ≥ width`` are undefined). ``valid`` for every beat but the marker beats once
        aligned; ``ready`` is ignored (there is no backpressure).
    aligned : ``Out(1)``
        Every active lane is locked and the lanes are deskewed on their markers.
    deskew_error : ``Out(1)``
        One-cycle pulse, with ``aligned`` falling: while aligned, an active lane lost lock or
        its marker left the marker beat; or, while aligning, the lanes' markers were more than
        ``max_skew`` beats apart.
    """

    def __init__(self, params):
        _check_params(params)
        if 2 * params.max_skew + 2 > params.am_period:
            raise ValueError(f"max_skew ({params.max_skew}) must be at most "
                             f"(am_period - 2) / 2 = {(params.am_period - 2) // 2}: a marker "
                             f"period must tell a skew from the next marker")
        self._params = params
        L = params.lanes
        super().__init__({
            "i":            In(data.ArrayLayout(BLOCK_BITS, L)),
            "width":        In(range(L + 1)),
            "offset":       In(range(max(L, 2))),
            "realign":      In(1),
            "lane_o":       Out(data.ArrayLayout(BLOCK, L)),
            "lane_valid":   Out(L),
            "locked":       Out(L),
            "hi_ber":       Out(L),
            "counters":     Out(data.ArrayLayout(PCS_LANE_COUNTERS, L)),
            "beat":         Out(stream.Signature(beat_layout(L))),
            "aligned":      Out(1),
            "deskew_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self._params
        L, P = p.lanes, p.am_period
        # While aligning, the first lane's FIFO holds up to max_skew + 2 blocks before the
        # skew check fires; one more is written in that cycle.
        depth = p.max_skew + 4

        state = Signal(_Align)
        flush = Signal()
        pop = Signal()
        fifos, quiet, active = [], [], []

        for lane in range(L):
            m.submodules[f"lane{lane}"] = rx = LaneRx(p)
            cnt = self.counters[lane]
            blk = rx.o
            am = data.View(AM_BLOCK, blk.data)
            m.d.comb += [
                rx.i                   .eq(self.i[lane]),
                self.lane_o[lane]      .eq(blk),
                self.lane_valid[lane]  .eq(rx.o_valid),
                self.locked[lane]      .eq(rx.locked),
                self.hi_ber[lane]      .eq(rx.hi_ber),
                cnt.bad_headers        .eq(rx.bad_headers),
                cnt.lock_losses        .eq(rx.lock_losses),
            ]

            # A marker is a valid control block of type AM with the magic and both BIP copies
            # consistent; its lane ID is checked separately.
            marker = Signal(name=f"is_am{lane}")
            m.d.comb += marker.eq(rx.o_valid & blk.ctrl & (am.type == BlockType.AM)
                                  & (am.magic == AM_MAGIC) & (am.bip_inv == ~am.bip))

            # Marker tracking: after a first marker, one is expected every P blocks (a
            # flywheel, so a lost marker does not lose the phase). The BIP of the blocks since
            # the previous marker is checked once a marker has been seen since lock.
            has_phase = Signal(name=f"has_phase{lane}")
            since = Signal(range(P), name=f"since{lane}")   # blocks since the last marker - 1
            armed = Signal(name=f"bip_armed{lane}")
            acc = Signal(8, name=f"bip_acc{lane}")
            expected = has_phase & (since == P - 1)
            with m.If(~rx.locked):
                m.d.sync += [has_phase.eq(0), armed.eq(0), acc.eq(0), since.eq(0)]
            with m.Elif(marker):
                misplaced = has_phase & ~expected
                m.d.sync += [
                    cnt.am_errors.eq(cnt.am_errors + (misplaced | (am.lane != lane))),
                    cnt.bip_errors.eq(cnt.bip_errors + (expected & armed & (acc != am.bip))),
                    has_phase.eq(1), armed.eq(1), acc.eq(0), since.eq(0),
                ]
            with m.Elif(expected):
                m.d.sync += [
                    cnt.am_errors.eq(cnt.am_errors + 1),
                    acc.eq(0), since.eq(0),
                ]
            with m.Else():
                m.d.sync += [
                    acc.eq(acc ^ bip8_fold(blk.data)),
                    since.eq(since + 1),
                ]
            # No marker of this lane in the last max_skew blocks, none now: with the skew
            # within max_skew, every lane's next marker belongs to the same marker beat.
            q = Signal(name=f"quiet{lane}")
            m.d.comb += q.eq(has_phase & (since >= p.max_skew) & (since != P - 1) & ~marker)
            quiet.append(q)

            act = Signal(name=f"active{lane}")
            m.d.comb += act.eq(lane_active(lane, self.offset, self.width))
            active.append(act)

            fifo = SyncFIFO(width=BLOCK.size + 1, depth=depth)
            m.submodules[f"deskew{lane}"] = ResetInserter(flush)(fifo)
            fifos.append(fifo)
            st = Signal(name=f"started{lane}")
            m.d.comb += [
                fifo.w_data.eq(Cat(blk.as_value(), marker)),
                fifo.r_en.eq(pop & act),
            ]
            with m.Switch(state):
                with m.Case(_Align.COLLECT):
                    m.d.comb += fifo.w_en.eq(act & (st | marker))
                    with m.If(act & marker):
                        m.d.sync += st.eq(1)
                with m.Case(_Align.ALIGNED):
                    m.d.comb += fifo.w_en.eq(act)
                with m.Default():
                    m.d.sync += st.eq(0)

        def all_active(bits):
            return Cat(*[b | ~a for b, a in zip(bits, active)]).all()

        def any_active(bits):
            return Cat(*[b & a for b, a in zip(bits, active)]).any()

        all_locked = Signal()
        heads_rdy = Signal()
        head_am = Signal()
        too_far = Signal()
        m.d.comb += [
            all_locked.eq((self.width != 0) & all_active(list(self.locked))),
            heads_rdy.eq(all_active([f.r_rdy for f in fifos])),
            head_am.eq(any_active([f.r_data[-1] for f in fifos])),
            too_far.eq(any_active([f.level > p.max_skew + 1 for f in fifos])),
        ]

        for j in range(L):
            for off in range(L - j):
                with m.If(self.offset == off):
                    m.d.comb += self.beat.payload[j].eq(fifos[off + j].r_data[:BLOCK.size])

        beat_phase = Signal(range(P))    # beats popped since the marker beat, while aligned
        error = Signal()
        m.d.sync += self.deskew_error.eq(error)
        m.d.comb += self.aligned.eq(state == _Align.ALIGNED)

        with m.Switch(state):
            with m.Case(_Align.IDLE):
                m.d.comb += flush.eq(1)
                with m.If(all_locked & all_active(quiet) & ~self.realign):
                    m.d.sync += state.eq(_Align.COLLECT)
            with m.Case(_Align.COLLECT):
                with m.If(self.realign | ~all_locked):
                    m.d.sync += state.eq(_Align.IDLE)
                with m.Elif(too_far):
                    m.d.comb += error.eq(1)
                    m.d.sync += state.eq(_Align.IDLE)
                with m.Elif(heads_rdy):
                    # Every head is its lane's marker: drop the marker beat and go.
                    m.d.comb += pop.eq(1)
                    m.d.sync += [state.eq(_Align.ALIGNED), beat_phase.eq(0)]
            with m.Case(_Align.ALIGNED):
                with m.If(self.realign):
                    m.d.sync += state.eq(_Align.IDLE)
                with m.Elif(~all_locked | ~heads_rdy):
                    m.d.comb += error.eq(1)
                    m.d.sync += state.eq(_Align.IDLE)
                with m.Elif(beat_phase == P - 1):
                    # The marker beat (a lane whose marker was corrupted is counted by its
                    # am_errors, not a deskew error).
                    m.d.comb += pop.eq(1)
                    m.d.sync += beat_phase.eq(0)
                with m.Elif(head_am):
                    m.d.comb += error.eq(1)
                    m.d.sync += state.eq(_Align.IDLE)
                with m.Else():
                    m.d.comb += [pop.eq(1), self.beat.valid.eq(1)]
                    m.d.sync += beat_phase.eq(beat_phase + 1)
        return m
