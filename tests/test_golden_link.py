"""The data-link golden model (golden_model/link.py): CRC, flit packing, go-back-N semantics.

The CRC is checked against two outside references (the ``crc32c`` package and
``amaranth.lib.crc``'s catalog ``compute``) and a bit-serial CRC written here; its error
detection over a whole flit (2,048 bits with the CRC) is proved exhaustively for every error
of weight ≤ 5 and every burst of ≤ 32 bits, from syndromes computed with the package.
"""

import os
import random
from collections import deque

import numpy as np
import pytest
from amaranth.lib.crc import catalog

from golden_model.link import (
    WIRE_BITS_PER_FLIT, DataLinkModel, flit_bytes, flit_crc, pack_flit, retry_goodput,
    unpack_flit,
)
from rtl.link.layouts import CRC_BYTES, FLIT_WORDS, SLOTS, BlockType, FlitType
from rtl.link.params import LinkParams


def _rng(offset):
    seed = int(os.environ.get("SEED", "20250611")) + offset
    print(f"seed {seed} (SEED={seed - offset} replays)")
    return random.Random(seed)


def _bitserial_crc32c(data):
    """CRC-32C one bit at a time (reflected polynomial 0x82F63B78)."""
    crc = 0xFFFFFFFF
    for byte in data:
        for i in range(8):
            bit = (crc ^ byte >> i) & 1
            crc = crc >> 1 ^ (0x82F63B78 if bit else 0)
    return crc ^ 0xFFFFFFFF


# --- CRC ------------------------------------------------------------------------------------

def test_crc_matches_three_references():
    rng = _rng(1)
    amaranth_crc = catalog.CRC32_ISCSI(8)
    for _ in range(20):
        words = [rng.getrandbits(64) for _ in range(FLIT_WORDS)]
        covered = flit_bytes(words)[:CRC_BYTES]
        c = flit_crc(words)
        assert c == amaranth_crc.compute(covered)
        assert c == _bitserial_crc32c(covered)
    assert _bitserial_crc32c(b"123456789") == 0xE3069283       # the catalog check value


