"""Amaranth-pysim tests of flit framing and the data link layer (rtl/link/framing.py, dll.py).

Two :class:`DataLink` endpoints talk through their :class:`FlitTx`/:class:`FlitRx` and a Python
channel that moves beats with a latency and may drop a flit, flip a bit in it or turn one of
its data blocks into a control block. Each endpoint is shadowed by a
:class:`golden_model.link.DataLinkModel` fed the same events in the RTL's order: every flit an
endpoint sends is checked bit for bit against the model, every slot a user pops against the
model's receive buffer, every counter against the model at the end, the error counters against
the channel's ledger, and the slots received against the slots sent. Short runs only; the long
soaks run on Verilator.
"""

import copy
import os
import random
from collections import Counter, deque

import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from golden_model.link import DataLinkModel, flit_crc, pack_flit, unpack_flit
from rtl.link.dll import DataLink, flit_crc as rtl_flit_crc
from rtl.link.framing import FlitRx, FlitTx
from rtl.link.layouts import (
    BLOCK_BITS, DL_COUNTERS, FLIT_HEADER, FLIT_WORDS, BlockType, FlitType,
)
from rtl.link.params import LinkParams


def _rng(offset):
    seed = int(os.environ.get("SEED", "20250611")) + offset
    print(f"seed {seed} (SEED={seed - offset} replays)")
    return random.Random(seed)


def _params(**kw):
    base = {"replay_depth": 8, "replay_timer": 200, "vc_slots": 30, "ack_every": 4,
            "ack_timer": 48}
    return LinkParams(lanes=2, vcs=4).fast_sim(**(base | kw))


_BLK = BLOCK_BITS - 1          # a BLOCK in a beat: ctrl bit, then 64 data bits


def _words(value):
    return [value >> (64 * i) & (1 << 64) - 1 for i in range(FLIT_WORDS)]


_HDR_OFFSET = {name: f.offset for name, f in FLIT_HEADER}


def _flit_value(words):
    return sum(w << (64 * i) for i, w in enumerate(words))


# --- framing -------------------------------------------------------------------------------

def _random_flit(rng):
    words = [rng.getrandbits(64) for _ in range(FLIT_WORDS)]
    words[0] = words[0] & ~0xFF | BlockType.SOF.value
    return words


