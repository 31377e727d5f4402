"""Runtime: a Qwen decoder running on a chip, token by token.

:class:`Runtime` loads a checkpoint into a :class:`~firmware.driver.Device` (weights in the
chosen format, embedding, norms, RoPE tables), keeps the paged KV cache (:class:`KVPages`: the
page lists live in HBM, pages are allocated as the context grows, up to ``max_context``
positions) and runs steps compiled by :class:`~firmware.compiler.qwen.Lowering`: prefill in
chunks as large as the scratchpad allows, then one token per step. :meth:`Runtime.generate`
streams greedy tokens; :meth:`Runtime.forward` also returns logits (for agreement tests and
NLL measurements).

Figures come from the chip's own counters (:meth:`Device.counters`): cycles, MXU MACs and busy
cycles, DMA and HBM bytes. The functional transport has no clock, so its figures are absent.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from golden_model import qwen
from golden_model.qwen import QwenModel

from ..compiler.qwen import Q_GATHER, Lowering, ModelImage
from ..errors import CheckpointError, UnsupportedConfig


__all__ = ["KVPages", "Runtime", "StepStats", "load_checkpoint"]


def load_checkpoint(path):
    """The checkpoint at ``path`` as a float32 :class:`QwenModel`; errors are
    :class:`~firmware.errors.CheckpointError` / :class:`~firmware.errors.UnsupportedConfig`."""
    try:
        return QwenModel.from_pretrained(path, dtype=np.float32)
    except qwen.UnsupportedConfig as e:
        raise UnsupportedConfig(str(e)) from e
    except qwen.CheckpointError as e:
        raise CheckpointError(str(e)) from e


class KVPages:
    """The paged KV cache: pages of ``P`` positions per (layer, KV head, K|V).

    The page list of each (layer, head, kind) is an array of 64-bit HBM addresses in HBM (what
    a page-gathering DMA reads); :meth:`ensure` allocates pages and appends their addresses
    until the cache covers a given number of positions.
    """

    def __init__(self, dev, layers, kv_heads, page_size, page_bytes, max_context):
        self.dev, self.P, self.page_bytes = dev, page_size, page_bytes
        self.max_pages = -(-max_context // page_size)
        self.max_context = max_context
        self.keys = [(layer, g, kind) for layer in range(layers) for g in range(kv_heads)
                     for kind in ("k", "v")]
        self.lists = {key: dev.alloc(8 * self.max_pages, f"page list {key}")
                      for key in self.keys}
        self.pages = {key: [] for key in self.keys}

    @property
    def capacity(self):
        """Positions the allocated pages hold."""
        return len(self.pages[self.keys[0]]) * self.P

    def ensure(self, positions):
        """Allocate pages until ``positions`` positions fit."""
        if positions > self.max_context:
            raise UnsupportedConfig(f"the context would reach {positions} positions; the "
                                    f"cache holds {self.max_context} (max_context)")
        need = -(-positions // self.P)
        for key in self.keys:
            pages = self.pages[key]
            first = len(pages)
            while len(pages) < need:
                pages.append(self.dev.alloc(self.page_bytes, f"kv page {key}").addr)
            if len(pages) > first:
                self.dev.write(self.lists[key], np.array(pages[first:], np.uint64), 8 * first)

    def table(self):
        """``key → (list address, [page addresses])`` for the compiler."""
        return {key: (self.lists[key].addr, self.pages[key]) for key in self.keys}


@dataclass
class StepStats:
    """What one step (or a run of steps) cost, from the chip's counters."""
    tokens: int = 0
    steps: int = 0
    wall: float = 0.0
    counters: dict = field(default_factory=dict)

    def add(self, other):
        self.tokens += other.tokens
        self.steps += other.steps
        self.wall += other.wall
        for k, v in other.counters.items():
            self.counters[k] = self.counters.get(k, 0) + v


