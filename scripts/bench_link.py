"""Link benchmark: goodput, latency and recovery of the interchip link, on Verilator.

Runs the ``link_bench`` top (two endpoints with the hardware's marker period and 12-bit
sequence numbers, back to back through channel models and a wire delay) in-process, with the
traffic generators and checkers in RTL, and reports:

* **goodput ÷ raw** for L = 1, 2, 4, 8 lanes, error-free, with saturating traffic on all four
  VCs and on one: payload bits delivered ÷ (L × 66 bits × cycles), over a window after
  warm-up; the theory is η0 = 240/256 × 64/66 × (1 − 1/am_period);
* the same at **BER 1e-6 with a 16-flit round trip**, against the retry model
  η0 / (1 + FER·R) (research/link.md § 4.3);
* **zero-load latency**, one way, by stage (the serialization of a flit, the channel model
  and the wire, and the rest: the endpoints' pipelines), and the **recovery time** after an
  injected CRC error (the latency of the message whose flit was corrupted, minus the
  zero-load latency, with the 16-flit round trip);
* a **goodput-vs-BER** sweep at L = 4, R = 16, plotted against the model
  (``build/bench/link_goodput_ber.png``).

Every run also checks integrity (every message delivered once, in order, intact).
Results: ``build/bench/link.json``. Targets (issue): ≥ 90 % error-free, ≥ 87 % at BER 1e-6
with R = 16; they are reported, not asserted.
"""

import argparse
import asyncio
import json
import time
from pathlib import Path

from golden_model.link import retry_goodput
from golden_model.link_traffic import ber_to_threshold
from rtl.config import TINY
from rtl.link.layouts import FLIT_WORDS, SLOT_BYTES, SLOTS
from rtl.link.testbench import RunUntil
from rtl.link.traffic import LenMode
from verif.link import scenarios as S

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bench"
BITS_PER_BLOCK = 66


def _cfg(lanes):
    return TINY.replace(name=f"LINKBENCH_L{lanes}", link_lanes=lanes)


def open_link(lanes, log=print):
    """Build (cached) and load the ``link_bench`` top with ``lanes`` lanes."""
    return S.open_inprocess("link_bench", _cfg(lanes), log=log)


