"""Decode benchmark: the demo model on the Verilated chip, per preset, from the chip's counters.

For each preset (default ``M890`` and ``ZW810E``): load the shipped model (FP8 weights), prefill
a fixed prompt, decode a few tokens, and report

- decode cycles per token and model-bandwidth utilization, MBU = (weight bytes + KV-cache
  bytes the step needs) ÷ (cycles × the modelled peak HBM bytes per cycle);
- the measured HBM traffic of a decode step (all channels' read + write counters) ÷ peak;
- prefill MXU utilization = MACs ÷ (R·C·cycles);
- simulator wall seconds per decoded token;
- the ratio of tokens per cycle between the presets;
- and the floor of a decode step's GEMMs at M = 1 (:func:`gemm_floor`): each K tile's sums
  must come back through the array before the next K tile adds to them, so the step's MXU
  time has a lower bound whatever the weight bandwidth, and MBU a ceiling.

Every token is also produced by the functional chip and compared (the RTL must agree).
Results go to ``build/bench/decode.json``.
"""

import json
import time
from pathlib import Path

from firmware import isa
from firmware.driver import Device
from firmware.runtime import Runtime, load_checkpoint
from firmware.transports import FunctionalTransport
from rtl.config import preset


ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "tiny-qwen3-bytes"
PROMPT = b"Return the number of bytes in the buffer. If the buffer is empty, "


def kv_bytes(qcfg, positions):
    """Bytes of K and V a decode step at ``positions`` of context reads (FP32 cache)."""
    return (2 * qcfg.num_hidden_layers * qcfg.num_key_value_heads * qcfg.head_dim * 4
            * positions)


def gemm_floor(rt, positions):
    """Cycles a decode step's GEMMs need at least, at ``positions`` of context, on any
    weight path: each K tile's sums go through the array (its latency) and back into the
    accumulator before the next K tile may add to them (accumulation in order of k), and
    every row of every tile is issued once. Weight loading is not counted."""
    from rtl.layouts import Opcode
    from rtl.mxu import ProcessingElement
    cfg = rt.dev.cfg
    lat = ProcessingElement.latencies(cfg.fp_pipeline)
    latency = cfg.mxu_rows * lat["add"] + lat["product"] + cfg.mxu_cols - 1
    low = rt.low
    counts = (low.seq, low.stored, low.gathered)
    try:
        segments = low.step(1, positions - 1, 0, rt.kv.table(), 0, None)
    finally:                                 # the semaphores count what actually ran
        low.seq, low.stored, low.gathered = counts
    floor = 0
    for _, prog in segments:
        for descs in prog.queues.values():
            for d in descs:
                desc = isa.decode_descriptor(d)
                if desc["opcode"] is not Opcode.GEMM:
                    continue
                c = desc["cmd"]
                kt = -(-c["k"] // cfg.mxu_rows)
                nt = -(-c["n"] // cfg.mxu_cols)
                floor += kt * max(nt * c["m"], latency)
    return floor


def bench_preset(name, model, fmt, prompt, tokens, log):
    from firmware.transports.verilator import VerilatorTransport
    cfg = preset(name)
    t0 = time.perf_counter()
    transport = VerilatorTransport(cfg, log=log)
    build_s = time.perf_counter() - t0
    rt = Runtime(model, Device(transport), fmt=fmt, max_context=len(prompt) + tokens + 16)
    ref = Runtime(model, Device(FunctionalTransport(cfg)), fmt=fmt,
                  max_context=len(prompt) + tokens + 16)
    got = list(rt.generate(prompt, tokens))
    want = list(ref.generate(prompt, tokens))
    if got != want:
        raise SystemExit(f"{name}: RTL tokens {got} differ from the functional chip's {want}")
    pre, dec = rt.figures("prefill"), rt.figures("decode")
    q = model.cfg
    steps = dec["steps"]
    first = len(prompt) + 1                        # context of the first decode step
    kv = sum(kv_bytes(q, first + i) for i in range(steps))
    need = steps * rt.image.weight_bytes + kv
    peak = cfg.hbm_peak_bytes_per_cycle
    floor = gemm_floor(rt, first + steps - 1)
    need_last = rt.image.weight_bytes + kv_bytes(q, first + steps - 1)
    transport.close()
    return {
        "preset": name, "format": fmt, "prompt_tokens": len(prompt), "decoded": steps,
        "tokens": got, "text": bytes(t for t in got if t < 256).decode("utf-8", "replace"),
        "weight_bytes": rt.image.weight_bytes, "kv_bytes": kv,
        "decode_cycles_per_token": dec["cycles"] / steps,
        "decode_mbu": need / (dec["cycles"] * peak),
        "decode_hbm_utilization": dec["hbm_utilization"],
        "decode_mxu_utilization": dec["mxu_utilization"],
        "prefill_cycles": pre["cycles"], "prefill_mxu_utilization": pre["mxu_utilization"],
        "sim_s_per_decoded_token": dec["wall_s"] / steps,
        "tokens_per_cycle": 1.0 / (dec["cycles"] / steps),
        "gemm_floor_cycles": floor, "mbu_ceiling": need_last / (floor * peak),
        "peak_bytes_per_cycle": peak, "build_or_load_s": build_s,
    }


def main(presets=("M890", "ZW810E"), fmt="fp8", tokens=8, out=None, log=print):
    model = load_checkpoint(DEMO)
    prompt = list(PROMPT)
    rows = []
    for name in presets:
        print(f"Decode benchmark on {name}: the demo model ({fmt}), prompt of {len(prompt)} "
              f"tokens, {tokens} new tokens, on the Verilated chip ...", flush=True)
        rows.append(bench_preset(name, model, fmt, prompt, tokens, log))
    print(f"{'preset':<8}{'cyc/token':>11}{'MBU':>8}{'HBM util':>10}{'MXU util':>10}"
          f"{'prefill MXU':>13}{'wall s/token':>14}")
    for r in rows:
        print(f"{r['preset']:<8}{r['decode_cycles_per_token']:>11,.0f}"
              f"{100 * r['decode_mbu']:>7.1f}%{100 * r['decode_hbm_utilization']:>9.1f}%"
              f"{100 * r['decode_mxu_utilization']:>9.1f}%"
              f"{100 * r['prefill_mxu_utilization']:>12.1f}%"
              f"{r['sim_s_per_decoded_token']:>14.2f}")
    for r in rows:
        print(f"{r['preset']}: the step's GEMMs need at least {r['gemm_floor_cycles']:,} cycles "
              f"(K tiles in order through the array), so MBU ≤ "
              f"{100 * r['mbu_ceiling']:.1f} % on this model however fast the weights arrive")
    by = {r["preset"]: r for r in rows}
    summary = {"runs": rows}
    if "M890" in by and "ZW810E" in by:
        ratio = by["M890"]["tokens_per_cycle"] / by["ZW810E"]["tokens_per_cycle"]
        summary["m890_over_zw810e_tokens_per_cycle"] = ratio
        print(f"M890 ÷ ZW810E decode tokens per cycle: {ratio:.2f}× (the claim is 3×)")
    print("decoded text:", repr(rows[0]["text"]))
    out = Path(out or ROOT / "build" / "bench" / "decode.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1, default=float))
    print(f"written {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return summary


if __name__ == "__main__":
    import sys
    main(tuple(sys.argv[1:]) or ("M890", "ZW810E"))
