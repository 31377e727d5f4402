"""Link scenarios on :class:`rtl.link.testbench.LinkTestbench`, shared by cocotb and the soak.

Every scenario is ``async`` code over a :class:`~verif.link.host.TbHost`: configure the
channels, generators and injections, ``RUN`` until the traffic is through, read every counter
back and check it — against the generators (integrity: every message arrived once, in order,
intact) and against the channels' ledgers (what was injected is what was counted).
"""

import random
from dataclasses import dataclass, field

from rtl.config import TINY
from rtl.link.layouts import TrainState
from rtl.link.testbench import LINK_TOPS, RunUntil, registers
from rtl.link.traffic import LenMode

from .host import TbHost, as_dict, inprocess_exchange


__all__ = ["Link", "LinkCheckError", "Traffic", "TINY_L4", "open_inprocess"]

#: TINY with a 4-lane link: the configuration of the regression's ``link_tb`` top (ChipConfig
#: names must be identifiers).
TINY_L4 = TINY.replace(name="TINY_L4", link_lanes=4)

_ALL_ONES = (1 << 32) - 1


class LinkCheckError(AssertionError):
    """A link run broke a property (integrity, a counter against the ledger, a bound)."""


@dataclass
class Traffic:
    """What the generators send on each side."""
    count: int = 100              # messages per enabled VC
    vcs: int = 0b1111             # enabled VCs (bit v)
    random_len: bool = True
    fixed_len: int = 15
    idle: float = 0.0             # P(a generator leaves a gap between slots)
    stall: list = field(default_factory=lambda: [0.0] * 4)   # P(a checker VC is not ready)
    seed: int = 1


def _threshold(p):
    return min(_ALL_ONES, max(0, round(p * (1 << 32))))