class Bench:
    def __init__(self, link):
        self.link = link
        self.p = link.params
        self.flit_cycles = FLIT_WORDS // self.p.lanes

    @property
    def eta0(self):
        return (SLOTS * SLOT_BYTES / 256) * (64 / 66) * (1 - 1 / self.p.am_period)

    def _generators(self, vcs):
        """Both generators' registers: fixed 15-slot messages on ``vcs`` up to each side's
        ``sent_total``."""
        return {f"{s}_gen": {"enable": vcs, "count": self.link.sent_total[s], "seed": 3,
                             "len_mode": LenMode.FIXED, "fixed_len": 15} for s in ("a", "b")}

    async def saturate(self, vcs, count=1 << 30):
        """Both generators send fixed 15-slot messages on ``vcs`` without end."""
        for s in ("a", "b"):
            self.link.sent_total[s] += count
        await self.link.host.write(**self._generators(vcs), run_until=RunUntil.CYCLES)

    async def stop(self):
        """Stop both generators (a message already started completes), let the link deliver
        every message sent, and check integrity."""
        L = self.link
        await L.host.write(**self._generators(0), run_until=RunUntil.CYCLES)
        for _ in range(100):
            await L.host.run(20_000)
            c = await L.counters()
            if all(c[f"{dst}_recv"][v]["messages"] == c[f"{src}_sent"][v]
                   for src, dst in (("a", "b"), ("b", "a")) for v in range(self.p.vcs)):
                break
        for s in ("a", "b"):
            L.sent_total[s] = max(c[f"{s}_sent"])
        L.check_integrity(c)
        return c

    async def goodput(self, window, warmup=None):
        """Payload ÷ raw bits of the a→b direction over ``window`` cycles."""
        await self.link.host.run(warmup or 40 * self.flit_cycles)
        c0 = await self.link.counters()
        await self.link.host.run(window)
        c1 = await self.link.counters()
        d = S._delta(c1, c0)
        slots = sum(r["slots"] for r in d["b_recv"])
        # The snapshots' own cycle counter: reading the registers takes cycles as well.
        return slots * SLOT_BYTES * 8 / (d["now"] * self.p.lanes * BITS_PER_BLOCK), d

    async def latency(self, n=20):
        """Zero-load one-way latency: ``n`` single-slot messages on VC 0, one at a time;
        returns (the checker's minimum since reset, the mean of these ``n``)."""
        L = self.link
        L.sent_total["a"] += n
        await L.host.write(a_gen={"enable": 1, "count": L.sent_total["a"], "seed": 1,
                                  "len_mode": LenMode.FIXED, "fixed_len": 1,
                                  "idle_threshold": (1 << 32) - (1 << 22)},
                           b_gen={"enable": 0, "count": L.sent_total["b"]},
                           run_until=RunUntil.TRAFFIC)
        c0 = await L.counters()
        _, done = await L.host.run(1_000_000)
        c1 = await L.counters()
        if not done:
            raise S.LinkCheckError(f"zero-load messages not through: {await L.status()}")
        r0, r1 = c0["b_recv"][0], c1["b_recv"][0]
        return r1["latency_min"], \
            (r1["latency_sum"] - r0["latency_sum"]) / (r1["messages"] - r0["messages"])

    async def recovery(self, tries=8):
        """Recovery after one error: the extra latency of a single-slot message whose flit
        the sender corrupts (the receiver fails its CRC and NAKs, the sender replays it),
        against the zero-load mean at the same wire delay. Returns ``(extra cycles, zero-load
        mean)``. Tried again if the corrupted flit was not that message's (a NOP went
        first)."""
        L = self.link
        # The zero-load latency at this wire delay, once it is steady (a change of the wire
        # delay or the channels' settings disturbs the messages just after it).
        prev, base = None, (await self.latency())[1]
        while prev is None or abs(base - prev) > 1:
            prev, base = base, (await self.latency())[1]
        for _ in range(tries):
            c0 = await L.counters()
            L.sent_total["a"] += 1
            await L.host.write(a_inject={"crc_corrupt": 1},
                               a_gen={"enable": 1, "count": L.sent_total["a"], "seed": 1,
                                      "len_mode": LenMode.FIXED, "fixed_len": 1},
                               run_until=RunUntil.TRAFFIC)
            _, done = await L.host.run(1_000_000)
            d = S._delta(await L.counters(), c0)
            if not done:
                raise S.LinkCheckError(f"the message after the error is not through: {d}")
            if d["b_dl"]["crc_errors"] == 1 and d["a_dl"]["replayed_flits"] >= 1:
                return d["b_recv"][0]["latency_sum"] - base, base
        raise S.LinkCheckError(f"the injected error never hit the message's flit: {d}")

    async def configure(self, **regs):
        """Write channel and wire registers, then wait until the link is up and steady: a new
        wire delay disturbs the lanes, which the next alignment markers catch (a deskew
        error and a retrain), so the measurement that follows must not start before."""
        L = self.link
        await L.host.write(**regs, run_until=RunUntil.CYCLES)
        await L.host.run(2 * self.p.am_period)
        await L.host.write(run_until=RunUntil.LINK_UP)
        _, up = await L.host.run(1 << 18)
        if not up:
            raise S.LinkCheckError(f"the link did not come back up: {await L.status()}")

    def set_rtt(self, flits):
        """Wire delay (cycles each way) for a round trip of ``flits`` flit times, from the
        measured zero-load latency ``self.zero`` (one way, wire delay ``self.zero_wire``)."""
        one_way_fixed = self.zero - self.zero_wire
        want = flits * self.flit_cycles / 2 - one_way_fixed
        return max(1, round(want))


