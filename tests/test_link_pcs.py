# amaranth: UnusedElaboratable=no
"""Amaranth-pysim tests of the link PCS (rtl/link/pcs.py) against golden_model/link_pcs.py.

The transmitter is compared bit for bit with :class:`PcsTxModel`; BIP-8 with a bit-serial
reference; the lane receiver's lock, hi-BER and recovery with blocks the golden lane encoder
made; and the whole PCS through a small channel (per-lane whole-block delay and bit offset,
bit flips) must deliver the beats sent, in order, without loss once aligned.
"""

import os
import random
from dataclasses import replace

import pytest
from amaranth.hdl import Array, Cat, Elaboratable, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from golden_model.link_pcs import (Descrambler, LaneTxModel, PcsRxModel, PcsTxModel, am_payload,
                                   bip8, idle_payload, parse_am)
from rtl.link.layouts import AM_BLOCK, BLOCK_BITS, PCS_LANE_COUNTERS, BlockType
from rtl.link.params import LinkParams
from rtl.link.pcs import LaneRx, LaneTx, PcsRx, PcsTx


MASK66 = (1 << BLOCK_BITS) - 1


def _rng(offset):
    seed = int(os.environ.get("SEED", "20250611")) + offset
    print(f"seed {seed} (SEED={seed - offset} replays)")
    return random.Random(seed)


def _params(lanes, **overrides):
    # Short periods and lock windows keep pysim fast.
    p = LinkParams(lanes=lanes).fast_sim()
    return replace(p, **{"am_period": 32, "max_skew": 4, "lock_good": 8, "lock_window": 16,
                         "lock_bad": 4, "hi_ber_window": 64, "hi_ber_count": 6, **overrides})


def _run(dut, bench, name):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    if os.environ.get("WAVES"):
        with sim.write_vcd(f"{name}.vcd"):
            sim.run()
    else:
        sim.run()


def _block_int(ctrl, payload):
    return ctrl | payload << 1


def _beat_int(blocks):
    return sum(_block_int(c, d) << (65 * j) for j, (c, d) in enumerate(blocks))


def _beat_blocks(value, lanes):
    return [((value >> 65 * j) & 1, (value >> (65 * j + 1)) & ((1 << 64) - 1))
            for j in range(lanes)]


def _random_block(rng):
    if rng.random() < 0.2:
        return 1, BlockType.SOF.value | rng.getrandbits(56) << 8
    return 0, rng.getrandbits(64)


def _bip8_serial(payloads):
    """Bit-serial BIP-8: payload bit ``k`` (wire order) goes to parity bit ``k mod 8``."""
    bip = [0] * 8
    for payload in payloads:
        for k in range(64):
            bip[k % 8] ^= payload >> k & 1
    return sum(b << i for i, b in enumerate(bip))


# --- Transmitter -----------------------------------------------------------------------------

def _tx_controls(rng, lanes, mode):
    if mode == "raw":
        return 1, lanes, 0
    if mode == "full":
        return 0, lanes, 0
    width = rng.choice([w for w in (1, 2, 4, 8) if w <= lanes] + [0])
    return 0, width, rng.randrange(min(lanes - width + 1, lanes))


@pytest.mark.parametrize("lanes, mode", [(1, "full"), (1, "raw"), (2, "full"), (2, "mixed"),
                                         (4, "full"), (4, "raw"), (4, "mixed"),
                                         (8, "mixed")])
def test_pcs_tx_matches_model(lanes, mode):
    rng = _rng(lanes * 10 + len(mode))
    p = _params(lanes)
    dut = PcsTx(p)
    model = PcsTxModel(p)
    cycles = 3 * p.am_period + 5
    mismatches = []

    async def bench(ctx):
        raw, width, offset = _tx_controls(rng, lanes, mode)
        for t in range(cycles):
            if mode == "mixed" and rng.random() < 0.1:
                raw, width, offset = _tx_controls(rng, lanes, rng.choice(["raw", "mixed"]))
            valid = rng.random() < 0.8
            beat = [_random_block(rng) for _ in range(lanes)]
            ctx.set(dut.beat.valid, valid)
            ctx.set(dut.beat.payload.as_value(), _beat_int(beat))
            ctx.set(dut.raw, raw)
            ctx.set(dut.width, width)
            ctx.set(dut.offset, offset)
            ready, blocks = model.step(valid, beat, raw=raw, width=width, offset=offset)
            assert ctx.get(dut.beat.ready) == ready, f"ready at cycle {t}"
            await ctx.tick()
            got = [(ctx.get(dut.o.as_value()) >> (66 * i)) & MASK66 for i in range(lanes)]
            if got != blocks:
                mismatches.append((t, got, blocks))

    _run(dut, bench, f"pcs_tx_{lanes}_{mode}")
    assert not mismatches, f"{len(mismatches)} cycles differ, first {mismatches[0]}"