class Link:
    """A link test top under test.

    Parameters
    ----------
    host : TbHost
    params : LinkParams
        The endpoints' parameters (those the top was built with).
    max_skew : int
        The channels' largest per-lane delay (blocks).
    log : callable
        Progress messages.
    """

    def __init__(self, host, params, *, max_skew=32, log=print):
        self.host = host
        self.params = params
        self.max_skew = max_skew
        self.log = log
        self.sent_total = {"a": 0, "b": 0}

    # ---- configuration ------------------------------------------------------------------

    def channel(self, *, skews=None, offsets=None, kill=(), ber_threshold=0, burst_len=1,
                drop_threshold=0, drop_at=None, seed=1, lanes_mask=None):
        """A channel configuration dict."""
        L = self.params.lanes
        skews = skews or [0] * L
        offsets = offsets or [0] * L
        return {
            "lane": [{"delay": skews[n], "bit_offset": offsets[n], "kill": int(n in kill)}
                     for n in range(L)],
            "ber_threshold": ber_threshold,
            "burst_len": burst_len,
            "lanes_mask": (1 << L) - 1 if lanes_mask is None else lanes_mask,
            "seed": seed,
            "drop_threshold": drop_threshold,
            "drop_at": drop_at or 0,
            "drop_at_en": int(drop_at is not None),
        }

    def random_channel(self, rng, **kw):
        L = self.params.lanes
        return self.channel(skews=[rng.randrange(self.params.max_skew + 1) for _ in range(L)],
                            offsets=[rng.randrange(66) for _ in range(L)], **kw)

    async def bring_up(self, *, ab=None, ba=None, wire=(8, 8), max_cycles=1 << 16):
        """Configure both channels, enable both endpoints and wait until both are ACTIVE;
        return the cycles it took."""
        ab = ab or self.channel()
        ba = ba or self.channel()
        await self.host.write(ab_chan=ab, ba_chan=ba, ab_wire=wire[0], ba_wire=wire[1],
                              run_until=RunUntil.LINK_UP,
                              a_ctl={"enable": 1}, b_ctl={"enable": 1})
        cycles, up = await self.host.run(max_cycles)
        if not up:
            st = await self.status()
            raise LinkCheckError(f"the link did not come up in {max_cycles} cycles: {st}")
        return cycles

    async def settle(self, cycles=160):
        """Run ``cycles`` more: the last ACKs and credit updates arrive, and (well before the
        next periodic credit refresh) nothing is in flight, so that counters read on both
        ends and in the channels describe the same flits."""
        await self.host.write(run_until=RunUntil.CYCLES)
        await self.host.run(cycles)

    async def status(self):
        await self.host.write(snap=1)
        r = await self.host.read("a_status", "b_status")
        return {s: _status(r[f"{s}_status"]) for s in ("a", "b")}

    async def send(self, traffic, *, max_cycles, sides=("a", "b")):
        """Start ``traffic`` on ``sides`` and run until every message has arrived (or
        ``max_cycles``); return ``(cycles, done)``."""
        t = traffic
        regs = {"run_until": RunUntil.TRAFFIC}
        for s in ("a", "b"):
            on = s in sides
            self.sent_total[s] += t.count if on else 0
            regs[f"{s}_gen"] = {
                "enable": t.vcs if on else 0,
                "count": self.sent_total[s],
                "seed": t.seed + (s == "b"),
                "len_mode": LenMode.RANDOM if t.random_len else LenMode.FIXED,
                "fixed_len": t.fixed_len,
                "idle_threshold": _threshold(t.idle),
            }
            regs[f"{s}_chk"] = {
                "stall_threshold": [_threshold(p) for p in
                                    (list(t.stall) + [0.0] * 4)[:self.params.vcs]],
                "seed": t.seed + 7,
            }
        await self.host.write(**regs)
        return await self.host.run(max_cycles)

    # ---- checks -------------------------------------------------------------------------

    async def counters(self):
        names = [f"{s}_{n}" for s in ("a", "b")
                 for n in ("status", "dl", "link", "lanes", "sent", "recv")]
        names += ["ab_ledger", "ba_ledger", "now"]
        await self.host.write(snap=1)
        raw = await self.host.read(*names)
        return {k: as_dict(v) if not isinstance(v, int) else v for k, v in raw.items()}

    async def quiet_counters(self, tries=64):
        """Counters at a moment when no flit is on the wire: every flit each end sent has
        passed its channel, and every flit the channel passed has been received (counted as
        received, CRC-failed or misframed). Periodic credit refreshes leave such moments
        between them; a link whose counters never agree with the ledgers raises."""
        for _ in range(tries):
            c = await self.counters()
            if all(_accounted(c, src, dst, d) for src, dst, d in _DIRECTIONS):
                return c
            await self.host.write(run_until=RunUntil.CYCLES)
            await self.host.run(17)
        raise LinkCheckError(
            "the endpoints' flit counts never agreed with the channels' ledgers: " +
            "; ".join(f"{src}→{dst}: sent {c[f'{src}_dl']['tx_flits']}, channel saw "
                      f"{c[f'{d}_ledger']['flits_seen']} and dropped "
                      f"{c[f'{d}_ledger']['flits_dropped']}, {dst} received "
                      f"{c[f'{dst}_dl']['rx_flits']} + {c[f'{dst}_dl']['crc_errors']} CRC + "
                      f"{c[f'{dst}_dl']['framing_errors']} framing"
                      for src, dst, d in _DIRECTIONS))

    async def ledger_offsets(self, polls=64):
        """Per direction, ``(flits sent − flits the channel saw, flits the receiver accounted
        for − flits the channel passed)`` at a quiet moment, polled over ``polls`` × 17
        cycles (the first is at least its quiet value while a flit is on its way to the
        channel, the second at most while one is on its way to the receiver).

        Both are 0 on a link that has seen neither bit errors nor retrains. A bit error on a
        block between flits can make the receiver count a flit that was never sent (a stray
        data block is a framing error), and a retrain loses the flits in flight. Neither
        happens on a clean link, so across a phase without bit errors or retrains the offsets
        must not move: that phase's flits are exactly those of the ledgers.
        """
        out = {}
        for k in range(polls):
            c = await self.counters()
            for src, dst, d in _DIRECTIONS:
                tx, rx = _offsets(c, src, dst, d)
                if d in out:
                    tx, rx = min(tx, out[d][0]), max(rx, out[d][1])
                out[d] = (tx, rx)
            if k < polls - 1:
                await self.host.write(run_until=RunUntil.CYCLES)
                await self.host.run(17)
        return out

    def check_integrity(self, c, *, vcs=0b1111):
        """Every enabled VC delivered every message once, in order, intact."""
        problems = []
        for src, dst in (("a", "b"), ("b", "a")):
            sent = c[f"{src}_sent"]
            for v in range(self.params.vcs):
                r = c[f"{dst}_recv"][v]
                want = sent[v]
                for k in ("gaps", "duplicates_or_reorders", "content_errors"):
                    if r[k]:
                        problems.append(f"{src}→{dst} VC{v}: {k} = {r[k]}")
                if r["messages"] != want:
                    problems.append(f"{src}→{dst} VC{v}: {r['messages']} of {want} "
                                    f"messages delivered")
        if problems:
            raise LinkCheckError("integrity: " + "; ".join(problems))

    def delivered_slots(self, c):
        return sum(c[f"{s}_recv"][v]["slots"] for s in ("a", "b")
                   for v in range(self.params.vcs))


