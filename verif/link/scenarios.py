"""Link scenarios on :class:`rtl.link.testbench.LinkTestbench`, shared by cocotb and the soak.

Every scenario is ``async`` code over a :class:`~verif.link.host.TbHost`: configure the
channels, generators and injections, ``RUN`` until the traffic is through, read every counter
back and check it — against the generators (integrity: every message arrived once, in order,
intact) and against the channels' ledgers (what was injected is what was counted).
"""

import random
from dataclasses import dataclass, field

from rtl.link.layouts import TrainState
from rtl.link.testbench import RunUntil
from rtl.link.traffic import LenMode

from .host import as_dict


__all__ = ["Link", "LinkCheckError", "Traffic"]

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


async def integrity_campaign(link, rng, *, scale=1.0):
    """G1: traffic on all VCs both ways through every fault class, integrity after each."""
    from golden_model.link_traffic import ber_to_threshold
    L = link.params.lanes
    skew = {d: dict(skews=[rng.randrange(link.params.max_skew + 1) for _ in range(L)],
                    offsets=[rng.randrange(66) for _ in range(L)]) for d in ("ab", "ba")}
    await link.bring_up(ab=link.channel(**skew["ab"]), ba=link.channel(**skew["ba"]),
                        wire=(20, 20))
    n = max(50, int(2400 * scale))
    total = 0

    async def chan(**kw):
        # The skews and bit offsets stay as trained (a change would be a deskew error).
        await link.host.write(
            ab_chan=link.channel(seed=rng.randrange(1, 1 << 31), **skew["ab"], **kw),
            ba_chan=link.channel(seed=rng.randrange(1, 1 << 31), **skew["ba"], **kw))

    phases = [
        ("error-free", {}, None),
        ("BER 1e-5", {"ber_threshold": ber_to_threshold(1e-5)}, None),
        ("BER 1e-4", {"ber_threshold": ber_to_threshold(1e-4)}, None),
        ("bursts ≤ 32 bits", {"ber_threshold": ber_to_threshold(2e-6, burst_len=24),
                              "burst_len": 24}, None),
        ("bursts > 32 bits", {"ber_threshold": ber_to_threshold(2e-6, burst_len=50),
                              "burst_len": 50}, None),
        ("flit drops", {"drop_threshold": _threshold(2e-3)}, None),
        ("ACK loss", {}, {"b_inject": {"block_acks": 300}, "a_inject": {"block_acks": 300}}),
        ("credit corruption", {}, {"b_inject": {"fc_offset": 900, "fc_vc": 1}}),
        ("replay storm", {}, {"a_inject": {"crc_corrupt": 400}}),
        ("retrain request", {}, {"a_retrain": 1}),
    ]
    for name, ch, inject in phases:
        await chan(**ch)
        t = Traffic(count=n, seed=rng.randrange(1, 1 << 31))
        d = await _phase(link, name, t, max_cycles=60 * n * 4 + 200_000, inject=inject)
        total += _flits(d)
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
    link.log(f"integrity: {total} DATA flits through {len(phases)} fault classes, "
             f"0 lost, duplicated, reordered or corrupted")
    return total


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