def test_bip8_matches_bit_serial_reference():
    rng = _rng(3)
    for n in (0, 1, 2, 7, 31):
        payloads = [rng.getrandbits(64) for _ in range(n)]
        assert bip8(payloads) == _bip8_serial(payloads)
    # The check can fail: one flipped bit changes exactly one parity bit.
    payloads = [rng.getrandbits(64) for _ in range(5)]
    flipped = payloads[:2] + [payloads[2] ^ 1 << 45] + payloads[3:]
    assert bip8(flipped) ^ _bip8_serial(payloads) == 1 << (45 % 8)

    # The RTL's markers, decoded independently of PcsTxModel: each lane's descrambled stream
    # (the descrambler starts from the scrambler's all-ones state), each marker's BIP against
    # the bit-serial BIP of the payloads since the lane's previous marker.
    lanes = 2
    p = _params(lanes)
    dut = PcsTx(p)
    streams = [[] for _ in range(lanes)]

    async def bench(ctx):
        ctx.set(dut.width, lanes)
        for _ in range(3 * p.am_period + 1):
            ctx.set(dut.beat.valid, rng.random() < 0.7)
            ctx.set(dut.beat.payload.as_value(),
                    _beat_int([_random_block(rng) for _ in range(lanes)]))
            await ctx.tick()
            for i in range(lanes):
                streams[i].append((ctx.get(dut.o.as_value()) >> (66 * i)) & MASK66)

    _run(dut, bench, "bip8")
    for lane, blocks in enumerate(streams):
        desc = Descrambler(state=(1 << 58) - 1)
        plain = [(b & 3, desc(b >> 2)) for b in blocks]
        markers = [t for t, (sync, d) in enumerate(plain) if sync == 0b10 and parse_am(d)]
        assert markers == list(range(0, len(plain), p.am_period))
        for prev, t in zip(markers, markers[1:]):
            am = AM_BLOCK.from_bits(plain[t][1])
            assert (am.lane, am.width) == (lane, lanes)
            assert am.bip == _bip8_serial(d for _, d in plain[prev + 1:t])
        assert AM_BLOCK.from_bits(plain[0][1]).bip == 0


# --- Lane receiver ---------------------------------------------------------------------------

def _serial_words(blocks, bit):
    """66-bit words of the lane's stream when ``bit`` bits precede the first block."""
    return [((blocks[t] << bit) | ((blocks[t - 1] if t else 0) >> (BLOCK_BITS - bit))) & MASK66
            for t in range(len(blocks))]


def _lane_blocks(rng, n):
    tx = LaneTxModel()
    plain = [_random_block(rng) if rng.random() < 0.7 else (1, idle_payload())
             for _ in range(n)]
    return plain, [tx(c, d) for c, d in plain]


def _run_lane_rx(p, words, name):
    dut = LaneRx(p)
    trace = []

    async def bench(ctx):
        for w in words:
            ctx.set(dut.i, w)
            await ctx.tick()
            trace.append({
                "valid":  ctx.get(dut.o_valid),
                "block":  (ctx.get(dut.o.ctrl), ctx.get(dut.o.data)),
                "locked": ctx.get(dut.locked),
                "hi_ber": ctx.get(dut.hi_ber),
                "bad":    ctx.get(dut.bad_headers),
                "losses": ctx.get(dut.lock_losses),
            })

    _run(dut, bench, name)
    return trace


# The block in the words of cycles t - 1 and t is on `o` after the tick of cycle t + 1; trace[c]
# is sampled after the tick of cycle c, so it shows block c - 1.
_RX_LAG = 1