_DIRECTIONS = (("a", "b", "ab"), ("b", "a", "ba"))


def open_inprocess(top, cfg, *, log=print):
    """Build (cached under ``build/sim/``) and load the link test top ``top`` (a name of
    :data:`rtl.link.testbench.LINK_TOPS`) for ``cfg`` in this process, reset it, and return
    ``(Link, StreamTop)``. Scenario coroutines on the link run under :func:`asyncio.run`."""
    from firmware.transports.verilator import StreamTop, build_library
    lib, sidecar = build_library(cfg, top=top, log=log)
    widths = {p["name"]: p["width"] for p in sidecar["ports"]}
    model = StreamTop(lib, widths["i__payload"], widths["o__payload"])
    model.reset()
    params_of, kwargs = LINK_TOPS[top]
    params = params_of(cfg)
    host = TbHost(registers(params, **kwargs), inprocess_exchange(model))
    return Link(host, params, max_skew=kwargs["max_skew"], log=log), model


def _offsets(c, src, dst, d):
    led, tx, rx = c[f"{d}_ledger"], c[f"{src}_dl"], c[f"{dst}_dl"]
    return (_s32(tx["tx_flits"] - led["flits_seen"]),
            _s32(rx["rx_flits"] + rx["crc_errors"] + rx["framing_errors"]
                 - (led["flits_seen"] - led["flits_dropped"])))


def _s32(x):
    """A difference of 32-bit counters, as a signed number."""
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x >> 31 else x


def _accounted(c, src, dst, d):
    led, tx, rx = c[f"{d}_ledger"], c[f"{src}_dl"], c[f"{dst}_dl"]
    return (tx["tx_flits"] == led["flits_seen"] and
            led["flits_seen"] - led["flits_dropped"] ==
            rx["rx_flits"] + rx["crc_errors"] + rx["framing_errors"])


def _status(v):
    d = as_dict(v)
    d["state"] = TrainState(d["state"]).name
    return d


def seeds(base, n):
    """``n`` seeds derived from ``base`` (printed by the runner, so any is replayable)."""
    rng = random.Random(base)
    return [rng.randrange(1, 1 << 31) for _ in range(n)]


# ---- scenarios ---------------------------------------------------------------------------------

def _delta(after, before):
    """Counter differences of two :meth:`Link.counters` snapshots (dicts of dicts/lists)."""
    if isinstance(after, dict):
        return {k: _delta(after[k], before[k]) for k in after}
    if isinstance(after, list):
        return [_delta(a, b) for a, b in zip(after, before)]
    if isinstance(after, str):
        return after
    return (after - before) % (1 << 64 if after > 0xFFFFFFFF or before > 0xFFFFFFFF
                               else 1 << 32)


def _flits(c):
    return c["a_dl"]["tx_data"] + c["b_dl"]["tx_data"]


def _expect(cond, what):
    if not cond:
        raise LinkCheckError(what)


