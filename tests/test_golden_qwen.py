"""golden_model/qwen.py against Hugging Face transformers (Qwen3ForCausalLM / Qwen2ForCausalLM).

Random small models are built with transformers in float64 (eager attention, CPU), saved with
``save_pretrained`` (safetensors) and loaded by the numpy reference decoder. Checked:

- prefill: logits of the whole sequence (prompt + 32 generated tokens) vs HF's no-cache forward;
- decode: ``greedy`` with the KV cache vs HF ``generate`` (which decodes with its own cache):
  the 32 tokens and every step's logits;
- float64 mode: max |Δlogit| <= 2e-5 (HF's float64 model still does RMSNorm, softmax and the
  RoPE tables in float32; measured <= 1.4e-6). float32 mode vs the same HF float64 model:
  <= 5e-5 (measured <= 3.7e-6);
- config variants (v4-style top-level rope_theta, derived head_dim, tied/untied fallbacks,
  BF16 and sharded checkpoints), and the typed errors.

Weights are re-initialised (linears N(0, 1/fan_in), norm gains U(0.5, 1.5), biases N(0, 0.3²),
embedding/head scaled so logits have std ~1-2; a tied embedding is kept small, else the
residual stream keeps the input token and greedy repeats it): the default init gives
degenerate generations (numerics.md §2.2). Smallest top-1/top-2 logit gap over the 32 steps
is >= 7e-4 in every case, far above the measured error, so token equality is not luck.
"""

import json
import shutil

import numpy as np
import pytest

# The reference (pip extra `ref`; `make test` installs .[dev,ref]); never skipped.
import torch
from safetensors.numpy import load_file, save_file
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

from golden_model.qwen import (
    CheckpointError, KVCache, QwenConfig, QwenError, QwenModel, UnsupportedConfig,
)

torch.set_num_threads(1)

TOL_F64 = 2e-5
TOL_F32 = 5e-5
STEPS = 32
PROMPT = np.array([3, 17, 42, 5, 71, 64, 8], dtype=np.int64)

# name -> (model_type, seed, config kwargs)
CASES = {
    # GQA 4:2, explicit head_dim, untied head, θ = 1e6 (the Qwen3 value)
    "qwen3_gqa_untied": ("qwen3", 1, dict(
        vocab_size=128, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, rope_theta=1e6,
        tie_word_embeddings=False)),
    # MQA (nkv = 1), head_dim != hidden / heads (as in Qwen3-0.6B), tied head, 3 layers
    "qwen3_mqa_tied": ("qwen3", 2, dict(
        vocab_size=112, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=1, head_dim=32, rope_theta=1e4,
        tie_word_embeddings=True)),
    # MHA (nkv = nh), attention_bias (q/k/v/o biases), eps 1e-5
    "qwen3_mha_bias": ("qwen3", 3, dict(
        vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, head_dim=16, rope_theta=5e5,
        rms_norm_eps=1e-5, attention_bias=True, tie_word_embeddings=False)),
    # Qwen2: q/k/v biases, no q/k-norm, head_dim derived (64 / 4), GQA, untied
    "qwen2_gqa_untied": ("qwen2", 4, dict(
        vocab_size=128, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=1e6,
        tie_word_embeddings=False)),
    # Qwen2 MQA, tied, head_dim 8
    "qwen2_mqa_tied": ("qwen2", 5, dict(
        vocab_size=80, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=1, rope_theta=1e4,
        tie_word_embeddings=True)),
    # Qwen2 MHA (nkv = nh), untied, 3 layers
    "qwen2_mha_untied": ("qwen2", 6, dict(
        vocab_size=128, hidden_size=96, intermediate_size=192, num_hidden_layers=3,
        num_attention_heads=6, num_key_value_heads=6, rope_theta=1e6,
        tie_word_embeddings=False)),
}


