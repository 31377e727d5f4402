# amaranth: UnusedElaboratable=no
"""Amaranth-pysim tests of the link traffic generator and checker (``rtl/link/traffic.py``).

The generator's output is compared slot by slot with ``golden_model/link_traffic.py`` (format,
PRBS, length sequence) by a Python monitor on the connection, and the checker's counters with
what the monitor saw. The checker is also driven directly with golden slots that are
corrupted, skipped, repeated or reordered, and each fault must move exactly its counter.
"""

import os
import random

import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from golden_model.link_traffic import (
    header, message_lengths, message_slots, parse_header, prbs, xorshift32,
)
from rtl.link.traffic import LenMode, TrafficCheck, TrafficGen, gen_cfg_layout


COUNTERS = ("messages", "slots", "gaps", "duplicates_or_reorders", "content_errors",
            "latency_min", "latency_max", "latency_sum")
ALL_ONES = 0xFFFFFFFF


def _rng(offset):
    seed = int(os.environ.get("SEED", "20250311")) + offset
    print(f"seed {seed} (SEED={seed - offset} replays)")
    return random.Random(seed)


def _counters(ctx, chk, v):
    c = ctx.get(chk.counters)[v]
    return {f: int(getattr(c, f)) for f in COUNTERS}


class _Loop(Elaboratable):
    """Generator straight into checker, with the shared cycle counter."""

    def __init__(self, vcs):
        self.gen = TrafficGen(vcs=vcs)
        self.chk = TrafficCheck(vcs=vcs)
        self.now = Signal(32)
        self._vcs = vcs

    def elaborate(self, platform):
        m = Module()
        m.submodules.gen = self.gen
        m.submodules.chk = self.chk
        m.d.sync += self.now.eq(self.now + 1)
        m.d.comb += [self.gen.now.eq(self.now), self.chk.now.eq(self.now)]
        for v in range(self._vcs):
            wiring.connect(m, self.gen.o[v], self.chk.i[v])
        return m


def _run_loop(top, gen_cfg, stall, *, max_cycles, seed=0, phases=None):
    """Run until the generator is done and the checker has every message; return per VC the
    transfers ``(now, data, last)``, the cycles each message's slot 0 was first offered, the
    checker counters and the generator's ``sent``. ``phases`` are further (count, cycles)
    settings applied after the first run completes."""
    vcs = len(stall)
    xfers = [[] for _ in range(vcs)]
    offered = [[] for _ in range(vcs)]
    result = {}

    async def bench(ctx):
        gen, chk = top.gen, top.chk
        ctx.set(chk.cfg, {"stall_threshold": stall, "seed": seed ^ 0x5A5A})
        ctx.set(gen.cfg, gen_cfg)
        held = [None] * vcs
        in_msg = [False] * vcs
        plan = [gen_cfg["count"]] + [c for c in (phases or [])]
        for count in plan:
            ctx.set(gen.cfg, dict(gen_cfg, count=count))
            for _ in range(max_cycles):
                now = ctx.get(top.now)
                for v in range(vcs):
                    o = gen.o[v]
                    valid, ready = ctx.get(o.valid), ctx.get(o.ready)
                    data, last = ctx.get(o.payload.data), ctx.get(o.payload.last)
                    if held[v] is not None:
                        assert valid and (data, last) == held[v], "valid dropped or payload moved"
                    if valid and not in_msg[v] and held[v] is None:
                        offered[v].append(now)
                    held[v] = (data, last) if valid and not ready else None
                    if valid and ready:
                        xfers[v].append((now, data, last))
                        in_msg[v] = not last
                await ctx.tick()
                messages = sum(_counters(ctx, chk, v)["messages"] for v in range(vcs))
                if ctx.get(gen.done) and messages == count * bin(gen_cfg["enable"]).count("1"):
                    break
            else:
                raise AssertionError(f"traffic did not finish in {max_cycles} cycles")
        result["counters"] = [_counters(ctx, chk, v) for v in range(vcs)]
        result["sent"] = [int(x) for x in ctx.get(gen.sent)]
        for _ in range(20):   # nothing more comes out
            assert not any(ctx.get(gen.o[v].valid) for v in range(vcs))
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return xfers, offered, result["counters"], result["sent"]


