"""``m890 run``: generate text with a Qwen checkpoint on the simulated chip.

    m890 run --model models/tiny-qwen3-bytes --prompt "The " --tokens 16 --fmt fp8 --sim rtl

Prints a progress bar while the chip works (stderr), then the text and the figures read from
the chip's counters: tokens/s (simulator wall clock, and modelled at the preset's clock),
cycles per token, MXU utilization and HBM bandwidth utilization. ``--json`` prints one JSON
object instead (prompt ids, generated ids, text, figures). A checkpoint with a
``tokenizer.json`` uses it (the ``tokenizers`` library); one without is byte-level (token id =
byte value).
"""

import argparse
import json
import sys
import time
from pathlib import Path

from rtl.config import PRESETS, preset

from ..errors import M890Error


__all__ = ["main", "Tokenizer", "open_device"]


class Tokenizer:
    """The checkpoint's ``tokenizer.json`` if it has one, else bytes."""

    def __init__(self, model_dir, vocab_size):
        path = Path(model_dir) / "tokenizer.json"
        self.vocab_size = vocab_size
        self.tok = None
        if path.exists():
            from tokenizers import Tokenizer as HfTokenizer
            self.tok = HfTokenizer.from_file(str(path))
        elif vocab_size < 256:
            raise M890Error(f"{model_dir} has no tokenizer.json and a vocabulary of "
                            f"{vocab_size} < 256, so it is not byte-level")

    @property
    def kind(self):
        return "tokenizer.json" if self.tok else "bytes"

    def encode(self, text):
        if self.tok:
            return self.tok.encode(text).ids
        return list(text.encode("utf-8"))

    def decode(self, ids):
        if self.tok:
            return self.tok.decode(list(ids))
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def open_device(sim, cfg, *, log=None):
    """A :class:`~firmware.driver.Device` on transport ``sim`` for chip ``cfg``."""
    from ..driver import Device
    from ..transports import open_transport
    kwargs = {} if sim == "functional" or log is None else {"log": log}
    return Device(open_transport(sim, cfg, **kwargs))