def build_hf(kind: str, seed: int, **kw):
    """A random float64 HF model with well-conditioned weights."""
    cls_cfg, cls_model = ((Qwen3Config, Qwen3ForCausalLM) if kind == "qwen3"
                          else (Qwen2Config, Qwen2ForCausalLM))
    torch.manual_seed(seed)
    model = cls_model(cls_cfg(**kw, attn_implementation="eager")).to(torch.float64).eval()
    g = torch.Generator().manual_seed(seed)
    H = kw["hidden_size"]
    tied = kw.get("tie_word_embeddings", False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=p.dtype)
            if name.endswith("norm.weight"):
                p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) + 0.5)
            elif name.endswith("bias"):
                p.copy_(0.3 * r)
            elif "embed_tokens" in name:
                p.copy_(r * (0.1 if tied else 1.0))
            elif "lm_head" in name:
                p.copy_(r * (2.0 / H**0.5))
            else:
                p.copy_(r / p.shape[1] ** 0.5)
    return model


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """name -> (checkpoint dir, HF tokens, HF decode logits, HF prefill logits, hf model)."""
    out = {}
    for name, (kind, seed, kw) in CASES.items():
        model = build_hf(kind, seed, **kw)
        path = tmp_path_factory.mktemp(name)
        model.save_pretrained(path)
        with torch.no_grad():
            gen = model.generate(torch.from_numpy(PROMPT)[None], max_new_tokens=STEPS,
                                 do_sample=False, eos_token_id=None, pad_token_id=0,
                                 output_logits=True, return_dict_in_generate=True)
            seq = gen.sequences
            full = model(seq).logits[0].numpy()
        tokens = seq[0, len(PROMPT):].numpy()
        step_logits = torch.stack(gen.logits)[:, 0].numpy()
        out[name] = (path, tokens, step_logits, full, model)
    return out


def maxdiff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# ---------------------------------------------------------------------------------------------
# Agreement with transformers
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,tol", [(np.float64, TOL_F64), (np.float32, TOL_F32)],
                         ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_transformers(ckpts, name, dtype, tol):
    path, hf_tokens, hf_steps, hf_full, _ = ckpts[name]
    model = QwenModel.from_pretrained(path, dtype=dtype)
    assert model.cfg.model_type == CASES[name][0]
    assert model.tied == CASES[name][2]["tie_word_embeddings"]

    # decode with the KV cache vs HF generate
    tokens, steps = model.greedy(PROMPT, STEPS, return_logits=True)
    assert steps.dtype == dtype and steps.shape == hf_steps.shape
    assert maxdiff(steps, hf_steps) <= tol, maxdiff(steps, hf_steps)
    np.testing.assert_array_equal(tokens, hf_tokens)
    assert len(set(tokens.tolist())) > 1          # the test model is not degenerate

    # prefill of the whole sequence vs HF's no-cache forward
    seq = np.concatenate([PROMPT, hf_tokens])
    logits, cache = model.forward(seq)
    assert logits.shape == hf_full.shape and cache.length == len(seq)
    assert maxdiff(logits, hf_full) <= tol, maxdiff(logits, hf_full)
    np.testing.assert_array_equal(np.argmax(logits[len(PROMPT) - 1:-1], axis=-1), hf_tokens)

    # greedy without the cache (full recompute each step) gives the same tokens
    np.testing.assert_array_equal(model.greedy(PROMPT, STEPS, use_cache=False), hf_tokens)


def test_prefill_then_decode_equals_full_prefill(ckpts):
    """Chunked prefill + single-token decode steps == one prefill, in float64."""
    path, hf_tokens, *_ = ckpts["qwen3_gqa_untied"]
    model = QwenModel.from_pretrained(path)
    seq = np.concatenate([PROMPT, hf_tokens[:10]])
    full, _ = model.forward(seq)
    part, cache = model.forward(seq[:4])
    rows = [part]
    more, cache = model.forward(seq[4:9], cache)
    rows.append(more)
    for t in seq[9:]:
        one, cache = model.forward([t], cache)
        rows.append(one)
    assert isinstance(cache, KVCache) and cache.length == len(seq)
    assert cache.k[0].shape == (2, len(seq), 16)
    assert maxdiff(np.concatenate(rows), full) <= 1e-12


def test_weights_loaded_exactly(ckpts):
    path, *_, hf = ckpts["qwen2_gqa_untied"]
    model = QwenModel.from_pretrained(path)
    sd = {k: v.numpy() for k, v in hf.state_dict().items()}
    np.testing.assert_array_equal(model.embed, sd["model.embed_tokens.weight"])
    np.testing.assert_array_equal(model.layers[1].bk, sd["model.layers.1.self_attn.k_proj.bias"])
    np.testing.assert_array_equal(model.lm_head, sd["lm_head.weight"])
    assert model.layers[0].w_qn is None and model.layers[0].bo is None     # Qwen2
    assert model.cfg.head_dim == 16 and model.cfg.rope_theta == 1e6


