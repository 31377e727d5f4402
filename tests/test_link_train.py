# amaranth: UnusedElaboratable=no
"""Amaranth-pysim tests of the link training state machine (``rtl/link/train.py``).

Two trainers face each other through a behavioural model of the PCS and the wire, written
here in Amaranth so that no Python runs per cycle: each physical lane carries the transmitter's
block (or, one cycle in ``am_period``, an alignment marker, the transmit beat stalling) to the
partner's ``lane_o`` after a per-lane delay; a lane is locked a per-lane time after the test
makes it alive; ``aligned`` rises a fixed time after ``realign`` while the lanes in use are
locked. Widths are checked against :func:`ref_choice`, an independent enumeration.
``SEED=n`` replays the random delays and start times.
"""

import os
from dataclasses import replace

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.sim import Simulator

from rtl.link.layouts import AM_MAGIC, BLOCK, TS_MAGIC, BlockType, TrainState
from rtl.link.params import LinkParams
from rtl.link.train import Trainer, WidthChoice, width_candidates


S = TrainState
T_TIMEOUT = 1024    # train_timeout of these tests: LANE_LOCK waits 256 + 64 for a dead lane


def _rng(offset):
    seed = int(os.environ.get("SEED", "20241125")) + offset
    print(f"seed {seed} (SEED={seed - offset} replays)")
    return np.random.default_rng(seed)


def ref_choice(usable, lanes):
    """``(width, offset)`` of the widest aligned power-of-two group of usable lanes, lowest
    offset among equals; ``(0, 0)`` if no lane is usable."""
    groups = [(w, o) for w in (1, 2, 4, 8) if w <= lanes for o in range(0, lanes, w)
              if all(usable >> (o + i) & 1 for i in range(w))]
    if not groups:
        return 0, 0
    return min(groups, key=lambda g: (-g[0], g[1]))


def _params(lanes):
    return replace(LinkParams(lanes=lanes).fast_sim(), train_timeout=T_TIMEOUT)


def _all(bits):
    out = 1
    for b in bits:
        out = out & b
    return out


def _other(side):
    return "b" if side == "a" else "a"


class _Controls:
    """What a test drives for one endpoint: its enable and the faults of what it receives."""

    def __init__(self, lanes, name):
        self.enable       = Signal(name=f"{name}_enable")
        self.alive        = Signal(lanes, init=(1 << lanes) - 1, name=f"{name}_alive")
        self.hi_ber       = Signal(lanes, name=f"{name}_hi_ber")
        self.deskew_error = Signal(name=f"{name}_deskew_error")
        self.dl_retrain   = Signal(name=f"{name}_dl_retrain")
        self.csr_retrain  = Signal(name=f"{name}_csr_retrain")
        self.no_align     = Signal(name=f"{name}_no_align")


class _Monitor:
    """Counts, outside the trainer, what the trainer's outputs show."""

    def __init__(self, name):
        self.dl_inits = Signal(8, name=f"{name}_dl_inits")
        self.retrain_cycles = Signal(8, name=f"{name}_retrain_cycles")
        self.restarts = Signal(16, name=f"{name}_restarts")   # entries to RESET while enabled
        self.prev = Signal(TrainState, name=f"{name}_prev")


