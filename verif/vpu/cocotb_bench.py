"""Vector-engine benchmark on Verilator: cycles per command from the hardware counters.

For each op class, one command of ``BENCH_ROWS`` rows × ``BENCH_WIDTH`` elements runs on the
production ``vpu`` top; the ``busy`` counter read just before and after it gives its cycles,
hence elements per cycle. SOFTMAX and RMSNORM are also run on a single row of the width, the
per-row latency a decode step sees. Results are checked bit for bit against the golden model
too. The figures go to ``$BENCH_OUT`` (JSON); ``scripts/bench.py`` prints them.
"""

import json
import os

import cocotb

from golden_model.vpu import make_vpu_command
from rtl.layouts import Format, VpuCmd, code_width, is_mx
from verif.vpu.cocotb_vpu import Program, _setup, operand, run, values

#: (label, op, sources, extra fields)
CASES = [
    ("add (residual)", VpuCmd.ADD, "ab", {}),
    ("mul", VpuCmd.MUL, "ab", {}),
    ("exp", VpuCmd.EXP, "a", {}),
    ("silu", VpuCmd.SILU, "a", {}),
    ("swiglu", VpuCmd.SWIGLU, "ab", {}),
    ("rope (one half)", VpuCmd.ROPE_LO, "abcd", {}),
    ("sum", VpuCmd.SUM, "a", {}),
    ("argmax", VpuCmd.ARGMAX, "a", {}),
    ("rmsnorm", VpuCmd.RMSNORM, "ab", {"scalar": 1.0 / 256, "scalar2": 1e-6}),
    ("softmax", VpuCmd.SOFTMAX, "a", {}),
    ("fp32 -> bf16", VpuCmd.CVT_TO, "a", {"fmt": Format.BF16}),
    ("fp32 -> mxfp4", VpuCmd.CVT_TO, "a", {"fmt": Format.MXFP4}),
]

_ONE_RESULT = (VpuCmd.SUM, VpuCmd.ARGMAX)


def _place(prog, rng, fields, op, srcs, width, rows, extra):
    """Operands in the scratchpad (ValueError if they do not fit, before anything is written
    into the model)."""
    for name in srcs:
        fields[name] = operand(prog, rng, width, rows, space=0)
    if op is VpuCmd.RMSNORM:
        fields["b"]["row"] = 0
    if op is VpuCmd.CVT_TO:
        fmt = extra["fmt"]
        fields["dst"] = operand(prog, rng, width, rows, width=code_width(fmt))
        if is_mx(fmt):
            fields["b"] = operand(prog, rng, width // 32, rows, width=8, per_chunk=1)
    else:
        fields["dst"] = operand(prog, rng, 1 if op in _ONE_RESULT else width, rows, space=0)
    for name in srcs:
        for r in range(rows):
            prog.put(fields[name], r, values(rng, width, specials=False))


@cocotb.test()
async def throughput(dut):
    tb, harness, model = await _setup(dut)
    cfg, rng = tb.cfg, tb.rng
    width = int(os.environ.get("BENCH_WIDTH", "256"))
    batch = int(os.environ.get("BENCH_ROWS", "4"))
    results = []
    for label, op, srcs, extra in CASES:
        if "fmt" in extra and extra["fmt"] not in cfg.formats:
            continue
        for rows in sorted({batch, 1}):
            prog = Program(cfg, model)
            prog.new_command()
            fields = dict(extra, length=width, rows=rows)
            try:
                _place(prog, rng, fields, op, srcs, width, rows, extra)
            except ValueError as e:
                tb.log.warning("%s, %d x %d skipped: %s", label, rows, width, e)
                continue
            prog.counters()
            prog.command(make_vpu_command(op, **fields))
            prog.counters()
            cycles0, wall0 = harness.cycles, harness.wall
            before, after = await run(tb, harness, prog, f"bench {label}")
            busy = after["busy"] - before["busy"]
            results.append({"op": label, "rows": rows, "width": width, "busy": busy,
                            "elements_per_cycle": rows * width / busy,
                            "sim_cycles": harness.cycles - cycles0,
                            "wall_s": harness.wall - wall0})
            tb.log.info("%s, %d x %d: %d cycles, %.2f elements/cycle", label, rows, width,
                        busy, rows * width / busy)
    out = os.environ.get("BENCH_OUT")
    if out:
        with open(out, "w") as f:
            json.dump({"preset": cfg.name, "lanes": cfg.vpu_lanes, "width": width,
                       "rows": results, "seed": str(tb.seed)}, f, indent=1)