def _check_stream(v, xfers, offered, lengths):
    """The transfers of VC ``v`` are the golden messages 0, 1, … of ``lengths``; returns the
    latency of each message."""
    latencies = []
    pos = 0
    for n, length in enumerate(lengths):
        stamp = offered[n] - 1
        got = xfers[pos:pos + length]
        assert parse_header(got[0][1])["stamp"] == stamp, f"vc {v} message {n} stamp"
        assert [(d, bool(last)) for _, d, last in got] == message_slots(v, n, length, stamp), \
            f"vc {v} message {n}"
        latencies.append(got[-1][0] - stamp)
        pos += length
    assert pos == len(xfers), f"vc {v}: {len(xfers) - pos} slots beyond the last message"
    return latencies


def test_gen_to_check_random():
    rng = _rng(11)
    vcs, count = 4, 10
    seed = rng.getrandbits(32)
    top = _Loop(vcs)
    gen_cfg = {"enable": 0b1111, "count": count, "seed": seed, "len_mode": LenMode.RANDOM,
               "fixed_len": 0, "idle_threshold": 1 << 30}
    stall = [0, 1 << 31, 3 << 30, 1 << 28]
    xfers, offered, counters, sent = _run_loop(top, gen_cfg, stall, max_cycles=2000,
                                               seed=seed)
    for v in range(vcs):
        lengths = message_lengths(v, seed, count)
        lat = _check_stream(v, xfers[v], offered[v], lengths)
        c = counters[v]
        print(f"vc {v}: lengths {lengths}, latency {min(lat)}…{max(lat)}")
        assert c["messages"] == count and sent[v] == count
        assert c["slots"] == sum(lengths)
        assert c["gaps"] == c["duplicates_or_reorders"] == c["content_errors"] == 0
        assert (c["latency_min"], c["latency_max"], c["latency_sum"]) == \
            (min(lat), max(lat), sum(lat))
        # The generator stamps one cycle before it offers slot 0, so a message of L slots
        # takes at least L cycles.
        assert min(lat) >= 1
    assert len(set(map(tuple, (message_lengths(v, seed, count) for v in range(vcs))))) > 1


def test_fixed_length_and_resume():
    top = _Loop(2)
    gen_cfg = {"enable": 0b01, "count": 3, "seed": 0, "len_mode": LenMode.FIXED,
               "fixed_len": 15, "idle_threshold": 0}
    # Raising count resumes the numbering where it stopped.
    xfers, offered, counters, sent = _run_loop(top, gen_cfg, [0, 0], max_cycles=200,
                                               phases=[5])
    lat = _check_stream(0, xfers[0], offered[0], [15] * 5)
    assert xfers[1] == [] and sent == [5, 0]
    c = counters[0]
    assert c["messages"] == 5 and c["slots"] == 75 and c["content_errors"] == c["gaps"] == 0
    # Saturating traffic into an always-ready sink: a slot per cycle from the first offer.
    assert lat == [15] * 5
    assert counters[1]["messages"] == 0 and counters[1]["latency_min"] == ALL_ONES


def test_fixed_length_zero_acts_as_one():
    top = _Loop(1)
    gen_cfg = {"enable": 1, "count": 4, "seed": 3, "len_mode": LenMode.FIXED,
               "fixed_len": 0, "idle_threshold": 0}
    xfers, offered, counters, _ = _run_loop(top, gen_cfg, [1 << 31], max_cycles=200, seed=3)
    _check_stream(0, xfers[0], offered[0], [1] * 4)
    assert counters[0]["messages"] == 4 and counters[0]["content_errors"] == 0


def test_stall_extremes():
    chk = TrafficCheck(vcs=3)
    seen = []

    async def bench(ctx):
        ctx.set(chk.cfg, {"stall_threshold": [0, ALL_ONES, 1 << 31], "seed": 9})
        for _ in range(200):
            seen.append([ctx.get(chk.i[v].ready) for v in range(3)])
            await ctx.tick()

    sim = Simulator(chk)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert all(r[0] for r in seen) and not any(r[1] for r in seen)
    stalls = sum(not r[2] for r in seen)
    assert 60 < stalls < 140, stalls


# --- the checker against golden slots with faults -----------------------------------------------