class LinkBench(Elaboratable):
    """Two trainers ``a`` and ``b`` and the model of the PCS and the wire between them.

    Parameters
    ----------
    params : LinkParams
    rng : numpy.random.Generator
        Draws each lane's delay (1–12 cycles per direction), lock time (16–48 cycles) and the
        alignment time (20–59 cycles).
    swap : bool
        The a → b wire crosses lanes 0 and 1 (lane reversal is not supported: a negative case).
    """

    def __init__(self, params, rng, *, swap=False):
        L = params.lanes
        self.params = params
        self.a, self.b = Trainer(params), Trainer(params)
        self.ctl = {"a": _Controls(L, "a"), "b": _Controls(L, "b")}
        self.mon = {"a": _Monitor("a"), "b": _Monitor("b")}
        self.delays = {d: [int(x) for x in rng.integers(1, 13, L)] for d in ("ab", "ba")}
        self.lock_cycles = {s: [int(x) for x in rng.integers(16, 49, L)] for s in "ab"}
        self.align_cycles = int(rng.integers(20, 60))
        self.swap = swap
        self.cycle = Signal(32)
        print(f"delays {self.delays} lock {self.lock_cycles} align {self.align_cycles}")

    def _direction(self, m, x, y, ctl, delays, lock_cycles, swap):
        p = self.params
        L = p.lanes
        phase = Signal(range(p.am_period))
        m.d.sync += phase.eq(phase + 1)
        marker = phase == 0
        m.d.comb += x.tx_beat.ready.eq(~marker)

        sent = []
        for j in range(L):
            blk = Signal(BLOCK)
            sent.append(blk)
            with m.If(marker):
                m.d.comb += blk.eq(BLOCK.const({"ctrl": 1, "data": BlockType.AM.value | j << 8
                                                | AM_MAGIC << 32}))
            with m.Elif(x.tx_sel & (j >= x.offset) & (j < x.offset + x.width)):
                m.d.comb += [blk.ctrl.eq(0), blk.data.eq(self.cycle)]
            with m.Elif(x.raw):
                m.d.comb += blk.eq(x.tx_beat.payload[j])
            with m.Else():
                m.d.comb += blk.eq(BLOCK.const({"ctrl": 1, "data": BlockType.IDLE.value}))

        group_locked = []
        for j in range(L):
            src = sent[{0: 1, 1: 0}.get(j, j) if swap else j]
            line = [Signal(BLOCK, name=f"line{j}_{i}") for i in range(delays[j])]
            m.d.sync += line[0].eq(src)
            m.d.sync += [line[i].eq(line[i - 1]) for i in range(1, len(line))]
            out = line[-1]

            lock = Signal(range(lock_cycles[j] + 1))
            with m.If(~ctl.alive[j]):
                m.d.sync += lock.eq(0)
            with m.Elif(lock != lock_cycles[j]):
                m.d.sync += lock.eq(lock + 1)
            locked = lock == lock_cycles[j]
            # Even lanes hide markers (valid low), odd lanes pass them on: both must do.
            am = out.ctrl & (out.data[:8] == BlockType.AM.value)
            m.d.comb += [
                y.lane_o[j].eq(out),
                y.lane_valid[j].eq(locked & ~(am & (j % 2 == 0))),
                y.locked[j].eq(locked),
            ]
            group_locked.append(locked | (j < y.offset) | (j >= y.offset + y.width))

        m.d.comb += [
            y.hi_ber.eq(ctl.hi_ber),
            y.deskew_error.eq(ctl.deskew_error),
            y.dl_retrain.eq(ctl.dl_retrain),
            y.csr_retrain.eq(ctl.csr_retrain),
            y.enable.eq(ctl.enable),
        ]
        al = Signal(range(self.align_cycles + 1))
        with m.If(y.realign | y.raw | ctl.no_align | ~_all(group_locked)):
            m.d.sync += al.eq(0)
        with m.Elif(al != self.align_cycles):
            m.d.sync += al.eq(al + 1)
        m.d.comb += y.aligned.eq(al == self.align_cycles)

    def elaborate(self, platform):
        m = Module()
        m.submodules.a = self.a
        m.submodules.b = self.b
        m.d.sync += self.cycle.eq(self.cycle + 1)
        self._direction(m, self.a, self.b, self.ctl["b"], self.delays["ab"],
                        self.lock_cycles["b"], self.swap)
        self._direction(m, self.b, self.a, self.ctl["a"], self.delays["ba"],
                        self.lock_cycles["a"], False)
        for name, t in (("a", self.a), ("b", self.b)):
            mon = self.mon[name]
            m.d.sync += [
                mon.prev.eq(t.state),
                mon.dl_inits.eq(mon.dl_inits + t.dl_init),
                mon.retrain_cycles.eq(mon.retrain_cycles + (t.state == S.RETRAIN)),
                mon.restarts.eq(mon.restarts + ((t.state == S.RESET) & (mon.prev != S.RESET)
                                                & self.ctl[name].enable)),
            ]
        return m


