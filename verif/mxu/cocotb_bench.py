"""Matrix-engine benchmark on Verilator: utilization from the hardware counters, sim speed.

For each format pair and each size (2× and 8× the array, M = N = K), one GEMM runs on the
production ``mxu`` top (no stall injection). The counters read just before and after the
command give its busy cycles, MACs and stalls by cause. Results are checked bit for bit against
the golden model as well, so a fast wrong engine cannot post a good number. The figures go to
``$BENCH_OUT`` (JSON); ``scripts/bench.py`` prints them.
"""

import json
import os

import cocotb

from rtl.layouts import Format
from verif.mxu.cocotb_mxu import Program, _setup, gemm, run

BENCH_PAIRS = [(f, f) for f in Format] + [(Format.BF16, Format.FP8_E4M3),
                                          (Format.BF16, Format.MXFP4)]


@cocotb.test()
async def utilization(dut):
    tb, harness, model = await _setup(dut)
    cfg, rng = tb.cfg, tb.rng
    side = max(cfg.mxu_rows, cfg.mxu_cols)
    mults = [int(x) for x in os.environ.get("BENCH_MULTS", "2,8").split(",")]
    rows = []
    for mult in mults:
        size = mult * side
        for fa, fb in BENCH_PAIRS:
            if fa not in cfg.formats or fb not in cfg.formats:
                continue
            prog = Program(cfg, model)
            gemm(prog, rng, fa, fb, size, size, size, specials=False, c_row=0, counters=True)
            cycles0, sim0 = harness.cycles, harness.wall
            before, after = await run(tb, harness, prog, f"bench {fa.name}x{fb.name} {size}")
            wall = harness.wall - sim0
            d = {key: after[key] - before[key] for key in after}
            util = d["macs"] / (cfg.mxu_rows * cfg.mxu_cols * d["busy"])
            rows.append({"fmt_a": fa.name, "fmt_b": fb.name, "size": size, "mult": mult,
                         "utilization": util, "counters": d,
                         "sim_cycles": harness.cycles - cycles0, "wall_s": wall})
            tb.log.info("%s x %s %d^3: utilization %.1f %% (%s)", fa.name, fb.name, size,
                        100 * util, d)
    out = os.environ.get("BENCH_OUT")
    if out:
        with open(out, "w") as f:
            json.dump({"preset": cfg.name, "array": [cfg.mxu_rows, cfg.mxu_cols],
                       "clock_mhz": cfg.clock_mhz, "rows": rows}, f, indent=1)
