"""Link training: brings both ends of a link to one width and offset, then hands over the lanes.

Both endpoints run the same state machine (``docs/link_train.md``)::

    RESET ─► LANE_LOCK ─► TS1 ─► TS2 ─► ALIGN ─► DL_INIT ─► ACTIVE ─► RETRAIN ─► LANE_LOCK …
                           │  ◄──┘ (partner's TS2 disagrees)
                           └─► DISABLED (no lane usable both ways) ─► RESET on a CSR retrain,
                                   new lanes here or lanes advertised by the partner

Training sets (:data:`~.layouts.TS_BLOCK`) go out raw, one per physical lane and beat, and are
read back per physical lane before deskew, so lane skew does not matter until ALIGN. Each side
advertises the lanes it receives (``lanes_ok``); both then pick, from the lanes usable in both
directions, the widest aligned power-of-two group (:class:`WidthChoice`), so they agree without
a leader. Every training state has a watchdog; ACTIVE leaves for RETRAIN on a lane fault, a
deskew error, a data-link or CSR request, or the partner's training sets.
"""

from functools import reduce

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import (LINK_COUNTERS, TS_BLOCK, TS_MAGIC, BlockType, TrainState, beat_layout,
                      lane_active, pack)
from .params import LinkParams


__all__ = ["WidthChoice", "Trainer", "width_candidates", "TS_RUN", "TS2_TAIL", "ALIGN_HOLDOFF"]

#: Training sets in a row, on one lane and with the same content, before that lane is believed.
TS_RUN = 4
#: TS2 beats still sent after the partner's TS2 were believed on every lane, so that the
#: partner, which may be a few beats behind, receives its ``TS_RUN`` on every lane too.
TS2_TAIL = 8
#: Cycles after ``realign`` during which ``aligned`` is not believed (it may still be the
#: previous alignment's).
ALIGN_HOLDOFF = 4


def _in(state, *states):
    return Cat(*[state == s for s in states]).any()


def width_candidates(lanes):
    """``(width, offset)`` groups in order of preference: widest first, then lowest offset.

    Parameters
    ----------
    lanes : int
        Physical lanes, 1, 2, 4 or 8.

    Returns
    -------
    list of (int, int)
        Every aligned power-of-two group ``[offset, offset + width)`` of the lanes.
    """
    if lanes not in (1, 2, 4, 8):
        raise ValueError(f"lanes must be 1, 2, 4 or 8, not {lanes!r}")
    out = []
    w = lanes
    while w:
        out += [(w, o) for o in range(0, lanes, w)]
        w //= 2
    return out


class WidthChoice(wiring.Component):
    """The widest aligned power-of-two group of usable lanes (combinational).

    Parameters
    ----------
    lanes : int
        Physical lanes, 1, 2, 4 or 8.

    Members
    -------
    usable : ``In(lanes)``
        Lanes that may be used.
    width : ``Out(4)``, offset : ``Out(4)``
        The first group of :func:`width_candidates` whose lanes are all usable; ``width`` is 0
        (and ``offset`` 0) if no lane is.
    """

    def __init__(self, *, lanes):
        self._candidates = width_candidates(lanes)
        super().__init__({
            "usable": In(lanes),
            "width":  Out(4),
            "offset": Out(4),
        })

    def elaborate(self, platform):
        m = Module()
        # Least preferred first: the last assignment that applies wins.
        for w, o in reversed(self._candidates):
            with m.If(self.usable[o:o + w].all()):
                m.d.comb += [
                    self.width .eq(w),
                    self.offset.eq(o),
                ]
        return m