class _Progress:
    def __init__(self, total, enabled):
        self.total, self.enabled, self.t0, self.n = total, enabled, time.perf_counter(), 0
        self.tty = sys.stderr.isatty()

    def update(self, n, extra=""):
        self.n = n
        if not self.enabled:
            return
        width = 30
        done = int(width * n / max(self.total, 1))
        el = time.perf_counter() - self.t0
        rate = f"{el / n:.2f} s/token" if n else ""
        lead = "\r" if self.tty else ""
        sys.stderr.write(f"{lead}  [{'#' * done}{'.' * (width - done)}] {n}/{self.total} tokens "
                         f"{el:6.1f} s {rate} {extra}" + ("" if self.tty else "\n"))
        sys.stderr.flush()

    def close(self):
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def _fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def run(args):
    from . import Runtime, load_checkpoint
    log = None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    cfg = preset(args.preset)
    if args.hbm_mib:
        cfg = cfg.replace(hbm_bytes=args.hbm_mib << 20)
    model = load_checkpoint(args.model)
    tok = Tokenizer(args.model, model.cfg.vocab_size)
    if args.prompt_ids is not None:
        try:
            prompt = [int(x) for x in args.prompt_ids.split(",") if x.strip()]
        except ValueError:
            raise M890Error(f"--prompt-ids must be comma-separated integers, not "
                            f"{args.prompt_ids!r}") from None
    else:
        prompt = tok.encode(args.prompt)
    if not prompt:
        raise M890Error("the prompt is empty")
    if log:
        log(f"model {args.model}: {model.cfg.model_type}, {model.cfg.num_hidden_layers} "
            f"layers, hidden {model.cfg.hidden_size}, vocab {model.cfg.vocab_size} "
            f"({tok.kind}); weights {args.fmt}; chip {cfg.name} on the {args.sim} transport")
    t0 = time.perf_counter()
    dev = open_device(args.sim, cfg, log=log)
    max_context = args.max_context or min(model.cfg.max_position_embeddings,
                                          len(prompt) + args.tokens + 64)
    rt = Runtime(model, dev, fmt=args.fmt, max_context=max_context)
    setup = time.perf_counter() - t0
    if log:
        log(f"chip ready and {rt.image.weight_bytes:,} bytes of weights loaded in {setup:.1f} s; "
            f"prompt of {len(prompt)} tokens, generating {args.tokens}")
    bar = _Progress(args.tokens, enabled=log is not None and not args.no_progress)
    out = []
    for i, t in enumerate(rt.generate(prompt, args.tokens)):
        out.append(int(t))
        bar.update(i + 1)
    bar.close()
    pre, dec = rt.figures("prefill"), rt.figures("decode")
    result = {
        "model": str(args.model), "preset": cfg.name, "transport": args.sim,
        "format": args.fmt, "prompt_ids": prompt, "generated_ids": out,
        "text": tok.decode(out), "prompt_text": tok.decode(prompt),
        "prefill": pre, "decode": dec, "setup_s": setup,
        "weight_bytes": rt.image.weight_bytes,
    }
    if args.json:
        print(json.dumps(result, default=float))
        return 0
    print(f"{result['prompt_text']}\033[1m{result['text']}\033[0m" if sys.stdout.isatty()
          else result["prompt_text"] + result["text"])
    print()
    rows = [("phase", "tokens", "wall s/token", "cycles/token", "tokens/s @clock",
             "MXU util", "HBM BW util")]
    for name, f in (("prefill", pre), ("decode", dec)):
        if not f["tokens"]:
            continue
        rows.append((name, str(f["tokens"]), _fmt(f["wall_s"] / f["tokens"], ".3f"),
                     _fmt(f.get("cycles_per_token"), ",.0f"),
                     _fmt(f.get("tokens_per_s_modelled"), ",.0f"),
                     _fmt(f.get("mxu_utilization") and 100 * f["mxu_utilization"], ".1f") +
                     ("%" if "mxu_utilization" in f else ""),
                     _fmt(f.get("hbm_utilization") and 100 * f["hbm_utilization"], ".1f") +
                     ("%" if "hbm_utilization" in f else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    if not dev.transport.cycle_accurate:
        print("(the functional transport has no clock: cycle figures need --sim rtl)")
    else:
        print(f"(clock {cfg.clock_mhz} MHz modelled; HBM peak {cfg.hbm_peak_bytes_per_cycle} "
              f"B/cycle; MXU {cfg.mxu_rows}x{cfg.mxu_cols})")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="m890 run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="HF-format Qwen2/Qwen3 checkpoint directory")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--prompt", help="prompt text")
    g.add_argument("--prompt-ids", help="prompt as comma-separated token ids")
    ap.add_argument("--tokens", type=int, default=16, help="new tokens to generate")
    ap.add_argument("--fmt", default="fp8", choices=["fp32", "bf16", "fp8", "mxfp4"],
                    help="weight format")
    ap.add_argument("--sim", default="rtl", choices=["rtl", "functional", "pysim"],
                    help="transport: the Verilated RTL, the functional chip, or Amaranth pysim")
    ap.add_argument("--preset", default="M890", choices=list(PRESETS), help="chip preset")
    ap.add_argument("--hbm-mib", type=int, default=0,
                    help="override the preset's HBM capacity (MiB), e.g. for large models "
                         "on the functional chip")
    ap.add_argument("--max-context", type=int, default=0,
                    help="positions to size the KV cache for (default: prompt + tokens + 64)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.tokens < 1:
        ap.error("--tokens must be at least 1")
    try:
        return run(args)
    except (M890Error, ValueError, OSError) as e:
        print(f"m890 run: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nm890 run: interrupted", file=sys.stderr)
        return 130
