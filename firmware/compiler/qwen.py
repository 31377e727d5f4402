"""Lowering of a Qwen2/Qwen3 decoder into descriptor programs.

One *step* runs ``M`` tokens at positions ``p0 … p0+M−1`` through the whole model: prefill is
steps of many tokens (chunked to what the scratchpad and accumulator hold), decode is steps of
one. :class:`Lowering` turns a step into :class:`~firmware.driver.Program` segments (the
embedding, each layer, the head), which the runtime submits.

Queues work together:

- queue 0 streams weight blocks (:mod:`firmware.compiler.weights`) from HBM into two weight
  buffers of the scratchpad, ahead of use: ``WAIT free[b]`` → ``DMA`` → ``SIGNAL loaded``;
- queue 1 computes: ``WAIT loaded`` → ``GEMM`` (+ vector-unit epilogue) → ``SIGNAL free[b]``,
  with every other DMA (embedding gather, KV-cache stores and page gathers, tables) in order;
- queue 2, when the device has it and each KV head's pages fit a buffer of their own (one
  attention chunk), gathers the KV-cache pages of every KV head as soon as the layer's
  stores are done (``WAIT stored`` → gathers, each followed by ``SIGNAL gathered``), so that
  one head's gathers overlap another head's scores, softmax and ``p·V`` on queue 1.

Semaphore counts are cumulative across programs (:attr:`Lowering.seq` weight blocks so far,
:attr:`Lowering.stored` and :attr:`Lowering.gathered`), so the weight stream of the next layer
loads while this one computes.

Data layouts (``V`` = vector lanes = array rows = columns; ``VB = 4V`` bytes):

- activations ``[M, D]`` FP32 in the scratchpad as ``[D/V][M][V]``: the matrix engine's
  operand-A layout and a vector-unit operand ``{chunk = M·VB, row = VB}``;
- results ``[M, N]`` in the accumulator: row ``base + (n/V)·M + m`` (``{chunk = M, row = 1}``);
- the KV cache in fixed-size pages of ``P`` positions per (layer, KV head): a K page holds
  ``[P/V][head_dim][V]`` (the B operand of ``q·Kᵀ`` for V positions at a time), a V page
  ``[head_dim/V][P][V]`` (the B operand of ``p·V``); the runtime keeps a page list per
  (layer, KV head, K|V) in HBM, and attention gathers pages with a page-gathering DMA.

Attention per KV head ``g`` works on the ``G`` query heads of its group at once (``M·G`` rows):
scores ``q·Kᵀ`` chunk by chunk of ``Lc`` positions into the accumulator, a causal SOFTMAX per
query head over all ``L = p0 + M`` positions into the scratchpad (operand-A layout), then
``p·V`` chunk by chunk, accumulating. The query is scaled by ``1/√head_dim`` before the scores.

The head computes the logits in vocabulary blocks; per block the vector unit finds the argmax
and the maximum of the last row, and the runtime picks the block (ties to the lowest index,
as ``numpy.argmax``), so the greedy token is chosen on the chip.
"""

from dataclasses import dataclass, replace

import numpy as np

from golden_model.mxu import make_command
from golden_model.vpu import make_vpu_command
from rtl.layouts import MAX_DIM, MAX_VLEN, Format, VpuCmd

from .. import isa
from ..driver import Program
from ..errors import UnsupportedConfig
from .weights import WEIGHT_FORMATS, PackedLinear, block_columns, pack_linear


__all__ = ["ModelImage", "Lowering", "check_model", "Q_WEIGHTS", "Q_COMPUTE", "Q_GATHER"]


#: The queue that streams weights, the queue that computes, and the one that gathers pages.
Q_WEIGHTS, Q_COMPUTE, Q_GATHER = 0, 1, 2
#: Semaphores: weight blocks loaded, weight buffers 0/1 released, layers' KV stores done,
#: KV-cache gathers done.
SEM_LOADED, SEM_FREE, SEM_STORED, SEM_GATHERED = 0, (1, 2), 3, 4