class Trainer(wiring.Component):
    """The link training state machine of one endpoint.

    Parameters
    ----------
    params : LinkParams
        ``lanes`` and ``train_timeout`` are used. ``LANE_LOCK`` waits up to
        ``train_timeout // 4`` cycles for every lane, then goes on with the locked ones once
        they have not changed for ``train_timeout // 16`` cycles.

    Members
    -------
    enable : ``In(1)``
        Low: hold RESET (the link transmits IDLE). Counters and the DL-init flag are kept.
    locked, hi_ber : ``In(lanes)``
        Each physical lane's block lock and hi-BER flag (``PcsRx``).
    lane_o : ``In(beat_layout(lanes))``, lane_valid : ``In(lanes)``
        Each physical lane's descrambled block before deskew. Training sets are read here;
        alignment markers (control blocks of type AM) are skipped, other blocks break a run.
    aligned : ``In(1)``
        The active lanes are deskewed (``PcsRx``); believed ``ALIGN_HOLDOFF`` cycles after
        ``realign``.
    deskew_error : ``In(1)``
        Pulse from ``PcsRx``.
    dl_retrain : ``In(1)``
        Pulse from the data link (REPLAY_NUM rolled over).
    csr_retrain : ``In(1)``
        Pulse from the CSRs: retrain from ACTIVE, restart from DISABLED (ignored elsewhere).
    raw : ``Out(1)``
        The PCS transmitter sends block ``j`` of a beat on physical lane ``j`` (every state but
        ALIGN, DL_INIT and ACTIVE).
    width : ``Out(range(lanes + 1))``, offset : ``Out(range(max(lanes, 2)))``
        The lanes in use, ``offset … offset + width - 1``, for both PCS halves. They change only
        on the TS1 → TS2 transition, before ``realign``; reset value: every lane.
    realign : ``Out(1)``
        One-cycle pulse in the first ALIGN cycle (``width`` and ``offset`` already new).
    tx_beat : ``Out(stream.Signature(beat_layout(lanes)))``
        What the trainer transmits: ``valid`` is always high; the payload is a function of the
        state (training sets, or IDLE blocks) and of a sequence number that advances on each
        beat taken, so it holds while ``ready`` is low except on a state change.
    tx_sel : ``Out(1)``
        The data link owns the transmitter (ACTIVE).
    dl_active : ``Out(1)``
        The link is up (ACTIVE).
    dl_init : ``Out(1)``
        High in the DL_INIT cycle before the first ACTIVE after reset (one cycle before
        ``dl_active`` rises); never again, not after a retrain nor after ``enable`` was low.
    state : ``Out(TrainState)``
    lanes_ok : ``Out(lanes)``
        The lanes this side receives, as advertised since the end of LANE_LOCK (0 before).
    counters : ``Out(LINK_COUNTERS)``
        ``retrains`` (entries to RETRAIN), ``degrades`` (entries to ACTIVE at a smaller width
        than the previous ACTIVE period), ``deskew_errors`` (``deskew_error`` pulses, in any
        state), ``hi_ber`` (rising edges of each lane's ``hi_ber``), ``train_timeouts``
        (watchdog expiries). Cumulative, wrapping; only a reset clears them.
    """

    def __init__(self, params):
        if not isinstance(params, LinkParams):
            raise TypeError(f"params must be a LinkParams, not {params!r}")
        self._params = params
        L = params.lanes
        super().__init__({
            "enable":       In(1),
            "locked":       In(L),
            "hi_ber":       In(L),
            "lane_o":       In(beat_layout(L)),
            "lane_valid":   In(L),
            "aligned":      In(1),
            "deskew_error": In(1),
            "dl_retrain":   In(1),
            "csr_retrain":  In(1),
            "raw":          Out(1),
            "width":        Out(range(L + 1)),
            "offset":       Out(range(max(L, 2))),
            "realign":      Out(1),
            "tx_beat":      Out(stream.Signature(beat_layout(L))),
            "tx_sel":       Out(1),
            "dl_active":    Out(1),
            "dl_init":      Out(1),
            "state":        Out(TrainState),
            "lanes_ok":     Out(L),
            "counters":     Out(LINK_COUNTERS),
        })

    @property
    def lock_wait(self):
        """Cycles LANE_LOCK waits for every lane before it settles for fewer."""
        return max(self._params.train_timeout // 4, 1)

    @property
    def lock_settle(self):
        """Cycles the locked set must be unchanged before LANE_LOCK settles for it."""
        return max(self._params.train_timeout // 16, 1)

    def elaborate(self, platform):
        m = Module()
        p = self._params
        L = p.lanes
        T = p.train_timeout
        every = (1 << L) - 1
        S = TrainState
        state = self.state
        cnt = self.counters

        def sat_inc(v, top):
            return Mux(v == top, top, v + 1)

        # Lanes fit to use right now, and how long that set has not changed.
        ok = Signal(L)
        ok_prev = Signal(L)
        stable = Signal(range(self.lock_settle + 1))
        m.d.comb += ok.eq(self.locked & ~self.hi_ber)
        m.d.sync += [
            ok_prev.eq(ok),
            stable.eq(Mux(ok == ok_prev, sat_inc(stable, self.lock_settle), 0)),
        ]

        local  = Signal(L)      # lanes this side receives, latched at the end of LANE_LOCK
        remote = Signal(L)      # lanes the partner receives, from its training sets
        width  = Signal(range(L + 1), init=L)
        offset = Signal(range(max(L, 2)))   # one bit even for one lane
        group  = Signal(L)      # lanes in use
        m.d.comb += [
            self.width   .eq(width),
            self.offset  .eq(offset),
            self.lanes_ok.eq(local),
            group.eq(Cat(*[lane_active(j, offset, width) for j in range(L)])),
        ]

        # Per-lane training-set recorders: the last training set's content and three run
        # lengths (saturating at TS_RUN): sets in a row with the same lanes_ok, TS1 in a row,
        # TS2 in a row with the same lanes_ok, width and offset.
        clear = Signal()
        rx_ok, rx_w, rx_o, ok_run, ts1_run, ts2_run = [], [], [], [], [], []
        for j in range(L):
            r_ok = Signal(L, name=f"rx_ok{j}")
            r_w  = Signal(4, name=f"rx_w{j}")
            r_o  = Signal(4, name=f"rx_o{j}")
            n_ok = Signal(range(TS_RUN + 1), name=f"ok_run{j}")
            n_1  = Signal(range(TS_RUN + 1), name=f"ts1_run{j}")
            n_2  = Signal(range(TS_RUN + 1), name=f"ts2_run{j}")
            rx_ok.append(r_ok)
            rx_w.append(r_w)
            rx_o.append(r_o)
            ok_run.append(n_ok)
            ts1_run.append(n_1)
            ts2_run.append(n_2)

            blk = self.lane_o[j]
            ts = data.View(TS_BLOCK, blk.data)
            good_ts = blk.ctrl & (ts.magic == TS_MAGIC) & (ts.lane == j)
            is_ts1 = Signal(name=f"is_ts1_{j}")
            is_ts2 = Signal(name=f"is_ts2_{j}")
            is_am = Signal(name=f"is_am{j}")
            m.d.comb += [
                is_ts1.eq(good_ts & (ts.type == BlockType.TS1.value)),
                is_ts2.eq(good_ts & (ts.type == BlockType.TS2.value)),
                is_am .eq(blk.ctrl & (blk.data[:8] == BlockType.AM.value)),
            ]
            same_ok = ts.lanes_ok[:L] == r_ok
            same_wo = (ts.width == r_w) & (ts.offset == r_o)
            with m.If(clear):
                m.d.sync += [n_ok.eq(0), n_1.eq(0), n_2.eq(0)]
            with m.Elif(self.lane_valid[j] & self.locked[j] & ~is_am):
                with m.If(is_ts1 | is_ts2):
                    m.d.sync += [
                        r_ok.eq(ts.lanes_ok[:L]),
                        r_w .eq(ts.width),
                        r_o .eq(ts.offset),
                        n_ok.eq(Mux(same_ok, sat_inc(n_ok, TS_RUN), 1)),
                        n_1 .eq(Mux(is_ts1, sat_inc(n_1, TS_RUN), 0)),
                        n_2 .eq(Mux(is_ts2, Mux((n_2 != 0) & same_ok & same_wo,
                                                sat_inc(n_2, TS_RUN), 1), 0)),
                    ]
                with m.Else():
                    m.d.sync += [n_ok.eq(0), n_1.eq(0), n_2.eq(0)]

        # TS1: every local lane has TS_RUN sets in a row with one common, non-empty lanes_ok
        # (equal on every lane exactly when their OR equals their AND).
        ok_or = reduce(lambda a, b: a | b, [Mux(local[j], rx_ok[j], 0) for j in range(L)])
        ok_and = reduce(lambda a, b: a & b, [Mux(local[j], rx_ok[j], every) for j in range(L)])
        heard = Signal()
        heard_ok = Signal(L)
        m.d.comb += [
            heard_ok.eq(ok_or),
            heard.eq((local != 0) & (ok_or == ok_and) & (ok_or != 0)
                     & Cat(*[~local[j] | (ok_run[j] == TS_RUN) for j in range(L)]).all()),
        ]

        m.submodules.proposal = proposal = WidthChoice(lanes=L)
        m.submodules.choice = choice = WidthChoice(lanes=L)
        m.d.comb += [
            proposal.usable.eq(local),
            choice.usable.eq(local & heard_ok),
        ]

        # TS2: a lane acknowledges once it carries TS_RUN partner TS2 with our choice; it
        # objects if the partner's lanes_ok changed (the partner restarted, or decided on a
        # stale set of ours) or its TS2 carry another choice.
        acks = Signal(L)
        ack = Signal(L)
        changed = Signal()
        moved_on = Signal()
        objection = Signal()
        got_ts2 = Signal()
        tail = Signal(range(TS2_TAIL))
        m.d.comb += [
            ack.eq(Cat(*[local[j] & (ts2_run[j] == TS_RUN) & (rx_ok[j] == remote)
                         & (rx_w[j] == width) & (rx_o[j] == offset) for j in range(L)])),
            changed.eq(Cat(*[local[j] & (ok_run[j] == TS_RUN) & (rx_ok[j] != remote)
                             for j in range(L)]).any()),
            # The same, heard on any lane ok now: DISABLED may have lost its local lanes.
            moved_on.eq(Cat(*[ok[j] & (ok_run[j] == TS_RUN) & (rx_ok[j] != remote)
                              for j in range(L)]).any()),
            objection.eq(changed | Cat(*[local[j] & (ts2_run[j] == TS_RUN) & (rx_ok[j] == remote)
                                         & ((rx_w[j] != width) | (rx_o[j] != offset))
                                         for j in range(L)]).any()),
        ]

        # The partner is training again: TS1 in a row on a lane in use.
        partner_ts1 = Cat(*[group[j] & (ts1_run[j] == TS_RUN) for j in range(L)]).any()
        lost_local = (local & ~ok) != 0
        lost_group = (group & ~ok) != 0

        # Transmitter.
        seq = Signal(8)
        sends_ts = Signal()
        m.d.comb += [
            sends_ts.eq(_in(state, S.LANE_LOCK, S.TS1, S.TS2, S.DISABLED)),
            self.raw.eq(~_in(state, S.ALIGN, S.DL_INIT, S.ACTIVE)),
            self.tx_sel.eq(state == S.ACTIVE),
            self.dl_active.eq(state == S.ACTIVE),
            self.tx_beat.valid.eq(1),
        ]
        fire = self.tx_beat.ready
        with m.If(fire & sends_ts):
            m.d.sync += seq.eq(seq + 1)
        is_ts2 = state == S.TS2
        in_lock = _in(state, S.LANE_LOCK, S.TS1)
        ts_w = Mux(is_ts2, width, Mux(in_lock, proposal.width, 0))
        ts_o = Mux(is_ts2, offset, Mux(in_lock, proposal.offset, 0))
        # In LANE_LOCK local is still empty and so is the proposal: "not ready". In DISABLED
        # the lanes that gave an empty choice, so that a partner training again with the
        # same lanes comes to DISABLED too.
        ts_ok = Mux(_in(state, S.TS2, S.LANE_LOCK, S.TS1, S.DISABLED), local, 0)
        ts_type = Mux(is_ts2, BlockType.TS2.value, BlockType.TS1.value)
        # Each block is one expression (layouts.pack): a constant-only field assigned on its
        # own becomes an `always @*` block that Verilator never runs (ALWNEVER).
        beat = []
        for j in range(L):
            ts = pack(TS_BLOCK, type=ts_type, lane=j, width=ts_w, offset=ts_o,
                      lanes_ok=ts_ok, seq=seq, magic=TS_MAGIC)
            beat.append(Cat(Const(1, 1), Mux(sends_ts, ts, BlockType.IDLE.value)))
        m.d.comb += self.tx_beat.payload.eq(Cat(*beat))

        # Counters of events outside the state machine.
        hb_prev = Signal(L)
        m.d.sync += [
            hb_prev.eq(self.hi_ber),
            cnt.hi_ber.eq(cnt.hi_ber + sum(self.hi_ber[j] & ~hb_prev[j] for j in range(L))),
            cnt.deskew_errors.eq(cnt.deskew_errors + self.deskew_error),
        ]

        # The state machine. `timer` counts cycles in a state; TS1 and TS2 share one count, so
        # going back and forth between them cannot dodge the watchdog.
        timer = Signal(range(T + 1))
        timeout = timer == T - 1
        dl_inited = Signal()
        prev_width = Signal(range(L + 1))     # width of the previous ACTIVE period, 0: none
        m.d.sync += [
            timer.eq(sat_inc(timer, T)),
            self.realign.eq(0),
        ]
        m.d.comb += [
            clear.eq(_in(state, S.RESET, S.RETRAIN)),
            self.dl_init.eq((state == S.DL_INIT) & ~dl_inited),
        ]

        def goto(s):
            m.d.sync += [state.eq(s), timer.eq(0)]

        def restart(count_timeout=False):
            goto(S.RESET)
            if count_timeout:
                m.d.sync += cnt.train_timeouts.eq(cnt.train_timeouts + 1)

        with m.If(~self.enable):
            m.d.sync += [local.eq(0), remote.eq(0)]
            goto(S.RESET)
        with m.Else():
            with m.Switch(state):
                with m.Case(S.RESET):
                    m.d.sync += [local.eq(0), remote.eq(0)]
                    goto(S.LANE_LOCK)

                with m.Case(S.LANE_LOCK):
                    settled = (timer >= self.lock_wait) & (stable == self.lock_settle)
                    with m.If((ok == every) | (settled & (ok != 0))):
                        m.d.sync += local.eq(ok)
                        goto(S.TS1)
                    with m.Elif(timeout):
                        restart(count_timeout=True)

                with m.Case(S.TS1):
                    with m.If(lost_local):
                        restart()
                    with m.Elif(heard):
                        m.d.sync += remote.eq(heard_ok)
                        with m.If(choice.width == 0):
                            goto(S.DISABLED)
                        with m.Else():
                            m.d.sync += [
                                state.eq(S.TS2),
                                width.eq(choice.width),
                                offset.eq(choice.offset),
                                acks.eq(0),
                                got_ts2.eq(0),
                                tail.eq(0),
                            ]
                    with m.Elif(timeout):
                        restart(count_timeout=True)

                with m.Case(S.TS2):
                    with m.If(lost_local):
                        restart()
                    with m.Elif(timeout):
                        restart(count_timeout=True)
                    with m.Elif(got_ts2):
                        with m.If(fire):
                            m.d.sync += tail.eq(tail + 1)
                            with m.If(tail == TS2_TAIL - 1):
                                goto(S.ALIGN)
                                m.d.sync += self.realign.eq(1)
                    with m.Elif(objection):
                        m.d.sync += state.eq(S.TS1)
                    with m.Else():
                        m.d.sync += [
                            acks.eq(acks | ack),
                            got_ts2.eq(((acks | ack) | ~local) == every),
                        ]

                with m.Case(S.ALIGN):
                    with m.If(lost_group | self.deskew_error | partner_ts1):
                        restart()
                    with m.Elif(self.aligned & (timer >= ALIGN_HOLDOFF)):
                        goto(S.DL_INIT)
                    with m.Elif(timeout):
                        restart(count_timeout=True)

                with m.Case(S.DL_INIT):
                    m.d.sync += [dl_inited.eq(1), prev_width.eq(width)]
                    with m.If((prev_width != 0) & (width < prev_width)):
                        m.d.sync += cnt.degrades.eq(cnt.degrades + 1)
                    goto(S.ACTIVE)

                with m.Case(S.ACTIVE):
                    with m.If(lost_group | self.deskew_error | self.dl_retrain
                              | self.csr_retrain | partner_ts1):
                        m.d.sync += cnt.retrains.eq(cnt.retrains + 1)
                        goto(S.RETRAIN)

                with m.Case(S.RETRAIN):
                    m.d.sync += [local.eq(0), remote.eq(0)]
                    goto(S.LANE_LOCK)

                with m.Case(S.DISABLED):
                    # Train again when the partner does (after a CSR retrain or enable) and
                    # advertises other lanes than those of the empty choice, or when a lane
                    # this side did not receive has locked and stayed locked.
                    grown = ((ok & ~local) != 0) & (stable == self.lock_settle)
                    with m.If(self.csr_retrain | moved_on | grown):
                        goto(S.RESET)
        return m
