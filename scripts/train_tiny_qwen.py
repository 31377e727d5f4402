"""Train the shipped demo model: a byte-level Qwen3 decoder of about 0.82 M parameters.

The model is a transformers ``Qwen3ForCausalLM`` with a 256-entry vocabulary (token id = byte
value, no tokenizer files, no BOS/EOS), trained on CPU in a fixed wall-time budget on text that
ships with Python itself: the docstrings of the standard library's pure-Python modules, read
from the installed ``Lib/`` sources with :mod:`ast` (nothing is imported or executed).

Corpus (deterministic for a given Python version):

- every ``*.py`` file under ``sysconfig.get_paths()["stdlib"]``, in sorted path order, except
  those under a directory named in :data:`EXCLUDED_DIRS` (tests, IDLE, demos, the bundled
  encodings tables, the pydoc topic dump, vendored or deprecated packages) or ``config-*``;
- of each file, the module, class and function docstrings in source order
  (``ast.get_docstring(node, clean=True)``), joined with a blank line; the files' texts are
  joined the same way and encoded as UTF-8;
- the last :data:`HELD_OUT_FRACTION` of the bytes is held out for evaluation, the rest is
  trained on.

The shape is fixed by the accelerator compiler (see :data:`ARCH`). Training: random
``seq_len``-byte windows of the training bytes, AdamW with linear warmup and cosine decay,
gradient clipping. Without ``--steps`` the number of steps is set from the measured step time
so that the whole run ends within ``--minutes``, and re-estimated as training goes (the CPU may
be shared; the learning rate follows a revised count without a jump); with ``--steps`` it is
fixed and the run is reproducible. Either way a time check stops training early rather than
overrun the budget. At the end the held-out loss is measured (windows of ``seq_len`` with a
stride of half of it, so every scored byte has at least ``seq_len / 2`` bytes of context
except at the very start), greedy samples are drawn, and ``config.json``,
``model.safetensors`` (float32), ``generation_config.json``, ``eval.json`` and a model card
``README.md`` are written to ``--out``.

Usage::

    python -m scripts.train_tiny_qwen --out models/tiny-qwen3-bytes [--minutes 9] [--seed 0]
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: with other jobs on the CPU, spinning threads
# make every parallel region wait for a descheduled thread (several times slower). It only
# affects waiting, not results, and must be set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import ast  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import sysconfig  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

# The accelerator compiler needs these divisibilities; do not change them.
ARCH = dict(
    vocab_size=256,
    hidden_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    intermediate_size=384,
    max_position_embeddings=4096,
    rope_theta=10000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    attention_bias=False,
    use_sliding_window=False,
    sliding_window=None,
    hidden_act="silu",
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
)

EXCLUDED_DIRS = frozenset({
    "__pycache__", "site-packages", "test", "tests", "idle_test", "idlelib", "turtledemo",
    "ensurepip", "encodings", "pydoc_data", "lib2to3", "distutils", "tkinter",
})
HELD_OUT_FRACTION = 0.05
SEPARATOR = "\n\n"
SAMPLE_PROMPTS = ("Return the ", "Read ", "The ")
SAMPLE_BYTES = 200
# Time kept free for the final evaluation, samples and saving: at least RESERVE_SECONDS, and
# RESERVE_STEPS times the current step time (the evaluation costs about that many steps).
RESERVE_SECONDS = 20.0
RESERVE_STEPS = 40
CALIBRATION = (5, 25)           # the step times of steps 5..24 set the first step count


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------

def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def corpus_files(lib: Path) -> list[Path]:
    """The selected ``*.py`` files of the standard library, sorted by relative path."""
    out = []
    for p in lib.rglob("*.py"):
        rel = p.relative_to(lib)
        if set(rel.parts[:-1]) & EXCLUDED_DIRS or rel.parts[0].startswith("config-"):
            continue
        out.append(p)
    return sorted(out, key=lambda p: p.relative_to(lib).as_posix())


def docstrings(source: str, filename: str) -> list[str]:
    """Module, class and function docstrings of one source file, in source order."""
    tree = ast.parse(source, filename)
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                found.append(doc)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def build_corpus() -> tuple[bytes, dict]:
    """The training text as bytes, and a description of how it was made."""
    lib = stdlib_dir()
    files = corpus_files(lib)
    texts, used = [], []
    for p in files:
        docs = docstrings(p.read_text(encoding="utf-8"), str(p))
        if docs:
            texts.append(SEPARATOR.join(docs))
            used.append(p.relative_to(lib).as_posix())
    data = SEPARATOR.join(texts).encode("utf-8")
    # the file whose text holds the first held-out byte
    cut, offset, held_out_from = held_out_start(len(data)), 0, None
    for name, text in zip(used, texts, strict=True):
        offset += len(text.encode("utf-8")) + len(SEPARATOR)
        if offset > cut:
            held_out_from = name
            break
    info = {
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "stdlib_dir": str(lib),
        "files_scanned": len(files),
        "files_with_docstrings": len(used),
        "excluded_dirs": sorted(EXCLUDED_DIRS) + ["config-*"],
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "first_file": used[0] if used else None,
        "last_file": used[-1] if used else None,
        "held_out_starts_in": held_out_from,
    }
    return data, info


def held_out_start(n: int) -> int:
    """Offset of the first held-out byte of an ``n``-byte corpus."""
    return int(n * (1.0 - HELD_OUT_FRACTION))


def split(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Training bytes and held-out bytes (the last :data:`HELD_OUT_FRACTION`), as int64."""
    arr = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    cut = held_out_start(len(arr))
    return arr[:cut], arr[cut:]