async def run_lanes(lanes, args, log):
    link, top = open_link(lanes, log=lambda *_: None)
    b = Bench(link)
    res = {"lanes": lanes, "eta0": b.eta0}
    wire0 = 4
    await link.bring_up(wire=(wire0, wire0), max_cycles=1 << 18)
    # Zero-load latency, by stage: the serialization of a flit and the wire are known; the
    # rest is the endpoints' pipelines (data link, framing and PCS at both ends) and the
    # traffic blocks' own cycle.
    lmin, lavg = await b.latency()
    b.zero, b.zero_wire = lmin, wire0 + 1
    stages = {"serialization": b.flit_cycles, "channel model": 1, "wire": wire0 + 1}
    stages = {"endpoints": lmin - sum(stages.values()), **stages}
    res["latency_cycles"] = {"min": lmin, "mean": round(lavg, 2), "stages": stages}
    # Error-free saturation, 4 VCs and 1 VC.
    window = args.window_flits * b.flit_cycles
    await b.saturate(0b1111)
    g4, _ = await b.goodput(window)
    await b.stop()
    await b.saturate(0b0001)
    g1, _ = await b.goodput(window)
    await b.stop()
    res["goodput_4vc"] = g4
    res["goodput_1vc"] = g1
    # BER 1e-6 with a 16-flit round trip.
    wire = b.set_rtt(16)
    res["rtt_wire_cycles"] = wire
    thr = ber_to_threshold(1e-6)
    await b.configure(ab_chan=link.channel(ber_threshold=thr, seed=11),
                      ba_chan=link.channel(ber_threshold=thr, seed=12),
                      ab_wire=wire, ba_wire=wire)
    await b.saturate(0b1111)
    gber, d = await b.goodput(args.ber_flits * b.flit_cycles)
    await b.stop()
    led = d["ab_ledger"]
    res["ber_1e-6"] = {"goodput": gber, "model": retry_goodput(1e-6, 16, b.eta0),
                       "wire_ber": led["bit_flips"] / (d["now"] * lanes * BITS_PER_BLOCK),
                       "wire_fer": wire_fer(d),
                       "crc_errors": d["b_dl"]["crc_errors"], "replays": d["a_dl"]["replays"],
                       "data_flits": d["a_dl"]["tx_data"],
                       "flits_lost_per_error": lost_per_error(gber, b.eta0, d),
                       "crc_errors_per_flit_hit": round(
                           (d["b_dl"]["crc_errors"] + d["b_dl"]["framing_errors"])
                           / max(1, led["flits_hit"]), 2),
                       "replay_timeouts": d["a_dl"]["replay_timeouts"],
                       "retrains": d["a_link"]["retrains"]}
    # Recovery after one injected CRC error, at zero load, with the 16-flit round trip.
    await link.host.write(ab_chan=link.channel(), ba_chan=link.channel())
    extra, base = await b.recovery()
    res["recovery_cycles"] = extra
    res["recovery_zero_load_cycles"] = round(base, 2)
    res["rtt_cycles"] = 16 * b.flit_cycles
    log(f"L={lanes}: goodput {100 * g4:.2f} % (4 VCs), {100 * g1:.2f} % (1 VC) of raw, "
        f"η0 {100 * b.eta0:.2f} %; BER 1e-6, R=16: {100 * gber:.2f} % "
        f"(model {100 * res['ber_1e-6']['model']:.2f} %; on the wire BER "
        f"{res['ber_1e-6']['wire_ber']:.3g}, {led['flits_hit']} of {led['flits_seen']} flits "
        f"hit; {d['b_dl']['crc_errors']} CRC and {d['b_dl']['framing_errors']} framing "
        f"errors in {d['a_dl']['tx_data']} DATA flits, "
        f"{res['ber_1e-6']['flits_lost_per_error']} flits lost per error, "
        f"{d['a_dl']['replays']} replays of which {d['a_dl']['replay_timeouts']} by the "
        f"timer; {d['a_link']['retrains']} retrains); "
        f"zero-load latency {lmin} cycles "
        f"({', '.join(f'{k} {v}' for k, v in stages.items())}); recovery after an error "
        f"{extra} cycles (round trip {res['rtt_cycles']})")
    return res, link, b


def wire_fer(d):
    """The flit error rate on the wire: the a→b channel's ledger, flits with at least one bit
    flipped per flit sent. The receiver counts more bad flits than that: the descrambler
    repeats a flipped bit 39 and 58 bits later on its lane, which can fall in the next
    flit."""
    led = d["ab_ledger"]
    return led["flits_hit"] / max(1, led["flits_seen"])


def lost_per_error(goodput, eta0, d):
    """The measured cost of one flit error, in flit times: ``R`` in η0 / (1 + FER·R) solved
    with the goodput and the flit error rate on the wire (:func:`wire_fer`)."""
    fer = wire_fer(d)
    return round((eta0 / goodput - 1) / fer, 1) if fer else None