async def _phase(link, name, traffic, *, max_cycles=None, check=None, sides=("a", "b"),
                 inject=None, quiet=False):
    """Apply ``inject`` (register writes), send ``traffic`` and check integrity; return the
    counter deltas of the phase (between two quiet moments if ``quiet``: then every flit
    counted at one end is counted at the other)."""
    snapshot = link.quiet_counters if quiet else link.counters
    before = await snapshot()
    if inject:
        await link.host.write(**inject)
    budget = max_cycles or 4000 + 200 * traffic.count * 4
    cycles, done = await link.send(traffic, max_cycles=budget, sides=sides)
    await link.settle()
    after = await snapshot()
    d = _delta(after, before)
    link.log(f"{name}: {cycles} cycles, {_flits(d)} DATA flits "
             f"(sent {before['a_sent']} → {after['a_sent']}, want {link.sent_total}), "
             f"CRC errors {d['a_dl']['crc_errors']}+{d['b_dl']['crc_errors']}, "
             f"replays {d['a_dl']['replays']}+{d['b_dl']['replays']}, "
             f"retrains {d['a_link']['retrains']}+{d['b_link']['retrains']}")
    if not done:
        raise LinkCheckError(f"{name}: traffic not through after {budget} cycles; "
                             f"status {await link.status()}; deltas {d}")
    link.check_integrity(after)
    if check is not None:
        check(d)
    return d


async def training_sweep(link, rng, *, seeds):
    """G8: ``seeds`` link-ups, each from fresh random per-lane skews, bit offsets and wire
    delays; every one reaches full width within ``train_timeout`` cycles."""
    worst = 0
    p = link.params
    for _ in range(seeds):
        s = rng.randrange(1 << 31)
        r = random.Random(s)
        await link.host.write(a_ctl={"enable": 0}, b_ctl={"enable": 0})
        await link.host.write(run_until=RunUntil.CYCLES)
        await link.host.run(64)
        cycles = await link.bring_up(ab=link.random_channel(r, seed=s),
                                     ba=link.random_channel(r, seed=s + 1),
                                     wire=(r.randrange(1, 64), r.randrange(1, 64)),
                                     max_cycles=p.train_timeout * 4)
        st = await link.status()
        for side in ("a", "b"):
            _expect(st[side]["width"] == p.lanes,
                    f"seed {s}: {side} trained to width {st[side]['width']}, not {p.lanes}")
        worst = max(worst, cycles)
    link.log(f"training: {seeds} random link-ups, the slowest in {worst} cycles")
    _expect(worst <= 1 << 15, f"a link-up took {worst} cycles (> 2**15)")


#: The fault classes of G1, one phase each: ``(name, channel settings, register writes at the
#: start of the phase, exact)``. ``_check_fault_phase`` checks what each must have caused;
#: ``exact`` phases (no bit errors, no retrain) must also leave :meth:`Link.ledger_offsets`
#: unchanged.
def fault_phases():
    from golden_model.link_traffic import ber_to_threshold
    return [
        ("error-free", {}, None, True),
        ("BER 1e-5", {"ber_threshold": ber_to_threshold(1e-5)}, None, False),
        ("BER 1e-4", {"ber_threshold": ber_to_threshold(1e-4)}, None, False),
        ("bursts ≤ 32 bits", {"ber_threshold": ber_to_threshold(2e-4, burst_len=24),
                              "burst_len": 24}, None, False),
        ("bursts > 32 bits", {"ber_threshold": ber_to_threshold(2e-4, burst_len=50),
                              "burst_len": 50}, None, False),
        ("flit drops", {"drop_threshold": _threshold(2e-3)}, None, True),
        ("ACK loss", {}, {"b_inject": {"block_acks": 300}, "a_inject": {"block_acks": 300}},
         False),
        ("credit corruption", {}, {"b_inject": {"fc_offset": 900, "fc_vc": 1}}, True),
        ("replay storm", {}, {"a_inject": {"crc_corrupt": 400}}, False),
        ("retrain request", {}, {"a_retrain": 1}, False),
    ]