@pytest.mark.parametrize("bit", [0, 1, 33, 65, "random"])
def test_lane_rx_locks_from_any_bit_offset(bit):
    rng = _rng(100 + (bit if isinstance(bit, int) else 7))
    offsets = [bit] if isinstance(bit, int) else rng.sample(range(2, 65), 3)
    p = _params(1)
    for off in offsets:
        plain, blocks = _lane_blocks(rng, 400)
        trace = _run_lane_rx(p, _serial_words(blocks, off), f"lane_rx_{off}")
        # The lock that lasts (with lock_good = 8 a wrong slip shows 8 valid headers in a row
        # with probability 1/256, a false lock that the lock window soon drops).
        lock = max(c for c, s in enumerate(trace) if not s["locked"]) + 1
        print(f"bit offset {off}: locked after {lock} blocks, "
              f"{trace[-1]['losses']} false locks")
        # Hunting costs about two blocks per wrong slip (half the wrong windows have a valid
        # header), 65 slips at most, then lock_good blocks.
        assert lock <= p.lock_good + 4 * BLOCK_BITS
        for c in range(lock + 1, len(trace)):
            s = trace[c]
            assert s["locked"] and s["valid"], f"offset {off}: lock lost at {c}"
            assert s["block"] == plain[c - _RX_LAG], f"offset {off}: wrong block at {c}"
        # Bad headers are only those that ended false locks.
        assert trace[-1]["bad"] == p.lock_bad * trace[-1]["losses"]


def _hi_ber_reference(p, bad, lock, n):
    """hi_ber after each block from ``lock + 1`` on, per docs/link_pcs.md: a tumbling window
    of ``hi_ber_window`` blocks from the lock on; the flag rises when the window's count reaches
    ``hi_ber_count`` and is re-decided at each window end."""
    flags, count, flag = {}, 0, 0
    for t in range(lock + 1, n):
        count += t in bad
        if count >= p.hi_ber_count:
            flag = 1
        if (t - lock) % p.hi_ber_window == 0:
            flag, count = int(count >= p.hi_ber_count), 0
        flags[t] = flag
    return flags