class Runtime:
    """A model on a device.

    Parameters
    ----------
    model : str, path or golden_model.qwen.QwenModel
        An HF-format checkpoint directory, or a loaded model.
    device : firmware.driver.Device
    fmt : str
        Weight format (``fp32``, ``bf16``, ``fp8``, ``mxfp4``).
    max_context : int, optional
        Positions the KV cache and RoPE tables are sized for (default: the model's
        ``max_position_embeddings``).
    page_size : int, optional
        Positions per KV page (default: 16, rounded up to the array width).
    prefill_chunk : int
        Most tokens per prefill step (fewer if the scratchpad needs it).
    """

    def __init__(self, model, device, *, fmt="fp8", max_context=None, page_size=None,
                 prefill_chunk=64):
        if not isinstance(model, QwenModel):
            model = load_checkpoint(model)
        self.model, self.dev = model, device
        cfg, q = device.cfg, model.cfg
        self.qcfg = q
        max_context = int(max_context or q.max_position_embeddings)
        if max_context <= 0:
            raise ValueError(f"max_context must be positive, not {max_context}")
        self.max_context = max_context
        page_size = page_size or max(16, cfg.vpu_lanes)
        self.image = ModelImage(cfg, model, fmt)
        self.low = Lowering(self.image, page_size,
                            gather_queue=len(device.sq) > Q_GATHER)
        self.image.load(device, max_context)
        self.kv = KVPages(device, q.num_hidden_layers, q.num_key_value_heads, page_size,
                          self.low.page_bytes, max_context)
        self.prefill_chunk = max(1, int(prefill_chunk))
        self.tokens_buf = device.alloc(8 * self.prefill_chunk, "token rows")
        self.out_buf = device.alloc(8 * len(self.image.head.blocks), "argmax words")
        self.logits_buf = None
        self.pos = 0
        self.history = []
        self.stats = {"prefill": StepStats(), "decode": StepStats()}

    # -- steps --------------------------------------------------------------------------------

    def reset(self):
        """Start a new sequence (the cache pages are kept and overwritten)."""
        self.pos = 0
        self.history = []

    def _chunk(self, remaining):
        for M in range(min(remaining, self.prefill_chunk), 0, -1):
            if self.low.plan(M, self.pos + M) is not None:
                return M
        raise UnsupportedConfig(f"position {self.pos}: even one token with {self.pos + 1} "
                                f"positions of context does not fit {self.dev.cfg.name}'s "
                                f"scratchpad and accumulator")

    def _run_step(self, ids, logits_mode):
        dev, M, p0 = self.dev, len(ids), self.pos
        emb, row = self.image.embed_addr, 4 * self.qcfg.hidden_size
        dev.write(self.tokens_buf, (emb + np.asarray(ids, np.uint64) * np.uint64(row))
                  .astype(np.uint64))
        self.kv.ensure(p0 + M)
        logits = None
        if logits_mode is not None:
            need = 4 * M * self.qcfg.vocab_size
            if self.logits_buf is None or self.logits_buf.size < need:
                if self.logits_buf is not None:
                    dev.free(self.logits_buf)
                self.logits_buf = dev.alloc(max(need, 4 * self.prefill_chunk
                                                * self.qcfg.vocab_size), "logits")
            logits = (self.logits_buf.addr, logits_mode)
        segments = self.low.step(M, p0, self.tokens_buf.addr, self.kv.table(),
                                 self.out_buf.addr, logits)
        # One submission while the descriptors fit the rings, so that the weight stream runs
        # ahead across layers.
        batch, label = None, []
        for name, prog in segments:
            if batch is not None and all(
                    len(batch.queues.get(q, [])) + len(d) <= dev.ring_slots
                    for q, d in prog.queues.items()):
                batch.extend(prog)
                label.append(name)
                continue
            if batch is not None:
                dev.run(batch, f"step at {p0} ({', '.join(label)})")
            batch, label = prog, [name]
        dev.run(batch, f"step at {p0} ({', '.join(label)})")
        words = np.frombuffer(dev.read(self.out_buf), np.uint32).reshape(-1, 2)
        maxes = words[:, 1].view(np.float32)
        b = int(np.argmax(maxes))
        token = self.image.head.blocks[b].n0 + int(words[b, 0])
        out = None
        if logits_mode is not None:
            rows = M if logits_mode == "all" else 1
            raw = dev.read(self.logits_buf, 4 * rows * self.qcfg.vocab_size)
            out = np.frombuffer(raw, np.float32).reshape(rows, self.qcfg.vocab_size).copy()
        self.pos += M
        self.history.extend(int(i) for i in ids)
        return token, out

    def forward(self, ids, *, logits=None, phase="prefill"):
        """Run ``ids`` at the next positions; returns ``(greedy next token, logits)``.

        ``logits``: None, ``"last"`` (``[1, vocab]``) or ``"all"`` (``[len(ids), vocab]``),
        FP32 as the chip computed them.
        """
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        if not ids:
            raise ValueError("forward needs at least one token")
        bad = [i for i in ids if not 0 <= i < self.qcfg.vocab_size]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary "
                             f"[0, {self.qcfg.vocab_size})")
        if self.pos + len(ids) > self.max_context:
            raise UnsupportedConfig(f"{self.pos + len(ids)} positions exceed max_context "
                                    f"{self.max_context}")
        outs, token, i = [], None, 0
        while i < len(ids):
            M = self._chunk(len(ids) - i)
            before = self._snapshot()
            t0 = time.perf_counter()
            token, lg = self._run_step(ids[i:i + M], None if logits is None else
                                       ("all" if logits == "all" else "last"))
            st = StepStats(tokens=M, steps=1, wall=time.perf_counter() - t0,
                           counters=self._delta(before))
            self.stats[phase].add(st)
            if lg is not None:
                outs.append(lg)
            i += M
        if logits is None:
            return token, None
        return token, (np.concatenate(outs) if logits == "all" else outs[-1])

    def generate(self, prompt_ids, max_new_tokens, *, stop=None):
        """Greedy generation: yields each new token id as the chip produces it."""
        if max_new_tokens <= 0:
            return
        token, _ = self.forward(prompt_ids, phase="prefill")
        for n in range(max_new_tokens):
            yield token
            if stop is not None and token in stop:
                return
            if n + 1 < max_new_tokens:
                token, _ = self.forward([token], phase="decode")

    # -- figures ------------------------------------------------------------------------------

    def _snapshot(self):
        return self.dev.counters() if self.dev.transport.cycle_accurate else {}

    def _delta(self, before):
        if not before:
            return {}
        after = self.dev.counters()
        return {k: after[k] - before[k] for k in after}

    def figures(self, phase):
        """Rates of a phase (``prefill`` or ``decode``) from the chip's counters."""
        st, cfg = self.stats[phase], self.dev.cfg
        f = {"tokens": st.tokens, "steps": st.steps, "wall_s": st.wall,
             "tokens_per_s_wall": st.tokens / st.wall if st.wall else None}
        c = st.counters
        if not c or not st.tokens:
            return f
        cycles = c["CYCLES"]
        hbm = sum(c[f"HBM{i}_RD_BYTES"] + c[f"HBM{i}_WR_BYTES"]
                  for i in range(cfg.hbm_channels))
        f.update({
            "cycles": cycles,
            "cycles_per_token": cycles / st.tokens,
            "tokens_per_s_modelled": st.tokens * cfg.clock_mhz * 1e6 / cycles,
            "mxu_macs": c["MXU_MACS"],
            "mxu_utilization": c["MXU_MACS"] / (cfg.macs_per_cycle * cycles),
            "mxu_busy_utilization": (c["MXU_MACS"] / (cfg.macs_per_cycle * c["MXU_BUSY"])
                                     if c["MXU_BUSY"] else 0.0),
            "hbm_bytes": hbm,
            "hbm_utilization": hbm / (cfg.hbm_peak_bytes_per_cycle * cycles),
            "sim_s_per_token": st.wall / st.tokens,
        })
        return f