def _check_fault_phase(name, d):
    """What a G1 phase must show besides integrity: its fault happened, and no flit the
    channel hit got through unnoticed (each one failed CRC or framing, or the hit fell only
    on sync headers, which the lanes count)."""
    for src, dst, di in _DIRECTIONS:
        led, dl = d[f"{di}_ledger"], d[f"{dst}_dl"]
        rejected = dl["crc_errors"] + dl["framing_errors"]
        headers = sum(lane["bad_headers"] for lane in d[f"{dst}_lanes"])
        _expect(rejected + headers >= led["flits_hit"],
                f"{name}: {led['flits_hit']} {src}→{dst} flits hit, but only {rejected} "
                f"rejected and {headers} bad sync headers")
    if name.startswith(("BER", "bursts")):
        _expect(d["ab_ledger"]["flits_hit"] + d["ba_ledger"]["flits_hit"] >= 1,
                f"{name}: no flit was hit")
    if name == "error-free":
        for s in ("a", "b"):
            for k in ("crc_errors", "framing_errors", "seq_errors", "replays"):
                _expect(d[f"{s}_dl"][k] == 0, f"error-free: {s}.{k} moved by {d[f'{s}_dl'][k]}")
    if name == "replay storm":
        _expect(d["a_dl"]["replay_rollovers"] >= 1 and d["a_link"]["retrains"] >= 1,
                f"replay storm: no REPLAY_NUM rollover/retrain ({d['a_dl']}, {d['a_link']})")
    if name == "ACK loss":
        _expect(d["a_dl"]["replay_timeouts"] + d["b_dl"]["replay_timeouts"] >= 1,
                "ACK loss: the replay timer never fired")
    if name == "retrain request":
        _expect(d["a_link"]["retrains"] >= 1, "retrain request: no retrain")
    if name == "flit drops":
        _expect(d["ab_ledger"]["flits_dropped"] + d["ba_ledger"]["flits_dropped"] >= 1,
                "flit drops: nothing was dropped")


class _Faults:
    """Runs the phases of :func:`fault_phases` on a link brought up with random per-lane skews
    and bit offsets (kept for the whole run: a change would be a deskew error)."""

    def __init__(self, link, rng):
        self.link, self.rng = link, rng
        L = link.params.lanes
        self.skew = {d: dict(skews=[rng.randrange(link.params.max_skew + 1) for _ in range(L)],
                             offsets=[rng.randrange(66) for _ in range(L)])
                     for d in ("ab", "ba")}
        self.phases = fault_phases()

    async def bring_up(self):
        link = self.link
        await link.bring_up(ab=link.channel(**self.skew["ab"]),
                            ba=link.channel(**self.skew["ba"]), wire=(20, 20))

    async def run(self, k, n):
        """Phase ``k`` (mod the number of phases) with ``n`` messages per VC each way;
        return its name and counter deltas. An exact phase is framed by
        :meth:`Link.ledger_offsets`, which must agree before and after."""
        link, rng = self.link, self.rng
        name, ch, inject, exact = self.phases[k % len(self.phases)]
        before = await link.ledger_offsets() if exact else None
        await link.host.write(
            ab_chan=link.channel(seed=rng.randrange(1, 1 << 31), **self.skew["ab"], **ch),
            ba_chan=link.channel(seed=rng.randrange(1, 1 << 31), **self.skew["ba"], **ch))
        t = Traffic(count=n, seed=rng.randrange(1, 1 << 31))
        d = await _phase(link, name, t, max_cycles=60 * n * 4 + 200_000, inject=inject,
                         check=lambda d: _check_fault_phase(name, d))
        # The channels stop injecting between phases, so that what a phase did stays its own.
        await link.host.write(ab_chan=link.channel(**self.skew["ab"]),
                              ba_chan=link.channel(**self.skew["ba"]))
        if exact:
            after = await link.ledger_offsets()
            _expect(after == before,
                    f"{name}: the endpoints' flit counts moved away from the channels' "
                    f"ledgers: (sent − seen, accounted − passed) per direction "
                    f"{before} → {after}")
        return name, d


async def integrity_campaign(link, rng, *, scale=1.0, min_flits=0):
    """G1: traffic on all VCs both ways through every fault class, integrity after each;
    the phases go round again until at least ``min_flits`` DATA flits have crossed."""
    faults = _Faults(link, rng)
    await faults.bring_up()
    n = max(50, int(2400 * scale))
    total = k = 0
    while k < len(faults.phases) or total < min_flits:
        _, d = await faults.run(k, n)
        total += _flits(d)
        k += 1
    link.log(f"integrity: {total} DATA flits through {len(faults.phases)} fault classes "
             f"({k} phases), 0 lost, duplicated, reordered or corrupted")
    return total