@pytest.mark.parametrize("lanes, width", [(1, 1), (2, 2), (2, 1), (4, 4), (8, 8), (8, 2)])
def test_framing_round_trip(lanes, width):
    """FlitTx → FlitRx at every width with back-pressure: flits arrive whole and in order; the
    beats put word i on lane i mod W of beat i div W with only word 0 a control block."""
    rng = _rng(lanes * 10 + width)
    p = LinkParams(lanes=lanes, vcs=4).fast_sim()
    m = Module()
    m.submodules.tx = tx = FlitTx(p)
    m.submodules.rx = rx = FlitRx(p)
    flits = [_random_flit(rng) for _ in range(5)]
    got, beats = [], []

    async def bench(ctx):
        ctx.set(tx.width, width)
        ctx.set(rx.width, width)
        i = 0
        for _ in range(5 * 32 // width * 3 + 20):
            ctx.set(tx.flit.valid, i < len(flits))
            if i < len(flits):
                ctx.set(tx.flit.payload, flits[i])
            ready = rng.random() < 0.75
            ctx.set(tx.beat.ready, ready)
            valid = ctx.get(tx.beat.valid) and ready
            beat = ctx.get(tx.beat.payload.as_value())
            ctx.set(rx.beat.valid, valid)
            ctx.set(rx.beat.payload.as_value(), beat)
            if valid:
                beats.append(beat)
            if i < len(flits) and ctx.get(tx.flit.ready):
                i += 1
            if ctx.get(rx.flit.valid):
                got.append((ctx.get(rx.flit.payload.framing_error),
                            _words(ctx.get(rx.flit.payload.words.as_value()))))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == [(0, f) for f in flits]
    assert len(beats) == len(flits) * 32 // width
    for k, beat in enumerate(beats):
        for lane in range(lanes):
            blk = beat >> (_BLK * lane) & (1 << _BLK) - 1
            if lane >= width:
                assert blk == 0
                continue
            word = (k % (32 // width)) * width + lane
            assert blk >> 1 == flits[k // (32 // width)][word]
            assert blk & 1 == (word == 0)


def _beat(blocks, lanes):
    """A beat from (ctrl, data) per lane."""
    return sum((c | d << 1) << (_BLK * lane) for lane, (c, d) in enumerate(blocks[:lanes]))


def _flit_beats(words, width, lanes):
    return [_beat([(int(b * width + i == 0), words[b * width + i]) for i in range(width)], lanes)
            for b in range(32 // width)]


IDLE = (1, BlockType.IDLE.value)


@pytest.mark.parametrize("width", [1, 2])
def test_framing_errors_and_resync(width):
    """A control block inside a flit, a data block between flits and an SOF cutting a flit
    short each give exactly one framing error; IDLE between flits is ignored; the receiver
    resynchronises on the next SOF."""
    lanes = 2
    rng = _rng(100 + width)
    p = LinkParams(lanes=lanes, vcs=4).fast_sim()
    rx = FlitRx(p)
    f1, f2, f3, f4 = (_random_flit(rng) for _ in range(4))
    beats = []
    beats += [_beat([IDLE] * lanes, lanes)] * 2
    beats += _flit_beats(f1, width, lanes)                                   # good
    cut = _flit_beats(f2, width, lanes)
    cut[3] = _beat([IDLE] * lanes, lanes)                                    # control inside
    beats += cut                                    # error; the rest of f2 is dropped (hunt)
    beats += _flit_beats(f3, width, lanes)                                   # good again
    beats += [_beat([(0, 1234)] * lanes, lanes)]                             # stray data
    beats += [_beat([(0, 99)] * lanes, lanes)]                               # (hunting)
    beats += _flit_beats(f1, width, lanes)[:5]                               # cut short …
    beats += _flit_beats(f4, width, lanes)                                   # … by an SOF
    beats += [_beat([IDLE] * lanes, lanes)]
    got = []

    async def bench(ctx):
        ctx.set(rx.width, width)
        for b in beats + [None] * 3:
            ctx.set(rx.beat.valid, b is not None)
            ctx.set(rx.beat.payload.as_value(), b or 0)
            await ctx.tick()
            if ctx.get(rx.flit.valid):
                fe = ctx.get(rx.flit.payload.framing_error)
                got.append(("error",) if fe else
                           ("flit", _words(ctx.get(rx.flit.payload.words.as_value()))))

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == [("flit", f1), ("error",), ("flit", f3), ("error",), ("error",), ("flit", f4)]


def test_rtl_crc_matches_crc32c_package():
    """The single-cycle CRC of the RTL (an affine map over the 2,016 covered bits) against the
    ``crc32c`` package, on random flits and on one-hot flits at a few positions."""
    rng = _rng(200)
    value = Signal(64 * FLIT_WORDS)
    out = Signal(32)
    m = Module()
    m.d.comb += out.eq(rtl_flit_crc(value))
    cases = [[rng.getrandbits(64) for _ in range(FLIT_WORDS)] for _ in range(10)]
    for bit in (0, 1, 63, 64, 1000, 2015, 2016):
        cases.append(_words(1 << bit))
    got = []

    async def bench(ctx):
        for words in cases:
            ctx.set(value, _flit_value(words))
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [flit_crc(w) for w in cases]
    assert got[-1] == flit_crc([0] * FLIT_WORDS)        # bit 2016: the CRC field itself


# --- two endpoints through a channel ---------------------------------------------------------

class _Pair(Elaboratable):
    def __init__(self, params):
        self.p = params
        self.dl = [DataLink(params), DataLink(params)]
        self.ftx = [FlitTx(params), FlitTx(params)]
        self.frx = [FlitRx(params), FlitRx(params)]
        self.width = Signal(range(params.lanes + 1))

    def elaborate(self, platform):
        m = Module()
        for i in range(2):
            m.submodules[f"dl{i}"] = self.dl[i]
            m.submodules[f"ftx{i}"] = self.ftx[i]
            m.submodules[f"frx{i}"] = self.frx[i]
            wiring.connect(m, self.dl[i].flit_o, self.ftx[i].flit)
            wiring.connect(m, self.frx[i].flit, self.dl[i].flit_i)
            m.d.comb += [self.ftx[i].width.eq(self.width), self.frx[i].width.eq(self.width)]
        return m


class Channel:
    """Beats of one direction: a latency (plus jitter, never reordering) and per-flit faults.

    ``policy(now, index, flit)`` (``flit`` the :class:`~golden_model.link.Flit` of the header
    word only) returns ``None``, ``"drop"`` (the flit vanishes), ``"corrupt"`` (one bit of words
    1–31 flips: a CRC error) or ``"frame"`` (one of words 1–31 becomes an IDLE control block:
    a framing error). ``ledger`` counts what was done.
    """

    def __init__(self, rng, width, latency=3, jitter=0, policy=None):
        self.rng, self.width = rng, width
        self.latency, self.jitter, self.policy = latency, jitter, policy
        self.q = deque()
        self.last_due = -1
        self.index = -1
        self.beat_no = 0
        self.fate = None
        self.target = 0
        self.ledger = Counter()

    def push(self, now, beat):
        lane0 = beat & (1 << _BLK) - 1
        if lane0 & 1 and (lane0 >> 1) & 0xFF == BlockType.SOF.value:
            self.index += 1
            self.beat_no = 0
            hdr = unpack_flit([lane0 >> 1] + [0] * 31)
            self.fate = self.policy(now, self.index, hdr) if self.policy else None
            self.target = self.rng.randrange(1, FLIT_WORDS)
            if self.fate:
                self.ledger[self.fate] += 1
        else:
            self.beat_no += 1
        if self.fate == "drop":
            return
        if self.fate in ("corrupt", "frame") and self.target // self.width == self.beat_no:
            shift = _BLK * (self.target % self.width)
            if self.fate == "corrupt":
                beat ^= 1 << (shift + 1 + self.rng.randrange(64))
            else:
                idle = 1 | BlockType.IDLE.value << 1
                beat = beat & ~((1 << _BLK) - 1 << shift) | idle << shift
        due = max(now + self.latency + self.rng.randrange(self.jitter + 1), self.last_due + 1)
        self.last_due = due
        self.q.append((due, beat))

    def pop(self, now):
        if self.q and self.q[0][0] <= now:
            return self.q.popleft()[1]
        return None


class Shadow:
    """The golden model of one endpoint, fed the endpoint's events in the RTL's order, plus an
    exact check of the replay timer: a timeout comes ``replay_timer`` active cycles after the
    last of (forward progress, replay start, replay end, first flit outstanding)."""

    def __init__(self, params, name):
        self.p = params
        self.name = name
        self.model = DataLinkModel(params)
        self.popped = [[] for _ in range(params.vcs)]
        self.sent_kinds = Counter()
        self.retrains = 0
        self.timer_ref = 0
        self.timeouts_at = []

    def feed(self, ev, active_count, timeouts, retrain_req):
        m = self.model
        retrain = False
        was_out, was_replaying = m.outstanding, m.replaying
        if ev["sent"] is not None:
            self.sent_kinds[m.sent(ev["sent"])] += 1
            if (was_out == 0 and m.outstanding) or (was_replaying and not m.replaying):
                self.timer_ref = active_count
        if ev["rcvd"] is not None:
            fe, words = ev["rcvd"]
            d = m.receive(None if fe else words, framing_error=bool(fe))
            retrain |= d.retrain
            if d.ack == "progress" or d.replay:
                self.timer_ref = active_count
        assert timeouts in (0, 1)
        if timeouts:
            assert active_count - self.timer_ref == self.p.replay_timer, \
                f"{self.name}: replay timeout {active_count - self.timer_ref} active cycles " \
                f"after the last reset"
            self.timeouts_at.append(active_count)
            retrain |= m.timeout().retrain
            self.timer_ref = active_count
        assert bool(retrain_req) == retrain, f"{self.name}: retrain_req {retrain_req}"
        self.retrains += retrain
        for v, data, last in ev["pops"]:
            assert (data, last) == m.pop(v), f"{self.name} VC {v}: popped a slot the model lacks"
            self.popped[v].append((data, last))
        for v, data, last in ev["pushes"]:
            m.offer(v, data, last)
        if ev["inject"] is not None:
            m.inject(**ev["inject"])


def _empty_events():
    return {"sent": None, "rcvd": None, "pops": [], "pushes": [], "inject": None}


def _observe(ctx, d, ev, vcs, pending):
    """Record what endpoint ``d`` does this cycle (after the inputs are set)."""
    if ctx.get(d.flit_o.valid) and ctx.get(d.flit_o.ready):
        ev["sent"] = _words(ctx.get(d.flit_o.payload.as_value()))
    if ctx.get(d.flit_i.valid):
        ev["rcvd"] = (ctx.get(d.flit_i.payload.framing_error),
                      _words(ctx.get(d.flit_i.payload.words.as_value())))
    for v in range(vcs):
        if ctx.get(d.rx[v].valid) and ctx.get(d.rx[v].ready):
            ev["pops"].append((v, ctx.get(d.rx[v].payload.data),
                               bool(ctx.get(d.rx[v].payload.last))))
        if ctx.get(d.tx[v].valid) and ctx.get(d.tx[v].ready):
            ev["pushes"].append((v, *pending[v].popleft()))


def _dut_counters(ctx, d):
    return {k: ctx.get(getattr(d.counters, k)) for k in DL_COUNTERS.members}


class LinkBench:
    """Two endpoints, their shadows, user traffic and the two channels.

    ``on_cycle(bench, now)`` runs before each cycle's inputs are set (to change ``active``,
    ``stall_vcs`` …). ``chan[i]`` carries endpoint ``i``'s flits.
    """

    def __init__(self, params, rng, *, width=None, policies=(None, None), latency=3, jitter=0,
                 pop_prob=(1.0, 1.0), push_prob=1.0, stall_vcs=((), ()), beat_ready=1.0):
        self.p = params
        self.rng = rng
        self.width = width or params.lanes
        self.top = _Pair(params)
        self.shadow = [Shadow(params, "endpoint 0"), Shadow(params, "endpoint 1")]
        self.chan = [Channel(rng, self.width, latency, jitter, policies[i]) for i in range(2)]
        self.pending = [[deque() for _ in range(params.vcs)] for _ in range(2)]
        self.offered = [[[] for _ in range(params.vcs)] for _ in range(2)]
        self.pop_prob = pop_prob
        self.push_prob = push_prob
        self.stall_vcs = [set(s) for s in stall_vcs]
        self.beat_ready = beat_ready
        self.active = True
        self.active_count = 0
        self.injections = {}           # cycle -> [(endpoint, fields)]
        self.injected_crc = [0, 0]
        self.cycle = 0

    @property
    def models(self):
        return [s.model for s in self.shadow]

    def offer(self, side, vc, n):
        for _ in range(n):
            slot = (self.rng.getrandbits(128), self.rng.random() < 0.3)
            self.pending[side][vc].append(slot)
            self.offered[side][vc].append(slot)

    def traffic(self, n):
        for s in range(2):
            for v in range(self.p.vcs):
                self.offer(s, v, n)

    def inject_at(self, cycle, side, **fields):
        self.injections.setdefault(cycle, []).append((side, fields))
        self.injected_crc[side] += fields.get("crc_corrupt", 0)

    def quiet(self):
        """Nothing left to move: every slot sent and popped, nothing outstanding, no
        injection pending."""
        if self.injections:
            return False
        for s in range(2):
            m = self.models[s]
            if any(self.pending[s]) or any(m.tx_queues):
                return False
            if m.outstanding or m.replaying or m.dup is not None:
                return False
            if any(m.inj[k] for k in ("crc_corrupt", "seq_offset", "block_acks", "force_nak",
                                      "fc_offset", "duplicate")):
                return False
            for v in range(self.p.vcs):
                if v not in self.stall_vcs[1 - s] and self.models[1 - s].rx_buffers[v]:
                    return False
        return True

    def simulate(self, cycles, *, on_cycle=None, until_quiet=True):
        sim = Simulator(self.top)
        sim.add_clock(1e-6)

        async def tb(ctx):
            await self.run(ctx, cycles, on_cycle=on_cycle, until_quiet=until_quiet)

        sim.add_testbench(tb)
        sim.run()

    async def run(self, ctx, cycles, *, on_cycle=None, until_quiet=True):
        top, P = self.top, self.p
        dl = top.dl
        ctx.set(top.width, self.width)
        for s in range(2):
            ctx.set(dl[s].active, 1)
            ctx.set(dl[s].init, 1)
        await ctx.tick()
        for s in range(2):
            ctx.set(dl[s].init, 0)
            self.models[s].init()
        quiet_for = 0
        for _ in range(cycles):
            self.cycle += 1
            now = self.cycle
            if on_cycle:
                on_cycle(self, now)
            self.active_count += self.active
            ev = [_empty_events(), _empty_events()]
            for s in range(2):
                ctx.set(dl[s].active, self.active)
                ctx.set(dl[s].inject_we, 0)
                for v in range(P.vcs):
                    q = self.pending[s][v]
                    push = bool(q) and self.rng.random() < self.push_prob
                    ctx.set(dl[s].tx[v].valid, push)
                    if push:
                        ctx.set(dl[s].tx[v].payload, {"data": q[0][0], "last": q[0][1]})
                    ctx.set(dl[s].rx[v].ready, v not in self.stall_vcs[s]
                            and self.rng.random() < self.pop_prob[s])
            for side, fields in self.injections.pop(now, []):
                ctx.set(dl[side].inject_we, 1)
                ctx.set(dl[side].inject, fields)
                ev[side]["inject"] = fields
            ready = [False, False]
            for s in range(2):
                beat = self.chan[1 - s].pop(now)      # the partner's flits into my FlitRx
                ctx.set(top.frx[s].beat.valid, beat is not None)
                ctx.set(top.frx[s].beat.payload.as_value(), beat or 0)
                ready[s] = self.rng.random() < self.beat_ready
                ctx.set(top.ftx[s].beat.ready, ready[s])
            for s in range(2):
                if ready[s] and ctx.get(top.ftx[s].beat.valid):
                    self.chan[s].push(now, ctx.get(top.ftx[s].beat.payload.as_value()))
                _observe(ctx, dl[s], ev[s], P.vcs, self.pending[s])
            before = [ctx.get(dl[s].counters.replay_timeouts) for s in range(2)]
            await ctx.tick()
            for s in range(2):
                assert self.active or ev[s]["sent"] is None, "a flit sent while not active"
                self.shadow[s].feed(ev[s], self.active_count,
                                    ctx.get(dl[s].counters.replay_timeouts) - before[s],
                                    ctx.get(dl[s].retrain_req))
            if until_quiet and self.quiet():
                quiet_for += 1
                if quiet_for > 2 * P.ack_timer:
                    break
            else:
                quiet_for = 0
        self.counters = [_dut_counters(ctx, dl[s]) for s in range(2)]
        self.status = [{"next_rcv": ctx.get(dl[s].next_rcv), "acked": ctx.get(dl[s].acked),
                        "sent": ctx.get(dl[s].sent), "replay_num": ctx.get(dl[s].replay_num)}
                       for s in range(2)]

    def check(self, *, delivered=True):
        """Counters and status equal the models', the error counters the ledgers, and (unless
        ``delivered`` is false) every slot sent was received once, in order, bit-exact."""
        for s in range(2):
            m = self.models[s]
            assert self.counters[s] == m.counters, f"endpoint {s} counters"
            assert self.status[s] == {"next_rcv": m.next_rcv, "acked": m.acked,
                                      "sent": (m.next_seq - 1) % m.M,
                                      "replay_num": m.replay_num}
            assert self.shadow[s].retrains == self.counters[s]["replay_rollovers"]
            c = self.counters[1 - s]
            assert c["crc_errors"] == self.chan[s].ledger["corrupt"] + self.injected_crc[s]
            assert c["framing_errors"] == self.chan[s].ledger["frame"]
        if delivered:
            for s in range(2):
                for v in range(self.p.vcs):
                    assert self.shadow[1 - s].popped[v] == self.offered[s][v], \
                        f"VC {v} from endpoint {s}: delivered != sent"
                    assert not self.models[1 - s].rx_buffers[v]
            assert self.quiet()


_ERRORS = ("crc_errors", "framing_errors", "seq_errors", "duplicates", "naks_tx", "naks_rx",
           "replays", "replay_timeouts", "replay_rollovers", "protocol_errors", "fc_errors")


def _moved(bench, side):
    return {k: bench.counters[side][k] for k in _ERRORS if bench.counters[side][k]}


@pytest.mark.parametrize("lanes, vcs, latency", [(2, 4, 3), (4, 2, 150)])
def test_clean_link_delivers_everything(lanes, vcs, latency):
    """No faults: every slot arrives once, in order, bit-exact; no error counter moves. With a
    long channel the replay buffer fills and new DATA waits for ACKs."""
    p = _params(lanes=lanes, vcs=vcs, replay_timer=800, vc_slots=120)
    bench = LinkBench(p, _rng(1), latency=latency, pop_prob=(0.8, 0.9), push_prob=0.5)
    bench.traffic(160 // vcs)
    most = [0, 0]

    def hook(b, now):
        for s in range(2):
            most[s] = max(most[s], b.models[s].outstanding)

    bench.simulate(8000, on_cycle=hook)
    bench.check()
    for s in range(2):
        c = bench.counters[s]
        assert _moved(bench, s) == {}
        assert c["delivered_slots"] == 160
        assert c["tx_flits"] == c["tx_data"] + c["tx_nop"]
        assert most[s] == p.replay_depth if latency > 100 else most[s] < p.replay_depth


def test_lossy_link():
    """Random drops, bit errors and framing errors in both directions, with jitter and PCS
    back-pressure, at width 1 of 2 lanes and a 4-bit sequence number (it wraps)."""
    rng = _rng(2)

    def policy(now, i, flit):
        fixed = {6: "drop", 10: "corrupt", 14: "frame"}      # each kind at least once
        r = rng.random()
        return fixed.get(i) or ("drop" if r < 0.07 else "corrupt" if r < 0.14
                                else "frame" if r < 0.18 else None)

    bench = LinkBench(_params(seq_bits=4), rng, width=1, policies=(policy, policy), jitter=2,
                      beat_ready=0.9, pop_prob=(0.7, 0.7), push_prob=0.05)
    bench.traffic(60)
    bench.simulate(12000)
    bench.check()
    for s in range(2):
        assert all(bench.chan[s].ledger[k] for k in ("drop", "corrupt", "frame"))
        assert bench.counters[s]["replayed_flits"] > 0
        assert bench.models[s].next_seq < bench.counters[s]["tx_data"]     # wrapped


def test_credits_stalled_vc_does_not_block_others():
    """Endpoint 1 never pops VC 0: VCs 1–3 still deliver everything and VC 0 stops after
    exactly vc_slots slots; once endpoint 1 pops again, the rest of VC 0 follows."""
    p = _params()
    bench = LinkBench(p, _rng(3), stall_vcs=((), (0,)))
    bench.offer(0, 0, 70)
    for v in (1, 2, 3):
        bench.offer(0, v, 50)
    seen = {}

    def hook(b, now):
        if "released" in seen:
            return
        if all(len(b.shadow[1].popped[v]) == 50 for v in (1, 2, 3)):
            seen["buffered"] = len(b.models[1].rx_buffers[0])
            seen["popped0"] = len(b.shadow[1].popped[0])
            seen["credits"] = b.models[0].credits(0)
            seen["released"] = now
            b.stall_vcs = [set(), set()]

    bench.simulate(8000, on_cycle=hook)
    assert seen["popped0"] == 0
    assert seen["buffered"] == p.vc_slots
    assert seen["credits"] == 0
    bench.check()
    assert bench.counters[1]["fc_errors"] == 0


def test_lost_credit_updates_are_refreshed():
    """Endpoint 1's VC 0 buffer fills, then its user pops everything while every flit it
    sends is dropped: the credit updates are lost and endpoint 0 waits until endpoint 1,
    idle for replay_timer cycles, advertises every limit again; then the rest of VC 0 flows."""
    p = _params()
    win = {}

    def policy(now, i, flit):
        return "drop" if "start" in win and win["start"] <= now < win["start"] + 150 else None

    def hook(b, now):
        if ("start" not in win and len(b.models[1].rx_buffers[0]) == p.vc_slots
                and b.models[0].outstanding == 0):
            win["start"] = now
            b.stall_vcs = [set(), set()]
        if "start" in win and "resumed" not in win and b.models[0].credits(0):
            win["resumed"] = now

    bench = LinkBench(p, _rng(6), policies=(None, policy), stall_vcs=((), (0,)))
    bench.offer(0, 0, 50)
    bench.simulate(4000, on_cycle=hook)
    bench.check()
    assert bench.chan[1].ledger["drop"] > 0
    assert win["resumed"] > win["start"] + 150 + 100


def test_replay_timer_when_acks_are_lost():
    """Every ACK-carrying flit from endpoint 1 is dropped for a while: endpoint 0's replay
    timer fires (exactly replay_timer active cycles after its reference), it replays, endpoint
    1 drops the copies as duplicates; then the ACKs get through and everything is delivered."""
    p = _params()

    def policy(now, i, flit):
        return "drop" if flit.ack and now < 700 else None

    bench = LinkBench(p, _rng(4), policies=(None, policy), push_prob=0.3)
    for v in range(p.vcs):
        bench.offer(0, v, 12)
    bench.simulate(5000)
    bench.check()
    c0, c1 = bench.counters
    assert c0["replay_timeouts"] >= 2
    assert c0["replays"] == c0["replay_timeouts"]
    assert c1["duplicates"] > 0
    assert c1["crc_errors"] == c1["framing_errors"] == c1["seq_errors"] == 0
    assert c0["replay_rollovers"] == 0


def test_replay_num_rollover_requests_retrain():
    """Endpoint 0's flits are all dropped long enough for 2**replay_num_bits replays without
    progress: replay_rollovers counts it, retrain_req pulses (checked every cycle against the
    model); the bench then holds ``active`` low for a while (a retrain) and nothing is lost."""
    p = _params(replay_timer=120)

    def policy(now, i, flit):
        return "drop" if flit.type == FlitType.DATA and now < 1100 else None

    pulses = []

    def hook(b, now):
        if b.shadow[0].retrains > len(pulses):
            pulses.append(now)
        b.active = not (pulses and pulses[0] <= now < pulses[0] + 60)

    bench = LinkBench(p, _rng(5), policies=(policy, None), push_prob=0.3)
    for v in range(p.vcs):
        bench.offer(0, v, 10)
    bench.simulate(6000, on_cycle=hook)
    bench.check()
    c0 = bench.counters[0]
    assert c0["replay_rollovers"] >= 1
    assert len(pulses) == c0["replay_rollovers"]
    assert c0["replay_timeouts"] >= 1 << p.replay_num_bits


def test_lost_nak_and_lost_replay_recover_without_the_timer():
    """Endpoint 0's DATA flit 5 is dropped on its first two transmissions (the original and
    the first replay), and endpoint 1's first flit carrying a NAK is dropped. The NAK rides
    on every flit until it is served, and a gap in flits sent after the NAK was received
    owes a new one: the link recovers with two NAKs and no replay timeout."""
    p = _params(replay_timer=1000)
    seen = Counter()

    def policy0(now, i, flit):
        if flit.type == FlitType.DATA and flit.seq == 5:
            seen["seq 5"] += 1
            return "drop" if seen["seq 5"] <= 2 else None
        return None

    def policy1(now, i, flit):
        if flit.nak:
            seen["nak"] += 1
            return "drop" if seen["nak"] == 1 else None
        return None

    bench = LinkBench(p, _rng(7), policies=(policy0, policy1), push_prob=0.5)
    bench.traffic(40)
    bench.simulate(6000)
    bench.check()
    c0, c1 = bench.counters
    assert seen["seq 5"] == 3 and seen["nak"] >= 3
    assert c1["naks_tx"] == 2 and c0["naks_rx"] == 2 and c0["replays"] == 2
    assert c0["replay_timeouts"] == 0 and c1["replay_timeouts"] == 0


def test_lost_nak_is_sent_again_on_a_quiet_link():
    """Only endpoint 0 sends. Its DATA flit 3 is dropped, and so is every flit carrying
    endpoint 1's NAK for 100 cycles; endpoint 1's user pops nothing meanwhile, so nothing
    else makes it send. The NAK goes out again on a NOP ack_timer cycles after its last
    flit, long before endpoint 0's replay timer."""
    p = _params(replay_timer=1000)
    seen = Counter()
    first = {}

    def policy0(now, i, flit):
        if flit.type == FlitType.DATA and flit.seq == 3:
            seen["seq 3"] += 1
            return "drop" if seen["seq 3"] == 1 else None
        return None

    def policy1(now, i, flit):
        if flit.nak:
            first.setdefault("nak", now)
            seen["nak"] += 1
            return "drop" if now < first["nak"] + 100 else None
        return None

    def hook(b, now):
        quiet = seen["seq 3"] >= 1 and now < first.get("nak", now) + 1500
        b.pop_prob = (1.0, 0.0 if quiet else 1.0)

    bench = LinkBench(p, _rng(8), policies=(policy0, policy1), push_prob=0.5)
    for v in range(p.vcs):
        bench.offer(0, v, 20)
    bench.simulate(6000, on_cycle=hook)
    bench.check()
    c0, c1 = bench.counters
    assert seen["seq 3"] == 2 and seen["nak"] >= 2
    assert c1["naks_tx"] == 1 and c0["naks_rx"] == 1 and c0["replays"] == 1
    assert c0["replay_timeouts"] == 0


# --- error injection: each class moves its counter ------------------------------------------

def _inject_run(seed, side, fields, *, n=30, **kw):
    """Traffic both ways; ``fields`` are written to endpoint ``side`` once it has sent two
    DATA flits (so the injection lands in the middle of the traffic)."""
    bench = LinkBench(_params(), _rng(seed), push_prob=0.25, **kw)
    bench.traffic(n)
    done = []

    def hook(b, now):
        if not done and b.models[side].counters["tx_data"] >= 2:
            b.inject_at(now, side, **fields)
            done.append(now)

    bench.simulate(6000, on_cycle=hook)
    bench.check()
    return bench


def test_inject_crc_corrupt():
    bench = _inject_run(10, 0, {"crc_corrupt": 3})
    assert bench.counters[1]["crc_errors"] == 3
    assert bench.counters[0]["crc_errors"] == 0
    assert bench.counters[1]["naks_tx"] >= 1
    assert "framing_errors" not in _moved(bench, 1)


def test_inject_seq_offset():
    bench = _inject_run(11, 0, {"seq_offset": 1})
    m1 = _moved(bench, 1)
    assert m1["seq_errors"] >= 1 and m1["naks_tx"] == 1
    assert "crc_errors" not in m1 and "framing_errors" not in m1
    assert bench.counters[0]["naks_rx"] == 1 and bench.counters[0]["replays"] == 1


def test_inject_block_acks():
    """Endpoint 1 strips ACKs from its next 40 flits: endpoint 0 times out and replays."""
    bench = _inject_run(12, 1, {"block_acks": 40})
    assert bench.counters[0]["replay_timeouts"] >= 1
    assert bench.counters[1]["naks_tx"] == 0
    assert bench.counters[1]["duplicates"] >= 1


def test_inject_force_nak():
    bench = _inject_run(13, 1, {"force_nak": 1})
    assert bench.counters[1]["naks_tx"] == 1
    assert bench.counters[0]["naks_rx"] == 1
    assert "crc_errors" not in _moved(bench, 1) and "seq_errors" not in _moved(bench, 1)


def test_inject_fc_offset():
    bench = _inject_run(14, 0, {"fc_offset": 1 << 11, "fc_vc": 2})
    assert _moved(bench, 1) == {"fc_errors": 1}
    assert _moved(bench, 0) == {}


def test_inject_duplicate():
    bench = _inject_run(15, 0, {"duplicate": 1})
    assert _moved(bench, 1) == {"duplicates": 1}
    assert bench.shadow[0].sent_kinds["dup"] == 1


def test_scoreboard_can_fail():
    """Negative checks: the model rejects a flit whose ACK is missing or whose payload has a
    flipped bit, and a bench whose model was corrupted on purpose (one slot the endpoint never
    got) stops with an AssertionError."""
    p = _params()
    m = DataLinkModel(p)
    m.init()
    m.offer(1, 5, True)
    m.limit_rx[1] = 30
    good = m.build("data", 1, 1)
    no_ack = pack_flit(type=FlitType.DATA, ack=False, vc=1, slots=[5], last=1, fc_valid=True,
                       fc_vc=0, fc_limit=30)
    m.rcvd_any = True
    for bad in (no_ack, good[:1] + [good[1] ^ 4] + good[2:]):
        with pytest.raises(AssertionError):
            copy.deepcopy(m).sent(bad)
    m.rcvd_any = False
    assert m.sent(good) == "data"

    bench = LinkBench(p, _rng(16), push_prob=0.5)
    bench.traffic(30)

    def hook(b, now):
        if now == 20:
            b.models[0].tx_queues[2].appendleft((1234, False))

    with pytest.raises(AssertionError, match="differs"):
        bench.simulate(3000, on_cycle=hook)


# --- one endpoint against crafted flits -------------------------------------------------------

def test_protocol_and_credit_errors():
    """Flits a correct partner never sends: an ACK and a NAK beyond what was sent (protocol
    errors, no state change), a credit limit beyond vc_slots (fc error, ignored), a DATA flit
    with no slots and one of an unknown type (protocol errors), and more slots than credits on
    a VC whose buffer is full (fc error, the excess dropped)."""
    p = _params()
    dut = DataLink(p)
    sh = Shadow(p, "dut")
    fc = [pack_flit(type=FlitType.NOP, fc_valid=True, fc_vc=v, fc_limit=p.vc_slots)
          for v in range(p.vcs)]
    script = {10 + 2 * v: f for v, f in enumerate(fc)}
    script[200] = pack_flit(type=FlitType.NOP, ack=True, ack_seq=5)        # beyond sent
    script[202] = pack_flit(type=FlitType.NOP, ack=True, nak=True, ack_seq=9, nak_epoch=1)
    script[204] = pack_flit(type=FlitType.NOP, fc_valid=True, fc_vc=1,
                            fc_limit=(p.vc_slots + 40) % 4096)             # > vc_slots
    bad_n = pack_flit(type=FlitType.DATA, seq=0, vc=0, slots=[1])
    bad_n[0] &= ~(0xF << _HDR_OFFSET["nslots"])                            # nslots = 0
    bad_n[31] = bad_n[31] & (1 << 32) - 1 | flit_crc(bad_n) << 32
    script[206] = bad_n
    bad_t = pack_flit(type=FlitType.NOP)
    bad_t[0] |= 3 << _HDR_OFFSET["type"]                                   # type 3
    bad_t[31] = bad_t[31] & (1 << 32) - 1 | flit_crc(bad_t) << 32
    script[208] = bad_t
    for k in range(3):                                  # 45 slots on VC 2, nobody pops
        script[210 + 2 * k] = pack_flit(type=FlitType.DATA, seq=k, vc=2,
                                        slots=[k * 100 + j for j in range(15)])
    script[250] = pack_flit(type=FlitType.NOP, ack=True, ack_seq=0)        # a good ACK
    pending = [deque() for _ in range(p.vcs)]
    for j in range(2):
        pending[0].append((j + 7, False))

    async def bench(ctx):
        ctx.set(dut.active, 1)
        ctx.set(dut.init, 1)
        await ctx.tick()
        ctx.set(dut.init, 0)
        sh.model.init()
        for now in range(1, 400):
            ev = _empty_events()
            for v in range(p.vcs):
                ctx.set(dut.tx[v].valid, bool(pending[v]) and now > 100)
                if pending[v]:
                    ctx.set(dut.tx[v].payload, {"data": pending[v][0][0], "last": 0})
                ctx.set(dut.rx[v].ready, 0)
            ctx.set(dut.flit_o.ready, now % 8 == 0)
            f = script.get(now)
            ctx.set(dut.flit_i.valid, f is not None)
            ctx.set(dut.flit_i.payload.words.as_value(), _flit_value(f) if f else 0)
            _observe(ctx, dut, ev, p.vcs, pending)
            before = ctx.get(dut.counters.replay_timeouts)
            await ctx.tick()
            sh.feed(ev, now, ctx.get(dut.counters.replay_timeouts) - before,
                    ctx.get(dut.retrain_req))
        sh.counters = _dut_counters(ctx, dut)
        sh.acked = ctx.get(dut.acked)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    c = sh.counters
    assert c == sh.model.counters
    assert c["protocol_errors"] == 4          # ACK, NAK, nslots = 0, type 3
    assert c["fc_errors"] == 2                # the limit, the overflow
    assert c["delivered_slots"] == p.vc_slots
    assert c["naks_rx"] == 1 and c["replays"] == 0
    assert sh.model.limit_rx[1] == p.vc_slots
    assert sh.acked == 0 and sh.model.acked == 0 and sh.model.next_seq == 1


def test_ack_coalescing():
    """An endpoint with nothing to send ACKs with a NOP exactly ack_timer cycles after a lone
    DATA flit is delivered (counting from the cycle after), and right after the ack_every-th
    DATA flit; otherwise it stays silent."""
    p = _params()
    dut = DataLink(p)
    sh = Shadow(p, "dut")
    script = {10 + 2 * v: pack_flit(type=FlitType.NOP, fc_valid=True, fc_vc=v,
                                    fc_limit=p.vc_slots) for v in range(p.vcs)}
    script[100] = pack_flit(type=FlitType.DATA, seq=0, vc=1, slots=[11])
    burst = [300 + 3 * k for k in range(p.ack_every)]
    for k, t in enumerate(burst):
        script[t] = pack_flit(type=FlitType.DATA, seq=1 + k, vc=1, slots=[12 + k])
    sent = []

    async def bench(ctx):
        ctx.set(dut.active, 1)
        ctx.set(dut.init, 1)
        await ctx.tick()
        ctx.set(dut.init, 0)
        sh.model.init()
        ctx.set(dut.flit_o.ready, 1)
        for now in range(1, 420):
            ev = _empty_events()
            f = script.get(now)
            ctx.set(dut.flit_i.valid, f is not None)
            ctx.set(dut.flit_i.payload.words.as_value(), _flit_value(f) if f else 0)
            _observe(ctx, dut, ev, p.vcs, None)
            if ev["sent"] is not None:
                sent.append((now, unpack_flit(ev["sent"])))
            await ctx.tick()
            sh.feed(ev, now, 0, ctx.get(dut.retrain_req))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    fc_init = [t for t, f in sent if t < 100]
    acks = [(t, f.ack_seq) for t, f in sent if t >= 100]
    assert len(fc_init) == p.vcs and all(not f.ack for t, f in sent if t < 100)
    assert acks == [(101 + p.ack_timer, 0), (burst[-1] + 1, p.ack_every)]
    assert all(f.type == FlitType.NOP and f.ack for t, f in sent if t >= 100)