def _run(bench, tb, vcd=None):
    sim = Simulator(bench)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    if os.environ.get("WAVES"):
        with sim.write_vcd(f"{vcd or 'link_train'}.vcd"):
            sim.run()
    else:
        sim.run()


def _state(ctx, t):
    return TrainState(ctx.get(t.state))


def _counters(ctx, t):
    c = ctx.get(t.counters)
    return {k: int(getattr(c, k)) for k in
            ("retrains", "degrades", "deskew_errors", "hi_ber", "train_timeouts")}


async def _wait(ctx, bench, cond, limit, what, hold=1):
    """Tick until ``cond`` has held for ``hold`` cycles in a row (as read between edges)."""
    last = ctx.get(bench.cycle)
    deadline = last + limit
    run = 0
    while run < hold:
        # `until` samples at the edge; what the test reads afterwards is after the edge.
        await ctx.tick().until(cond | (bench.cycle >= deadline))
        now = ctx.get(bench.cycle)
        run = run + 1 if ctx.get(cond) and now == last + 1 else int(ctx.get(cond))
        last = now
        assert run or ctx.get(bench.cycle) < deadline, (
            f"{what}: not within {limit} cycles (a {_state(ctx, bench.a).name}, "
            f"b {_state(ctx, bench.b).name})")


def _both(bench, state):
    return (bench.a.state == state) & (bench.b.state == state)


async def _pulse(ctx, sig, value=1, cycles=1):
    ctx.set(sig, value)
    await ctx.tick().repeat(cycles)
    ctx.set(sig, 0)


def _check_active(ctx, bench, width, offset):
    for t in (bench.a, bench.b):
        assert _state(ctx, t) is S.ACTIVE
        assert (ctx.get(t.width), ctx.get(t.offset)) == (width, offset)
        assert ctx.get(t.tx_sel) == 1 and ctx.get(t.dl_active) == 1 and ctx.get(t.raw) == 0


async def _bring_up(ctx, bench, rng=None, limit=4000):
    """Enable both sides (at random times if ``rng``) and wait until both are ACTIVE."""
    if rng is None:
        ctx.set(bench.ctl["a"].enable, 1)
        ctx.set(bench.ctl["b"].enable, 1)
    else:
        ta, tb = (int(x) for x in rng.integers(0, 300, 2))
        first, second = ("a", "b") if ta <= tb else ("b", "a")
        await ctx.tick().repeat(min(ta, tb) + 1)
        ctx.set(bench.ctl[first].enable, 1)
        await ctx.tick().repeat(abs(ta - tb) + 1)
        # Held in RESET until enabled.
        assert _state(ctx, getattr(bench, second)) is S.RESET
        ctx.set(bench.ctl[second].enable, 1)
    await _wait(ctx, bench, _both(bench, S.ACTIVE), limit, "bring-up")


# --- the width choice on its own -----------------------------------------------------------

@pytest.mark.parametrize("lanes", [1, 2, 4, 8])
def test_width_choice_exhaustive(lanes):
    dut = WidthChoice(lanes=lanes)

    async def tb(ctx):
        for usable in range(1 << lanes):
            ctx.set(dut.usable, usable)
            got = (ctx.get(dut.width), ctx.get(dut.offset))
            assert got == ref_choice(usable, lanes), f"usable {usable:0{lanes}b}"

    sim = Simulator(dut)
    sim.add_testbench(tb)
    sim.run()


def test_parameters_validated():
    with pytest.raises(ValueError, match="lanes must be 1, 2, 4 or 8, not 3"):
        width_candidates(3)
    with pytest.raises(ValueError, match="lanes must be 1, 2, 4 or 8, not 3"):
        WidthChoice(lanes=3)
    with pytest.raises(TypeError, match="params must be a LinkParams"):
        Trainer(4)
    assert width_candidates(8)[:3] == [(8, 0), (4, 0), (4, 4)]


