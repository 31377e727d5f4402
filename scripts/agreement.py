"""Chip mode against the float64 reference, per weight format, on the shipped model.

The functional chip runs the compiled programs (bit-identical to the RTL, which
``verif/firmware`` checks); the reference is ``golden_model.qwen`` in float64 with the
checkpoint's float32 weights. For each format the script reports, over a text the model was
not trained on:

- max |Δlogit| against the reference (and the largest |logit|, for scale);
- top-1 agreement: the fraction of positions whose argmax equals the reference's;
- the next-byte NLL (nats/byte) and its increase over the reference's;
- greedy agreement: how many of ``--tokens`` greedily decoded tokens equal the reference's
  before the first difference.

Quantized formats are not expected to be token-exact; the figures say how far they are.

Usage: ``python -m scripts.agreement [--model models/tiny-qwen3-bytes] [--tokens 32]``.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from firmware.driver import Device
from firmware.runtime import Runtime, load_checkpoint
from firmware.transports import FunctionalTransport
from golden_model.qwen import QwenModel
from rtl.config import preset


ROOT = Path(__file__).resolve().parents[1]
#: Not in the training corpus (which is the standard library's docstrings).
TEXT = (b"The matrix engine reads its operands from the scratchpad and writes the "
        b"accumulator. Each command names the format of both operands and returns a "
        b"status for the host to check before it reads the result.")
PROMPT = b"Return the "


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def measure(model_dir, chip="M890", tokens=32, formats=("fp32", "bf16", "fp8", "mxfp4")):
    m32 = load_checkpoint(model_dir)
    ref = QwenModel.from_pretrained(model_dir, dtype=np.float64)
    ids = list(TEXT)
    rl, _ = ref.forward(ids)
    tgt = np.array(ids[1:])
    lsm = _log_softmax(rl[:-1])
    nll_ref = float(-lsm[np.arange(len(tgt)), tgt].mean())
    greedy_ref = [int(t) for t in ref.greedy(list(PROMPT), tokens)]
    cfg = preset(chip)
    rows = []
    for fmt in formats:
        rt = Runtime(m32, Device(FunctionalTransport(cfg)), fmt=fmt,
                     max_context=len(ids) + tokens + 16)
        _, lg = rt.forward(ids, logits="all")
        lg = lg.astype(np.float64)
        nll = float(-_log_softmax(lg[:-1])[np.arange(len(tgt)), tgt].mean())
        rt.reset()
        greedy = [int(t) for t in rt.generate(list(PROMPT), tokens)]
        same = next((i for i, (a, b) in enumerate(zip(greedy, greedy_ref)) if a != b), tokens)
        rows.append({
            "format": fmt, "max_abs_dlogit": float(np.abs(lg - rl).max()),
            "max_abs_logit": float(np.abs(rl).max()),
            "top1_agreement": float(np.mean(lg.argmax(-1) == rl.argmax(-1))),
            "nll": nll, "nll_increase": nll - nll_ref, "greedy_same_prefix": same,
            "greedy_text": bytes(t for t in greedy if t < 256).decode("utf-8", "replace"),
        })
    return {"model": str(model_dir), "chip": chip, "positions": len(ids), "nll_ref": nll_ref,
            "greedy_tokens": tokens,
            "greedy_ref": bytes(greedy_ref).decode("utf-8", "replace"), "rows": rows}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "tiny-qwen3-bytes"))
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    r = measure(args.model, tokens=args.tokens)
    print(f"{r['model']} on the functional {r['chip']}, {r['positions']} positions; "
          f"reference NLL {r['nll_ref']:.4f} nats/byte")
    print(f"{'format':<7}{'max|Δlogit|':>13}{'top-1':>8}{'NLL':>8}{'ΔNLL':>9}"
          f"{'greedy':>8}")
    for x in r["rows"]:
        print(f"{x['format']:<7}{x['max_abs_dlogit']:>13.3g}{100 * x['top1_agreement']:>7.1f}%"
              f"{x['nll']:>8.4f}{x['nll_increase']:>+9.4f}"
              f"{x['greedy_same_prefix']:>5}/{r['greedy_tokens']}")
    print(f"(largest |logit| {r['rows'][0]['max_abs_logit']:.1f}; greedy = tokens equal to the "
          f"reference's before the first difference)")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