def _syndromes():
    """Per bit of a flit (bit 32·8·w + … in wire-byte order), how the CRC check changes when
    it flips: bits 0–2015 move the computed CRC, bits 2016–2047 the received one."""
    zero = flit_crc([0] * FLIT_WORDS)
    syn = []
    for j in range(8 * CRC_BYTES):
        words = [0] * FLIT_WORDS
        words[j // 64] = 1 << j % 64
        syn.append(flit_crc(words) ^ zero)
    syn += [1 << i for i in range(32)]
    return np.array(syn, dtype=np.uint64)


def _rank(vectors):
    rows = [int(v) for v in vectors]
    rank = 0
    for bit in range(32):
        pivot = next((r for r in rows if r >> bit & 1), None)
        if pivot is None:
            continue
        rank += 1
        rows = [r ^ pivot if r >> bit & 1 else r for r in rows if r is not pivot]
    return rank


def test_crc_detects_every_burst_up_to_32_bits():
    """An undetected burst inside a 32-bit window is a nonzero combination of that window's
    syndromes summing to zero: none exists iff the 32 syndromes have rank 32. Checked for
    every window of the 2,048-bit flit, hence every burst of ≤ 32 bits anywhere."""
    syn = _syndromes()
    n = len(syn)
    assert n == 8 * 256
    for p in range(n - 31):
        assert _rank(syn[p:p + 32]) == 32, f"an undetectable burst at bit {p}"


def test_crc_detects_every_error_of_weight_up_to_five():
    """Weight 1–4 exhaustively through syndrome collisions (C(2048, 2) pair sums); odd weights
    (so 5) through the factor (x + 1): a functional φ with φ(s) = 1 for every syndrome."""
    syn = _syndromes()
    n = len(syn)
    assert np.all(syn != 0)                                     # weight 1
    assert len(np.unique(syn)) == n                             # weight 2
    i, j = np.triu_indices(n, 1)
    pairs = syn[i] ^ syn[j]
    assert not np.isin(pairs, syn).any()                        # weight 3
    assert len(np.unique(pairs)) == len(pairs)                  # weight 4
    # Odd weights: solve φ·s = 1 over GF(2) for all s (Gaussian elimination on [s | 1]).
    rows = [int(s) | 1 << 32 for s in syn]
    basis = {}
    for r in rows:
        for bit in range(32):
            if r >> bit & 1:
                if bit in basis:
                    r ^= basis[bit]
                else:
                    basis[bit] = r
                    break
        else:
            assert r == 0, "no functional is 1 on every syndrome: an odd-weight codeword"
    phi = 0
    for bit in sorted(basis, reverse=True):
        r = basis[bit]
        rest = bin(r & phi & ~(1 << bit) & 0xFFFFFFFF).count("1") & 1
        if (r >> 32 & 1) ^ rest:
            phi |= 1 << bit
    assert all(bin(int(s) & phi).count("1") & 1 for s in syn)


def test_crc_detects_sampled_errors_on_real_flits():
    """Directly on packed flits: random bursts ≤ 32 bits and random errors of weight ≤ 5 flip
    ``crc_ok``; a 33-bit burst can escape only with probability 2**-32 (not asserted)."""
    rng = _rng(2)
    for _ in range(30):
        words = pack_flit(type=FlitType.DATA, seq=rng.randrange(4096), vc=rng.randrange(4),
                          slots=[rng.getrandbits(128) for _ in range(rng.randint(1, SLOTS))],
                          fc_valid=True, fc_limit=rng.randrange(4096))
        value = sum(w << 64 * i for i, w in enumerate(words))
        assert unpack_flit(words).crc_ok
        for _ in range(60):
            if rng.random() < 0.5:
                length = rng.randint(1, 32)
                p = rng.randrange(2048 - length + 1)
                e = (1 | rng.getrandbits(length) | 1 << (length - 1)) << p
            else:
                e = 0
                for b in rng.sample(range(2048), rng.randint(1, 5)):
                    e |= 1 << b
            bad = value ^ e
            assert not unpack_flit([bad >> 64 * i & (1 << 64) - 1 for i in range(32)]).crc_ok


# --- packing ----------------------------------------------------------------------------------

def test_pack_unpack_round_trip():
    rng = _rng(3)
    for _ in range(200):
        kind = rng.choice([FlitType.NOP, FlitType.DATA])
        n = rng.randint(1, SLOTS) if kind == FlitType.DATA else 0
        fields = {"type": kind, "ack": rng.random() < 0.5, "nak": rng.random() < 0.2,
                  "seq": rng.randrange(4096), "ack_seq": rng.randrange(4096),
                  "vc": rng.randrange(4), "fc_vc": rng.randrange(4),
                  "fc_valid": rng.random() < 0.5, "fc_limit": rng.randrange(4096),
                  "slots": tuple(rng.getrandbits(128) for _ in range(n)),
                  "last": rng.getrandbits(n) if n else 0}
        words = pack_flit(**fields)
        assert len(words) == FLIT_WORDS and all(0 <= w < 1 << 64 for w in words)
        assert words[0] & 0xFF == BlockType.SOF.value
        f = unpack_flit(words)
        assert f.crc_ok and f.crc == flit_crc(words) and f.nslots == n
        for k, v in fields.items():
            assert getattr(f, k) == v, k
        for s in range(n):                      # slot s in words 1 + 2s, 2 + 2s
            assert words[1 + 2 * s] | words[2 + 2 * s] << 64 == fields["slots"][s]
        assert all(w == 0 for w in words[1 + 2 * n:31])
        assert not unpack_flit(pack_flit(**fields, crc_flip=1 << rng.randrange(32))).crc_ok


def test_pack_flit_validates():
    with pytest.raises(ValueError, match="at most 15"):
        pack_flit(type=FlitType.DATA, slots=[0] * 16)
    with pytest.raises(ValueError, match="128-bit"):
        pack_flit(type=FlitType.DATA, slots=[1 << 128])
    with pytest.raises(ValueError, match="32 words"):
        unpack_flit([0] * 31)


# --- go-back-N ------------------------------------------------------------------------------

def _params(**kw):
    return LinkParams(lanes=2, vcs=4).fast_sim(**({"replay_depth": 8, "vc_slots": 30} | kw))


def _pair(p=None):
    p = p or _params()
    a, b = DataLinkModel(p), DataLinkModel(p)
    a.init()
    b.init()
    for _ in range(p.vcs):                 # FC init both ways
        b.receive(a.send("nop"))
        a.receive(b.send("nop"))
    return a, b


def test_model_go_back_n_on_a_lost_flit():
    a, b = _pair()
    for k in range(4):
        a.offer(0, 100 + k)
    flits = [a.send("data", 0, 1) for _ in range(4)]            # seq 0 … 3
    assert [unpack_flit(f).seq for f in flits] == [0, 1, 2, 3]
    assert b.receive(flits[0]).kind == "deliver"
    d = b.receive(flits[2])                                     # flit 1 lost
    assert (d.kind, d.nak_scheduled) == ("gap", True)
    d = b.receive(flits[3])
    assert (d.kind, d.nak_scheduled) == ("gap", False)          # NAK suppressed
    nak = unpack_flit(b.build("nop"))
    assert nak.nak and nak.ack and nak.ack_seq == 0
    d = a.receive(b.send("nop"))
    assert d.ack == "progress" and d.replay == [1, 2, 3] and a.acked == 0
    assert a.choose() == ("replay", None, None)
    for seq in (1, 2, 3):
        f = a.send("replay")
        assert unpack_flit(f).seq == seq and unpack_flit(f).slots == (100 + seq,)
        assert b.receive(f).kind == "deliver"
    assert not a.replaying and a.choose()[0] == "nop"
    assert [b.pop(0)[0] for _ in range(4)] == [100, 101, 102, 103]
    assert b.counters["seq_errors"] == 2 and b.counters["naks_tx"] == 1
    assert a.counters["naks_rx"] == 1 and a.counters["replayed_flits"] == 3
    # A duplicate of an old flit is dropped and counted.
    assert b.receive(flits[1]).kind == "duplicate"
    assert b.counters["duplicates"] == 1


def test_model_nak_repeats_until_served_and_acts_once():
    """A NAK rides on every flit until the flit it asks for arrives; the partner acts on its
    first copy only, so losing that copy costs one flit, not a replay timeout."""
    a, b = _pair()
    for k in range(4):
        a.offer(0, 100 + k)
    flits = [a.send("data", 0, 1) for _ in range(4)]
    b.receive(flits[0])
    b.receive(flits[2])                                         # flit 1 lost: NAK owed
    first = unpack_flit(b.send("nop"))                          # lost on the wire
    again = b.send("nop")
    assert first.nak and unpack_flit(again).nak
    assert first.nak_epoch == unpack_flit(again).nak_epoch == b.nak_epoch != 0
    assert b.counters["naks_tx"] == 1                           # one NAK, sent twice
    d = a.receive(again)
    assert d.replay == [1, 2, 3] and a.counters["naks_rx"] == 1
    d = a.receive(b.send("nop"))                                # a third copy: an ACK only
    assert d.replay == [] and d.ack == "none" and a.counters["replays"] == 1
    f = a.send("replay")
    assert unpack_flit(f).replay_epoch == b.nak_epoch
    assert b.receive(f).kind == "deliver"
    assert not unpack_flit(b.send("nop")).nak                   # served: no NAK any more


def test_model_nak_again_when_the_replay_loses_the_flit():
    a, b = _pair()
    for k in range(4):
        a.offer(0, 100 + k)
    flits = [a.send("data", 0, 1) for _ in range(4)]
    b.receive(flits[0])
    b.receive(flits[2])                                         # flit 1 lost
    d = b.receive(flits[3])                                     # sent before the NAK
    assert (d.kind, d.nak_scheduled) == ("gap", False)
    a.receive(b.send("nop"))                                    # the NAK: replay 1, 2, 3
    a.send("replay")                                            # replayed 1 lost again
    d = b.receive(a.send("replay"))                             # replayed 2: sent after
    assert (d.kind, d.nak_scheduled) == ("gap", True)           # the NAK → NAK again
    d = b.receive(a.send("replay"))
    assert (d.kind, d.nak_scheduled) == ("gap", False)          # … once
    nak = unpack_flit(b.build("nop"))
    assert nak.nak and nak.nak_epoch == 2 and b.counters["naks_tx"] == 1
    d = a.receive(b.send("nop"))
    assert d.replay == [1, 2, 3] and b.counters["naks_tx"] == 2
    for seq in (1, 2, 3):
        f = a.send("replay")
        assert unpack_flit(f).seq == seq and b.receive(f).kind == "deliver"
    assert [b.pop(0)[0] for _ in range(4)] == [100, 101, 102, 103]
    assert a.counters["naks_rx"] == 2 and a.counters["replays"] == 2
    assert a.counters["replay_timeouts"] == 0


def test_model_ack_rules():
    a, b = _pair()
    a.offer(1, 7)
    a.offer(1, 8)
    f0 = a.send("data", 1, 1)
    a.send("data", 1, 1)
    b.receive(f0)
    # An ACK beyond what was sent is a protocol error and changes nothing.
    d = a.receive(pack_flit(type=FlitType.NOP, ack=True, ack_seq=5))
    assert d.ack == "protocol_error" and a.acked == a.M - 1 and a.outstanding == 2
    # The same acked value again: nothing.
    d = a.receive(pack_flit(type=FlitType.NOP, ack=True, ack_seq=a.M - 1))
    assert d.ack == "none"
    d = a.receive(b.send("nop"))
    assert d.ack == "progress" and a.acked == 0 and a.outstanding == 1
    # A NAK with nothing left after ack_seq replays nothing.
    d = a.receive(pack_flit(type=FlitType.NOP, ack=True, nak=True, ack_seq=1, nak_epoch=1))
    assert d.replay == [] and a.counters["replays"] == 0 and a.counters["naks_rx"] == 1
    assert a.counters["protocol_errors"] == 1


def test_model_timeouts_roll_replay_num_over():
    p = _params(replay_num_bits=2)
    a, b = _pair(p)
    a.offer(2, 1)
    a.send("data", 2, 1)
    retrains = []
    for _ in range(5):
        d = a.timeout()
        assert d.replay == [0]
        retrains.append(d.retrain)
        f = a.send("replay")
    assert retrains == [False, False, False, True, False]
    assert a.counters["replay_timeouts"] == 5 and a.counters["replay_rollovers"] == 1
    assert a.replay_num == 1
    assert b.receive(f).kind == "deliver"
    a.receive(b.send("nop"))        # ACK 0: progress resets REPLAY_NUM
    assert a.replay_num == 0 and a.outstanding == 0


def test_model_credits():
    p = _params()
    a, b = _pair(p)
    assert a.credits(0) == p.vc_slots
    for k in range(p.vc_slots + 5):
        a.offer(0, k)
    f1 = a.send("data", 0, 15)
    a.send("data", 0, 15)
    assert a.credits(0) == 0 and not a.eligible(0)
    with pytest.raises(AssertionError, match="may not send"):
        a.build("data", 0, 1)
    # A limit giving more than vc_slots outstanding credits is an error and ignored.
    d = a.receive(pack_flit(type=FlitType.NOP, fc_valid=True, fc_vc=0, fc_limit=p.vc_slots + 40))
    assert d.fc == "error" and a.credits(0) == 0
    # The receiver advertises vc_slots + popped, one VC per flit, round-robin.
    b.receive(f1)
    for _ in range(6):
        b.pop(0)
    while b.fc_rr != 0:
        a.receive(b.send("nop"))
    words = b.send("nop")
    f = unpack_flit(words)
    assert f.fc_valid and f.fc_vc == 0 and f.fc_limit == p.vc_slots + 6
    assert a.receive(words).fc == "ok" and a.credits(0) == 6


def test_model_overflow_is_an_fc_error():
    p = _params()
    b = DataLinkModel(p)
    for seq in range(3):
        d = b.receive(pack_flit(type=FlitType.DATA, seq=seq, vc=1, slots=list(range(15))))
    assert d.fc_overflow and len(d.delivered) == 0
    assert b.counters["fc_errors"] == 1 and b.counters["delivered_slots"] == p.vc_slots


def test_model_injections():
    a, b = _pair()
    a.inject(crc_corrupt=2, duplicate=1, seq_offset=3)
    a.offer(0, 5)
    f = a.send("data", 0, 1)
    assert not unpack_flit(f).crc_ok and unpack_flit(f).seq == 3
    assert a.choose()[0] == "dup"
    g = a.send("dup")
    assert not unpack_flit(g).crc_ok and unpack_flit(g).seq == 0
    assert unpack_flit(a.send("nop")).crc_ok
    b.receive(pack_flit(type=FlitType.DATA, seq=0, vc=0, slots=[1]))
    b.inject(block_acks=1, force_nak=1)
    h = unpack_flit(b.send("nop"))
    assert not h.ack and not h.nak
    h = unpack_flit(b.send("nop"))
    assert h.ack and h.nak and b.counters["naks_tx"] == 1
    b.inject(fc_offset=100, fc_vc=b.fc_rr)
    h = unpack_flit(b.send("nop"))
    assert h.fc_limit == b.fc_limit(h.fc_vc) + 100


def test_model_link_over_a_lossy_channel():
    """Two models through a channel that drops and corrupts flits, with a 3-bit sequence number
    (so it wraps many times) and a timer: every slot is delivered once, in order."""
    rng = _rng(4)
    p = _params(seq_bits=3, replay_depth=4)
    a, b = _pair(p)
    sent = {0: [[] for _ in range(4)], 1: [[] for _ in range(4)]}
    got = {0: [[] for _ in range(4)], 1: [[] for _ in range(4)]}
    ends = [a, b]
    wires = [deque([None] * 3), deque([None] * 3)]
    idle = [0, 0]
    for step in range(6000):
        for s, m in enumerate(ends):
            if step < 4000 and rng.random() < 0.3:
                v = rng.randrange(4)
                slot = rng.getrandbits(128)
                m.offer(v, slot, rng.random() < 0.5)
                sent[s][v].append(slot)
            for v in range(4):
                if m.rx_buffers[v] and rng.random() < 0.5:
                    got[1 - s][v].append(m.pop(v)[0])
            kind, vc, n = m.choose()
            words = None
            if kind != "nop" or m.nak_to_send or m.fc_pending() or step % 4 == 0:
                words = m.send(kind, vc, n)
                r = rng.random()
                if r < 0.05:
                    words = None
                elif r < 0.1:
                    words = words[:5] + [words[5] ^ 1 << rng.randrange(64)] + words[6:]
            wires[s].append(words)
            arriving = wires[1 - s].popleft()
            if arriving is not None:
                d = ends[s].receive(arriving)
                if d.ack == "progress" or d.replay:
                    idle[s] = 0
            idle[s] += 1
            if idle[s] > 40 and m.outstanding and not m.replaying:
                m.timeout()
                idle[s] = 0
    for s in range(2):
        for v in range(4):
            assert got[s][v] == sent[s][v]
        assert ends[s].counters["crc_errors"] > 0 and ends[s].counters["replays"] > 0
        assert ends[s].counters["tx_data"] > 4 * p.seq_mod


def test_retry_goodput():
    assert retry_goodput(0.0, 16, 0.909) == 0.909
    assert WIRE_BITS_PER_FLIT == 2112
    # research/link.md § 4.3: 87.9 % at BER 1e-6, R = 16; 54.5 % at 1e-5, R = 32.
    assert retry_goodput(1e-6, 16, 0.909) == pytest.approx(0.879, abs=0.001)
    assert retry_goodput(1e-5, 32, 0.909) == pytest.approx(0.545, abs=0.005)
    fer = 1 - (1 - 1e-7) ** 2112
    assert retry_goodput(1e-7, 8, 0.9) == pytest.approx(0.9 / (1 + 8 * fer))
    with pytest.raises(ValueError):
        retry_goodput(1.5, 8, 0.9)