# ---------------------------------------------------------------------------------------------
# Config / checkpoint variants
# ---------------------------------------------------------------------------------------------

def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit_config(path, fn):
    p = path / "config.json"
    d = json.loads(p.read_text())
    fn(d)
    p.write_text(json.dumps(d))


def test_config_variants_give_identical_logits(ckpts, tmp_path):
    path, *_ = ckpts["qwen3_gqa_untied"]
    ref, _ = QwenModel.from_pretrained(path).forward(PROMPT)

    # transformers-4 style: top-level rope_theta, no rope_parameters
    v4 = _copy(path, tmp_path / "v4")
    _edit_config(v4, lambda d: (d.pop("rope_parameters"), d.update(rope_theta=1e6)))
    assert QwenConfig.from_pretrained_dir(v4).rope_theta == 1e6
    np.testing.assert_array_equal(QwenModel.from_pretrained(v4).forward(PROMPT)[0], ref)

    # legacy rope_scaling dict with type "default" and the theta inside
    rs = _copy(path, tmp_path / "rs")
    _edit_config(rs, lambda d: (d.pop("rope_parameters"),
                                d.update(rope_scaling={"type": "default", "rope_theta": 1e6})))
    np.testing.assert_array_equal(QwenModel.from_pretrained(rs).forward(PROMPT)[0], ref)

    # rope_parameters wins over a stale top-level value (as in transformers 5)
    both = _copy(path, tmp_path / "both")
    _edit_config(both, lambda d: d.update(rope_theta=1e4))
    assert QwenConfig.from_pretrained_dir(both).rope_theta == 1e6

    # no theta anywhere: the library default 10000
    nod = _copy(path, tmp_path / "nod")
    _edit_config(nod, lambda d: d.pop("rope_parameters"))
    assert QwenConfig.from_pretrained_dir(nod).rope_theta == 10000.0

    # head_dim absent: hidden_size // num_attention_heads (64 // 4 = 16 here)
    nohd = _copy(path, tmp_path / "nohd")
    _edit_config(nohd, lambda d: d.pop("head_dim"))
    np.testing.assert_array_equal(QwenModel.from_pretrained(nohd).forward(PROMPT)[0], ref)


def test_tied_fallbacks(ckpts, tmp_path):
    path, *_ = ckpts["qwen3_gqa_untied"]
    # lm_head.weight missing although tie_word_embeddings is false: falls back to the embedding
    nolm = _copy(path, tmp_path / "nolm")
    t = load_file(str(nolm / "model.safetensors"))
    del t["lm_head.weight"]
    save_file(t, str(nolm / "model.safetensors"))
    m = QwenModel.from_pretrained(nolm)
    assert m.tied and m.lm_head is m.embed
    # tie_word_embeddings true although lm_head.weight is stored: the embedding is used
    tie = _copy(path, tmp_path / "tie")
    _edit_config(tie, lambda d: d.update(tie_word_embeddings=True))
    m = QwenModel.from_pretrained(tie)
    assert m.tied and m.lm_head is m.embed


def test_bf16_and_sharded_checkpoint(tmp_path):
    hf = build_hf("qwen3", 7, **CASES["qwen3_gqa_untied"][2]).to(torch.bfloat16)
    hf.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    m = QwenModel.from_pretrained(tmp_path)
    for k, v in hf.state_dict().items():
        if k.endswith("q_proj.weight"):
            i = int(k.split(".")[2])
            np.testing.assert_array_equal(m.layers[i].wq, v.double().numpy())
    np.testing.assert_array_equal(m.lm_head, hf.lm_head.weight.double().detach().numpy())


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