# --- what goes on the wire -----------------------------------------------------------------

def _decode_ts(ctrl, payload):
    """The training-set fields of one block, by the bit positions of the wire format."""
    return {
        "ctrl": ctrl, "type": payload & 0xFF, "lane": payload >> 8 & 0xF,
        "width": payload >> 12 & 0xF, "offset": payload >> 16 & 0xF,
        "lanes_ok": payload >> 20 & 0xFF, "seq": payload >> 28 & 0xFF, "magic": payload >> 36,
    }


def test_training_set_format():
    """a trains against a b held in RESET: a's training sets follow the wire format, their
    sequence number advances once per beat taken and holds in the marker cycles; b sends IDLE."""
    L = 4
    bench = LinkBench(_params(L), _rng(0))

    async def tb(ctx):
        ctx.set(bench.ctl["a"].enable, 1)
        seen = dict.fromkeys((S.RESET, S.LANE_LOCK, S.TS1), 0)
        last = None     # (seq, ready) of the previous training-set beat
        for _ in range(300):
            await ctx.tick()
            state = _state(ctx, bench.a)
            seen[state] += 1
            beat = ctx.get(bench.a.tx_beat.payload)
            ready = ctx.get(bench.a.tx_beat.ready)
            assert ctx.get(bench.a.tx_beat.valid) == 1 and ctx.get(bench.a.raw) == 1
            blocks = [(int(beat[j].ctrl), int(beat[j].data)) for j in range(L)]
            if state is S.RESET:
                assert blocks == [(1, BlockType.IDLE.value)] * L
                continue
            seqs = set()
            for j, (ctrl, payload) in enumerate(blocks):
                f = _decode_ts(ctrl, payload)
                assert f["ctrl"] == 1 and f["magic"] == TS_MAGIC and f["lane"] == j, f
                assert f["type"] == BlockType.TS1.value
                if state is S.TS1:
                    assert (f["lanes_ok"], f["width"], f["offset"]) == (0xF, 4, 0)
                else:
                    assert (f["lanes_ok"], f["width"], f["offset"]) == (0, 0, 0)
                seqs.add(f["seq"])
            assert len(seqs) == 1
            seq = seqs.pop()
            if last is not None:
                assert seq == (last[0] + last[1]) % 256
            last = seq, ready
            for j in range(L):
                b = ctx.get(bench.b.tx_beat.payload)[j]
                assert (int(b.ctrl), int(b.data)) == (1, BlockType.IDLE.value)
            assert _state(ctx, bench.b) is S.RESET and ctx.get(bench.b.raw) == 1
        assert seen[S.LANE_LOCK] > 10 and seen[S.TS1] > 100, seen

    _run(bench, tb, "ts_format")


# --- bring-up -------------------------------------------------------------------------------

@pytest.mark.parametrize("lanes, seed", [(1, 1), (2, 2), (4, 3), (4, 4), (8, 5)])
def test_bring_up(lanes, seed):
    """From random delays, lock times and start times both sides come up at full width."""
    rng = _rng(seed)
    bench = LinkBench(_params(lanes), rng)
    every = (1 << lanes) - 1

    async def tb(ctx):
        await _bring_up(ctx, bench, rng)
        _check_active(ctx, bench, *ref_choice(every, lanes))
        # Markers keep interrupting; nothing may knock the link down.
        await ctx.tick().repeat(400)
        _check_active(ctx, bench, lanes, 0)
        for side in "ab":
            t = getattr(bench, side)
            assert ctx.get(t.lanes_ok) == every
            assert ctx.get(bench.mon[side].dl_inits) == 1
            assert _counters(ctx, t) == dict.fromkeys(_counters(ctx, t), 0)

    _run(bench, tb, f"bring_up_{lanes}")


