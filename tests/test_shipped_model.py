"""The shipped demo checkpoint ``models/tiny-qwen3-bytes`` (made by ``scripts/train_tiny_qwen.py``).

Checked: it loads with the reference decoder (:class:`golden_model.qwen.QwenModel`) and with
Hugging Face ``Qwen3ForCausalLM``; its config has the shape the accelerator compiler expects;
it is a byte-level float32 checkpoint without tokenizer files; the reference decoder's float64
logits on a short byte prompt match HF's float64 model and the two 16-byte greedy
continuations are identical; ``eval.json`` reports a held-out loss well below the uniform
ln 256 nats/byte.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from golden_model.qwen import QwenModel

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

MODEL = Path(__file__).resolve().parent.parent / "models" / "tiny-qwen3-bytes"
PROMPT = b"Return the value of "
STEPS = 16
TOL_F64 = 2e-5

SHAPE = dict(
    model_type="qwen3", vocab_size=256, hidden_size=128, num_hidden_layers=4,
    num_attention_heads=4, num_key_value_heads=2, head_dim=32, intermediate_size=384,
    max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=True,
    attention_bias=False,
)


@pytest.fixture(scope="module")
def config() -> dict:
    return json.loads((MODEL / "config.json").read_text())


@pytest.fixture(scope="module")
def hf_model():
    torch.set_num_threads(1)
    model = transformers.Qwen3ForCausalLM.from_pretrained(MODEL, attn_implementation="eager")
    return model.eval()


@pytest.fixture(scope="module")
def prompt_ids() -> np.ndarray:
    return np.frombuffer(PROMPT, dtype=np.uint8).astype(np.int64)


def test_files():
    names = {p.name for p in MODEL.iterdir()}
    assert {"config.json", "model.safetensors", "eval.json", "README.md"} <= names
    # byte-level: no tokenizer files at all
    assert not {n for n in names if n.startswith(("tokenizer", "vocab", "merges", "special_"))}
    size = (MODEL / "model.safetensors").stat().st_size
    assert 2_000_000 < size < 5_000_000, size


def test_config_shape(config):
    for key, want in SHAPE.items():
        assert config[key] == want, (key, config[key], want)
    theta = config.get("rope_theta", (config.get("rope_parameters") or {}).get("rope_theta"))
    assert theta == 10000.0
    assert not config.get("use_sliding_window")
    assert config.get("bos_token_id") is None and config.get("eos_token_id") is None


def test_float32_weights():
    from safetensors.numpy import load_file

    tensors = load_file(MODEL / "model.safetensors")
    assert tensors and all(t.dtype == np.float32 for t in tensors.values())
    assert "lm_head.weight" not in tensors          # tied to the embedding
    assert tensors["model.embed_tokens.weight"].shape == (256, 128)


def test_parameter_count(hf_model):
    n = sum(p.numel() for p in hf_model.parameters())
    assert 500_000 <= n <= 1_500_000, n


def test_reference_loads(config):
    model = QwenModel.from_pretrained(MODEL)
    cfg = model.cfg
    assert cfg.model_type == "qwen3" and cfg.vocab_size == 256 and model.tied
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (128, 4, 384)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (4, 2, 32)
    assert cfg.rope_theta == 10000.0 and cfg.qk_norm and not cfg.qkv_bias


def test_reference_matches_transformers(hf_model, prompt_ids):
    ref = QwenModel.from_pretrained(MODEL, dtype=np.float64)
    hf = hf_model.double()
    try:
        with torch.no_grad():
            hf_logits = hf(torch.from_numpy(prompt_ids)[None]).logits[0].numpy()
            gen = hf.generate(torch.from_numpy(prompt_ids)[None], max_new_tokens=STEPS,
                              min_new_tokens=STEPS, do_sample=False, eos_token_id=None,
                              pad_token_id=0)
    finally:
        hf_model.float()
    hf_tokens = gen[0, len(prompt_ids):].numpy()

    logits, _ = ref.forward(prompt_ids)
    assert logits.shape == hf_logits.shape == (len(prompt_ids), 256)
    diff = float(np.max(np.abs(logits - hf_logits)))
    assert diff <= TOL_F64, diff

    tokens = ref.greedy(prompt_ids, STEPS)
    np.testing.assert_array_equal(tokens, hf_tokens)
    assert len(set(tokens.tolist())) > 1              # a trained model, not a stuck one


def test_eval_report():
    report = json.loads((MODEL / "eval.json").read_text())
    loss = report["eval"]["held_out_nats_per_byte"]
    assert math.isfinite(loss)
    assert loss < 2.5 < math.log(256), loss
    bits = report["eval"]["held_out_bits_per_byte"]
    assert bits == pytest.approx(loss / math.log(2))