async def soak(link, rng, *, flits, messages=20_000, log=None):
    """G1 at length: the fault phases of :func:`fault_phases` in turn, ``messages`` messages
    per VC each way per phase, until at least ``flits`` DATA flits have crossed the link.

    After every phase: every message so far delivered once, in order, intact, and the phase's
    own checks against the channels' ledgers (no hit flit escaped; in a phase without bit
    errors or retrains, every flit sent is a flit the channel saw, and every flit it passed
    was received or rejected). Logs progress (flits so far, rate, estimated time left) after
    every phase; returns a summary of the run.
    """
    import time
    log = log or link.log
    faults = _Faults(link, rng)
    await faults.bring_up()
    c0 = await link.quiet_counters()
    t0, cyc0 = time.monotonic(), link.host.cycles
    total = k = exact = 0
    while total < flits:
        name, d = await faults.run(k, messages)
        exact += faults.phases[k % len(faults.phases)][3]
        total += _flits(d)
        k += 1
        dt = time.monotonic() - t0
        rate = total / dt
        log(f"soak: {total:,} of {flits:,} DATA flits after phase {k} ({name}), "
            f"{dt:.0f} s, {rate:,.0f} flits/s, {(link.host.cycles - cyc0) / dt:,.0f} "
            f"cycles/s, about {max(0, flits - total) / rate:.0f} s left")
    c1 = await link.counters()
    link.check_integrity(c1)
    d = _delta(c1, c0)
    out = {
        "data_flits": _flits(d),
        "phases": k,
        "exact_phases": exact,
        "cycles": d["now"],
        "seconds": round(time.monotonic() - t0, 1),
        "messages": sum(r["messages"] for s in ("a", "b") for r in d[f"{s}_recv"]),
        "slots": link.delivered_slots(d),
    }
    for key in ("crc_errors", "framing_errors", "seq_errors", "duplicates", "replays",
                "replayed_flits", "replay_timeouts", "replay_rollovers"):
        out[key] = d["a_dl"][key] + d["b_dl"][key]
    out["retrains"] = d["a_link"]["retrains"] + d["b_link"]["retrains"]
    for key in ("bit_flips", "flits_hit", "flits_dropped"):
        out[key] = d["ab_ledger"][key] + d["ba_ledger"][key]
    out["ledger_offsets"] = await link.ledger_offsets()
    log(f"soak: {out['data_flits']:,} DATA flits ({out['messages']:,} messages) in "
        f"{out['phases']} phases, {out['cycles']:,} cycles, {out['seconds']} s; "
        f"{out['flits_hit']:,} flits hit and {out['flits_dropped']:,} dropped by the channels, "
        f"{out['crc_errors']:,} CRC errors, {out['replays']:,} replays, "
        f"{out['retrains']} retrains; 0 lost, duplicated, reordered or corrupted; "
        f"{exact} phases without bit errors or retrains matched the ledgers exactly")
    return out


async def crc_campaign(link, rng, *, scale=1.0):
    """G2: bursts of 1 … 32 bits at a high rate; every flit the channel hit is rejected by
    CRC or framing (none delivered), and nothing reaches the checkers corrupted."""
    from golden_model.link_traffic import ber_to_threshold
    await link.bring_up(wire=(20, 20))
    n = max(30, int(400 * scale))
    hit = rejected = 0
    for bl in (1, 2, 3, 4, 5, 8, 13, 21, 32):
        await link.host.write(ab_chan=link.channel(
            seed=rng.randrange(1, 1 << 31), burst_len=bl,
            ber_threshold=ber_to_threshold(3e-6, burst_len=bl)), ba_chan=link.channel())
        d = await _phase(link, f"bursts of {bl} bits", Traffic(count=n, seed=bl), sides=("a",))
        led, dl = d["ab_ledger"], d["b_dl"]
        # A hit flit is rejected (CRC or framing), or the burst fell only on sync headers of
        # its data blocks: the lane counts those as bad headers and the payload is intact
        # (the checkers saw no corruption). A burst may also spoil the next block through the
        # descrambler (a flipped bit comes out again 39 and 58 bits later), so the receiver
        # can reject more flits than the channel hit, never fewer.
        bad = dl["crc_errors"] + dl["framing_errors"]
        headers = sum(lane["bad_headers"] for lane in d["b_lanes"])
        _expect(bad + headers >= led["flits_hit"],
                f"bursts of {bl}: {led['flits_hit']} flits hit but only {bad} rejected "
                f"and {headers} bad sync headers")
        hit += led["flits_hit"]
        rejected += bad
    link.log(f"CRC: {hit} flits hit by bursts of 1 … 32 bits, {rejected} rejected, 0 escaped")
    _expect(hit > 0, "no flit was hit: the campaign tested nothing")


