"""Test-only model of one direction of the wire between two link endpoints: :class:`LinkChannel`.

The channel carries one 66-bit block per lane per cycle and, under control of a configuration
struct the test may change at any time, delays each lane by whole blocks, shifts each lane's
bit stream by 0–65 bits, flips bursts of bits at a programmable rate, drops whole flits
silently, and kills lanes. A ledger of counters records every injection, so that a long run can
stay inside Verilator and compare the endpoints' RAS counters with the ledger at the end.
``docs/link_verif.md`` describes the model; ``golden_model/link_traffic.py`` converts a bit
error rate into :attr:`ber_threshold <channel_cfg_layout>`.

Pipeline, per lane (all lanes in step, so a flit striped by the transmitter is seen whole):

1. **Classify** the input block with a :class:`~.scrambler.Descrambler` (the original block).
2. **Drop**: the blocks of a dropped flit become IDLE control blocks.
3. **Re-scramble** the (possibly rewritten) payload with a scrambler whose state is the last
   58 payload bits this channel sent, which keeps the receiver's self-synchronizing
   descrambler in step across and after a drop (see :class:`LinkChannel`).
4. **Inject** bursts of bit flips.
5. **Delay** by ``1 + delay`` cycles, then **shift** by ``bit_offset`` bits.
6. **Kill**: a killed lane outputs pseudo-random garbage.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .layouts import AM_BLOCK, BLOCK_BITS, FLIT_WORDS, SCRAMBLER_TAPS, SYNC_CTRL, SYNC_DATA, \
    BlockType
from .scrambler import Descrambler


__all__ = ["BLOCK_CLASSES", "CHANNEL_LEDGER", "channel_cfg_layout", "channel_lane_layout",
           "LinkChannel", "xorshift64_seed"]

_T1, _T2 = SCRAMBLER_TAPS
_STATE = max(SCRAMBLER_TAPS)
_MASK64 = (1 << 64) - 1

#: Classes of the blocks the ledger counts hits on (``docs/link_verif.md`` § Ledger).
BLOCK_CLASSES = ("data", "sof", "am", "idle", "ts", "other")

#: The injection ledger: cumulative 32-bit counters since reset.
CHANNEL_LEDGER = data.StructLayout({
    "bit_flips":     32,   # bits flipped (burst_len per error event)
    "error_events":  32,   # bursts started
    "blocks_hit":    data.StructLayout({c: 32 for c in BLOCK_CLASSES}),
    "flits_hit":     32,   # flits with at least one flipped bit in any of their blocks
    "flits_dropped": 32,
    "flits_seen":    32,   # SOF blocks on the first active lane
})

# Per-lane generator seeds: the state is Cat(seed ^ _SEED_LO[l], seed ^ _SEED_HI[l]), never zero
# because the two constants of a lane differ.
_SEED_LO = [0x9E3779B9, 0x7F4A7C15, 0xBF58476D, 0x1CE4E5B9, 0x94D049BB, 0x133111EB,
            0xD6E8FEB8, 0x6A09E667, 0xBB67AE85]
_SEED_HI = [0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
            0xCBBB9D5D, 0x629A292A, 0x9159015A]
_DROP_RNG = 8   # index of the constants of the drop generator


def xorshift64_seed(seed, index):
    """Initial state of generator ``index`` (a lane, or 8 for the drop generator) for ``seed``.

    Parameters
    ----------
    seed : int
        The 32-bit ``cfg.seed``.
    index : int
        0 … 7 for the error generator of a lane, 8 for the flit-drop generator.
    """
    return (seed ^ _SEED_LO[index]) | (seed ^ _SEED_HI[index]) << 32


def channel_lane_layout(*, max_delay):
    """Per-lane configuration of a channel whose ``delay`` field holds ``max_delay``."""
    return data.StructLayout({
        "delay":      bits_for(max_delay),
        "bit_offset": 7,
        "kill":       1,
    })


def channel_cfg_layout(*, lanes, max_delay):
    """The configuration struct of a :class:`LinkChannel` (the ``cfg`` member).

    Fields
    ------
    lane[l].delay
        Extra latency of lane ``l`` in whole blocks. Every value of the field is honoured
        (``0 … 2**bits_for(max_delay) - 1``).
    lane[l].bit_offset
        0 … 65: output block ``n`` is stream bits ``[66n - bit_offset, 66n - bit_offset + 66)``
        of the delayed lane stream (values above 65 act as 65).
    lane[l].kill
        The lane outputs pseudo-random garbage (random sync headers and payload).
    ber_threshold
        An error event starts on a lane in a cycle when the lane's 32-bit draw is below it:
        ``P(event per block) ≈ ber_threshold / 2**32``.
    burst_len
        Contiguous bits flipped per event, 1 … 64 (0 acts as 1, larger values as 64).
    lanes_mask
        Bit ``l``: errors may hit lane ``l``.
    seed
        Seed of the generators; they restart from it in the cycle after it changes.
    drop_threshold
        A flit is dropped when the drop generator's draw at its SOF is below it.
    drop_at, drop_at_en
        Also drop the flit whose SOF is the ``drop_at``-th seen (0-based, ``flits_seen``).
    width, offset
        The transmitter's current striping: active physical lanes ``offset … offset+width-1``
        (``width`` 1, 2, 4 or 8; any other value, or lanes beyond ``lanes``, stops flit
        tracking: no flit is seen, hit or dropped).
    """
    if lanes not in (1, 2, 4, 8):
        raise ValueError(f"lanes must be 1, 2, 4 or 8, not {lanes!r}")
    return data.StructLayout({
        "lane":           data.ArrayLayout(channel_lane_layout(max_delay=max_delay), lanes),
        "ber_threshold":  32,
        "burst_len":      7,
        "lanes_mask":     lanes,
        "seed":           32,
        "drop_threshold": 32,
        "drop_at":        32,
        "drop_at_en":     1,
        "width":          4,
        "offset":         3,
    })


def _xorshift64(m, x, name):
    """One xorshift64 step; each stage is a signal, because Amaranth copies an expression
    every time it is used and a chain of them would grow exponentially."""
    for n, (d, s) in enumerate(zip("<><", (13, 7, 17))):
        y = Signal(64, name=f"{name}_{n}")
        m.d.comb += y.eq(x ^ ((x << s)[:64] if d == "<" else x >> s))
        x = y
    return x


def _scramble(m, payload, hist, name):
    """``payload`` scrambled from ``hist`` (the last 58 bits sent, most recent in bit 57)."""
    # s[i] = d[i] ^ s[i-39] ^ s[i-58], as whole words: bits 0–38 reach back into the history
    # only; bits 39–63 also into bits 0–24 (and 0–5) of this word.
    lo = Signal(_T1, name=f"{name}_lo")
    m.d.comb += lo.eq(payload[:_T1] ^ hist[_STATE - _T1:] ^ hist[:_T1])
    hi = payload[_T1:] ^ lo[:64 - _T1] ^ Cat(hist[_T1:], lo[:64 - _STATE])
    return Cat(lo, hi)


def _fold8(payload):
    """XOR of the eight bytes of a payload: its contribution to a BIP-8."""
    acc = payload[0:8]
    for b in range(1, 8):
        acc = acc ^ payload[8 * b:8 * b + 8]
    return acc


def _popcount(bits):
    total = Const(0, 4)
    for b in bits:
        total = total + b
    return total


class LinkChannel(wiring.Component):
    """One direction of the wire: per-lane delay and bit shift, bit errors, flit drops, kill.

    Parameters
    ----------
    lanes : int
        Physical lanes, 1, 2, 4 or 8.
    max_delay : int
        Largest ``cfg.lane[l].delay`` needed (sets the field width and the delay memory).
    am_bip : str or None
        What the alignment markers' BIP-8 covers, so that a drop can mend it:
        ``"plain"`` (the descrambled payloads), ``"scrambled"`` (the payloads on the wire) or
        ``None`` (markers pass unchanged; a drop then also shows as a BIP error).

    Members
    -------
    i : ``In(data.ArrayLayout(66, lanes))``
        One block per physical lane per cycle, as the transmitting PCS sends it (all lanes in
        step: flit tracking assumes the transmitter's beats arrive whole).
    o : ``Out(data.ArrayLayout(66, lanes))``
        The blocks the receiver sees. Without injection, lane ``l`` of ``o`` in cycle ``t`` is
        stream bits ``[66(t-1-d) - b, 66(t-1-d) - b + 66)`` of lane ``l`` of ``i``
        (``d = delay``, ``b = bit_offset``; block ``n`` of the stream is ``i`` in cycle ``n``).
    cfg : ``In(channel_cfg_layout(lanes=lanes, max_delay=max_delay))``
        Run-time configuration (see :func:`channel_cfg_layout`).
    ledger : ``Out(CHANNEL_LEDGER)``
        Injection counters.

    Notes
    -----
    *Continuity across a drop.* The channel descrambles each lane with a descrambler ``D``
    fed by the input line, and re-scrambles every block (the original payload, or an IDLE for
    a dropped block) with a scrambler ``S`` whose 58-bit state is the last 58 payload bits the
    channel sent (before errors). Both start at zero, so while nothing has been dropped
    ``S``'s state equals ``D``'s and ``S(D(x)) = x``: the output is the input bit for bit.
    After a drop the two states differ and the channel keeps re-scrambling for good; the
    output is then a different but valid scrambling of the same plain blocks, and the
    receiver, whose descrambler state is the channel's output, recovers them exactly. Errors
    are flipped after ``S``, so they reach the receiver's descrambler as line errors do
    (each flipped payload bit spoils three descrambled bits).

    *Alignment markers after a drop.* The BIP-8 of the next marker on each lane of a dropped
    flit is corrected by the XOR of the byte folds of the blocks that changed (``am_bip``),
    so a drop is silent at the PCS: only the sequence gap shows.

    *Error events.* Each lane has a 64-bit xorshift generator stepped once per cycle: bits
    0–31 are the draw compared with ``ber_threshold``, bits 32–44 choose the start bit
    ``pos = (r * 66) >> 13`` (0 … 65). The burst covers bits ``pos … pos+burst_len-1`` of
    the block and continues into the next block of the lane when it passes bit 65. No event
    starts on a lane in a cycle whose block receives such a spill, so bursts never overlap
    and ``bit_flips = burst_len × error_events`` exactly.
    """

    def __init__(self, *, lanes, max_delay=32, am_bip="plain"):
        if lanes not in (1, 2, 4, 8):
            raise ValueError(f"lanes must be 1, 2, 4 or 8, not {lanes!r}")
        if not isinstance(max_delay, int) or isinstance(max_delay, bool) or max_delay < 1:
            raise ValueError(f"max_delay must be a positive integer, not {max_delay!r}")
        if am_bip not in ("plain", "scrambled", None):
            raise ValueError(f"am_bip must be 'plain', 'scrambled' or None, not {am_bip!r}")
        self._lanes = lanes
        self._depth = 1 << bits_for(max_delay)
        self._am_bip = am_bip
        super().__init__({
            "i":      In(data.ArrayLayout(BLOCK_BITS, lanes)),
            "o":      Out(data.ArrayLayout(BLOCK_BITS, lanes)),
            "cfg":    In(channel_cfg_layout(lanes=lanes, max_delay=max_delay)),
            "ledger": Out(CHANNEL_LEDGER),
        })

    @property
    def latency(self):
        """Cycles from ``i`` to ``o`` with ``delay = 0`` and ``bit_offset = 0``."""
        return 1

    def elaborate(self, platform):
        m = Module()
        L = self._lanes

        def wire_sig(value, name, width=1):
            # A signal per shared expression: Amaranth copies an expression at every use.
            sig = Signal(width, name=name)
            m.d.comb += sig.eq(value)
            return sig

        cfg = self.cfg
        ledger = self.ledger

        # Generators restart from cfg.seed in the cycle after it changes (and from seed 0 at
        # reset), so a test replays a run by writing the same seed.
        seed_q = Signal(32)
        reseed = Signal()
        m.d.sync += seed_q.eq(cfg.seed)
        m.d.comb += reseed.eq(cfg.seed != seed_q)

        def rng(index):
            r = Signal(64, init=xorshift64_seed(0, index), name=f"rng{index}")
            return r, Cat(cfg.seed ^ _SEED_LO[index], cfg.seed ^ _SEED_HI[index])

        # --- classification of the input (the original blocks) --------------------------------
        sync = [self.i[k][0:2] for k in range(L)]
        wire = [self.i[k][2:BLOCK_BITS] for k in range(L)]
        plain = []
        for k in range(L):
            d = Descrambler()
            m.submodules[f"descrambler{k}"] = d
            m.d.comb += [d.i.eq(wire[k]), d.en.eq(1)]
            plain.append(d.o)
        is_ctrl = [wire_sig(sync[k] == SYNC_CTRL, f"is_ctrl{k}") for k in range(L)]
        is_data = [wire_sig(sync[k] == SYNC_DATA, f"is_data{k}") for k in range(L)]

        def ctrl_type(k, *types):
            return wire_sig(is_ctrl[k] & Cat(*[plain[k][0:8] == t.value for t in types]).any(),
                            f"is_{types[0].name.lower()}{k}")

        is_sof = [ctrl_type(k, BlockType.SOF) for k in range(L)]
        is_am = [ctrl_type(k, BlockType.AM) for k in range(L)]
        is_idle = [ctrl_type(k, BlockType.IDLE) for k in range(L)]
        is_ts = [ctrl_type(k, BlockType.TS1, BlockType.TS2) for k in range(L)]

        # --- flit tracking on the first active lane ---------------------------------------------
        width, offset = cfg.width, cfg.offset
        beats = Signal(6)   # beats of a flit at this width
        with m.Switch(width):
            for w in (1, 2, 4, 8):
                if w <= L:
                    with m.Case(w):
                        m.d.comb += beats.eq(FLIT_WORDS // w)
        track = wire_sig((beats != 0) & (offset + width <= L), "track")
        active = [wire_sig(track & (offset <= k) & (offset + width > k), f"active{k}")
                  for k in range(L)]
        first_sof = wire_sig(Array(is_sof)[offset] & track, "first_sof")
        first_data = wire_sig(Array(is_data)[offset] & track, "first_data")
        first_am = wire_sig(Array(is_am)[offset] & track, "first_am")

        beats_left = Signal(6)    # data beats still to come in the current flit
        dropping = Signal()       # the current flit is being dropped
        flit_hit = Signal()       # the current flit already counted in flits_hit
        cont = wire_sig((beats_left != 0) & first_data, "cont")
        flit_beat = wire_sig(first_sof | cont, "flit_beat")
        with m.If(first_sof):
            m.d.sync += beats_left.eq(beats - 1)
        with m.Elif(cont):
            m.d.sync += beats_left.eq(beats_left - 1)
        with m.Elif(~first_am):
            # Anything but a marker beat ends the flit (cut short, as the receiver sees it).
            m.d.sync += beats_left.eq(0)

        drop_rng, drop_seed = rng(_DROP_RNG)
        with m.If(reseed):
            m.d.sync += drop_rng.eq(drop_seed)
        with m.Elif(first_sof):
            # One draw per flit, so the k-th flit's fate does not depend on the gaps between.
            m.d.sync += drop_rng.eq(_xorshift64(m, drop_rng, "drop_rng_next"))
        drop_now = wire_sig(first_sof & ((drop_rng[0:32] < cfg.drop_threshold) |
                                         (cfg.drop_at_en & (ledger.flits_seen == cfg.drop_at))),
                            "drop_now")
        with m.If(first_sof):
            m.d.sync += dropping.eq(drop_now)
        drop_beat = wire_sig(drop_now | (cont & dropping), "drop_beat")

        # --- per lane: drop, re-scramble, marker repair, errors ------------------------------
        blen = Signal(7)
        m.d.comb += blen.eq(Mux(cfg.burst_len == 0, 1,
                                Mux(cfg.burst_len > 64, 64, cfg.burst_len)))
        burst = Signal(64)
        m.d.comb += burst.eq((Const(1, 65) << blen) - 1)

        idle_payload = Const(BlockType.IDLE.value, 64)
        events, hits, flit_member, rngs = [], [], [], []
        cls = {c: [] for c in BLOCK_CLASSES}
        staged = []
        for k in range(L):
            replace = Signal(name=f"replace{k}")
            m.d.comb += replace.eq(drop_beat & active[k] &
                                   (is_data[k] | (is_sof[k] & (offset == k))))
            # Class of the block as sent (a dropped block is an IDLE).
            c_sof = wire_sig(is_sof[k] & ~replace, f"c_sof{k}")
            c_am = is_am[k]
            c_idle = wire_sig(is_idle[k] | replace, f"c_idle{k}")
            c_ts = is_ts[k]
            c_data = wire_sig(is_data[k] & flit_beat & active[k] & ~replace, f"c_data{k}")
            c_other = wire_sig(~(c_sof | c_am | c_idle | c_ts | c_data), f"c_other{k}")
            for c, v in zip(BLOCK_CLASSES, (c_data, c_sof, c_am, c_idle, c_ts, c_other)):
                cls[c].append(v)
            flit_member.append(flit_beat & active[k] & (c_data | (c_sof & (offset == k))))

            diff = Signal(8, name=f"bip_diff{k}")
            p = Signal(64, name=f"plain_out{k}")
            m.d.comb += p.eq(Mux(replace, idle_payload, plain[k]))
            if self._am_bip is not None:
                # bip and bip_inv both take the correction, so bip_inv stays ~bip.
                fix = (diff << AM_BLOCK["bip"].offset) | (diff << AM_BLOCK["bip_inv"].offset)
                with m.If(c_am):
                    m.d.comb += p.eq(plain[k] ^ fix)
            hist = Signal(_STATE, name=f"line{k}")
            y = Signal(64, name=f"rescrambled{k}")
            m.d.comb += y.eq(_scramble(m, p, hist, f"scrambler{k}"))
            m.d.sync += hist.eq(y[64 - _STATE:])
            if self._am_bip is not None:
                if self._am_bip == "plain":
                    delta = Mux(replace, _fold8(plain[k]) ^ _fold8(idle_payload), 0)
                else:
                    delta = _fold8(wire[k]) ^ _fold8(y)
                m.d.sync += diff.eq(Mux(c_am, 0, diff ^ delta))
            sync_out = Mux(replace, SYNC_CTRL, sync[k])

            r, r_seed = rng(k)
            rngs.append(r)
            with m.If(reseed):
                m.d.sync += r.eq(r_seed)
            with m.Else():
                m.d.sync += r.eq(_xorshift64(m, r, f"rng{k}_next"))
            spill = Signal(64, name=f"spill{k}")
            pos = (r[32:45] * 66)[13:20]
            span = Signal(2 * BLOCK_BITS - 2, name=f"span{k}")
            m.d.comb += span.eq(burst << pos)
            event = Signal(name=f"event{k}")
            m.d.comb += event.eq((r[0:32] < cfg.ber_threshold) & cfg.lanes_mask[k] &
                                 (spill == 0))
            mask = Signal(BLOCK_BITS, name=f"flip{k}")
            m.d.comb += mask.eq(Mux(event, span[:BLOCK_BITS], 0) | spill)
            m.d.sync += spill.eq(Mux(event, span[BLOCK_BITS:], 0))
            events.append(event)
            hits.append(wire_sig(mask != 0, f"hit{k}"))
            staged.append(Cat(sync_out, y) ^ mask)

        # --- ledger ---------------------------------------------------------------------------
        n_events = _popcount(events)
        m.d.sync += [
            ledger.error_events.eq(ledger.error_events + n_events),
            ledger.bit_flips.eq(ledger.bit_flips + n_events * blen),
            ledger.flits_seen.eq(ledger.flits_seen + first_sof),
            ledger.flits_dropped.eq(ledger.flits_dropped + drop_now),
        ]
        for c in BLOCK_CLASSES:
            n = _popcount(h & in_class for h, in_class in zip(hits, cls[c]))
            m.d.sync += ledger.blocks_hit[c].eq(ledger.blocks_hit[c] + n)
        flit_hit_now = Cat(h & f for h, f in zip(hits, flit_member)).any()
        with m.If(first_sof):
            m.d.sync += flit_hit.eq(flit_hit_now)
        with m.Elif(flit_beat):
            m.d.sync += flit_hit.eq(flit_hit | flit_hit_now)
        new_flit_hit = flit_hit_now & (first_sof | ~flit_hit)
        m.d.sync += ledger.flits_hit.eq(ledger.flits_hit + new_flit_hit)

        # --- delay, bit shift, kill ----------------------------------------------------------
        wp = Signal(range(self._depth))
        m.d.sync += wp.eq(wp + 1)
        for k in range(L):
            lane = cfg.lane[k]
            mem = Memory(shape=BLOCK_BITS, depth=self._depth, init=[])
            m.submodules[f"delay{k}"] = mem
            wr = mem.write_port()
            rd = mem.read_port(domain="comb")
            m.d.comb += [
                wr.addr.eq(wp),
                wr.data.eq(staged[k]),
                wr.en.eq(1),
                # Written at the end of this cycle, so wp - 1 - delay is 1 + delay cycles old.
                rd.addr.eq(wp - 1 - lane.delay),
            ]
            prev = Signal(BLOCK_BITS, name=f"prev{k}")
            m.d.sync += prev.eq(rd.data)
            back = Signal(range(1, BLOCK_BITS + 1), name=f"back{k}")   # 66 - bit_offset
            m.d.comb += back.eq(Mux(lane.bit_offset > BLOCK_BITS - 1, 1,
                                    BLOCK_BITS - lane.bit_offset))
            shifted = (Cat(prev, rd.data) >> back)[:BLOCK_BITS]
            # A dead receiver input sees noise: random headers (half of them invalid) and
            # payloads, from the lane's generator.
            garbage = Cat(rngs[k], rngs[k][32:34])
            m.d.comb += self.o[k].eq(Mux(lane.kill, garbage, shifted))
        return m