def _align(x, a):
    return -(-int(x) // a) * a


def _f32(x):
    return float(np.float32(x))


def check_model(cfg, qcfg):
    """Raise :class:`UnsupportedConfig` if the chip ``cfg`` cannot run model ``qcfg``."""
    V = cfg.vpu_lanes
    if not cfg.mxu_rows == cfg.mxu_cols == V:
        raise UnsupportedConfig(f"the compiler needs a square array as wide as the vector "
                                f"unit; {cfg.name} has {cfg.mxu_rows}×{cfg.mxu_cols} and "
                                f"{V} lanes")
    H, hd, inter = qcfg.hidden_size, qcfg.head_dim, qcfg.intermediate_size
    if H % V:
        raise UnsupportedConfig(f"hidden_size {H} is not a multiple of the {V} vector lanes "
                                f"of {cfg.name}")
    if hd % (2 * V):
        raise UnsupportedConfig(f"head_dim {hd} is not a multiple of 2×{V} (RoPE works on "
                                f"whole vectors of each half on {cfg.name})")
    if inter % V:
        raise UnsupportedConfig(f"intermediate_size {inter} is not a multiple of {V}")
    if qcfg.vocab_size > MAX_VLEN * 64:
        raise UnsupportedConfig(f"vocab_size {qcfg.vocab_size} is too large")


def _sp(addr, chunk, row):
    return {"addr": int(addr), "chunk": int(chunk), "row": int(row), "space": 0}


def _ac(addr, chunk, row):
    return {"addr": int(addr), "chunk": int(chunk), "row": int(row), "space": 1}


@dataclass
class LayerImage:
    consts: int               # HBM: [in gain H][post gain H][q gain hd][k gain hd], VB-aligned
    qkv: object               # PackedLinear, columns [q | k | v]
    o: object
    gate_up: object           # blocks of [gate nb | up nb] columns
    down: object


class ModelImage:
    """A model's weights in the chip's formats, written to HBM by :meth:`load`.

    Parameters
    ----------
    cfg : ChipConfig
    model : golden_model.qwen.QwenModel
        The checkpoint (float32 weights are read from it).
    fmt : str
        Weight format: one of :data:`~firmware.compiler.weights.WEIGHT_FORMATS`.
    """

    def __init__(self, cfg, model, fmt="fp8"):
        if fmt not in WEIGHT_FORMATS:
            raise UnsupportedConfig(f"weight format {fmt!r}: choose from "
                                    f"{', '.join(WEIGHT_FORMATS)}")
        q = model.cfg
        check_model(cfg, q)
        self.cfg, self.qcfg, self.fmt_name = cfg, q, fmt
        self.fmt = f = WEIGHT_FORMATS[fmt]
        V = cfg.vpu_lanes
        self.vb = 4 * V
        self.wbuf_bytes = wb = _align(min(cfg.spad_bytes // 8, 128 * 1024), self.vb)
        H, hd = q.hidden_size, q.head_dim
        self.layers_src = []
        f32 = np.float32
        self.linears = []
        for i, L in enumerate(model.layers):
            wqkv = np.concatenate([L.wq, L.wk, L.wv]).astype(f32)
            bqkv = (np.concatenate([L.bq, L.bk, L.bv]).astype(f32) if L.bq is not None
                    else None)
            qkv = pack_linear(cfg, f"layer {i} qkv", wqkv, f, wb, bias=bqkv)
            o = pack_linear(cfg, f"layer {i} o_proj", L.wo.astype(f32), f, wb,
                            bias=None if L.bo is None else L.bo.astype(f32))
            # gate and up interleaved per block, so SWIGLU runs block by block.
            nb, kb = block_columns(cfg, f, H, 2 * q.intermediate_size, wb,
                                   has_scale=f is Format.FP8_E4M3, group=2)
            if kb != H:
                raise UnsupportedConfig(f"layer {i}: one gate/up block of {2 * V} columns "
                                        f"over K = {H} does not fit the weight buffer")
            gu = self._pack_gate_up(i, L, nb // 2, wb)
            down = pack_linear(cfg, f"layer {i} down_proj", L.wd.astype(f32), f, wb)
            consts = [L.w_in, L.w_post]
            if q.qk_norm:
                consts += [L.w_qn, L.w_kn]
            self.layers_src.append((LayerImage(0, qkv, o, gu, down), consts))
            self.linears += [qkv, o, gu, down]
        self.head = pack_linear(cfg, "lm_head", model.lm_head.astype(f32), f, wb)
        self.linears.append(self.head)
        self.norm = model.norm.astype(f32)
        self.embed = np.ascontiguousarray(model.embed.astype(f32))
        self.inv_freq = 1.0 / q.rope_theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
        self.layers = None

    def _pack_gate_up(self, i, L, half, wb):
        inter = self.qcfg.intermediate_size
        rows = []
        for n0 in range(0, inter, half):
            rows += [L.wg[n0:n0 + half], L.wu[n0:n0 + half]]
        w = np.concatenate(rows).astype(np.float32)
        # Block b holds gate columns [n0, n0+h) then up columns [n0, n0+h), h = min(half, …);
        # each is packed on its own so that the last, shorter block keeps its two halves.
        widths = [2 * min(half, inter - n0) for n0 in range(0, inter, half)]
        parts, blocks, offset, col = [], [], 0, 0
        for width in widths:
            sub = pack_linear(self.cfg, f"layer {i} gate/up", w[col:col + width], self.fmt, wb,
                              nb=width, kb=self.qcfg.hidden_size)
            blocks += [replace(b, n0=col + b.n0, offset=offset + b.offset) for b in sub.blocks]
            parts.append(sub.data)
            offset += sub.nbytes
            col += width
        return PackedLinear(name=f"layer {i} gate/up", k=self.qcfg.hidden_size, n=2 * inter,
                            fmt=self.fmt, blocks=blocks, data=np.concatenate(parts))

    # -- loading ------------------------------------------------------------------------------

    @property
    def weight_bytes(self):
        """Bytes of quantized weights (what a decode step streams from HBM)."""
        return sum(lin.nbytes for lin in self.linears)

    def load(self, dev, max_context):
        """Allocate and write everything to ``dev``'s HBM (weights, embedding, norms, RoPE
        tables for ``max_context`` positions)."""
        vb = self.vb
        for lin in self.linears:
            buf = dev.alloc(lin.nbytes, lin.name)
            dev.write(buf, lin.data)
            lin.addr = buf.addr
        self.layers = []
        for img, consts in self.layers_src:
            blob = b"".join(np.asarray(c, np.float32).tobytes().ljust(_align(4 * c.size, vb),
                                                                        b"\0")
                            for c in consts)
            buf = dev.alloc(len(blob), "layer constants")
            dev.write(buf, blob)
            img.consts = buf.addr
            self.layers.append(img)
        self.norm_addr = self._put(dev, self.norm, "final norm")
        self.embed_addr = self._put(dev, self.embed, "embedding")
        pos = np.arange(max_context, dtype=np.float64)
        ang = pos[:, None] * self.inv_freq[None, :]
        self.cos_addr = self._put(dev, np.cos(ang).astype(np.float32), "rope cos")
        self.sin_addr = self._put(dev, np.sin(ang).astype(np.float32), "rope sin")
        self.max_context = max_context

    @staticmethod
    def _put(dev, array, name):
        a = np.ascontiguousarray(array)
        buf = dev.alloc(a.nbytes, name)
        dev.write(buf, a)
        return buf.addr


class _Alloc:
    """Bump allocator of one memory (scratchpad bytes or accumulator rows)."""

    def __init__(self, size, align):
        self.size, self.align, self.top = size, align, 0

    def take(self, n):
        start = self.top
        self.top = _align(start + max(int(n), 1), self.align)
        return start

    @property
    def fits(self):
        return self.top <= self.size


class Lowering:
    """Writes the programs of steps of one model on one chip.

    Parameters
    ----------
    image : ModelImage
        Loaded into the device.
    page_size : int
        Positions per KV-cache page (a multiple of the array width).
    gather_queue : bool
        Queue :data:`Q_GATHER` is set up: gather KV pages there, beside the computation.
    """

    def __init__(self, image, page_size, *, gather_queue=False):
        self.img = image
        self.cfg = cfg = image.cfg
        q = image.qcfg
        self.V = V = cfg.vpu_lanes
        self.vb = 4 * V
        if page_size % V or page_size <= 0:
            raise UnsupportedConfig(f"page_size {page_size} is not a multiple of {V}")
        self.P = page_size
        self.H, self.hd = q.hidden_size, q.head_dim
        self.nh, self.nkv, self.G = q.num_attention_heads, q.num_key_value_heads, q.groups
        self.inter, self.vocab = q.intermediate_size, q.vocab_size
        hd = self.hd
        self.page_bytes = page_size * hd * 4
        # Positions of one attention chunk (K or V loaded at once): whole pages, ≤ 1/16 of
        # the scratchpad each.
        pages = max(1, (cfg.spad_bytes // 16) // self.page_bytes)
        self.Lc = pages * page_size
        self.seq = 0                  # weight blocks streamed so far (semaphore counts)
        self.stored = 0               # SIGNALs of SEM_STORED so far
        self.gathered = 0             # SIGNALs of SEM_GATHERED so far
        self.gather_queue = gather_queue

    # -- planning -----------------------------------------------------------------------------

    def plan(self, M, L):
        """Scratchpad and accumulator regions of a step of ``M`` tokens with ``L`` positions
        of context (this step's included), or None if they do not fit. The KV-cache gathers
        get a queue of their own when the device has it and every KV head's pages fit."""
        if self.gather_queue and L <= self.Lc and self.nkv > 1:
            r = self._plan(M, L, overlap=True)
            if r is not None:
                return r
        return self._plan(M, L, overlap=False)

    def _plan(self, M, L, *, overlap):
        vb, V, hd, H = self.vb, self.V, self.hd, self.H
        nh, nkv, G = self.nh, self.nkv, self.G
        Mq = M * G
        s = _Alloc(self.cfg.spad_bytes, vb)
        r = {}
        r["wbuf"] = (s.take(self.img.wbuf_bytes), s.take(self.img.wbuf_bytes))
        r["X"] = s.take(M * H * 4)
        r["Hn"] = s.take(M * max(H, 1) * 4)
        r["Qn"] = s.take(M * (nh + nkv) * hd * 4)
        r["Qr"] = s.take(M * nh * hd * 4)
        r["Kr"] = s.take(M * nkv * hd * 4)
        r["Vt"] = s.take(M * nkv * hd * 4)
        r["CS"] = s.take(M * hd * 4)
        r["Attn"] = s.take(M * nh * hd * 4)
        r["Act"] = s.take(M * self.inter * 4)
        r["Pr"] = s.take(_align(L, V) * Mq * 4)
        # One K and one V buffer per KV head when the gathers run on their own queue (the
        # whole context in one chunk); else one of each, reused head after head.
        r["overlap"] = overlap
        sets = nkv if overlap else 1
        r["Kbufs"] = [s.take(self.Lc * hd * 4) for _ in range(sets)]
        r["Vbufs"] = [s.take(self.Lc * hd * 4) for _ in range(sets)]
        r["consts"] = s.take(2 * _align(H * 4, vb) + 2 * _align(hd * 4, vb))
        head_blocks = len(self.img.head.blocks)
        r["out"] = s.take(2 * head_blocks * vb)
        nb_head = max(b.nb for b in self.img.head.blocks)
        r["LG"] = s.take(M * _align(nb_head, V) * 4)
        a = _Alloc(self.cfg.acc_rows, 1)
        r["QKV"] = a.take(M * (nh + 2 * nkv) * hd // V)
        r["S"] = a.take(Mq * -(-L // V))
        r["O"] = a.take(Mq * hd // V)
        lin_cols = max(max(b.nb for b in lin.blocks) for lin in self.img.linears)
        r["LIN"] = a.take(M * -(-lin_cols // V))
        if not (s.fits and a.fits) or Mq > MAX_DIM or L > MAX_VLEN:
            return None
        return r

    def max_tokens(self, L_after, limit):
        """The largest step (≤ ``limit`` tokens) whose context ends at ``L_after`` that fits."""
        for M in range(min(limit, L_after), 0, -1):
            if self.plan(M, L_after) is not None:
                return M
        return 0

    # -- emission helpers ---------------------------------------------------------------------

    @staticmethod
    def _vpu(prog, op, label, **fields):
        prog.add(Q_COMPUTE, isa.vpu(make_vpu_command(op, **fields)), label)

    def _copy(self, prog, label, rows, length, src, dst):
        """``dst = src · 1.0`` (an exact copy, NaNs canonical)."""
        self._vpu(prog, VpuCmd.SCALE, label, rows=rows, length=length, scalar=1.0, a=src,
                  dst=dst)

    def _linear(self, prog, lin, a_addr, M, acc, *, reuse=False, epilogue=None):
        """``acc ← A·B`` block by block, streaming the blocks through the weight buffers."""
        cfg, V, vb = self.cfg, self.V, self.vb
        for blk in lin.blocks:
            seq, b = self.seq, self.seq % 2
            wb = self.r["wbuf"][b]
            prog.add(Q_WEIGHTS, isa.wait(SEM_FREE[b], seq // 2), f"{lin.name}: buffer {b} free")
            prog.add(Q_WEIGHTS, isa.dma(rows=1, row_bytes=blk.nbytes, spad_addr=wb,
                                        hbm_addr=lin.addr + blk.offset),
                     f"{lin.name}: load block {blk.n0}+{blk.nb} k{blk.k0}")
            prog.add(Q_WEIGHTS, isa.signal(SEM_LOADED, 1), f"{lin.name}: block loaded")
            prog.add(Q_COMPUTE, isa.wait(SEM_LOADED, seq + 1), f"{lin.name}: wait block")
            c_row = acc if reuse else acc + (blk.n0 // V) * M
            cmd = make_command(m=M, n=blk.nb, k=blk.kb, fmt_a=Format.FP32, fmt_b=lin.fmt,
                               accumulate=int(blk.k0 > 0),
                               a_addr=a_addr + (blk.k0 // cfg.mxu_rows) * M * vb, b_addr=wb,
                               sa_addr=0, sb_addr=wb + (blk.sb_off or 0), c_row=c_row)
            prog.add(Q_COMPUTE, isa.gemm(cmd), f"{lin.name}: GEMM block {blk.n0}+{blk.nb}")
            out = _ac(c_row, M, 1)
            if blk.scale_off is not None:
                self._vpu(prog, VpuCmd.MUL, f"{lin.name}: channel scales", rows=M,
                          length=blk.nb, a=out, b=_sp(wb + blk.scale_off, vb, 0), dst=out)
            if blk.bias_off is not None:
                self._vpu(prog, VpuCmd.ADD, f"{lin.name}: bias", rows=M, length=blk.nb,
                          a=out, b=_sp(wb + blk.bias_off, vb, 0), dst=out)
            if blk.last and epilogue is not None:
                epilogue(prog, c_row, blk)
            prog.add(Q_COMPUTE, isa.signal(SEM_FREE[b], 1), f"{lin.name}: release buffer {b}")
            self.seq += 1

    def _act(self, name, M, col=0):
        """Operand of activation region ``name`` (``[D/V][M][V]``) from column ``col``."""
        return _sp(self.r[name] + (col // self.V) * M * self.vb, M * self.vb, self.vb)

    # -- a step -------------------------------------------------------------------------------

    def step(self, M, p0, tokens_addr, page_lists, out_addr, logits=None):
        """The programs of one step.

        Parameters
        ----------
        M, p0 : int
            Tokens and the position of the first.
        tokens_addr : int
            HBM address of ``M`` 64-bit embedding-row addresses (a page list).
        page_lists : dict
            ``(layer, kv_head, "k"|"v") → (list_addr, [page addresses])`` covering
            positions ``0 … p0+M−1``.
        out_addr : int
            HBM address for ``2 × head blocks`` 32-bit words: per block the argmax of the last
            row (uint32, within the block) and its maximum (FP32 bits).
        logits : None or (addr, "last"|"all")
            Also store FP32 logits (``[vocab]`` of the last row, or ``[M, vocab]``).

        Returns
        -------
        list of (label, Program)
        """
        L = p0 + M
        r = self.plan(M, L)
        if r is None:
            raise UnsupportedConfig(f"a step of {M} token(s) with {L} positions of context "
                                    f"does not fit {self.cfg.name}'s scratchpad/accumulator")
        self.r = r
        self.segments = []
        self._cut("embedding")
        self._embed(self.prog, M, tokens_addr)
        self._rope_tables(self.prog, M, p0)
        for layer in range(len(self.img.layers)):
            self._cut(f"layer {layer}")
            self._layer(layer, M, p0, page_lists)
        self._cut("head")
        self._head(self.prog, M, out_addr, logits)
        return self.segments

    #: Most descriptors of the KV-cache stores in one segment (a segment must fit a ring).
    STORES_PER_SEGMENT = 1024

    def _cut(self, name):
        """Start a new segment. Segments end only between weight blocks, so each one's
        WAITs are satisfied by its own SIGNALs and the runtime may submit it on its own."""
        self.prog = Program()
        self.segments.append((name, self.prog))

    def _embed(self, prog, M, tokens_addr):
        H, r = self.H, self.r
        prog.add(Q_COMPUTE, isa.dma(gather=1, rows=M, row_bytes=H * 4, hbm_addr=tokens_addr,
                                    hbm_stride=0, spad_addr=r["Hn"], spad_stride=H * 4),
                 "embedding: gather rows")
        self._copy(prog, "embedding: to activation layout", M, H,
                   _sp(r["Hn"], self.vb, H * 4), self._act("X", M))

    def _rope_tables(self, prog, M, p0):
        """cos and sin of positions ``p0 … p0+M−1``, for every layer of the step."""
        r, hrow = self.r, self.hd // 2 * 4
        prog.add(Q_COMPUTE, isa.dma(rows=1, row_bytes=M * hrow,
                                    hbm_addr=self.img.cos_addr + p0 * hrow,
                                    spad_addr=r["CS"]), "rope cos")
        prog.add(Q_COMPUTE, isa.dma(rows=1, row_bytes=M * hrow,
                                    hbm_addr=self.img.sin_addr + p0 * hrow,
                                    spad_addr=r["CS"] + M * hrow), "rope sin")

    def _qk_decode(self, prog, name, qkv, g_q, g_k):
        """q/k-norm and RoPE of one token (decode): the heads are the rows of a few commands
        (one per q group for the rotated q, whose layout strides by group), the same
        arithmetic row by row as :meth:`_layer`'s per-head commands."""
        r, V, vb, hd = self.r, self.V, self.vb, self.hd
        nh, nkv, G = self.nh, self.nkv, self.G
        half, hrow = hd // 2, hd // 2 * 4
        cos, sin = _sp(r["CS"], vb, 0), _sp(r["CS"] + hrow, vb, 0)
        parts = [("q", 0, nh, g_q), ("k", nh, nkv, g_k)]
        src = {}
        for what, h0, n, gain in parts:
            acc = _ac(qkv + h0 * hd // V, 1, hd // V)
            if self.img.qcfg.qk_norm:
                dst = r["Qn"] + h0 * hd * 4
                self._rmsnorm(prog, f"{name}: {what} heads norm", 1, gain, hd, acc,
                              _sp(dst, vb, hd * 4), rows=n)
                src[what] = (_sp(dst, vb, hd * 4), _sp(dst + hrow, vb, hd * 4))
            else:
                src[what] = (acc, _ac(qkv + h0 * hd // V + half // V, 1, hd // V))
        def heads_from(op, h):          # the operand's rows from head h on
            return dict(op, addr=op["addr"] + h * (hd * 4 if op["space"] == 0 else hd // V))

        # Rotated q: group g's G heads at Qr + g·G·hd·4, head by head VB apart.
        for g in range(nkv):
            x1, x2 = (heads_from(op, g * G) for op in src["q"])
            base = r["Qr"] + g * G * hd * 4
            lo, hi = _sp(base, G * vb, vb), _sp(base + (half // V) * G * vb, G * vb, vb)
            self._vpu(prog, VpuCmd.ROPE_LO, f"{name}: q group {g} rope", rows=G,
                      length=half, a=x1, b=x2, c=cos, d=sin, dst=lo)
            self._vpu(prog, VpuCmd.ROPE_HI, f"{name}: q group {g} rope", rows=G,
                      length=half, a=x2, b=x1, c=cos, d=sin, dst=hi)
        x1, x2 = src["k"]
        lo, hi = _sp(r["Kr"], vb, hd * 4), _sp(r["Kr"] + hrow, vb, hd * 4)
        self._vpu(prog, VpuCmd.ROPE_LO, f"{name}: k heads rope", rows=nkv, length=half,
                  a=x1, b=x2, c=cos, d=sin, dst=lo)
        self._vpu(prog, VpuCmd.ROPE_HI, f"{name}: k heads rope", rows=nkv, length=half,
                  a=x2, b=x1, c=cos, d=sin, dst=hi)

    def _rmsnorm(self, prog, label, M, gain_addr, length, src, dst, rows=None):
        eps = _f32(self.img.qcfg.rms_norm_eps)
        self._vpu(prog, VpuCmd.RMSNORM, label, rows=rows or M, length=length,
                  scalar=_f32(1.0 / length), scalar2=eps, a=src,
                  b=_sp(gain_addr, self.vb, 0), dst=dst)

    def _layer(self, layer, M, p0, page_lists):
        prog = self.prog
        img, r, V, vb = self.img.layers[layer], self.r, self.V, self.vb
        H, hd, nh, nkv, G = self.H, self.hd, self.nh, self.nkv, self.G
        name = f"layer {layer}"
        hb, db = _align(H * 4, vb), _align(hd * 4, vb)
        c = r["consts"]
        g_in, g_post, g_q, g_k = c, c + hb, c + 2 * hb, c + 2 * hb + db
        nconst = 2 * hb + (2 * db if self.img.qcfg.qk_norm else 0)
        prog.add(Q_COMPUTE, isa.dma(rows=1, row_bytes=nconst, hbm_addr=img.consts,
                                    spad_addr=c), f"{name}: norm gains")
        # Attention block.
        self._rmsnorm(prog, f"{name}: input norm", M, g_in, H, self._act("X", M),
                      self._act("Hn", M))
        qkv = r["QKV"]
        self._linear(prog, img.qkv, r["Hn"], M, qkv)
        head_acc = lambda h: qkv + (h * hd // V) * M          # noqa: E731 (head h of q|k|v)
        half = hd // 2
        hrow = half * 4
        cos, sin = _sp(r["CS"], vb, hrow), _sp(r["CS"] + M * hrow, vb, hrow)
        Mq = M * G
        if M == 1:
            self._qk_decode(prog, name, qkv, g_q, g_k)
        for h in range(nh + nkv if M > 1 else 0):
            is_q = h < nh
            what = f"q head {h}" if is_q else f"k head {h - nh}"
            if self.img.qcfg.qk_norm:
                dst = r["Qn"] + h * M * hd * 4
                self._rmsnorm(prog, f"{name}: {what} norm", M, g_q if is_q else g_k, hd,
                              _ac(head_acc(h), M, 1), _sp(dst, vb, hd * 4))
                x1, x2 = _sp(dst, vb, hd * 4), _sp(dst + hrow, vb, hd * 4)
            else:
                x1 = _ac(head_acc(h), M, 1)
                x2 = _ac(head_acc(h) + (half // V) * M, M, 1)
            if is_q:
                g, hl = divmod(h, G)
                base = r["Qr"] + g * Mq * hd * 4 + hl * M * vb
                lo, hi = (_sp(base, Mq * vb, vb),
                          _sp(base + (half // V) * Mq * vb, Mq * vb, vb))
            else:
                base = r["Kr"] + (h - nh) * M * hd * 4
                lo, hi = _sp(base, vb, hd * 4), _sp(base + hrow, vb, hd * 4)
            self._vpu(prog, VpuCmd.ROPE_LO, f"{name}: {what} rope", rows=M, length=half,
                      a=x1, b=x2, c=cos, d=sin, dst=lo)
            self._vpu(prog, VpuCmd.ROPE_HI, f"{name}: {what} rope", rows=M, length=half,
                      a=x2, b=x1, c=cos, d=sin, dst=hi)
        self._vpu(prog, VpuCmd.SCALE, f"{name}: q / sqrt(head_dim)", rows=nh * M, length=hd,
                  scalar=_f32(1.0 / np.sqrt(hd)), a=_sp(r["Qr"], vb, hd * 4),
                  dst=_sp(r["Qr"], vb, hd * 4))
        if M == 1:                # every head one row of one command
            self._copy(prog, f"{name}: v heads", nkv, hd,
                       _ac(head_acc(nh + nkv), 1, hd // V), _sp(r["Vt"], vb, hd * 4))
        for g in range(nkv if M > 1 else 0):
            self._copy(prog, f"{name}: v head {g}", M, hd, _ac(head_acc(nh + nkv + g), M, 1),
                       _sp(r["Vt"] + g * M * hd * 4, vb, hd * 4))
        # Append this step's keys and values to the cache pages.
        P, stores = self.P, 0
        for g in range(nkv):
            _, kpages = page_lists[(layer, g, "k")]
            _, vpages = page_lists[(layer, g, "v")]
            for m in range(M):
                if stores >= self.STORES_PER_SEGMENT:
                    self._cut(f"{name} (kv stores)")
                    prog, stores = self.prog, 0
                stores += 2
                p = p0 + m
                page, s = divmod(p, P)
                src = (g * M + m) * hd * 4
                prog.add(Q_COMPUTE, isa.dma(
                    store=1, rows=hd, row_bytes=4, spad_addr=r["Kr"] + src, spad_stride=4,
                    hbm_addr=kpages[page] + (s // V) * hd * vb + (s % V) * 4, hbm_stride=vb),
                    f"{name}: store k head {g} position {p}")
                prog.add(Q_COMPUTE, isa.dma(
                    store=1, rows=hd // V, row_bytes=vb, spad_addr=r["Vt"] + src,
                    spad_stride=vb, hbm_addr=vpages[page] + s * vb, hbm_stride=P * vb),
                    f"{name}: store v head {g} position {p}")
        if stores > self.STORES_PER_SEGMENT // 2:
            self._cut(f"{name} (attention)")
            prog = self.prog
        L = p0 + M
        if r["overlap"]:
            prog.add(Q_COMPUTE, isa.signal(SEM_STORED, 1), f"{name}: kv stored")
            self.stored += 1
            prog.add(Q_GATHER, isa.wait(SEM_STORED, self.stored), f"{name}: wait kv stored")
            ready = {}
            for g in range(nkv):
                for kind in ("k", "v"):
                    self._gather(prog, Q_GATHER, name, layer, g, kind, 0, L, page_lists)
                    prog.add(Q_GATHER, isa.signal(SEM_GATHERED, 1),
                             f"{name}: kv head {g} {kind} gathered")
                    self.gathered += 1
                    ready[g, kind] = self.gathered
            for g in range(nkv):
                self._attention(prog, name, layer, g, M, p0, L, page_lists, ready=ready)
        else:
            for g in range(nkv):
                self._attention(prog, name, layer, g, M, p0, L, page_lists)
        # Output projection and residual, block by block.
        def residual(prog, c_row, blk):
            self._vpu(prog, VpuCmd.ADD, f"{name}: residual", rows=M, length=blk.nb,
                      a=self._act("X", M, blk.n0), b=_ac(c_row, M, 1),
                      dst=self._act("X", M, blk.n0))
        self._linear(prog, img.o, r["Attn"], M, r["LIN"], reuse=True, epilogue=residual)
        # MLP.
        self._rmsnorm(prog, f"{name}: post-attention norm", M, g_post, H, self._act("X", M),
                      self._act("Hn", M))

        def swiglu(prog, c_row, blk):
            h = blk.nb // 2
            n0 = blk.n0 // 2
            self._vpu(prog, VpuCmd.SWIGLU, f"{name}: swiglu", rows=M, length=h,
                      a=_ac(c_row, M, 1), b=_ac(c_row + (h // V) * M, M, 1),
                      dst=self._act("Act", M, n0))
        self._linear(prog, img.gate_up, r["Hn"], M, r["LIN"], reuse=True, epilogue=swiglu)
        self._linear(prog, img.down, r["Act"], M, r["LIN"], reuse=True, epilogue=residual)

    def _gather(self, prog, queue, name, layer, g, kind, c, n, page_lists):
        """Gather the pages of positions ``c·Lc … c·Lc+n−1`` of KV head ``g``'s K or V
        (``kind``) into its buffer. Part ``nt`` of V (columns ``nt·V …``) lands at
        ``Vbuf + nt·n·VB``, the B layout of one ``p·V`` GEMM over all of head_dim; whole
        pages are gathered, so a part spills past its ``n`` rows into the next part, which
        is gathered after it."""
        r, vb, V, P, Lc = self.r, self.vb, self.V, self.P, self.Lc
        lst, _ = page_lists[(layer, g, kind)]
        pages = -(-n // P)
        first = c * Lc // P
        i = g if r["overlap"] else 0
        what = f"{name}: kv head {g}: gather {kind} pages {first}+{pages}"
        if kind == "k":
            prog.add(queue, isa.dma(gather=1, rows=pages, row_bytes=self.page_bytes,
                                    hbm_addr=lst + first * 8, hbm_stride=0,
                                    spad_addr=r["Kbufs"][i], spad_stride=self.page_bytes),
                     what)
            return
        for nt in range(self.hd // V):
            prog.add(queue, isa.dma(gather=1, rows=pages, row_bytes=P * vb,
                                    hbm_addr=lst + first * 8, hbm_stride=nt * P * vb,
                                    spad_addr=r["Vbufs"][i] + nt * n * vb,
                                    spad_stride=P * vb), f"{what} part {nt}")

    def _pages(self, prog, name, layer, g, kind, c, n, page_lists, ready):
        """Chunk ``c``'s K or V pages for queue 1: gathered there, or (``ready``) waited for."""
        if ready is None:
            self._gather(prog, Q_COMPUTE, name, layer, g, kind, c, n, page_lists)
        else:
            prog.add(Q_COMPUTE, isa.wait(SEM_GATHERED, ready[g, kind]),
                     f"{name}: kv head {g}: wait {kind} pages")

    def _attention(self, prog, name, layer, g, M, p0, L, page_lists, ready=None):
        """Attention of KV head ``g``'s query heads on queue 1; with ``ready`` (gathers on
        queue 2: ``(g, kind) → SEM_GATHERED count``) it waits for them instead."""
        r, V, vb, hd, G, Lc = self.r, self.V, self.vb, self.hd, self.G, self.Lc
        Mq = M * G
        q_addr = r["Qr"] + g * Mq * hd * 4
        i = g if r["overlap"] else 0
        what = f"{name}: kv head {g}"
        chunks = -(-L // Lc)
        for c in range(chunks):
            n = min(Lc, L - c * Lc)
            self._pages(prog, name, layer, g, "k", c, n, page_lists, ready)
            cmd = make_command(m=Mq, n=n, k=hd, fmt_a=Format.FP32, fmt_b=Format.FP32,
                               a_addr=q_addr, b_addr=r["Kbufs"][i],
                               c_row=r["S"] + (c * Lc // V) * Mq)
            prog.add(Q_COMPUTE, isa.gemm(cmd), f"{what}: scores {c * Lc}+{n}")
        if M == 1:
            # One token: its G heads are the rows, and nothing lies past its position.
            self._vpu(prog, VpuCmd.SOFTMAX, f"{what}: softmax", rows=G, length=L,
                      a=_ac(r["S"], G, 1), dst=_sp(r["Pr"], G * vb, vb))
        for hl in range(G if M > 1 else 0):
            self._vpu(prog, VpuCmd.SOFTMAX, f"{what}: softmax q head {g * G + hl}", rows=M,
                      length=L, causal=1, query=p0, a=_ac(r["S"] + hl * M, Mq, 1),
                      dst=_sp(r["Pr"] + hl * M * vb, Mq * vb, vb))
        for c in range(chunks):
            n = min(Lc, L - c * Lc)
            self._pages(prog, name, layer, g, "v", c, n, page_lists, ready)
            cmd = make_command(m=Mq, n=hd, k=n, fmt_a=Format.FP32, fmt_b=Format.FP32,
                               accumulate=int(c > 0), a_addr=r["Pr"] + (c * Lc // V) * Mq * vb,
                               b_addr=r["Vbufs"][i], c_row=r["O"])
            prog.add(Q_COMPUTE, isa.gemm(cmd), f"{what}: p·v {c * Lc}+{n}")
        if M == 1:
            self._copy(prog, f"{what}: attention out", G, hd, _ac(r["O"], G, 1),
                       _sp(self.r["Attn"] + g * G * hd * 4, vb, hd * 4))
        for hl in range(G if M > 1 else 0):
            h = g * G + hl
            self._copy(prog, f"{what}: attention out head {h}", M, hd,
                       _ac(r["O"] + hl * M, Mq, 1), self._act("Attn", M, h * hd))

    def _head(self, prog, M, out_addr, logits):
        r, vb, V = self.r, self.vb, self.V
        H = self.H
        prog.add(Q_COMPUTE, isa.dma(rows=1, row_bytes=H * 4, hbm_addr=self.img.norm_addr,
                                    spad_addr=r["consts"]), "final norm gain")
        self._rmsnorm(prog, "final norm", M, r["consts"], H, self._act("X", M),
                      self._act("Hn", M))
        nblocks = [0]

        def pick(prog, c_row, blk):
            i = nblocks[0]
            last = _ac(c_row + M - 1, M, 1)
            self._vpu(prog, VpuCmd.ARGMAX, f"head block {i}: argmax", rows=1, length=blk.nb,
                      a=last, dst=_sp(r["out"] + 2 * i * vb, vb, vb))
            self._vpu(prog, VpuCmd.RMAX, f"head block {i}: max", rows=1, length=blk.nb,
                      a=last, dst=_sp(r["out"] + (2 * i + 1) * vb, vb, vb))
            if logits is not None:
                addr, mode = logits
                rows = M if mode == "all" else 1
                first = 0 if mode == "all" else M - 1
                width = _align(blk.nb, V) * 4
                self._copy(prog, f"head block {i}: logits", rows, blk.nb,
                           _ac(c_row + first, M, 1), _sp(r["LG"], vb, width))
                prog.add(Q_COMPUTE, isa.dma(store=1, rows=rows, row_bytes=blk.nb * 4,
                                            spad_addr=r["LG"], spad_stride=width,
                                            hbm_addr=addr + blk.n0 * 4,
                                            hbm_stride=self.vocab * 4),
                         f"head block {i}: store logits")
            nblocks[0] += 1
        self._linear(prog, self.img.head, r["Hn"], M, r["LIN"], reuse=True, epilogue=pick)
        prog.add(Q_COMPUTE, isa.dma(store=1, rows=2 * nblocks[0], row_bytes=4,
                                    spad_addr=r["out"], spad_stride=vb, hbm_addr=out_addr,
                                    hbm_stride=4), "store argmax")