def test_checkpoint_errors(ckpts, tmp_path):
    path, *_ = ckpts["qwen2_gqa_untied"]
    with pytest.raises(CheckpointError, match="does not exist|config.json"):
        QwenModel.from_pretrained(tmp_path / "nowhere")

    nocfg = _copy(path, tmp_path / "nocfg")
    (nocfg / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        QwenModel.from_pretrained(nocfg)

    badjson = _copy(path, tmp_path / "badjson")
    (badjson / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        QwenModel.from_pretrained(badjson)

    nofield = _copy(path, tmp_path / "nofield")
    _edit_config(nofield, lambda d: d.pop("hidden_size"))
    with pytest.raises(CheckpointError, match="hidden_size"):
        QwenModel.from_pretrained(nofield)

    nofile = _copy(path, tmp_path / "nofile")
    (nofile / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        QwenModel.from_pretrained(nofile)

    garbage = _copy(path, tmp_path / "garbage")
    (garbage / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{{{{garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        QwenModel.from_pretrained(garbage)

    for drop in ("model.layers.1.mlp.up_proj.weight", "model.layers.0.self_attn.v_proj.bias",
                 "model.norm.weight"):
        miss = _copy(path, tmp_path / f"miss_{drop}")
        t = load_file(str(miss / "model.safetensors"))
        del t[drop]
        save_file(t, str(miss / "model.safetensors"))
        with pytest.raises(CheckpointError, match=drop.replace(".", r"\.")):
            QwenModel.from_pretrained(miss)

    shape = _copy(path, tmp_path / "shape")
    t = load_file(str(shape / "model.safetensors"))
    t["model.layers.0.self_attn.k_proj.weight"] = t["model.layers.0.self_attn.q_proj.weight"]
    save_file(t, str(shape / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"k_proj\.weight.*shape"):
        QwenModel.from_pretrained(shape)

    # Qwen3 q_norm expected: converting a Qwen2 checkpoint's config to qwen3 names it
    as3 = _copy(path, tmp_path / "as3")
    _edit_config(as3, lambda d: d.update(model_type="qwen3", head_dim=16))
    with pytest.raises(CheckpointError, match=r"q_norm\.weight"):
        QwenModel.from_pretrained(as3)


BASE = dict(model_type="qwen3", vocab_size=32, hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8)


@pytest.mark.parametrize("change,match", [
    (dict(model_type="llama"), "model_type"),
    (dict(model_type=None), "model_type"),
    (dict(use_sliding_window=True, sliding_window=16), "sliding"),
    (dict(layer_types=["full_attention", "sliding_attention"]), "sliding_attention"),
    (dict(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6}), "yarn"),
    (dict(rope_scaling={"type": "linear", "factor": 2.0}), "linear"),
    (dict(rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                           "partial_rotary_factor": 0.5}), "partial_rotary_factor"),
    (dict(hidden_act="gelu"), "hidden_act"),
    (dict(num_key_value_heads=3), "multiple"),
], ids=["llama", "no_type", "sliding", "layer_types", "yarn", "linear", "partial", "gelu", "gqa"])
def test_unsupported_config(change, match):
    with pytest.raises(UnsupportedConfig, match=match):
        QwenConfig.from_dict({**BASE, **change})


def test_config_defaults_and_errors_are_typed():
    cfg = QwenConfig.from_dict({**BASE, "head_dim": None, "num_key_value_heads": None})
    assert cfg.head_dim == 8 and cfg.num_key_value_heads == 4 and cfg.groups == 1
    assert cfg.qk_norm and not cfg.qkv_bias and cfg.rope_theta == 10000.0
    q2 = QwenConfig.from_dict({**BASE, "model_type": "qwen2"})
    assert q2.qkv_bias and not q2.o_bias and not q2.qk_norm
    # disabled sliding-window fields (as transformers writes them) are accepted
    QwenConfig.from_dict({**BASE, "use_sliding_window": False, "sliding_window": 4096,
                          "max_window_layers": 28, "layer_types": ["full_attention"] * 2})
    for bad in (dict(hidden_size="64"), dict(vocab_size=0), dict(rms_norm_eps=-1.0)):
        with pytest.raises(CheckpointError):
            QwenConfig.from_dict({**BASE, **bad})
    with pytest.raises(QwenError):
        QwenConfig.from_dict([1, 2])
    assert issubclass(CheckpointError, ValueError) and not issubclass(QwenError, KeyError)


def test_dtype_and_ids_validation(ckpts):
    path, *_ = ckpts["qwen3_mqa_tied"]
    with pytest.raises(UnsupportedConfig, match="dtype"):
        QwenModel.from_pretrained(path, dtype=np.float16)
    m = QwenModel.from_pretrained(path)
    with pytest.raises(ValueError, match="out of range"):
        m.forward([0, 112])
    with pytest.raises(ValueError, match="1-D"):
        m.forward([])