# --------------------------------------------------------------------------------------------
# Model, schedule, evaluation
# --------------------------------------------------------------------------------------------

def build_model(seed: int):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(**ARCH, attn_implementation="sdpa")
    return Qwen3ForCausalLM(cfg).float()


def n_params(model) -> int:
    """Distinct parameters (the tied embedding / LM head is counted once)."""
    return sum(p.numel() for p in model.parameters())


class Schedule:
    """Linear warmup to ``peak`` over ``warmup`` steps, then cosine decay to ``floor·peak`` at
    step ``total``.

    The cosine runs over a progress ``q`` from 0 to 1 that advances linearly with the steps.
    :meth:`retarget` changes ``total`` mid-run (when the step count is re-estimated) without a
    jump: ``q`` keeps its value and from then on advances at the rate that reaches 1 at the
    new total, so the learning rate stays continuous and never rises after the warmup. Never
    retargeted, this is the plain warmup + cosine schedule over ``total`` steps.
    """

    def __init__(self, peak: float, warmup: int, floor: float, total: int):
        self.peak, self.warmup, self.floor, self.total = peak, warmup, floor, total
        self.anchor_step, self.anchor_q = warmup, 0.0

    def progress(self, step: int) -> float:
        if step <= self.anchor_step:
            return self.anchor_q
        span = max(1, self.total - self.anchor_step)
        return min(1.0, self.anchor_q + (step - self.anchor_step) / span * (1.0 - self.anchor_q))

    def retarget(self, step: int, total: int) -> None:
        if step > self.warmup:
            self.anchor_q, self.anchor_step = self.progress(step), step
        self.total = total

    def lr(self, step: int) -> float:
        if step < self.warmup:
            return self.peak * (step + 1) / self.warmup
        q = self.progress(step)
        return self.peak * (self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * q)))


def batch(train: torch.Tensor, n: int, seq_len: int, gen: torch.Generator) -> torch.Tensor:
    starts = torch.randint(0, len(train) - seq_len - 1, (n,), generator=gen)
    return torch.stack([train[s:s + seq_len + 1] for s in starts.tolist()])


@torch.no_grad()
def evaluate(model, data: np.ndarray, seq_len: int, batch_size: int = 32) -> float:
    """Mean next-byte cross-entropy (nats) over every byte of ``data`` but the first:
    windows of ``seq_len`` bytes at a stride of ``seq_len // 2``; the first window scores all
    its positions, the others only their second half."""
    model.eval()
    stride = seq_len // 2
    x = torch.from_numpy(data)
    n = len(x)
    windows = []                                   # (start, first scored position in window)
    start = 0
    while True:
        end = min(start + seq_len, n - 1)
        windows.append((start, 0 if start == 0 else seq_len - stride, end - start))
        if end >= n - 1:
            break
        start += stride
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        group = windows[i:i + batch_size]
        width = max(w for _, _, w in group)
        inp = torch.zeros(len(group), width, dtype=torch.long)
        tgt = torch.full((len(group), width), -100, dtype=torch.long)
        for r, (s, first, w) in enumerate(group):
            inp[r, :w] = x[s:s + w]
            tgt[r, first:w] = x[s + 1 + first:s + 1 + w]
        logits = model(input_ids=inp).logits.float()
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100,
            reduction="sum")
        total += float(loss)
        count += int((tgt != -100).sum())
    model.train()
    assert count == n - 1, (count, n)
    return total / count


