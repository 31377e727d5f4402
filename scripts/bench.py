"""``make bench``: measured performance of the simulated chip, printed and written as JSON.

Matrix engine (``build/bench/mxu.json``): for each format pair, one GEMM at 2× and one at 8×
the array size (M = N = K) on the production ``mxu`` top; utilization = useful MACs ÷
(R·C·busy cycles), all from the engine's hardware counters, with the stall cycles by cause;
and the simulator's speed in cycles per second. Every result is also checked bit for bit
against the golden model. Targets (``docs/mxu.md``): ≥ 80 % at 8×, ≥ 50 % at 2×; they are
reported as ratios, not asserted.

Vector engine (``build/bench/vpu.json``): for each op class one command of 4 rows and one of
a single row of the demo model's width (``--width``, default 256) on the production ``vpu``
top; cycles from the engine's ``busy`` counter, elements per cycle, and the per-row cycles of
SOFTMAX and RMSNORM a decode step sees. Results are checked bit for bit as well.

Chip (``build/bench/chip.json``): descriptors through the command processor of the ``chip``
top. DMA streaming efficiency (bytes per DMA-busy cycle ÷ the modelled HBM peak) for large
aligned, 4-byte-misaligned, 2-D strided and page-gathering transfers, loads and stores; and a
GEMM whose operands are larger than the scratchpad, K-tiled and double-buffered by a DMA queue
running beside the GEMM queue, with its MXU utilization over the whole run. Targets
(``docs/chip.md``): DMA ≥ 85 % aligned, ≥ 50 % worst supported alignment/stride; MXU ≥ 70 %.

Decode (``build/bench/decode.json``, :mod:`scripts.bench_decode`): the demo model decoding on
the Verilated ``M890`` and ``ZW810E``: cycles per token, model-bandwidth utilization, prefill
MXU utilization, simulator seconds per token, and the ratio of the two chips' tokens per cycle.

Link (``build/bench/link.json``, :mod:`scripts.bench_link`): the interchip link's goodput ÷
raw for 1, 2, 4 and 8 lanes error-free and at BER 1e-6 with a 16-flit round trip, zero-load
latency, recovery time after an injected error, and goodput against BER plotted with the retry
model (``build/bench/link_goodput_ber.png``).

Usage: ``python -m scripts.bench [--preset M890] [--mults 2,8] [--width 256]
[--only mxu|vpu|chip|decode|link] [--decode-presets M890,ZW810E]``.
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rtl.config import preset  # noqa: E402
from verif.common.harness import run_stream_harness  # noqa: E402
from verif.common.runner import BUILD  # noqa: E402

TARGETS = {2: 0.50, 8: 0.80}


def bench_mxu(cfg, mults):
    out = BUILD / "bench" / "mxu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = BUILD / "bench" / f"mxu-{cfg.name}.raw.json"
    t0 = time.monotonic()
    print(f"MXU benchmark on {cfg.name} ({cfg.mxu_rows}x{cfg.mxu_cols}): building and running "
          f"the Verilated engine (the first build takes minutes) ...", flush=True)
    run_stream_harness("mxu", cfg, test_module="verif.mxu.cocotb_bench",
                       name=f"bench-mxu-{cfg.name}",
                       watchdog=4_000_000,
                       extra_env={"BENCH_OUT": str(raw), "BENCH_MULTS": ",".join(map(str, mults)),
                                  "COCOTB_LOG_LEVEL": "WARNING"})
    data = json.loads(raw.read_text())
    rows = data["rows"]
    sim_cycles = sum(r["sim_cycles"] for r in rows)
    sim_wall = sum(r["wall_s"] for r in rows)
    lines = [
        f"MXU utilization, {cfg.name} {cfg.mxu_rows}x{cfg.mxu_cols} array "
        f"(macs / (R*C*busy), from the hardware counters)",
        f"{'A format':<12}{'B format':<12}{'M=N=K':>7}{'util':>8}{'target':>8}{'ratio':>7}"
        f"{'busy':>9}{'weight':>8}{'input':>8}{'output':>8}{'drain':>8}",
    ]
    worst = {}
    for r in rows:
        c = r["counters"]
        target = TARGETS.get(r["mult"])
        ratio = r["utilization"] / target if target else float("nan")
        worst[r["mult"]] = min(worst.get(r["mult"], 9.9), ratio)
        lines.append(
            f"{r['fmt_a']:<12}{r['fmt_b']:<12}{r['size']:>7}{100 * r['utilization']:>7.1f}%"
            f"{100 * target if target else float('nan'):>7.0f}%{ratio:>7.2f}{c['busy']:>9}"
            f"{c['stall_weight']:>8}{c['stall_input']:>8}{c['stall_output']:>8}"
            f"{c['stall_drain']:>8}")
    speed = sim_cycles / sim_wall if sim_wall else 0.0
    lines.append(f"simulation speed: {speed:,.0f} cycles/s ({sim_cycles:,} cycles in "
                 f"{sim_wall:.1f} s of simulation, bulk transfers included)")
    for mult, ratio in sorted(worst.items()):
        lines.append(f"worst ratio to target at {mult}x: {ratio:.2f} "
                     f"({'meets' if ratio >= 1 else 'MISSES'} the {100 * TARGETS[mult]:.0f} % "
                     f"target)")
    print("\n".join(lines))
    summary = {"preset": cfg.name, "array": data["array"], "rows": rows,
               "sim_cycles_per_s": speed, "targets": {str(k): v for k, v in TARGETS.items()},
               "worst_ratio": {str(k): v for k, v in worst.items()},
               "wall_s": time.monotonic() - t0}
    out.write_text(json.dumps(summary, indent=1))
    print(f"written {out.relative_to(ROOT)}")
    return summary


def bench_vpu(cfg, width):
    out = BUILD / "bench" / "vpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = BUILD / "bench" / f"vpu-{cfg.name}.raw.json"
    t0 = time.monotonic()
    print(f"VPU benchmark on {cfg.name} ({cfg.vpu_lanes} lanes), rows of {width}: building and "
          f"running the Verilated engine ...", flush=True)
    run_stream_harness("vpu", cfg, test_module="verif.vpu.cocotb_bench",
                       name=f"bench-vpu-{cfg.name}", watchdog=2_000_000,
                       extra_env={"BENCH_OUT": str(raw), "BENCH_WIDTH": str(width),
                                  "COCOTB_LOG_LEVEL": "WARNING"})
    if not raw.exists():
        raise SystemExit(f"the VPU benchmark wrote no results ({raw}); see the log above")
    data = json.loads(raw.read_text())
    rows = data["rows"]
    lines = [f"VPU throughput, {cfg.name} ({cfg.vpu_lanes} lanes), rows of {width} elements "
             f"(cycles from the busy counter)",
             f"{'op':<18}{'rows':>5}{'cycles':>9}{'elem/cycle':>12}{'of lanes':>10}"]
    for r in rows:
        lines.append(f"{r['op']:<18}{r['rows']:>5}{r['busy']:>9}{r['elements_per_cycle']:>12.2f}"
                     f"{100 * r['elements_per_cycle'] / cfg.vpu_lanes:>9.1f}%")
    sim_cycles = sum(r["sim_cycles"] for r in rows)
    sim_wall = sum(r["wall_s"] for r in rows)
    speed = sim_cycles / sim_wall if sim_wall else 0.0
    lines.append(f"simulation speed: {speed:,.0f} cycles/s")
    print("\n".join(lines))
    summary = {"preset": cfg.name, "lanes": cfg.vpu_lanes, "width": width, "rows": rows,
               "sim_cycles_per_s": speed, "wall_s": time.monotonic() - t0}
    out.write_text(json.dumps(summary, indent=1))
    print(f"written {out.relative_to(ROOT)}")
    return summary


def bench_chip(cfg):
    out = BUILD / "bench" / "chip.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = BUILD / "bench" / f"chip-{cfg.name}.raw.json"
    t0 = time.monotonic()
    stripe = cfg.hbm_channels * cfg.hbm_bytes_per_cycle
    print(f"Chip benchmark on {cfg.name} (HBM {cfg.hbm_channels} × {cfg.hbm_bytes_per_cycle} "
          f"B/cycle = {stripe} B/cycle peak): building and running the Verilated chip ...",
          flush=True)
    run_stream_harness("chip", cfg, test_module="verif.chip.cocotb_bench",
                       name=f"bench-chip-{cfg.name}", watchdog=20_000_000,
                       extra_env={"BENCH_OUT": str(raw), "COCOTB_LOG_LEVEL": "WARNING"})
    if not raw.exists():
        raise SystemExit(f"the chip benchmark wrote no results ({raw}); see the log above")
    data = json.loads(raw.read_text())
    lines = [f"DMA streaming, {cfg.name} (bytes per DMA-busy cycle ÷ {stripe} B/cycle peak)",
             f"{'case':<46}{'bytes':>9}{'cycles':>9}{'B/cycle':>9}{'of peak':>9}"]
    for r in data["dma"]:
        lines.append(f"{r['case']:<46}{r['bytes']:>9}{r['busy']:>9}"
                     f"{r['bytes_per_cycle']:>9.1f}{100 * r['efficiency']:>8.1f}%")
    by_class = {}
    for r in data["dma"]:
        by_class.setdefault(r["class"], []).append(r["efficiency"])
    worst = min(min(v) for k, v in by_class.items() if k != "short rows")
    aligned = min(by_class["aligned"])
    lines.append(f"large aligned: {100 * aligned:.1f}% of peak (target ≥ 85%); worst "
                 f"misaligned/strided (rows ≥ 508 B): {100 * worst:.1f}% (target ≥ 50%)")
    for o in data["overlap"]:
        lines += [
            f"GEMM {o['m']}×{o['n']}×{o['k']} {o['format']}: operands {o['operand_bytes']:,} B "
            f"= {o['operand_bytes'] / o['spad_bytes']:.1f}× the scratchpad, {o['tiles']} K tiles "
            f"of {o['k_tile']} double-buffered by a DMA queue",
            f"  {o['cycles']:,} cycles (ideal {o['ideal_cycles']:,.0f}); DMA busy "
            f"{o['dma_busy']:,}, MXU busy {o['mxu_busy']:,}; MXU utilization "
            f"{100 * o['utilization']:.1f}% (target ≥ 70%)"]
    print("\n".join(lines))
    summary = dict(data, wall_s=time.monotonic() - t0)
    out.write_text(json.dumps(summary, indent=1))
    print(f"written {out.relative_to(ROOT)}")
    return summary


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="M890", help="chip preset (default M890)")
    ap.add_argument("--mults", default="2,8", help="GEMM sizes as multiples of the array side")
    ap.add_argument("--width", type=int, default=256, help="VPU row width (elements)")
    ap.add_argument("--only", choices=("mxu", "vpu", "chip", "decode", "link"),
                    help="run one benchmark only")
    ap.add_argument("--decode-presets", default="M890,ZW810E",
                    help="presets of the decode benchmark (default M890,ZW810E)")
    args = ap.parse_args(argv)
    cfg = preset(args.preset)
    if args.only in (None, "mxu"):
        bench_mxu(cfg, [int(x) for x in args.mults.split(",")])
    if args.only in (None, "vpu"):
        bench_vpu(cfg, args.width)
    if args.only in (None, "chip"):
        bench_chip(cfg)
    if args.only in (None, "decode"):
        from scripts.bench_decode import main as bench_decode
        bench_decode(tuple(args.decode_presets.split(",")))
    if args.only in (None, "link"):
        from scripts.bench_link import main as bench_link
        bench_link([])


if __name__ == "__main__":
    main()