def test_late_partner():
    """b is enabled 2.5 watchdog periods after a: a's TS1 waits time out (counted, and only
    those), then both come up as soon as b trains."""
    L = 4
    bench = LinkBench(_params(L), _rng(6))

    async def tb(ctx):
        ctx.set(bench.ctl["a"].enable, 1)
        await ctx.tick().repeat(5 * T_TIMEOUT // 2)
        assert _counters(ctx, bench.a)["train_timeouts"] == 2
        assert _state(ctx, bench.b) is S.RESET
        ctx.set(bench.ctl["b"].enable, 1)
        await _wait(ctx, bench, _both(bench, S.ACTIVE), 600, "up")
        _check_active(ctx, bench, L, 0)
        assert _counters(ctx, bench.a)["train_timeouts"] == 2
        assert _counters(ctx, bench.b)["train_timeouts"] == 0

    _run(bench, tb, "late_partner")


DEAD_LANE_CASES = [(8, 1), (8, 6), (4, 0), (4, 2), (2, 0), (2, 1)]


@pytest.mark.parametrize("lanes, dead", DEAD_LANE_CASES)
def test_dead_lane_from_start(lanes, dead):
    """A lane one side never locks: both pick the widest group without it (no degrade, as
    there was no wider ACTIVE period before)."""
    rng = _rng(10 + lanes + dead)
    bench = LinkBench(_params(lanes), rng)
    side = "ab"[int(rng.integers(0, 2))]
    every = (1 << lanes) - 1
    usable = every & ~(1 << dead)

    async def tb(ctx):
        ctx.set(bench.ctl[side].alive, usable)
        await _bring_up(ctx, bench, rng)
        _check_active(ctx, bench, *ref_choice(usable, lanes))
        assert ctx.get(getattr(bench, side).lanes_ok) == usable
        assert ctx.get(getattr(bench, _other(side)).lanes_ok) == every
        for s in "ab":
            assert _counters(ctx, getattr(bench, s))["degrades"] == 0
            assert ctx.get(bench.mon[s].dl_inits) == 1

    _run(bench, tb, f"dead_lane_{lanes}_{dead}")


@pytest.mark.parametrize("lanes, dead", [(8, 1), (8, 6), (4, 3), (2, 1)])
def test_degrade_and_recover(lanes, dead):
    """Killing an active lane retrains both sides to a narrower width (one retrain and one
    degrade each); once it recovers, a CSR retrain brings back the full width."""
    rng = _rng(20 + lanes + dead)
    bench = LinkBench(_params(lanes), rng)
    every = (1 << lanes) - 1
    usable = every & ~(1 << dead)
    side = "ab"[int(rng.integers(0, 2))]

    async def tb(ctx):
        await _bring_up(ctx, bench)
        _check_active(ctx, bench, lanes, 0)
        await ctx.tick().repeat(50)

        ctx.set(bench.ctl[side].alive, usable)
        await _wait(ctx, bench, (bench.a.state != S.ACTIVE) | (bench.b.state != S.ACTIVE), 50,
                    "leave ACTIVE")
        await _wait(ctx, bench, _both(bench, S.ACTIVE), 3000, "degraded")
        _check_active(ctx, bench, *ref_choice(usable, lanes))
        for s in "ab":
            c = _counters(ctx, getattr(bench, s))
            assert (c["retrains"], c["degrades"], c["train_timeouts"]) == (1, 1, 0), (s, c)
        await ctx.tick().repeat(200)
        _check_active(ctx, bench, *ref_choice(usable, lanes))

        # The lane recovers; the other side's CSR asks for a retrain.
        ctx.set(bench.ctl[side].alive, every)
        await ctx.tick().repeat(60)
        await _pulse(ctx, bench.ctl[_other(side)].csr_retrain)
        await _wait(ctx, bench, (bench.a.state != S.ACTIVE) | (bench.b.state != S.ACTIVE), 50,
                    "leave ACTIVE")
        await _wait(ctx, bench, _both(bench, S.ACTIVE), 3000, "full width again")
        _check_active(ctx, bench, lanes, 0)
        for s in "ab":
            c = _counters(ctx, getattr(bench, s))
            assert (c["retrains"], c["degrades"], c["train_timeouts"]) == (2, 1, 0), (s, c)
            assert ctx.get(bench.mon[s].dl_inits) == 1
            assert ctx.get(bench.mon[s].retrain_cycles) == 2

    _run(bench, tb, f"degrade_{lanes}_{dead}")


def test_retrain_causes():
    """Each retrain cause in ACTIVE takes both sides through RETRAIN and back to ACTIVE at
    full width, moving each side's retrain count by exactly one; DL init happens once."""
    L = 4
    rng = _rng(30)
    bench = LinkBench(_params(L), rng)
    a, b = bench.ctl["a"], bench.ctl["b"]
    causes = [   # (what, side, signal, value, cycles)
        ("dl_retrain", "a", a.dl_retrain, 1, 1),
        ("csr_retrain", "b", b.csr_retrain, 1, 1),
        ("deskew_error", "a", a.deskew_error, 1, 1),
        ("hi_ber", "b", b.hi_ber, 0b0100, 6),
        ("hi_ber", "a", a.hi_ber, 0b0001, 1),
    ]

    async def tb(ctx):
        await _bring_up(ctx, bench, rng)
        expect = {s: dict.fromkeys(_counters(ctx, bench.a), 0) for s in "ab"}
        for n, (what, side, sig, value, cycles) in enumerate(causes, start=1):
            what = f"{what} on {side}"
            await ctx.tick().repeat(int(rng.integers(20, 200)))
            await _pulse(ctx, sig, value, cycles)
            await _wait(ctx, bench, (bench.a.state != S.ACTIVE) & (bench.b.state != S.ACTIVE),
                        60, f"{what}: both leave ACTIVE")
            await _wait(ctx, bench, _both(bench, S.ACTIVE), 3000, f"{what}: back up")
            _check_active(ctx, bench, L, 0)
            for s in "ab":
                expect[s]["retrains"] = n
            if what.startswith("deskew_error"):
                expect[side]["deskew_errors"] += 1
            if what.startswith("hi_ber"):
                expect[side]["hi_ber"] += 1
            for s in "ab":
                assert _counters(ctx, getattr(bench, s)) == expect[s], (what, s)
                assert ctx.get(bench.mon[s].retrain_cycles) == n
                assert ctx.get(bench.mon[s].dl_inits) == 1

    _run(bench, tb, "retrain_causes")


@pytest.mark.parametrize("lanes, seed", [(2, 80), (4, 81), (8, 82)])
def test_random_faults(lanes, seed):
    """Random faults and requests on both sides at random times, in any state (lane deaths
    and recoveries, hi-BER, deskew errors, retrain requests, a side disabled for a while,
    alignment refused). Afterwards, with the final lane set fixed and one CSR retrain, both
    sides must settle in ACTIVE at ``ref_choice`` of the lanes alive both ways, and each
    side's DL init must have happened exactly once."""
    L = lanes
    rng = _rng(seed)
    bench = LinkBench(_params(L), rng)
    every = (1 << L) - 1
    settled = _both(bench, S.ACTIVE) | _both(bench, S.DISABLED)

    async def tb(ctx):
        await _bring_up(ctx, bench, rng)
        for _ in range(12):
            await ctx.tick().repeat(int(rng.integers(1, 400)))
            side = "ab"[int(rng.integers(0, 2))]
            ctl = bench.ctl[side]
            event = int(rng.integers(0, 7))
            if event == 0:
                ctx.set(ctl.alive, every & ~(1 << int(rng.integers(0, L))))
            elif event == 1:
                ctx.set(ctl.alive, every)
            elif event == 2:
                await _pulse(ctx, ctl.hi_ber, 1 << int(rng.integers(0, L)), 3)
            elif event == 3:
                await _pulse(ctx, ctl.deskew_error)
            elif event == 4:
                await _pulse(ctx, [ctl.dl_retrain, ctl.csr_retrain][int(rng.integers(0, 2))])
            elif event == 5:
                ctx.set(ctl.enable, 0)
                await ctx.tick().repeat(int(rng.integers(1, 200)))
                ctx.set(ctl.enable, 1)
            else:
                await _pulse(ctx, ctl.no_align, 1, int(rng.integers(1, 300)))
        final = {s: every for s in "ab"}
        if rng.random() < 0.5:
            final[("a", "b")[int(rng.integers(0, 2))]] &= ~(1 << int(rng.integers(0, L)))
        for s in "ab":
            ctx.set(bench.ctl[s].alive, final[s])
        await ctx.tick().repeat(60)
        await _wait(ctx, bench, settled, 6 * T_TIMEOUT, "settle", hold=200)
        await _pulse(ctx, bench.ctl["a"].csr_retrain)
        await ctx.tick().repeat(60)
        await _wait(ctx, bench, settled, 6 * T_TIMEOUT, "settle after the CSR retrain",
                    hold=200)
        width, offset = ref_choice(final["a"] & final["b"], L)
        assert width, "one dead lane leaves a usable one"
        _check_active(ctx, bench, width, offset)
        for s in "ab":
            assert ctx.get(bench.mon[s].dl_inits) == 1
            c = _counters(ctx, getattr(bench, s))
            assert c["retrains"] >= 1, c

    _run(bench, tb, f"random_faults_{lanes}_{seed}")


# --- failures -------------------------------------------------------------------------------

def test_disabled_and_back():
    """No lane works both ways (a receives 0–1, b receives 2–3): both end DISABLED and stay
    there without timeouts. When b's lane 1 recovers, b trains again, and so does a, which sees
    b advertise other lanes: x1 on lane 1. After a full repair, one side's CSR retrain brings
    back x4; a CSR retrain while nothing is usable ends in DISABLED again."""
    L = 4
    bench = LinkBench(_params(L), _rng(40))

    async def tb(ctx):
        ctx.set(bench.ctl["a"].alive, 0b0011)
        ctx.set(bench.ctl["b"].alive, 0b1100)
        ctx.set(bench.ctl["a"].enable, 1)
        ctx.set(bench.ctl["b"].enable, 1)
        await _wait(ctx, bench, _both(bench, S.DISABLED), 2000, "DISABLED")
        await ctx.tick().repeat(3 * T_TIMEOUT)
        assert _state(ctx, bench.a) is S.DISABLED and _state(ctx, bench.b) is S.DISABLED
        assert ctx.get(bench.a.lanes_ok) == 0b0011 and ctx.get(bench.b.lanes_ok) == 0b1100
        # A CSR retrain with nothing changed: back to DISABLED, still no timeout.
        await _pulse(ctx, bench.ctl["b"].csr_retrain)
        await _wait(ctx, bench, bench.b.state != S.DISABLED, 10, "b restarts")
        await _wait(ctx, bench, _both(bench, S.DISABLED), 2000, "DISABLED again")
        for s in "ab":
            assert _counters(ctx, getattr(bench, s))["train_timeouts"] == 0
            assert ctx.get(bench.mon[s].dl_inits) == 0

        ctx.set(bench.ctl["b"].alive, 0b1110)
        await _wait(ctx, bench, _both(bench, S.ACTIVE), 2000, "up on lane 1")
        _check_active(ctx, bench, *ref_choice(0b0011 & 0b1110, L))

        ctx.set(bench.ctl["a"].alive, 0b1111)
        ctx.set(bench.ctl["b"].alive, 0b1111)
        await ctx.tick().repeat(60)
        await _pulse(ctx, bench.ctl["a"].csr_retrain)
        await _wait(ctx, bench, (bench.a.state != S.ACTIVE) & (bench.b.state != S.ACTIVE), 50,
                    "both retrain")
        await _wait(ctx, bench, _both(bench, S.ACTIVE), 2000, "up after repair")
        _check_active(ctx, bench, L, 0)
        for s in "ab":
            c = _counters(ctx, getattr(bench, s))
            assert (c["retrains"], c["degrades"], c["train_timeouts"]) == (1, 0, 0), (s, c)
            assert ctx.get(bench.mon[s].dl_inits) == 1

    _run(bench, tb, "disabled")


def test_watchdog_lane_lock():
    """a receives nothing: it retries LANE_LOCK, b retries TS1, each watchdog expiry counted
    once; when the lanes come alive both come up."""
    L = 4
    bench = LinkBench(_params(L), _rng(50))

    async def tb(ctx):
        ctx.set(bench.ctl["a"].alive, 0)
        ctx.set(bench.ctl["a"].enable, 1)
        ctx.set(bench.ctl["b"].enable, 1)
        n = 4
        await ctx.tick().repeat(n * (T_TIMEOUT + 2) + 100)
        ca, cb = _counters(ctx, bench.a), _counters(ctx, bench.b)
        # a: RESET (1 cycle) + LANE_LOCK (T); b: RESET + LANE_LOCK (1) + TS1 (T).
        assert ca["train_timeouts"] == n
        assert cb["train_timeouts"] == n
        for s in "ab":
            assert ctx.get(bench.mon[s].restarts) == n
        assert _state(ctx, bench.a) in (S.LANE_LOCK, S.RESET)
        assert ctx.get(bench.mon["a"].dl_inits) == 0

        ctx.set(bench.ctl["a"].alive, 0b1111)
        await _wait(ctx, bench, _both(bench, S.ACTIVE), 2 * T_TIMEOUT, "up")
        _check_active(ctx, bench, L, 0)
        assert _counters(ctx, bench.a)["train_timeouts"] <= n + 1

    _run(bench, tb, "watchdog_lane_lock")


def test_watchdog_align():
    """b never aligns: b's ALIGN watchdog fires (counted), a, already ACTIVE, sees b's training
    sets and retrains; after the fault both come up and DL init has happened once per side."""
    L = 2
    bench = LinkBench(_params(L), _rng(60))

    async def tb(ctx):
        ctx.set(bench.ctl["b"].no_align, 1)
        ctx.set(bench.ctl["a"].enable, 1)
        ctx.set(bench.ctl["b"].enable, 1)
        await _wait(ctx, bench, bench.b.state == S.ALIGN, 2000, "b in ALIGN")
        await _wait(ctx, bench, bench.b.counters.train_timeouts == 2, 3 * T_TIMEOUT, "two timeouts")
        assert ctx.get(bench.mon["b"].dl_inits) == 0
        assert ctx.get(bench.mon["a"].dl_inits) == 1
        assert _counters(ctx, bench.a)["retrains"] >= 1
        assert _counters(ctx, bench.a)["train_timeouts"] == 0

        ctx.set(bench.ctl["b"].no_align, 0)
        await _wait(ctx, bench, _both(bench, S.ACTIVE), 2 * T_TIMEOUT, "up")
        await ctx.tick().repeat(200)
        _check_active(ctx, bench, L, 0)
        for s in "ab":
            assert ctx.get(bench.mon[s].dl_inits) == 1
        assert _counters(ctx, bench.b)["train_timeouts"] == 2

    _run(bench, tb, "watchdog_align")


def test_crossed_lanes_never_train():
    """Negative case: the a → b wire crosses lanes 0 and 1, so b's training sets carry the
    wrong lane IDs and are refused: neither side ever reaches ACTIVE (nor DISABLED), and the
    watchdogs count the attempts."""
    L = 4
    bench = LinkBench(_params(L), _rng(70), swap=True)

    async def tb(ctx):
        ctx.set(bench.ctl["a"].enable, 1)
        ctx.set(bench.ctl["b"].enable, 1)
        for _ in range(3 * T_TIMEOUT // 64):
            await ctx.tick().repeat(64)
            for t in (bench.a, bench.b):
                assert _state(ctx, t) not in (S.ALIGN, S.DL_INIT, S.ACTIVE, S.DISABLED)
        for s in "ab":
            assert _counters(ctx, getattr(bench, s))["train_timeouts"] >= 2
            assert ctx.get(bench.mon[s].dl_inits) == 0

    _run(bench, tb, "crossed")