def _drive_check(vcs, messages):
    """Send each ``(vc, slots)`` to a checker (always ready, ``now`` = cycle) and return the
    counters of that VC after each message."""
    chk = TrafficCheck(vcs=vcs)
    after = []

    async def bench(ctx):
        ctx.set(chk.cfg, {"stall_threshold": [0] * vcs, "seed": 1})
        t = 0
        for vc, slots in messages:
            for data, last in slots:
                ctx.set(chk.now, t)
                ctx.set(chk.i[vc].valid, 1)
                ctx.set(chk.i[vc].payload, {"data": data, "last": int(last)})
                assert ctx.get(chk.i[vc].ready)
                await ctx.tick()
                t += 1
            ctx.set(chk.i[vc].valid, 0)
            after.append(_counters(ctx, chk, vc))
            for _ in range(3):   # a gap between messages
                ctx.set(chk.now, t)
                await ctx.tick()
                t += 1

    sim = Simulator(chk)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return after


def test_check_detects_each_fault():
    rng = _rng(12)
    vc = 1

    def msg(n, length=None, stamp=0):
        return message_slots(vc, n, length or rng.randint(2, 15), stamp)

    def corrupt(slots, s, bit):
        d, last = slots[s]
        return slots[:s] + [(d ^ 1 << bit, last)] + slots[s + 1:]

    m2 = msg(2)
    m7 = msg(7, 3)
    plan = [   # (label, slots, counter expected to move or None)
        ("ok 0", msg(0), None),
        ("ok 1", msg(1), None),
        ("corrupt slot", corrupt(m2, rng.randrange(1, len(m2)), rng.randrange(128)),
         "content_errors"),
        ("ok 3", msg(3), None),
        ("skip 4", msg(5), "gaps"),
        ("ok 6", msg(6), None),
        ("repeat 6", msg(6), "duplicates_or_reorders"),
        ("early last", [m7[0], (m7[1][0], True)], "content_errors"),
        ("wrong vc", message_slots(0, 8, 2, 0), "content_errors"),
        ("ok 9", msg(9), None),
        ("corrupt header", corrupt(msg(10), 0, rng.randrange(32)), "content_errors"),
        ("ok 11", msg(11), None),
        ("missing last", [(d, False) for d, _ in msg(12, 2)] + [(prbs(vc, 12, 2), True)],
         "content_errors"),
        ("ok 13", msg(13), None),
        ("reorder 15", msg(15), "gaps"),
        ("reorder 14", msg(14), "duplicates_or_reorders"),
        ("ok 16", msg(16, 1), None),
    ]
    after = _drive_check(2, [(vc, slots) for _, slots, _ in plan])
    before = dict.fromkeys(COUNTERS, 0)
    for (label, slots, moved), now in zip(plan, after):
        assert now["messages"] == before["messages"] + 1, label
        assert now["slots"] == before["slots"] + len(slots), label
        for f in ("gaps", "duplicates_or_reorders", "content_errors"):
            assert now[f] == before[f] + (f == moved), (label, f)
        before = now


def test_check_latency():
    stamps = [5, 0, 40]
    slots = [message_slots(0, n, 3, s) for n, s in enumerate(stamps)]
    after = _drive_check(1, [(0, s) for s in slots])
    # Message n's last slot arrives at cycle 6n + 2 (3 slots, then 3 idle cycles).
    lat = [(6 * n + 2 - s) % (1 << 32) for n, s in enumerate(stamps)]
    c = after[-1]
    assert c["latency_min"] == min(lat) and c["latency_max"] == max(lat)
    assert c["latency_sum"] == sum(lat)
    assert c["content_errors"] == 0


# --- golden model and parameters ----------------------------------------------------------------

def test_golden_format():
    h = header(2, 0x12345678, 7, 0xCAFEF00D)
    assert parse_header(h) == {"msg": 0x12345678, "stamp": 0xCAFEF00D, "vc": 2, "length": 7,
                               "prbs": prbs(2, 0x12345678, 0) & ((1 << 56) - 1)}
    words = {prbs(v, n, s) for v in range(4) for n in range(40) for s in range(15)}
    assert len(words) == 4 * 40 * 15
    assert xorshift32(1) == 270369   # Marsaglia's xorshift32 (13, 17, 5) from 1
    lengths = message_lengths(0, 1234, 2000)
    assert set(lengths) == set(range(1, 16))
    with pytest.raises(ValueError, match="length"):
        header(0, 0, 16, 0)


def test_parameters():
    with pytest.raises(ValueError, match="vcs must be 1 … 4, not 5"):
        TrafficGen(vcs=5)
    with pytest.raises(ValueError, match="vcs must be 1 … 4, not 0"):
        TrafficCheck(vcs=0)
    with pytest.raises(ValueError, match="seed_width"):
        TrafficGen(vcs=1, seed_width=33)
    assert gen_cfg_layout(vcs=2, seed_width=16)["seed"].shape == 16
