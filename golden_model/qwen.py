"""Reference Qwen3 / Qwen2 decoder in pure numpy.

This is the *functional* reference for the whole-model path: it reproduces Hugging Face
``transformers`` ``Qwen3ForCausalLM`` / ``Qwen2ForCausalLM`` (eager attention, CPU) in float64
or float32 arithmetic, and is itself checked against them in ``tests/test_golden_qwen.py``.
It is *not* the bit-exact chip model: it uses ``np.matmul`` (BLAS) freely, so its float32 mode
is not bit-stable across shapes (prefill vs decode); the bit-exact composition of the op
functions (:mod:`golden_model.vpu`, :mod:`golden_model.mxu`) is a separate "chip mode".

Architecture, per decoder layer, pre-norm::

    h = RMSNorm(x; input_layernorm)
    q, k, v = h·Wqᵀ (+bq), h·Wkᵀ (+bk), h·Wvᵀ (+bv)      # Qwen2: q/k/v biases always
    q, k = RMSNorm_d(q; q_norm), RMSNorm_d(k; k_norm)    # Qwen3 only, per head over head_dim
    q, k = RoPE(q, p), RoPE(k, p)                        # NeoX half split (rotate_half)
    o_h = softmax(q_h·K_gᵀ·d^-0.5 + causal) · V_g        # GQA: g = h // (nh / nkv)
    x = x + concat(o)·Woᵀ (+bo)                          # bo only for Qwen3 attention_bias
    x = x + Wd·(silu(Wg·RMSNorm(x)) * Wu·RMSNorm(x))     # SwiGLU, post_attention_layernorm

then ``logits = RMSNorm(x; norm)·Wlmᵀ`` with ``Wlm = embed_tokens`` when tied.

RMSNorm is ``x · 1/sqrt(mean(x²) + eps)`` followed by the gain (normalise first, gain second).
RoPE uses ``inv_freq = θ^(-2i/d)``, ``angle = p·inv_freq``, ``cos/sin`` of ``cat(angle, angle)``.

Precision modes (``dtype=``):

- ``np.float64``: every step in float64, RoPE angles included. HF's "float64" model still
  computes RMSNorm, the softmax and the RoPE tables in float32, which is what limits the
  agreement: measured max |Δlogit| <= 1.4e-6 on the six test models (logit std 0.7-2.2),
  test bound 2e-5.
- ``np.float32``: every step in float32, the RoPE tables computed the way HF does (float32
  ``inv_freq``, float32 ``p·inv_freq``, float32 cos/sin), RMSNorm and softmax in float32.
  Measured max |Δlogit| <= 3.7e-6 against HF float64 on the same models, test bound 5e-5.

API::

    model = QwenModel.from_pretrained("ckpt_dir", dtype=np.float64)
    logits, cache = model.forward(prompt_ids)          # prefill: logits (T, vocab)
    logits, cache = model.forward([tok], cache)        # decode: one token appended
    tokens = model.greedy(prompt_ids, 32)              # prefill + KV-cache decode, argmax

Errors are typed: :class:`CheckpointError` (missing/unreadable file, missing tensor, wrong
shape; the message names it) and :class:`UnsupportedConfig` (sliding window, rope scaling other
than ``default``, ``model_type`` other than qwen2/qwen3, non-SiLU activation, ...). Both derive
from :class:`QwenError` (a ``ValueError``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "QwenError", "CheckpointError", "UnsupportedConfig", "QwenConfig", "KVCache", "QwenModel",
    "load_safetensors", "random_checkpoint", "save_checkpoint",
]

SUPPORTED_MODEL_TYPES = ("qwen2", "qwen3")
DEFAULT_ROPE_THETA = 10_000.0   # transformers' RotaryEmbeddingConfigMixin.default_theta


class QwenError(ValueError):
    """Base class of the errors raised by this module."""


class CheckpointError(QwenError):
    """A checkpoint file is missing or unreadable, or a tensor is missing or has a bad shape."""


class UnsupportedConfig(QwenError):
    """The config asks for something this reference decoder does not implement."""


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------

def _rope_theta(d: dict[str, Any]) -> float:
    """θ as transformers 5 resolves it: ``rope_parameters`` (or legacy ``rope_scaling``) first,
    then top-level ``rope_theta``, then the library default 10000. Non-default rope types
    (linear, dynamic, yarn, llama3, ...) and partial rotary factors are rejected."""
    theta = d.get("rope_theta")
    for key in ("rope_parameters", "rope_scaling"):
        rp = d.get(key)
        if rp is None:
            continue
        if not isinstance(rp, dict):
            raise UnsupportedConfig(f"config '{key}' must be a dict, got {type(rp).__name__}")
        if rp and all(isinstance(v, dict) for v in rp.values()):
            raise UnsupportedConfig(f"per-layer-type '{key}' ({sorted(rp)}) is not supported")
        rope_type = rp.get("rope_type", rp.get("type", "default"))
        if rope_type not in (None, "default"):
            raise UnsupportedConfig(f"rope type {rope_type!r} in '{key}' (only 'default')")
        prf = rp.get("partial_rotary_factor", 1.0)
        if prf not in (None, 1, 1.0):
            raise UnsupportedConfig(f"partial_rotary_factor {prf} (only 1.0)")
        if rp.get("rope_theta") is not None:
            theta = rp["rope_theta"]
            break
    prf = d.get("partial_rotary_factor", 1.0)
    if prf not in (None, 1, 1.0):
        raise UnsupportedConfig(f"partial_rotary_factor {prf} (only 1.0)")
    theta = DEFAULT_ROPE_THETA if theta is None else theta
    try:
        theta = float(theta)
    except (TypeError, ValueError):
        raise CheckpointError(f"config rope_theta {theta!r} is not a number") from None
    if not theta > 1.0:
        raise CheckpointError(f"config rope_theta {theta} must be > 1")
    return theta


@dataclass(frozen=True)
class QwenConfig:
    """The config.json fields the decoder needs, validated. Build with :meth:`from_dict` or
    :meth:`from_pretrained_dir`."""

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = DEFAULT_ROPE_THETA
    tie_word_embeddings: bool = False
    qkv_bias: bool = False           # Qwen2: always; Qwen3: attention_bias
    o_bias: bool = False             # Qwen3 attention_bias only
    qk_norm: bool = False            # Qwen3
    max_position_embeddings: int = 32768
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def groups(self) -> int:
        """Query heads per KV head (``num_key_value_groups``)."""
        return self.num_attention_heads // self.num_key_value_heads

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QwenConfig:
        if not isinstance(d, dict):
            raise CheckpointError(f"config must be a JSON object, got {type(d).__name__}")
        model_type = d.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedConfig(
                f"model_type {model_type!r} (supported: {', '.join(SUPPORTED_MODEL_TYPES)})")

        def req(name: str) -> int:
            if d.get(name) is None:
                raise CheckpointError(f"config lacks required field '{name}'")
            v = d[name]
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise CheckpointError(f"config field '{name}' = {v!r} is not a positive integer")
            return v

        vocab, hidden = req("vocab_size"), req("hidden_size")
        inter, layers = req("intermediate_size"), req("num_hidden_layers")
        nh = req("num_attention_heads")
        nkv = d.get("num_key_value_heads")
        nkv = nh if nkv is None else req("num_key_value_heads")
        if nh % nkv:
            raise UnsupportedConfig(f"num_attention_heads {nh} not a multiple of "
                                    f"num_key_value_heads {nkv}")
        if d.get("head_dim") is not None:
            head_dim = req("head_dim")
        else:
            if hidden % nh:
                raise CheckpointError(f"no head_dim and hidden_size {hidden} not divisible by "
                                      f"num_attention_heads {nh}")
            head_dim = hidden // nh
        if head_dim % 2:
            raise UnsupportedConfig(f"head_dim {head_dim} is odd (RoPE needs pairs)")

        act = d.get("hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise UnsupportedConfig(f"hidden_act {act!r} (only 'silu')")
        if d.get("use_sliding_window"):
            raise UnsupportedConfig("use_sliding_window is enabled (sliding-window attention "
                                    "is not supported)")
        layer_types = d.get("layer_types")
        if layer_types is not None:
            other = sorted({t for t in layer_types if t != "full_attention"})
            if other:
                raise UnsupportedConfig(f"layer_types {other} (only 'full_attention')")
        eps = d.get("rms_norm_eps", 1e-6)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise CheckpointError(f"config rms_norm_eps {eps!r} is not a positive number")

        attention_bias = bool(d.get("attention_bias", False))
        qwen3 = model_type == "qwen3"
        known = {f for f in cls.__dataclass_fields__}
        return cls(
            model_type=model_type, vocab_size=vocab, hidden_size=hidden,
            intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=nh,
            num_key_value_heads=nkv, head_dim=head_dim, rms_norm_eps=float(eps),
            rope_theta=_rope_theta(d),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            qkv_bias=attention_bias if qwen3 else True,
            o_bias=attention_bias if qwen3 else False,
            qk_norm=qwen3,
            max_position_embeddings=int(d.get("max_position_embeddings") or 32768),
            bos_token_id=d.get("bos_token_id"), eos_token_id=d.get("eos_token_id"),
            extra={k: v for k, v in d.items() if k not in known},
        )

    @classmethod
    def from_pretrained_dir(cls, path: str | os.PathLike) -> QwenConfig:
        p = Path(path) / "config.json"
        try:
            text = p.read_text()
        except OSError as e:
            raise CheckpointError(f"cannot read {p}: {e.strerror or e}") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{p} is not valid JSON: {e}") from None
        return cls.from_dict(d)


# --------------------------------------------------------------------------------------------
# Checkpoint reading
# --------------------------------------------------------------------------------------------

_NUMPY_DTYPES = {"F64", "F32", "F16", "I64", "U64", "I32", "U32", "I16", "U16", "I8", "U8",
                 "BOOL"}


def _read_safetensors_file(path: Path) -> dict[str, np.ndarray]:
    """One .safetensors file as numpy arrays: ``safetensors.numpy.load_file``, or, for dtypes
    numpy lacks (BF16, FP8; real Qwen checkpoints are BF16), a minimal reader of the format
    (8-byte header length, JSON header, raw little-endian data) via ``ml_dtypes``."""
    from safetensors.numpy import load_file
    if not path.is_file():
        raise CheckpointError(f"missing checkpoint file {path}")
    try:
        with path.open("rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or n > 100 * 2**20:
                raise ValueError(f"implausible header length {n}")
            header = json.loads(f.read(n))
        kinds = {info["dtype"] for name, info in header.items() if name != "__metadata__"}
        if kinds <= _NUMPY_DTYPES:
            return load_file(str(path))
        import ml_dtypes
        dtypes = {"BF16": ml_dtypes.bfloat16, "F8_E4M3": ml_dtypes.float8_e4m3fn,
                  "F8_E5M2": ml_dtypes.float8_e5m2, "F64": np.float64, "F32": np.float32,
                  "F16": np.float16, "I64": np.int64, "I32": np.int32, "I16": np.int16,
                  "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
        raw = path.read_bytes()
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if info["dtype"] not in dtypes:
                raise CheckpointError(f"{path}: tensor '{name}' has unsupported dtype "
                                      f"{info['dtype']}")
            dt = np.dtype(dtypes[info["dtype"]])
            a, b = info["data_offsets"]
            out[name] = np.frombuffer(raw, dt, offset=8 + n + a,
                                      count=(b - a) // dt.itemsize).reshape(info["shape"])
        return out
    except CheckpointError:
        raise
    except Exception as e:                      # noqa: BLE001 (json, safetensors, numpy errors)
        raise CheckpointError(f"cannot read {path}: {type(e).__name__}: {e}") from None


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint directory: ``model.safetensors``, or the shards listed in
    ``model.safetensors.index.json``."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {path} does not exist")
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file() or not index.is_file():
        return _read_safetensors_file(single)
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"bad shard index {index}: {e}") from None
    tensors: dict[str, np.ndarray] = {}
    for shard in sorted(set(weight_map.values())):
        tensors.update(_read_safetensors_file(path / shard))
    return tensors


def random_checkpoint(config: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    """Float32 tensors of a randomly initialised checkpoint for ``config`` (a config.json
    dict), scaled like a trained model's (unit-variance activations, gains near 1): test models
    of any shape without a training run."""
    cfg = QwenConfig.from_dict(config)
    rng = np.random.default_rng(seed)
    H, F, V = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    nh, nkv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim

    def w(out: int, inp: int) -> np.ndarray:
        return rng.normal(0.0, inp ** -0.5, (out, inp))

    def gain(n: int) -> np.ndarray:
        return 1.0 + 0.1 * rng.normal(size=n)

    t = {"model.embed_tokens.weight": rng.normal(0.0, 1.0, (V, H)), "model.norm.weight": gain(H)}
    for i in range(cfg.num_hidden_layers):
        p, a = f"model.layers.{i}.", f"model.layers.{i}.self_attn."
        t.update({p + "input_layernorm.weight": gain(H),
                  p + "post_attention_layernorm.weight": gain(H),
                  a + "q_proj.weight": w(nh * d, H), a + "k_proj.weight": w(nkv * d, H),
                  a + "v_proj.weight": w(nkv * d, H), a + "o_proj.weight": w(H, nh * d),
                  p + "mlp.gate_proj.weight": w(F, H), p + "mlp.up_proj.weight": w(F, H),
                  p + "mlp.down_proj.weight": w(H, F)})
        if cfg.qk_norm:
            t[a + "q_norm.weight"], t[a + "k_norm.weight"] = gain(d), gain(d)
        if cfg.qkv_bias:
            for name, n in (("q", nh), ("k", nkv), ("v", nkv)):
                t[a + f"{name}_proj.bias"] = 0.1 * rng.normal(size=n * d)
        if cfg.o_bias:
            t[a + "o_proj.bias"] = 0.1 * rng.normal(size=H)
    if not cfg.tie_word_embeddings:
        t["lm_head.weight"] = rng.normal(0.0, H ** -0.5, (V, H))
    return {k: v.astype(np.float32) for k, v in t.items()}


def save_checkpoint(path: str | os.PathLike, config: dict[str, Any],
                    tensors: dict[str, np.ndarray]) -> Path:
    """Write an HF-format checkpoint directory: ``config.json`` and ``model.safetensors``."""
    from safetensors.numpy import save_file
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()},
              str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

@dataclass
class KVCache:
    """Per-layer keys (after q/k-norm and RoPE) and values, each ``(nkv, length, head_dim)``."""

    k: list[np.ndarray]
    v: list[np.ndarray]

    @property
    def length(self) -> int:
        """Number of cached positions (the position of the next token)."""
        return self.k[0].shape[1] if self.k else 0

    @classmethod
    def empty(cls, cfg: QwenConfig, dtype) -> KVCache:
        shape = (cfg.num_key_value_heads, 0, cfg.head_dim)
        return cls([np.zeros(shape, dtype) for _ in range(cfg.num_hidden_layers)],
                   [np.zeros(shape, dtype) for _ in range(cfg.num_hidden_layers)])


@dataclass
class _Layer:
    w_in: np.ndarray
    wq: np.ndarray
    wk: np.ndarray
    wv: np.ndarray
    wo: np.ndarray
    bq: np.ndarray | None
    bk: np.ndarray | None
    bv: np.ndarray | None
    bo: np.ndarray | None
    w_qn: np.ndarray | None
    w_kn: np.ndarray | None
    w_post: np.ndarray
    wg: np.ndarray
    wu: np.ndarray
    wd: np.ndarray


class QwenModel:
    """Reference decoder. Weights are held in ``dtype`` (float64 or float32), row-major as in
    the checkpoint (``out_features × in_features``)."""

    def __init__(self, cfg: QwenConfig, tensors: dict[str, np.ndarray], dtype=np.float64):
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise UnsupportedConfig(f"dtype {dtype} (only float64 or float32)")
        self.cfg, self.dtype = cfg, dtype
        H, F, V = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
        nh, nkv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim

        def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
            if name not in tensors:
                raise CheckpointError(f"checkpoint lacks tensor '{name}'")
            a = tensors[name]
            if tuple(a.shape) != shape:
                raise CheckpointError(f"tensor '{name}' has shape {tuple(a.shape)}, "
                                      f"expected {shape}")
            return np.ascontiguousarray(np.asarray(a).astype(dtype))

        self.embed = get("model.embed_tokens.weight", (V, H))
        self.layers: list[_Layer] = []
        for i in range(cfg.num_hidden_layers):
            p = f"model.layers.{i}."
            a = p + "self_attn."
            self.layers.append(_Layer(
                w_in=get(p + "input_layernorm.weight", (H,)),
                wq=get(a + "q_proj.weight", (nh * d, H)),
                wk=get(a + "k_proj.weight", (nkv * d, H)),
                wv=get(a + "v_proj.weight", (nkv * d, H)),
                wo=get(a + "o_proj.weight", (H, nh * d)),
                bq=get(a + "q_proj.bias", (nh * d,)) if cfg.qkv_bias else None,
                bk=get(a + "k_proj.bias", (nkv * d,)) if cfg.qkv_bias else None,
                bv=get(a + "v_proj.bias", (nkv * d,)) if cfg.qkv_bias else None,
                bo=get(a + "o_proj.bias", (H,)) if cfg.o_bias else None,
                w_qn=get(a + "q_norm.weight", (d,)) if cfg.qk_norm else None,
                w_kn=get(a + "k_norm.weight", (d,)) if cfg.qk_norm else None,
                w_post=get(p + "post_attention_layernorm.weight", (H,)),
                wg=get(p + "mlp.gate_proj.weight", (F, H)),
                wu=get(p + "mlp.up_proj.weight", (F, H)),
                wd=get(p + "mlp.down_proj.weight", (H, F)),
            ))
        self.norm = get("model.norm.weight", (H,))
        self.tied = cfg.tie_word_embeddings or "lm_head.weight" not in tensors
        self.lm_head = self.embed if self.tied else get("lm_head.weight", (V, H))
        self.inv_freq = self._inv_freq()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype=np.float64) -> QwenModel:
        """Load an HF-format checkpoint directory (config.json + model.safetensors)."""
        cfg = QwenConfig.from_pretrained_dir(path)
        return cls(cfg, load_safetensors(path), dtype=dtype)

    # ---- building blocks ---------------------------------------------------------------

    def _inv_freq(self) -> np.ndarray:
        d = self.cfg.head_dim
        if self.dtype == np.float32:            # as HF: float32 exponent, pow and divide
            f32 = np.float32
            return (f32(1.0) / (f32(self.cfg.rope_theta)
                                ** (np.arange(0, d, 2, dtype=f32) / f32(d)))).astype(f32)
        return 1.0 / self.cfg.rope_theta ** (np.arange(0, d, 2, dtype=np.float64) / d)

    def rope_tables(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``cos, sin`` of shape ``(len(positions), head_dim)`` (the half table repeated)."""
        ang = positions.astype(self.dtype)[:, None] * self.inv_freq[None, :]
        ang = np.concatenate([ang, ang], axis=-1)
        return np.cos(ang).astype(self.dtype), np.sin(ang).astype(self.dtype)

    def _rmsnorm(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        var = np.mean(x * x, axis=-1, keepdims=True)
        return w * (x * (1.0 / np.sqrt(var + self.dtype.type(self.cfg.rms_norm_eps))))

    @staticmethod
    def _rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        """``x·cos + rotate_half(x)·sin``; x is ``(heads, T, d)``, cos/sin ``(T, d)``."""
        half = x.shape[-1] // 2
        rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * cos + rot * sin

    @staticmethod
    def _linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        y = x @ w.T
        return y if b is None else y + b

    def _attention(self, L: _Layer, h: np.ndarray, layer: int, cache: KVCache,
                   cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        cfg, T = self.cfg, h.shape[0]
        nh, nkv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        q = self._linear(h, L.wq, L.bq).reshape(T, nh, d).transpose(1, 0, 2)
        k = self._linear(h, L.wk, L.bk).reshape(T, nkv, d).transpose(1, 0, 2)
        v = self._linear(h, L.wv, L.bv).reshape(T, nkv, d).transpose(1, 0, 2)
        if cfg.qk_norm:
            q, k = self._rmsnorm(q, L.w_qn), self._rmsnorm(k, L.w_kn)
        q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
        start = cache.k[layer].shape[1]
        K = cache.k[layer] = np.concatenate([cache.k[layer], k], axis=1)
        Vc = cache.v[layer] = np.concatenate([cache.v[layer], v], axis=1)
        S = K.shape[1]
        kv = np.arange(nh) // cfg.groups                  # GQA: query head -> KV head
        scores = (q @ K[kv].transpose(0, 2, 1)) * self.dtype.type(d ** -0.5)   # (nh, T, S)
        # causal: query t (absolute position start + t) sees keys 0..start + t
        masked = np.arange(S)[None, :] > (start + np.arange(T))[:, None]
        scores = np.where(masked[None], -np.inf, scores)
        scores = scores - scores.max(axis=-1, keepdims=True)
        e = np.exp(scores)
        probs = e / e.sum(axis=-1, keepdims=True)
        o = (probs @ Vc[kv]).transpose(1, 0, 2).reshape(T, nh * d)
        return self._linear(o, L.wo, L.bo)

    # ---- public API --------------------------------------------------------------------

    def new_cache(self) -> KVCache:
        return KVCache.empty(self.cfg, self.dtype)

    def forward(self, ids, cache: KVCache | None = None) -> tuple[np.ndarray, KVCache]:
        """Run ``ids`` (1-D token ids) at positions ``cache.length ..``; returns the logits
        ``(len(ids), vocab_size)`` in ``self.dtype`` and the cache, extended in place (a new
        one when ``cache`` is None). Prefill: many ids, no cache. Decode: one id and the
        cache."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be a non-empty 1-D integer array, got shape "
                             f"{ids.shape} dtype {ids.dtype}")
        if ids.min() < 0 or ids.max() >= self.cfg.vocab_size:
            raise ValueError(f"token id out of range [0, {self.cfg.vocab_size})")
        cache = self.new_cache() if cache is None else cache
        start = cache.length
        cos, sin = self.rope_tables(np.arange(start, start + ids.size))
        x = self.embed[ids]
        for i, L in enumerate(self.layers):
            x = x + self._attention(L, self._rmsnorm(x, L.w_in), i, cache, cos, sin)
            h = self._rmsnorm(x, L.w_post)
            g = self._linear(h, L.wg)
            silu = g / (1.0 + np.exp(-g))
            x = x + self._linear(silu * self._linear(h, L.wu), L.wd)
        x = self._rmsnorm(x, self.norm)
        return self._linear(x, self.lm_head), cache

    def greedy(self, prompt_ids, n: int, *, use_cache: bool = True,
               return_logits: bool = False):
        """``n`` greedily generated tokens after ``prompt_ids`` (argmax, ties to the lowest
        id; no EOS stop). ``use_cache=False`` recomputes the whole sequence each step.
        With ``return_logits`` returns ``(tokens, logits)``, logits ``(n, vocab)`` being the
        distribution each token was chosen from."""
        seq = [int(t) for t in np.asarray(prompt_ids).reshape(-1)]
        tokens, steps = [], []
        logits, cache = self.forward(seq)
        for i in range(n):
            last = logits[-1]
            tok = int(np.argmax(last))
            tokens.append(tok)
            steps.append(last)
            seq.append(tok)
            if i + 1 < n:
                logits, cache = (self.forward([tok], cache) if use_cache
                                 else self.forward(seq))
        out = np.array(tokens, dtype=np.int64)
        if return_logits:
            return out, (np.stack(steps) if steps
                         else np.zeros((0, self.cfg.vocab_size), self.dtype))
        return out