async def degrade_scenario(link, rng, *, scale=1.0):
    """G9: kill one lane under traffic: the link retrains at half width, nothing is lost,
    and the goodput halves."""
    p = link.params
    _expect(p.lanes >= 2, "lane kill needs at least two lanes")
    await link.bring_up(wire=(20, 20))
    n = max(200, int(3000 * scale))
    window = 20_000

    async def goodput():
        await link.host.write(run_until=RunUntil.CYCLES)
        b0 = await link.counters()
        await link.host.run(window)
        b1 = await link.counters()
        return link.delivered_slots(_delta(b1, b0)) / window

    t = Traffic(count=n, random_len=False, fixed_len=15, seed=5)
    link.sent_total["a"] += t.count
    link.sent_total["b"] += t.count
    regs = {f"{s}_gen": {"enable": 0b1111, "count": link.sent_total[s], "seed": 5,
                         "len_mode": LenMode.FIXED, "fixed_len": 15} for s in ("a", "b")}
    await link.host.write(**regs)
    full = await goodput()
    before = await link.counters()
    kill = rng.randrange(p.lanes)
    await link.host.write(ab_chan=link.channel(kill=(kill,)))
    await link.host.write(run_until=RunUntil.CYCLES)
    await link.host.run(p.train_timeout * 2)
    st = await link.status()
    half = await goodput()
    await link.host.write(run_until=RunUntil.TRAFFIC)
    _, done = await link.host.run(200 * n * 4)
    after = await link.counters()
    d = _delta(after, before)
    _expect(done, f"traffic not through after the lane kill; status {await link.status()}")
    link.check_integrity(after)
    for side in ("a", "b"):
        _expect(st[side]["width"] == p.lanes // 2,
                f"lane {kill} killed: {side} runs at width {st[side]['width']}, "
                f"not {p.lanes // 2}")
        _expect(d[f"{side}_link"]["degrades"] == 1,
                f"{side} counted {d[f'{side}_link']['degrades']} degrades, not 1")
    ratio = half / full
    link.log(f"degrade: lane {kill} killed, width {p.lanes} → {p.lanes // 2}, goodput "
             f"{full:.3f} → {half:.3f} slots/cycle ({ratio:.3f}), nothing lost")
    _expect(abs(ratio - 0.5) <= 0.05, f"goodput at half width is {ratio:.3f} of full, not ½")


async def fairness_scenario(link, rng, *, scale=1.0):
    """G10: with VC 0's sink never ready, VCs 1–3 keep ≥ 95 % of their share (measured
    against a run where VC 0 sends nothing), and VC 0's traffic completes once released."""
    await link.bring_up(wire=(20, 20))
    window = 20_000
    n = max(400, int(4000 * scale))

    async def rates(vcs, stall0):
        link.sent_total["a"] += n
        await link.host.write(
            a_gen={"enable": vcs, "count": link.sent_total["a"], "seed": 9,
                   "len_mode": LenMode.FIXED, "fixed_len": 15},
            b_chk={"stall_threshold": [_ALL_ONES if stall0 else 0, 0, 0, 0][:link.params.vcs],
                   "seed": 3},
            run_until=RunUntil.CYCLES)
        c0 = await link.counters()
        await link.host.run(window)
        c1 = await link.counters()
        return [x["slots"] / window for x in _delta(c1, c0)["b_recv"]]

    ref = await rates(0b1110, False)
    stalled = await rates(0b1111, True)
    link.log("fairness: slots/cycle per VC, VC 0 idle " +
             ", ".join(f"{r:.3f}" for r in ref) + "; VC 0 stalled " +
             ", ".join(f"{r:.3f}" for r in stalled))
    for v in (1, 2, 3):
        _expect(stalled[v] >= 0.95 * ref[v],
                f"VC {v} got {stalled[v]:.3f} slots/cycle with VC 0 stalled, "
                f"< 95 % of {ref[v]:.3f}")
    await link.host.write(b_chk={"stall_threshold": [0] * link.params.vcs, "seed": 3},
                          run_until=RunUntil.TRAFFIC)
    _, done = await link.host.run(400 * n * 4)
    _expect(done, "VC 0's traffic did not complete once its sink was released")
    link.check_integrity(await link.counters())