def test_lane_rx_bad_headers_hi_ber_and_relock():
    rng = _rng(200)
    p = _params(1)
    plain, blocks = _lane_blocks(rng, 700)
    off = 17

    def run(bad):
        sent = [b ^ 1 if t in bad else b for t, b in enumerate(blocks)]   # sync 01→00, 10→11
        trace = _run_lane_rx(p, _serial_words(sent, off), "lane_rx_bad")
        return lambda t: trace[t + _RX_LAG]      # the state once block t is on `o`

    # Phase A (blocks 300–419): one bad header in 6 (≤ 3 in a 16-block lock window, ~10 in a
    # 64-block hi-BER window): hi-BER, no lock loss. Then clean: hi-BER clears.
    bad = set(range(300, 420, 6))
    at = run(bad)
    lock = max(t for t in range(300) if not at(t)["locked"]) + 1    # the block that locked
    assert at(299)["locked"] and not at(299)["hi_ber"]
    losses = at(299)["losses"]          # false locks while hunting, if any
    hi_ber = _hi_ber_reference(p, bad, lock, 690)
    for t in range(300, 690):
        s = at(t)
        assert s["locked"], f"lock lost at block {t}"
        assert s["valid"] == (t not in bad)
        assert s["hi_ber"] == hi_ber[t], f"hi_ber at block {t}"
        if t not in bad:
            assert s["block"] == plain[t]
    assert at(419)["bad"] == 20 + p.lock_bad * losses
    assert any(hi_ber[t] for t in range(300, 420)) and not hi_ber[559]
    assert at(689)["losses"] == losses

    # Phase C: lock_bad bad headers in one lock window (which starts at the lock) lose lock;
    # the lane relocks in place after lock_good blocks.
    burst = lock + 1 + p.lock_window * ((560 - lock) // p.lock_window)
    bad |= set(range(burst, burst + p.lock_bad))
    at = run(bad)
    loss = burst + p.lock_bad - 1
    assert at(loss - 1)["locked"] and not at(loss)["locked"]
    assert not at(loss)["valid"] and not at(loss)["hi_ber"]
    assert at(loss)["losses"] == losses + 1
    assert at(loss)["bad"] == 20 + p.lock_bad * (losses + 1)
    relock = next(t for t in range(loss, 690) if at(t)["locked"])
    assert relock == loss + p.lock_good          # same slip: lock_good valid headers
    for t in range(relock, 690):
        assert at(t)["valid"] and at(t)["block"] == plain[t]


# --- Transmitter → channel → receiver --------------------------------------------------------

class _Channel(wiring.Component):
    """Per lane: ``delay`` whole blocks, then ``bit`` bits of offset; ``flip`` XORs the block
    entering the channel. Raising ``delay`` by one repeats a block, lowering it drops one."""

    def __init__(self, lanes, depth):
        self._lanes, self._depth = lanes, depth
        super().__init__({
            "i":     In(data.ArrayLayout(BLOCK_BITS, lanes)),
            "o":     Out(data.ArrayLayout(BLOCK_BITS, lanes)),
            "delay": In(data.ArrayLayout(range(depth), lanes)),
            "bit":   In(data.ArrayLayout(range(BLOCK_BITS), lanes)),
            "flip":  In(data.ArrayLayout(BLOCK_BITS, lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        for lane in range(self._lanes):
            hist = [Signal(BLOCK_BITS, name=f"h{lane}_{k}") for k in range(self._depth + 1)]
            m.d.comb += hist[0].eq(self.i[lane] ^ self.flip[lane])
            for k in range(1, len(hist)):
                m.d.sync += hist[k].eq(hist[k - 1])
            cur = Array(hist)[self.delay[lane]]
            prev = Array(hist)[self.delay[lane] + 1]
            m.d.comb += self.o[lane].eq(
                Cat(prev, cur).bit_select((BLOCK_BITS - self.bit[lane]).as_unsigned(), BLOCK_BITS))
        return m


class _Link(Elaboratable):
    def __init__(self, p):
        self.tx = PcsTx(p)
        self.rx = PcsRx(p)
        self.ch = _Channel(p.lanes, p.max_skew + 2)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx, m.submodules.ch = self.tx, self.rx, self.ch
        m.d.comb += [
            self.ch.i.eq(self.tx.o),
            self.rx.i.eq(self.ch.o),
        ]
        return m


def _counters(ctx, link):
    return [{f: ctx.get(getattr(c, f)) for f in PCS_LANE_COUNTERS.members}
            for c in (link.rx.counters[i] for i in range(link.rx.counters.shape().length))]


def _run_link(p, *, width, offset, delays, bits, cycles, events=None, name="link"):
    """Drive random beats (80 % valid) into PcsTx and collect what PcsRx delivers.

    ``events`` maps a cycle (counted from alignment) to a callback ``(ctx, link)``. Returns the
    beat slots sent (a taken beat, or IDLE on the active lanes) and, per cycle, a record of the
    receiver.
    """
    rng = _rng(300 + 17 * p.lanes + width + offset)
    link = _Link(p)
    L = p.lanes
    sent = []          # one entry per non-marker cycle, logical lanes < width
    trace = []
    events = events or {}
    idle = [(1, idle_payload())] * width

    async def bench(ctx):
        ctx.set(link.tx.width, width)
        ctx.set(link.tx.offset, offset)
        ctx.set(link.rx.width, width)
        ctx.set(link.rx.offset, offset)
        for i in range(L):
            ctx.set(link.ch.delay[i], delays[i])
            ctx.set(link.ch.bit[i], bits[i])
        aligned_at = None
        for t in range(cycles):
            valid = rng.random() < 0.8
            beat = [_random_block(rng) for _ in range(L)]
            ctx.set(link.tx.beat.valid, valid)
            ctx.set(link.tx.beat.payload.as_value(), _beat_int(beat))
            if ctx.get(link.tx.beat.ready):
                sent.append(beat[:width] if valid else idle)
            rec = {
                "valid":   ctx.get(link.rx.beat.valid),
                "beat":    _beat_blocks(ctx.get(link.rx.beat.payload.as_value()), L)[:width],
                "aligned": ctx.get(link.rx.aligned),
                "error":   ctx.get(link.rx.deskew_error),
                "tx":      ctx.get(link.tx.o.as_value()),
            }
            trace.append(rec)
            if aligned_at is None and rec["aligned"]:
                aligned_at = t
                rec["counters"] = _counters(ctx, link)
            if aligned_at is not None and t - aligned_at in events:
                events[t - aligned_at](ctx, link)
            await ctx.tick()
        trace.append({"counters": _counters(ctx, link)})

    _run(link, bench, name)
    return sent, trace


def _check_contiguous(sent, got):
    """``got`` is a run of consecutive entries of ``sent``; returns where it starts."""
    assert got, "no beat delivered"
    starts = [k for k in range(len(sent) - len(got) + 1) if sent[k:k + len(got)] == got]
    assert starts, "the delivered beats are not a contiguous run of the beats sent"
    return starts[0]


@pytest.mark.parametrize("lanes, width, offset", [(2, 2, 0), (4, 4, 0), (4, 2, 2), (8, 4, 4)])
def test_pcs_delivers_beats_in_order(lanes, width, offset):
    rng = _rng(400 + lanes + offset)
    p = _params(lanes)
    delays = [rng.randint(0, p.max_skew) for _ in range(lanes)]
    delays[rng.randrange(lanes)] = 0
    delays[rng.randrange(lanes)] = p.max_skew      # the whole skew range
    bits = [rng.choice([0, 1, 33, 65, rng.randrange(66)]) for _ in range(lanes)]
    print(f"delays {delays} bits {bits}")
    sent, trace = _run_link(p, width=width, offset=offset, delays=delays, bits=bits,
                            cycles=650, name=f"pcs_{lanes}_{width}_{offset}")
    *trace, final = trace
    aligned = [t for t, r in enumerate(trace) if r["aligned"]]
    assert aligned, "never aligned"
    first = aligned[0]
    print(f"aligned at cycle {first}")
    assert aligned == list(range(first, len(trace))), "alignment dropped"
    assert not any(r["error"] for r in trace)
    got = [r["beat"] for r in trace if r["valid"]]
    k = _check_contiguous(sent, got)
    # No loss: every slot from the first delivered one to a few cycles before the end (the
    # beats still in the channel and FIFOs) arrived.
    assert len(sent) - (k + len(got)) <= p.max_skew + 8
    # Aligned on a marker beat (not delivered); after it, the marker beat is every am_period-th.
    assert [t for t in range(first, len(trace)) if not trace[t]["valid"]] == list(
        range(first + p.am_period - 1, len(trace), p.am_period))
    # Before alignment, only false locks while hunting count (each ended by lock_bad bad
    # headers); after it, nothing.
    start = trace[first]["counters"]
    print(f"counters at alignment {start}")
    for i in range(offset, offset + width):
        c = start[i]
        assert c["bad_headers"] == p.lock_bad * c["lock_losses"], i
        assert c["bip_errors"] == 0 and c["am_errors"] == 0, i
        assert final["counters"][i] == c, i


@pytest.mark.parametrize("change", ["later", "earlier", "bit", "realign"])
def test_deskew_error_when_a_lane_changes(change):
    """Mid-run, lane 1's delay grows or shrinks by a block, or its bit offset moves (it loses
    lock); or the receiver is told to realign (no error). It must realign and deliver again."""
    p = _params(2)
    after = 40      # beats after alignment

    def event(ctx, link):
        if change == "later":
            ctx.set(link.ch.delay[1], 3)
        elif change == "earlier":
            ctx.set(link.ch.delay[1], 1)
        elif change == "bit":
            ctx.set(link.ch.bit[1], 61)
        else:
            ctx.set(link.rx.realign, 1)

    def end_pulse(ctx, link):
        ctx.set(link.rx.realign, 0)

    sent, trace = _run_link(p, width=2, offset=0, delays=[1, 2], bits=[5, 60], cycles=700,
                            events={after: event, after + 1: end_pulse},
                            name=f"deskew_{change}")
    *trace, final = trace
    first = next(t for t, r in enumerate(trace) if r["aligned"])
    errors = [t for t, r in enumerate(trace) if r["error"]]
    dropped = next(t for t in range(first, len(trace)) if not trace[t]["aligned"])
    print(f"aligned at {first}, dropped at {dropped}, deskew errors at {errors}")
    if change == "realign":
        assert not errors and dropped == first + after + 1
    else:
        # A marker one beat off, or the lock loss, is seen within a marker period.
        assert errors == [dropped]
        assert first + after < dropped <= first + after + p.am_period + 2
    realigned = [t for t in range(dropped, len(trace)) if trace[t]["aligned"]]
    assert realigned and realigned == list(range(realigned[0], len(trace)))
    # Before the change and after realignment the beats are contiguous runs of those sent.
    _check_contiguous(sent, [r["beat"] for r in trace[:first + after] if r["valid"]])
    _check_contiguous(sent, [r["beat"] for r in trace[realigned[0]:] if r["valid"]])
    start, end = trace[first]["counters"], final["counters"]
    assert end[0] == start[0]
    if change in ("later", "earlier"):
        assert end[1]["am_errors"] > start[1]["am_errors"]     # the misplaced marker
    if change == "bit":
        assert end[1]["lock_losses"] > start[1]["lock_losses"]
    assert all(c["bip_errors"] == 0 for c in end)


def test_deskew_error_when_skew_exceeds_max_skew():
    p = _params(2)
    sent, trace = _run_link(p, width=2, offset=0, delays=[0, p.max_skew + 1], bits=[3, 9],
                            cycles=400, name="too_much_skew")
    *trace, final = trace
    errors = [t for t, r in enumerate(trace) if r["error"]]
    print(f"deskew errors at {errors}")
    assert not any(r["aligned"] or r["valid"] for r in trace)
    assert len(errors) >= 3                     # one per attempt, once per marker period
    assert all(b - a == p.am_period for a, b in zip(errors, errors[1:]))


@pytest.mark.parametrize("flip", [False, True])
def test_bip_error_counted_when_a_payload_bit_flips(flip):
    p = _params(2)
    # Alignment needs a marker seen on every lane, so by then the next marker is armed; flip
    # one payload bit mid-period (in the channel, after scrambling) on lane 0.
    at = p.am_period + 10

    def hit(ctx, link):
        ctx.set(link.ch.flip[0], 1 << 30)

    def clear(ctx, link):
        ctx.set(link.ch.flip[0], 0)

    events = {at: hit, at + 1: clear} if flip else {}
    sent, trace = _run_link(p, width=2, offset=0, delays=[0, 3], bits=[40, 2], cycles=500,
                            events=events, name=f"bip_{flip}")
    *trace, final = trace
    first = next(t for t, r in enumerate(trace) if r["aligned"])
    start = trace[first]["counters"]
    delta = [{f: final["counters"][i][f] - start[i][f] for f in start[i]} for i in range(2)]
    print(f"at alignment {start}, since {delta}")
    assert all(c["bip_errors"] == 0 and c["am_errors"] == 0 for c in start)
    assert delta[0] == {"bad_headers": 0, "lock_losses": 0, "bip_errors": int(flip),
                        "am_errors": 0}
    assert delta[1] == {"bad_headers": 0, "lock_losses": 0, "bip_errors": 0, "am_errors": 0}
    assert not any(r["error"] for r in trace)
    got = [r["beat"] for r in trace if r["valid"]]
    # The reference: the golden decoder of what entered the channel, the flip included.
    wire = [[(r["tx"] >> (66 * i)) & MASK66 for r in trace] for i in range(2)]
    if flip:
        wire[0][first + at] ^= 1 << 30
    beats, bip_errors, am_errors, _ = PcsRxModel(p).decode(wire)
    assert (bip_errors, am_errors) == ([int(flip), 0], [0, 0])
    _check_contiguous(beats, got)
    # The flipped bit corrupts three descrambled bits of one or two delivered beats.
    k = _check_contiguous(sent, got[:1])
    diff = [i for i, g in enumerate(got) if sent[k + i] != g]
    assert 1 <= len(diff) <= 2 and diff[-1] - diff[0] <= 1 if flip else not diff


# --- Golden model on its own -----------------------------------------------------------------

def test_golden_round_trip_and_bip_check():
    rng = _rng(500)
    p = _params(4)
    for flip in (False, True):
        tx = PcsTxModel(p)
        lanes = [[] for _ in range(3)]
        sent = []
        for _ in range(4 * p.am_period):
            valid = rng.random() < 0.8
            beat = [_random_block(rng) for _ in range(3)]
            ready, blocks = tx.step(valid, beat, width=3, offset=1)
            if ready:
                sent.append(beat if valid else [(1, idle_payload())] * 3)
            for j in range(3):
                lanes[j].append(blocks[1 + j])
        if flip:
            lanes[2][2 * p.am_period + 5] ^= 1 << 20
        beats, bip_errors, am_errors, header_errors = PcsRxModel(p).decode(lanes, offset=1)
        assert am_errors == [0, 0, 0] and header_errors == [0, 0, 0]
        assert bip_errors == [0, 0, int(flip)]
        diff = [i for i, b in enumerate(beats) if b != sent[len(sent) - len(beats) + i]]
        assert 1 <= len(diff) <= 2 if flip else not diff


def test_golden_marker_layout():
    payload = am_payload(lane=5, width=4, bip=0xA5)
    assert payload & 0xFF == BlockType.AM.value
    assert parse_am(payload) == (5, 4, 0xA5)
    assert parse_am(payload ^ 1 << 20) is None      # bip_inv no longer ~bip
    assert parse_am(idle_payload()) is None


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="max_skew"):
        PcsRx(_params(2, am_period=16, max_skew=8))
    with pytest.raises(ValueError, match="lock_good"):
        LaneRx(_params(1, lock_good=1))
    with pytest.raises(TypeError, match="LinkParams"):
        LaneTx(4)
