# amaranth: UnusedElaboratable=no
"""Amaranth-pysim tests of the test-only link channel model (``rtl/link/channel.py``).

References are independent of the RTL: a bit-string model of per-lane delay and bit shift, a
run-length analysis of the flipped bits, and a small Python transmitter
(``golden_model/link_pcs.py`` scrambler and block codec) that stripes flits over lanes with
alignment markers; a dropped flit must leave exactly that transmitter's stream with the flit
turned into IDLE blocks.
"""

import os
import random

import pytest
from amaranth.hdl import Shape
from amaranth.sim import Simulator

from golden_model.link_pcs import Descrambler, Scrambler, decode_block, encode_block
from golden_model.link_traffic import (
    ber_to_threshold, channel_drops, threshold_to_ber, xorshift64,
)
from rtl.link.channel import BLOCK_CLASSES, LinkChannel, channel_cfg_layout, xorshift64_seed
from rtl.link.layouts import AM_MAGIC, TS_MAGIC, BlockType


M66 = (1 << 66) - 1


def _rng(offset):
    seed = int(os.environ.get("SEED", "20250311")) + offset
    print(f"seed {seed} (SEED={seed - offset} replays)")
    return random.Random(seed)


def _cfg(lanes, delays=None, offsets=None, kill=None, **fields):
    delays = delays or [0] * lanes
    offsets = offsets or [0] * lanes
    kill = kill or [0] * lanes
    cfg = {"lane": [{"delay": d, "bit_offset": b, "kill": k}
                    for d, b, k in zip(delays, offsets, kill)],
           "width": lanes, "offset": 0, "lanes_mask": (1 << lanes) - 1, "burst_len": 1}
    cfg.update(fields)
    return cfg


def _run(dut, cfg, inputs, *, updates=None):
    """Drive one input beat per cycle; return the output beat of every cycle and the ledger.
    ``updates`` maps a cycle to a new cfg applied from that cycle on."""
    lanes = len(inputs[0])
    outs, ledger = [], {}
    updates = updates or {}

    async def bench(ctx):
        # One cycle for the generators to restart from cfg.seed, with nothing injected.
        ctx.set(dut.cfg, dict(cfg, ber_threshold=0, drop_threshold=0, drop_at_en=0))
        await ctx.tick()
        ctx.set(dut.cfg, cfg)
        for t, beat in enumerate(inputs):
            if t in updates:
                ctx.set(dut.cfg, updates[t])
            ctx.set(dut.i, beat)
            out = ctx.get(dut.o)
            outs.append([int(out[k]) for k in range(lanes)])
            await ctx.tick()
        led = ctx.get(dut.ledger)
        ledger.update({f: int(getattr(led, f)) for f in
                       ("bit_flips", "error_events", "flits_hit", "flits_dropped",
                        "flits_seen")})
        ledger["blocks_hit"] = {c: int(getattr(led.blocks_hit, c)) for c in BLOCK_CLASSES}

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return outs, ledger


def _window(blocks, start):
    """66 bits of the concatenated ``blocks`` from bit ``start`` (zeros before and after)."""
    stream = 0
    for n, b in enumerate(blocks):
        stream |= b << (66 * n)
    return (stream >> start if start >= 0 else stream << -start) & M66


def _reference(inputs, lane, delay, offset, t):
    """Lane ``lane`` of the channel output in cycle ``t`` with no injection."""
    return _window([beat[lane] for beat in inputs], 66 * (t - 1 - delay) - offset)


# --- delay and bit shift -----------------------------------------------------------------------

@pytest.mark.parametrize("lanes, delays, offsets", [
    (4, [0, 3, 32, 7], [0, 65, 1, 33]),
    (2, [5, 0], [65, 0]),
    (1, [17], [12]),
])
def test_delay_and_bit_offset(lanes, delays, offsets):
    rng = _rng(1)
    n = 120
    inputs = [[rng.getrandbits(66) for _ in range(lanes)] for _ in range(n)]
    # drop_threshold 0 and no errors: random blocks that look like SOFs must pass untouched.
    dut = LinkChannel(lanes=lanes, max_delay=32)
    outs, ledger = _run(dut, _cfg(lanes, delays, offsets, seed=rng.getrandbits(32)), inputs)
    for t in range(n):
        for k in range(lanes):
            assert outs[t][k] == _reference(inputs, k, delays[k], offsets[k], t), (t, k)
    assert ledger["bit_flips"] == ledger["error_events"] == ledger["flits_dropped"] == 0
    # Negative check: the reference is sensitive to a one-bit change of the offset.
    k = lanes - 1
    assert any(outs[t][k] != _reference(inputs, k, delays[k], (offsets[k] + 1) % 66, t)
               for t in range(n))