async def injection_scenario(link, rng, *, scale=1.0):
    """G11: each injection class, on an otherwise clean link, moves exactly the counters it
    should; the channel's ledger matches the endpoints' counts."""
    await link.bring_up(wire=(20, 20))
    await link.settle()
    t = Traffic(count=60, seed=11)

    async def inject(name, regs, check):
        return await _phase(link, name, t, check=check, inject=regs, quiet=True)

    def exact(d, path, want, name):
        side, key = path.split(".")
        got = d[side][key]
        _expect(got == want, f"{name}: {side}.{key} moved by {got}, expected {want}")

    def clean_identities(d, name):
        # No channel errors: every flit a sent is a flit b received or dropped, and every
        # flit b failed is one a corrupted on purpose.
        for src, dst, di in (("a", "b", "ab"), ("b", "a", "ba")):
            led = d[f"{di}_ledger"]
            exact(d, f"{src}_dl.tx_flits", led["flits_seen"], name)
            got = (d[f"{dst}_dl"]["rx_flits"] + d[f"{dst}_dl"]["crc_errors"]
                   + d[f"{dst}_dl"]["framing_errors"])
            _expect(got == led["flits_seen"] - led["flits_dropped"],
                    f"{name}: {dst} accounted for {got} flits, the channel passed "
                    f"{led['flits_seen'] - led['flits_dropped']} ({di} ledger {led}, "
                    f"{src} {d[f'{src}_dl']}, {dst} {d[f'{dst}_dl']})")

    def crc(d):
        exact(d, "b_dl.crc_errors", 3, "crc_corrupt 3")
        exact(d, "a_dl.crc_errors", 0, "crc_corrupt 3")
        _expect(d["b_dl"]["naks_tx"] >= 1 and d["a_dl"]["naks_rx"] >= 1,
                "crc_corrupt: no NAK went back")
        clean_identities(d, "crc_corrupt 3")

    def nak(d):
        exact(d, "b_dl.naks_tx", 1, "force_nak")
        exact(d, "a_dl.naks_rx", 1, "force_nak")
        exact(d, "a_dl.replays", 1, "force_nak")
        clean_identities(d, "force_nak")

    def dup(d):
        exact(d, "b_dl.duplicates", 1, "duplicate")
        clean_identities(d, "duplicate")

    def fc(d):
        exact(d, "a_dl.fc_errors", 1, "fc_offset")
        clean_identities(d, "fc_offset")

    def seq(d):
        _expect(d["b_dl"]["seq_errors"] >= 1, "seq_offset: no sequence error counted")
        _expect(d["a_dl"]["naks_rx"] >= 1, "seq_offset: no NAK came back")
        clean_identities(d, "seq_offset")

    def drop(d):
        exact(d, "ab_ledger.flits_dropped", 1, "drop_at")
        clean_identities(d, "drop_at")

    def clean(d):
        for s in ("a", "b"):
            for k in ("crc_errors", "framing_errors", "seq_errors", "duplicates", "naks_tx",
                      "naks_rx", "replays", "replay_timeouts", "protocol_errors", "fc_errors"):
                exact(d, f"{s}_dl.{k}", 0, "clean run")
        clean_identities(d, "clean run")

    await inject("clean", {}, clean)
    await inject("crc_corrupt 3", {"a_inject": {"crc_corrupt": 3}}, crc)
    await inject("force_nak", {"b_inject": {"force_nak": 1}}, nak)
    await inject("duplicate", {"a_inject": {"duplicate": 1}}, dup)
    await inject("fc_offset", {"b_inject": {"fc_offset": 1000, "fc_vc": 2}}, fc)
    await inject("seq_offset", {"a_inject": {"seq_offset": 5}}, seq)
    c = await link.counters()
    await link.host.write(ab_chan=link.channel(drop_at=c["ab_ledger"]["flits_seen"] + 40))
    await _phase(link, "drop_at", t, check=drop, quiet=True)
    link.log("injections: every class moved exactly its counters")