@torch.no_grad()
def greedy_sample(model, prompt: str, n: int) -> str:
    """``n`` greedily generated bytes after ``prompt`` (KV-cached), decoded as UTF-8."""
    model.eval()
    ids = torch.tensor([list(prompt.encode("utf-8"))], dtype=torch.long)
    out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                         eos_token_id=None, pad_token_id=0)
    model.train()
    return bytes(out[0, ids.shape[1]:].tolist()).decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------------
# Model card
# --------------------------------------------------------------------------------------------

def _fence(text: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}text\n{text}\n{fence}"


def model_card(report: dict) -> str:
    a, c, t, e = report["arch"], report["corpus"], report["training"], report["eval"]
    rows = [
        ("model_type", "qwen3 (`Qwen3ForCausalLM`)"),
        ("vocab_size", f"{a['vocab_size']} (token id = byte value, no tokenizer files)"),
        ("hidden_size", a["hidden_size"]),
        ("num_hidden_layers", a["num_hidden_layers"]),
        ("num_attention_heads", a["num_attention_heads"]),
        ("num_key_value_heads", f"{a['num_key_value_heads']} (GQA, 2 query heads per KV head)"),
        ("head_dim", a["head_dim"]),
        ("intermediate_size", f"{a['intermediate_size']} (SwiGLU)"),
        ("max_position_embeddings", a["max_position_embeddings"]),
        ("rope_theta", a["rope_theta"]),
        ("rms_norm_eps", a["rms_norm_eps"]),
        ("tie_word_embeddings", a["tie_word_embeddings"]),
        ("attention_bias", a["attention_bias"]),
        ("sliding window", "none"),
        ("bos / eos / pad", "none"),
    ]
    steps_note = ("set from the measured step time" if t["steps_auto"]
                  else "fixed with `--steps`")
    if t["steps"] < t["planned_steps"] <= 10**8:
        how = ("ended by the time check" if t["stopped_by_time"]
               else "ended by `--stop-after`")
        steps_row = f"{t['steps']} of {t['planned_steps']} planned ({steps_note}; {how})"
    else:
        steps_row = f"{t['steps']} ({steps_note})"
    arch_table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    per_step = t["batch_size"] * t["seq_len"]
    train_rows = [
        ("steps", steps_row),
        ("batch", f"{t['batch_size']} sequences of {t['seq_len']} bytes "
                  f"({per_step:,} bytes per step)"),
        ("bytes seen", f"{t['steps'] * per_step:,} ({t['epochs']:.2f} passes over the "
                       "training bytes)"),
        ("sampling", "uniformly random windows of the training bytes"),
        ("optimizer", f"AdamW, betas {tuple(t['betas'])}, weight decay {t['weight_decay']} "
                      "(matrices only)"),
        ("learning rate", f"peak {t['lr']}, linear warmup {t['warmup_steps']} steps, cosine "
                          f"decay to {t['lr_floor']} x peak"),
        ("gradient clipping", f"global norm {t['grad_clip']}"),
        ("precision", f"float32, PyTorch {t['torch_version']}, transformers "
                      f"{t['transformers_version']}, CPU, {t['threads']} threads"),
        ("seed", t["seed"]),
        ("training wall time", f"{t['train_seconds']:.0f} s (whole run, data preparation "
                               f"to saving: {report['wall_seconds']:.0f} s)"),
    ]
    train_table = "\n".join(f"| {k} | {v} |" for k, v in train_rows)
    eval_rows = [
        (f"held out (last {report['held_out_fraction']:.0%})",
         e["held_out_nats_per_byte"], e["held_out_bits_per_byte"]),
        (f"train (first {e['train_eval_bytes']:,} bytes)",
         e["train_nats_per_byte"], e["train_bits_per_byte"]),
    ]
    eval_table = "\n".join(f"| {k} | {n:.4f} | {b:.4f} |" for k, n, b in eval_rows)
    samples = "\n\n".join(
        f"Prompt `{s['prompt']!r}`:\n\n{_fence(s['prompt'] + s['continuation'])}"
        for s in report["samples"])
    excluded = ", ".join(f"`{d}`" for d in c["excluded_dirs"])
    if not t["stopped_by_time"]:
        stopped = ""
    elif t["planned_steps"] > 10**8:
        stopped = (f"\nThe time check stopped training at step {t['steps']}, before the step "
                   "count was set.\n")
    else:
        stopped = (f"\nThe time check stopped training at step {t['steps']} of "
                   f"{t['planned_steps']} planned, at a learning rate of {t['final_lr']:.2e}.\n")
    revised = t["step_count_revisions"]
    if t["steps_auto"] and revised:
        command = f"--seed {t['seed']} --steps {t['steps']}"
        at = ", ".join(str(r[0]) for r in revised)
        repro = ("This run set its step count from the measured step time and revised it as "
                 f"the machine's load changed (at step{'s' if len(revised) > 1 else ''} {at}; "
                 "the schedule follows such a change without a jump), so the command above, "
                 "with one cosine schedule over the same number of steps, gives a closely "
                 "similar model rather than the same weights.")
    else:
        command = f"--seed {t['seed']} --steps {t['planned_steps']}"
        repro = ("`--steps` fixes the step count (without it the count is set from the "
                 "measured step time to fit the `--minutes` budget, default 9); the warmup "
                 "ends after the step count is set, so the command above repeats this run's "
                 "learning-rate schedule exactly.")
        if t["steps"] < t["planned_steps"]:
            command += f" --stop-after {t['steps']}"
            repro += (f" `--stop-after` ends it where this run ended, at step {t['steps']} of "
                      f"the {t['planned_steps']} the schedule is planned for.")
        repro += (" On a slower or busier machine the time check may end training sooner; "
                  "give a larger `--minutes` then.")
    repro += (" Runs with the same settings (seed, steps, schedule) on the same Python, PyTorch "
              "and CPU type give bit-identical weights; other CPUs may differ in the last bits "
              "of floating-point reductions. The corpus depends on the Python version (see "
              "Data).")
    repro = "\n".join(textwrap.wrap(repro, 96))
    return f"""# tiny-qwen3-bytes

The demo model of the M890 repository: a byte-level Qwen3 decoder of
{report['parameters']:,} parameters, small enough for the simulated chip to run a whole
generation in reasonable time, and trained enough that its greedy output visibly resembles its
training text (English prose in the style of Python docstrings). It is a toy: it knows
nothing, and its greedy output soon falls into repeated phrases. It is meant for exercising
the accelerator, the firmware and the reference decoder, not for any use of its output.

Files: `config.json` and `model.safetensors` (float32, Hugging Face format,
`save_pretrained(..., safe_serialization=True)`), `generation_config.json`, `eval.json`
(the held-out loss and the training settings, machine readable). There are no tokenizer files:
the runtime treats such a checkpoint as byte-level, token id = byte value (0-255). Text is UTF-8;
there are no BOS, EOS or padding tokens.

Loads with `transformers.Qwen3ForCausalLM.from_pretrained` and with the project's reference
decoder `golden_model.qwen.QwenModel.from_pretrained`.

## Architecture

| field | value |
|---|---|
{arch_table}

Parameters: **{report['parameters']:,}** (the embedding is tied to the LM head and counted once).

## Data

The docstrings of the standard library of {c['python_implementation']} {c['python_version']}, read
from the installed `Lib/` sources with `ast` (nothing is imported):
`ast.get_docstring(node, clean=True)` of every module, class and function, in source order.

- Files: every `*.py` under `sysconfig.get_paths()["stdlib"]`, sorted by relative path,
  except those under a directory named {excluded}.
- {c['files_scanned']} files scanned, {c['files_with_docstrings']} with docstrings, from
  `{c['first_file']}` to `{c['last_file']}`; docstrings and files joined with a blank line.
- {c['bytes']:,} bytes of UTF-8, SHA-256 `{c['sha256']}`.
- Split: the last {report['held_out_fraction']:.0%} ({e['held_out_bytes']:,} bytes, from within
  `{c['held_out_starts_in']}` to the end) held out for evaluation, the first
  {e['train_bytes']:,} bytes trained on.

Another Python version gives a different corpus; the SHA-256 above identifies this one.

## Training

| setting | value |
|---|---|
{train_table}
{stopped}
## Evaluation

Next-byte cross-entropy, windows of {t['seq_len']} bytes at a stride of {t['seq_len'] // 2}:
each byte is scored once, and after the first window with at least {t['seq_len'] // 2} bytes
of context.

| split | nats/byte | bits/byte |
|---|---|---|
{eval_table}

Final training loss (mean of the last {t['final_loss_window']} steps, on the batches as they
were drawn): {t['final_train_loss']:.4f} nats/byte. For scale, a uniform guess over 256 bytes
costs ln 256 = 5.545 nats/byte (8 bits/byte). The held-out text is the end of the sorted file
list, so part of its gap to the train split is a change of subject; the rest is likely the
model beginning to memorise its training bytes after {t['epochs']:.1f} passes over them.

## Greedy samples

{SAMPLE_BYTES} bytes each, argmax decoding, no stop token; the prompt is included.

{samples}

## Regenerating

```sh
.venv/bin/python -m scripts.train_tiny_qwen --out models/tiny-qwen3-bytes \\
    {command}
```

{repro}

## License

The training text is taken from the CPython standard library sources: copyright the Python
Software Foundation, under the Python Software Foundation License Version 2 (PSF-2.0). The
weights, trained on that text, are distributed as part of this repository.
"""


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output checkpoint directory")
    ap.add_argument("--minutes", type=float, default=9.0, help="wall-time budget (default 9)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None,
                    help="number of steps (default: as many as fit in the budget)")
    ap.add_argument("--stop-after", type=int, default=None,
                    help="end training after this many steps without changing the schedule "
                         "set by --steps (repeats a run that the time check ended early)")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    ap.add_argument("--warmup", type=int, default=40, help="warmup steps")
    ap.add_argument("--lr-floor", type=float, default=0.05,
                    help="final learning rate as a fraction of the peak")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--log-every", type=int, default=25)
    args = ap.parse_args(argv)
    if args.warmup < CALIBRATION[1]:
        ap.error(f"--warmup must be at least {CALIBRATION[1]} (the step count is set during it)")

    t0 = time.monotonic()
    budget = args.minutes * 60.0
    torch.set_num_threads(2)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    import transformers

    data, corpus = build_corpus()
    train_np, held_np = split(data)
    train = torch.from_numpy(train_np)
    print(f"corpus: Python {corpus['python_version']} stdlib docstrings, "
          f"{corpus['files_with_docstrings']} files, {corpus['bytes']:,} bytes "
          f"(train {len(train_np):,}, held out {len(held_np):,}), sha256 {corpus['sha256'][:16]}")

    model = build_model(args.seed)
    model.train()
    params = n_params(model)
    print(f"model: Qwen3ForCausalLM, {params:,} parameters")

    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    betas = (0.9, 0.95)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=betas, eps=1e-8)
    gen = torch.Generator().manual_seed(args.seed + 1)

    steps_auto = args.steps is None
    total = args.steps if args.steps is not None else 10**9
    schedule = Schedule(args.lr, args.warmup, args.lr_floor, total)
    losses: list[float] = []
    step_times: list[float] = []

    def step_time() -> float:
        """Recent step time (the first step, slower than the rest, left out)."""
        return float(np.median(step_times[1:][-20:] if len(step_times) > 1 else step_times))

    def time_left(now: float) -> float:
        """Seconds of training left before the reserve for evaluation and saving."""
        return budget - max(RESERVE_SECONDS, RESERVE_STEPS * step_time()) - (now - t0)

    print(f"training: batch {args.batch_size} x {args.seq_len} bytes, peak lr {args.lr}, "
          f"warmup {args.warmup}, budget {args.minutes:g} min")
    t_train = time.monotonic()
    step = 0
    stopped_early = False
    revisions: list[list[int]] = []             # [at step, old total, new total]
    while step < total:
        ts = time.monotonic()
        lr = schedule.lr(step)
        for g in opt.param_groups:
            g["lr"] = lr
        xy = batch(train, args.batch_size, args.seq_len, gen)
        logits = model(input_ids=xy[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 xy[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        now = time.monotonic()
        step_times.append(now - ts)
        # Automatic step count: set after the calibration steps, then re-estimated at every
        # progress line from the mean time of the last 100 steps (other jobs may share the
        # CPU); the schedule follows without a jump.
        if steps_auto and (step == CALIBRATION[1]
                           or (step > CALIBRATION[1] and step % args.log_every == 0)):
            per_step = float(np.mean(step_times[CALIBRATION[0]:][-100:]))
            new_total = max(step + int(time_left(now) / (per_step * 1.05)), args.warmup + 1)
            if step == CALIBRATION[1] or abs(new_total - total) > 0.03 * total:
                print(f"step time {per_step * 1000:.0f} ms -> {new_total} steps")
                if step > CALIBRATION[1]:
                    revisions.append([step, total, new_total])
                total = new_total
                schedule.retarget(step, total)
        if step % args.log_every == 0 or step == total:
            recent = float(np.mean(losses[-args.log_every:]))
            print(f"step {step:5d}/{total}  loss {recent:.4f}  lr {lr:.2e}  "
                  f"elapsed {now - t0:6.1f} s", flush=True)
        if args.stop_after is not None and step >= args.stop_after:
            print(f"stopped after {step} steps (--stop-after)")
            break
        if step < total and step >= 3 and time_left(now) < step_time():
            print(f"time budget reached at step {step} of {total} (lr {lr:.2e})")
            stopped_early = True
            break
    train_seconds = time.monotonic() - t_train
    planned = total

    print("evaluating ...", flush=True)
    t_eval = time.monotonic()
    held_loss = evaluate(model, held_np, args.seq_len)
    train_eval = train_np[:len(held_np)]
    train_loss_eval = evaluate(model, train_eval, args.seq_len)
    window = min(50, len(losses))
    final_train = float(np.mean(losses[-window:]))
    samples = [{"prompt": p, "continuation": greedy_sample(model, p, SAMPLE_BYTES)}
               for p in SAMPLE_PROMPTS]

    eval_seconds = time.monotonic() - t_eval
    args.out.mkdir(parents=True, exist_ok=True)
    model.config.use_cache = True
    model.save_pretrained(args.out, safe_serialization=True)
    wall = time.monotonic() - t0

    report = {
        "model": "tiny-qwen3-bytes",
        "parameters": params,
        "arch": {k: v for k, v in ARCH.items()},
        "held_out_fraction": HELD_OUT_FRACTION,
        "corpus": corpus,
        "training": {
            "steps": step, "planned_steps": planned, "steps_auto": steps_auto,
            "stopped_by_time": stopped_early, "step_count_revisions": revisions,
            "final_lr": lr, "stop_after": args.stop_after,
            "batch_size": args.batch_size, "seq_len": args.seq_len,
            "epochs": step * args.batch_size * args.seq_len / len(train_np),
            "optimizer": "AdamW", "betas": list(betas), "weight_decay": args.weight_decay,
            "lr": args.lr, "warmup_steps": args.warmup, "lr_floor": args.lr_floor,
            "schedule": "linear warmup, cosine decay", "grad_clip": 1.0,
            "seed": args.seed, "threads": torch.get_num_threads(),
            "dtype": "float32", "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "python_version": sys.version.split()[0],
            "final_train_loss": final_train, "final_loss_window": window,
            "train_seconds": train_seconds, "eval_seconds": eval_seconds,
            "budget_minutes": args.minutes,
        },
        "eval": {
            "held_out_nats_per_byte": held_loss,
            "held_out_bits_per_byte": held_loss / math.log(2),
            "held_out_bytes": len(held_np),
            "train_nats_per_byte": train_loss_eval,
            "train_bits_per_byte": train_loss_eval / math.log(2),
            "train_eval_bytes": len(train_eval), "train_bytes": len(train_np),
            "window": args.seq_len, "stride": args.seq_len // 2,
        },
        "samples": samples,
        "wall_seconds": wall,
    }
    (args.out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "README.md").write_text(model_card(report))

    print()
    print(f"parameters          {params:,}")
    print(f"steps               {step} (batch {args.batch_size} x {args.seq_len})")
    print(f"final train loss    {final_train:.4f} nats/byte (last {window} steps)")
    print(f"train-split eval    {train_loss_eval:.4f} nats/byte "
          f"({train_loss_eval / math.log(2):.4f} bits/byte)")
    print(f"held-out loss       {held_loss:.4f} nats/byte "
          f"({held_loss / math.log(2):.4f} bits/byte)")
    print(f"wall time           training {train_seconds:.1f} s, evaluation and samples "
          f"{eval_seconds:.1f} s, whole run {wall:.1f} s")
    for s in samples:
        print(f"--- {s['prompt']!r}\n{s['prompt']}{s['continuation']}")
    print(f"saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