def test_delay_change_at_run_time():
    rng = _rng(2)
    n = 80
    inputs = [[rng.getrandbits(66)] for _ in range(n)]
    dut = LinkChannel(lanes=1, max_delay=16)
    first = _cfg(1, [2], [5])
    later = _cfg(1, [9], [5])
    outs, _ = _run(dut, first, inputs, updates={40: later})
    for t in range(n):
        d = 2 if t < 40 else 9
        if t in (40, 41):
            continue   # the shift joins a block of each delay
        assert outs[t][0] == _reference(inputs, 0, d, 5, t), t


# --- error events --------------------------------------------------------------------------------

def _runs(bits):
    """Lengths of the runs of ones in a list of bits."""
    runs, cur = [], 0
    for b in bits + [0]:
        if b:
            cur += 1
        elif cur:
            runs.append(cur)
            cur = 0
    return runs


@pytest.mark.parametrize("burst_len", [1, 5, 33, 64])
def test_error_bursts(burst_len):
    rng = _rng(3 + burst_len)
    lanes, n, flush = 4, 150, 12
    delays, offsets = [0, 2, 5, 1], [0, 65, 3, 40]
    mask = 0b1011
    inputs = [[rng.getrandbits(66) for _ in range(lanes)] for _ in range(n)]
    inputs += [[0] * lanes for _ in range(flush)]
    cfg = _cfg(lanes, delays, offsets, seed=rng.getrandbits(32), burst_len=burst_len,
               ber_threshold=1 << 29, lanes_mask=mask)
    # Errors stop before the flush, whose first block still takes the last spill.
    stop = dict(cfg, ber_threshold=0)
    dut = LinkChannel(lanes=lanes, max_delay=8)
    outs, ledger = _run(dut, cfg, inputs, updates={n: stop})

    total_bits = total_events = 0
    hit_blocks = 0
    for k in range(lanes):
        flips = []
        for t in range(len(inputs)):
            diff = outs[t][k] ^ _reference(inputs, k, delays[k], offsets[k], t)
            flips += [diff >> j & 1 for j in range(66)]
        if not mask >> k & 1:
            assert not any(flips), f"lane {k} is masked but was hit"
            continue
        runs = _runs(flips)
        assert runs, f"no error on lane {k}"
        # Touching bursts merge into one run of a multiple of burst_len.
        assert all(r % burst_len == 0 for r in runs), runs
        total_bits += sum(runs)
        total_events += sum(r // burst_len for r in runs)
        # Stream bit j of the output sequence is input block (j - first) // 66 of the lane.
        first = 66 * (1 + delays[k]) + offsets[k]
        hit_blocks += len({(j - first) // 66 for j, b in enumerate(flips) if b})
    assert ledger["bit_flips"] == total_bits == burst_len * ledger["error_events"]
    assert ledger["error_events"] == total_events
    assert sum(ledger["blocks_hit"].values()) == hit_blocks


def test_event_rate():
    rng = _rng(4)
    lanes, n = 4, 1500
    threshold = ber_to_threshold(1 / 16 / 66)
    assert threshold == 1 << 28
    assert threshold_to_ber(threshold) == pytest.approx(1 / 16 / 66)
    dut = LinkChannel(lanes=lanes, max_delay=1)
    _, ledger = _run(dut, _cfg(lanes, seed=rng.getrandbits(32), ber_threshold=threshold),
                     [[0] * lanes] * n)
    expected = lanes * n / 16
    sigma = (lanes * n * (1 / 16) * (15 / 16)) ** 0.5
    print(f"events {ledger['error_events']}, expected {expected:.0f} ± {sigma:.1f}")
    assert abs(ledger["error_events"] - expected) < 5 * sigma
    assert ledger["bit_flips"] == ledger["error_events"]


def test_ber_threshold_helper():
    assert ber_to_threshold(0) == 0
    assert ber_to_threshold(1.0) == (1 << 32) - 1
    assert ber_to_threshold(1e-6, burst_len=8) == round(1e-6 * 66 / 8 * 2**32)
    with pytest.raises(ValueError, match="burst_len"):
        ber_to_threshold(1e-6, burst_len=0)


# --- a striped flit stream -------------------------------------------------------------------

def _fold(payload):
    acc = 0
    for b in range(8):
        acc ^= payload >> (8 * b) & 0xFF
    return acc


class _Transmitter:
    """Beats of a small transmitting PCS: flits of 32 words striped over ``width`` lanes from
    ``offset``, IDLE beats between them, TS beats first, a marker beat every ``am_period``
    beats (also inside flits), and on inactive lanes IDLEs and stray data blocks."""

    def __init__(self, rng, *, lanes, width, offset, flits, am_period=16):
        self.lanes, self.width, self.offset = lanes, width, offset
        content = [[("ts", 1, BlockType.TS1.value | k << 8 | TS_MAGIC << 36, None)
                    for k in range(lanes)] for _ in range(3)]
        for f in range(flits):
            words = [BlockType.SOF.value | f << 8] + [rng.getrandbits(64) for _ in range(31)]
            for b in range(32 // width):
                beat = [self._inactive(rng) for _ in range(lanes)]
                for j in range(width):
                    w = b * width + j
                    beat[offset + j] = ("sof", 1, words[0], f) if w == 0 else \
                        ("data", 0, words[w], f)
                content.append(beat)
            for _ in range(rng.randrange(3)):
                content.append([self._inactive(rng) for _ in range(lanes)])
        self.beats = []   # (class, ctrl, payload or None for a marker, flit)
        it = iter(content)
        while True:
            if len(self.beats) % am_period == am_period - 1:
                self.beats.append([("am", 1, None, None)] * lanes)
                continue
            beat = next(it, None)
            if beat is None:
                break
            self.beats.append(beat)

    @staticmethod
    def _inactive(rng):
        if rng.random() < 0.2:
            return ("other", 0, rng.getrandbits(64), None)
        return ("idle", 1, BlockType.IDLE.value, None)

    def flits_with_marker(self):
        """Flits with a marker beat between two of their beats."""
        fl = [b[self.offset][3] for b in self.beats] + [None, None]
        return sorted({fl[i] for i, b in enumerate(self.beats)
                       if fl[i] is not None and fl[i + 2] == fl[i] and fl[i + 1] is None})

    def dropped(self, flits):
        """The same beats with the blocks of ``flits`` turned into IDLEs."""
        t = object.__new__(_Transmitter)
        t.lanes, t.width, t.offset = self.lanes, self.width, self.offset
        t.beats = [[("idle", 1, BlockType.IDLE.value, None) if blk[3] in flits else blk
                    for blk in beat] for beat in self.beats]
        return t

    def wire(self, am_bip="plain"):
        """The scrambled 66-bit blocks, markers carrying their BIP-8 in the ``am_bip`` sense."""
        scr = [Scrambler() for _ in range(self.lanes)]
        bip = [0] * self.lanes
        out = []
        for beat in self.beats:
            row = []
            for k, (cls, ctrl, payload, _) in enumerate(beat):
                if cls == "am":
                    payload = (BlockType.AM.value | k << 8 | self.width << 12 | bip[k] << 16
                               | (bip[k] ^ 0xFF) << 24 | AM_MAGIC << 32)
                block = encode_block(payload, ctrl, scr[k])
                if cls == "am":
                    bip[k] = 0
                else:
                    bip[k] ^= _fold(payload if am_bip == "plain" else block >> 2)
                row.append(block)
            out.append(row)
        return out


CASES = [(4, 4, 0), (4, 2, 2), (2, 1, 1)]


@pytest.mark.parametrize("am_bip", ["plain", "scrambled"])
@pytest.mark.parametrize("lanes, width, offset", CASES)
def test_drop_one_flit(lanes, width, offset, am_bip):
    rng = _rng(5)
    tx = _Transmitter(rng, lanes=lanes, width=width, offset=offset, flits=6)
    # A marker inside the flit, and flits after it.
    victim = rng.choice([f for f in tx.flits_with_marker() if f < 5])
    print(f"dropping flit {victim}")
    dut = LinkChannel(lanes=lanes, max_delay=1, am_bip=am_bip)
    cfg = _cfg(lanes, width=width, offset=offset, drop_at=victim, drop_at_en=1)
    beats = tx.wire(am_bip) + [[0] * lanes]
    outs, ledger = _run(dut, cfg, beats)
    expected = tx.dropped({victim}).wire(am_bip)
    # The channel re-scrambles from the line's own state, so the receiver sees exactly the
    # stream of a transmitter that never sent the flit, markers' BIP included.
    assert [o for o in outs[1:]] == expected
    assert ledger["flits_dropped"] == 1 and ledger["flits_seen"] == 6
    # A receiver descrambling the output finds the flit's blocks IDLE and nothing else changed.
    desc = [Descrambler() for _ in range(lanes)]
    for t, beat in enumerate(tx.beats):
        for k, (cls, ctrl, payload, flit) in enumerate(beat):
            valid, got_ctrl, got = decode_block(outs[t + 1][k], desc[k])
            if t == 0 or cls == "am":
                continue   # descrambler history; markers checked bit for bit above
            assert valid
            if flit == victim:
                assert (got_ctrl, got) == (True, BlockType.IDLE.value), (t, k)
            else:
                assert (got_ctrl, got) == (bool(ctrl), payload), (t, k)
    # Negative check: the untouched stream differs from the channel's output.
    assert outs[1:] != tx.wire(am_bip)


def test_drop_random_flits():
    rng = _rng(6)
    lanes, flits, seed = 4, 12, rng.getrandbits(32)
    threshold = 1 << 31
    tx = _Transmitter(rng, lanes=lanes, width=4, offset=0, flits=flits)
    victims = {f for f, d in enumerate(channel_drops(seed, threshold, flits)) if d}
    print(f"expected drops {sorted(victims)}")
    assert 0 < len(victims) < flits
    dut = LinkChannel(lanes=lanes, max_delay=1)
    cfg = _cfg(lanes, seed=seed, drop_threshold=threshold)
    outs, ledger = _run(dut, cfg, tx.wire() + [[0] * lanes])
    assert outs[1:] == tx.dropped(victims).wire()
    assert ledger["flits_dropped"] == len(victims)
    assert ledger["flits_seen"] == flits


@pytest.mark.parametrize("burst_len", [3, 40])
def test_ledger_classes(burst_len):
    rng = _rng(7)
    lanes, width, offset = 4, 2, 1
    tx = _Transmitter(rng, lanes=lanes, width=width, offset=offset, flits=6)
    wire = tx.wire()
    beats = wire + [[0] * lanes for _ in range(2)]
    dut = LinkChannel(lanes=lanes, max_delay=1)
    cfg = _cfg(lanes, width=width, offset=offset, seed=rng.getrandbits(32),
               ber_threshold=1 << 28, burst_len=burst_len)
    # Besides the random events, every block of one beat holding each class is hit for sure.
    updates = {}
    for c in BLOCK_CLASSES:
        t = next(t for t, beat in enumerate(tx.beats) if any(b[0] == c for b in beat))
        updates[t] = dict(cfg, ber_threshold=(1 << 32) - 1)
        updates.setdefault(t + 1, cfg)
    updates[len(wire)] = dict(cfg, ber_threshold=0)
    outs, ledger = _run(dut, cfg, beats, updates=updates)
    hits = dict.fromkeys(BLOCK_CLASSES, 0)
    flits_hit = set()
    # The first flush block (zeros: class other) may take the last burst's spill.
    flush = [("other", 0, 0, None)] * lanes
    for t, beat in enumerate(tx.beats + [flush]):
        for k, (cls, _, _, flit) in enumerate(beat):
            if outs[t + 1][k] != beats[t][k]:
                hits[cls] += 1
                if flit is not None:
                    flits_hit.add(flit)
    print(hits, sorted(flits_hit))
    assert ledger["blocks_hit"] == hits
    assert ledger["flits_hit"] == len(flits_hit)
    assert all(hits.values()), "every class should be hit"
    assert ledger["flits_seen"] == 6 and ledger["flits_dropped"] == 0


# --- kill ------------------------------------------------------------------------------------

def test_kill():
    rng = _rng(8)
    lanes, n = 2, 200
    inputs = [[rng.getrandbits(66) for _ in range(lanes)] for _ in range(n)]
    cfg = _cfg(lanes, seed=rng.getrandbits(32))
    killed = _cfg(lanes, kill=[0, 1], seed=cfg["seed"])
    dut = LinkChannel(lanes=lanes, max_delay=1)
    outs, ledger = _run(dut, cfg, inputs, updates={50: killed, 150: cfg})
    headers = set()
    for t in range(n):
        assert outs[t][0] == _reference(inputs, 0, 0, 0, t)
        ref = _reference(inputs, 1, 0, 0, t)
        if 50 <= t < 150:
            assert outs[t][1] != ref
            headers.add(outs[t][1] & 3)
        else:
            assert outs[t][1] == ref
    assert headers == {0, 1, 2, 3}   # invalid sync headers as well as valid ones
    assert len({outs[t][1] for t in range(50, 150)}) == 100   # not stuck
    assert ledger["bit_flips"] == 0


# --- parameters and helpers -----------------------------------------------------------------------

def test_parameters():
    with pytest.raises(ValueError, match="lanes must be 1, 2, 4 or 8, not 3"):
        LinkChannel(lanes=3)
    with pytest.raises(ValueError, match="max_delay"):
        LinkChannel(lanes=4, max_delay=0)
    with pytest.raises(ValueError, match="am_bip"):
        LinkChannel(lanes=4, am_bip="crc")
    layout = channel_cfg_layout(lanes=8, max_delay=32)
    assert Shape.cast(layout["lane"].shape.elem_shape["delay"].shape).width == 6


def test_drop_generator_model():
    # The golden drop generator steps like the RTL: one xorshift64 step per flit.
    r = xorshift64_seed(7, 8)
    assert channel_drops(7, 1 << 32, 3) == [True] * 3
    assert channel_drops(7, 0, 3) == [False] * 3
    assert channel_drops(7, (r & 0xFFFFFFFF) + 1, 1) == [True]
    assert channel_drops(7, r & 0xFFFFFFFF, 2)[0] is False
    assert xorshift64(r) != r