async def ber_sweep(link, b, args, log):
    out = []
    wire = b.set_rtt(16)
    for ber in args.sweep:
        thr = ber_to_threshold(ber)
        await b.configure(ab_chan=link.channel(ber_threshold=thr, seed=21),
                          ba_chan=link.channel(ber_threshold=thr, seed=22),
                          ab_wire=wire, ba_wire=wire)
        await b.saturate(0b1111)
        g, d = await b.goodput(args.sweep_flits * b.flit_cycles)
        await b.stop()
        model = retry_goodput(ber, 16, b.eta0)
        out.append({"ber": ber, "goodput": g, "model": model,
                    "wire_fer": wire_fer(d),
                    "crc_errors": d["b_dl"]["crc_errors"],
                    "flits_lost_per_error": lost_per_error(g, b.eta0, d),
                    "replays": d["a_dl"]["replays"],
                    "replay_timeouts": d["a_dl"]["replay_timeouts"],
                    "retrains": d["a_link"]["retrains"]})
        log(f"  BER {ber:.0e}: goodput {100 * g:.2f} %, model {100 * model:.2f} %, "
            f"{out[-1]['flits_lost_per_error']} flits lost per error, "
            f"{out[-1]['replays']} replays of which {out[-1]['replay_timeouts']} by the timer, "
            f"{out[-1]['retrains']} retrains")
    return out


def plot(sweep, eta0, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    bers = np.logspace(-8, -4, 100)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogx(bers, [100 * retry_goodput(x, 16, eta0) for x in bers],
                label="model η0 / (1 + FER·R), R = 16")
    ax.semilogx([s["ber"] for s in sweep], [100 * s["goodput"] for s in sweep], "o",
                label="measured (RTL, L = 4)")
    ax.axhline(87, color="grey", linestyle=":", linewidth=1)
    ax.annotate("87 % (target at BER 1e-6)", (1.2e-8, 87.5), color="grey", fontsize=8)
    ax.set_title("Link goodput under random bit errors, 16-flit round trip")
    ax.set_xlabel("bit error rate")
    ax.set_ylabel("goodput, % of raw")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lanes", default="1,2,4,8")
    ap.add_argument("--window-flits", type=int, default=4000)
    ap.add_argument("--ber-flits", type=int, default=300_000,
                    help="flit times of the BER 1e-6 run at each width")
    ap.add_argument("--sweep-flits", type=int, default=100_000,
                    help="flit times of each point of the goodput-vs-BER sweep")
    ap.add_argument("--sweep", default="1e-7,1e-6,3e-6,1e-5,3e-5")
    args = ap.parse_args(argv)
    args.sweep = [float(x) for x in args.sweep.split(",") if x.strip()]
    OUT.mkdir(parents=True, exist_ok=True)
    results = {"lanes": [], "sweep": None}
    t0 = time.monotonic()

    async def go():
        for lanes in [int(x) for x in args.lanes.split(",")]:
            res, link, b = await run_lanes(lanes, args, print)
            results["lanes"].append(res)
            if lanes == 4:
                print("goodput vs BER, L = 4, R = 16:")
                results["sweep"] = await ber_sweep(link, b, args, print)
                plot(results["sweep"], b.eta0, OUT / "link_goodput_ber.png")

    asyncio.run(go())
    results["wall_seconds"] = round(time.monotonic() - t0, 1)
    (OUT / "link.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"link: {len(results['lanes'])} widths in {results['wall_seconds']} s; "
          f"build/bench/link.json" + (", link_goodput_ber.png" if results["sweep"] else ""))
    print("| L | goodput 4 VCs | goodput 1 VC | η0 | BER 1e-6, R = 16 | model | "
          "flits hit | bad flits per hit | flits lost per error | zero-load latency | "
          "of which endpoints | recovery |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results["lanes"]:
        print(f"| {r['lanes']} | {100 * r['goodput_4vc']:.2f} % | "
              f"{100 * r['goodput_1vc']:.2f} % | {100 * r['eta0']:.2f} % | "
              f"{100 * r['ber_1e-6']['goodput']:.2f} % | {100 * r['ber_1e-6']['model']:.2f} % | "
              f"{100 * r['ber_1e-6']['wire_fer']:.3f} % | "
              f"{r['ber_1e-6']['crc_errors_per_flit_hit']} | "
              f"{r['ber_1e-6']['flits_lost_per_error']} | {r['latency_cycles']['min']} | "
              f"{r['latency_cycles']['stages']['endpoints']} | "
              f"{r['recovery_cycles']:.0f} |")
    return results


if __name__ == "__main__":
    main()
