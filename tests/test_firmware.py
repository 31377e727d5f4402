"""Firmware on the functional chip: driver, compiler, runtime, CLI and their errors.

The functional transport runs the compiled descriptor programs on ``golden_model.chip``; the
RTL transport's agreement with it is checked in ``verif/firmware``. Here:

- chip mode against the float64 reference decoder, per weight format (FP32 must agree to
  float32 rounding and give the same greedy tokens; quantized formats are measured, with
  loose bounds that catch a broken lowering, not a claim of accuracy);
- tiling never changes bits (three presets with different arrays and memories give identical
  logits), and a chunked prefill equals token-by-token decode bit for bit;
- the paged KV cache past 2,048 positions;
- every failure class raises its typed exception.
"""

import json

import numpy as np
import pytest

from firmware import isa, regs
from firmware.driver import Device, Program
from firmware.errors import (CheckpointError, DeviceError, DeviceTimeout, M890Error,
                             OutOfDeviceMemory, UnsupportedConfig)
from firmware.runtime import Runtime, load_checkpoint
from firmware.runtime.cli import main as cli_main
from firmware.transports import FunctionalTransport
from golden_model.mxu import make_command
from golden_model.qwen import QwenConfig, QwenModel, random_checkpoint, save_checkpoint
from rtl.config import M890, TINY, ZW810E
from rtl.layouts import Status


def _config(**over):
    d = dict(model_type="qwen3", vocab_size=256, hidden_size=64, intermediate_size=128,
             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
             max_position_embeddings=512, rope_theta=10000.0, tie_word_embeddings=True,
             rms_norm_eps=1e-6)
    d.update(over)
    return d


def _models(cfgd, seed=0):
    t = random_checkpoint(cfgd, seed)
    q = QwenConfig.from_dict(cfgd)
    return QwenModel(q, t, np.float32), QwenModel(q, t, np.float64)


def _runtime(model, cfg=M890, fmt="fp32", **kw):
    kw.setdefault("max_context", 128)
    return Runtime(model, Device(FunctionalTransport(cfg)), fmt=fmt, **kw)


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


MODELS = {
    "qwen3-gqa": _config(),
    "qwen2-bias-mha": _config(model_type="qwen2", num_key_value_heads=4, vocab_size=200,
                              tie_word_embeddings=False),
    "qwen3-mqa-untied": _config(num_key_value_heads=1, hidden_size=96, intermediate_size=160,
                                num_attention_heads=2, head_dim=64, tie_word_embeddings=False,
                                attention_bias=True),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fp32_chip_mode_matches_float64_reference(name):
    m32, m64 = _models(MODELS[name])
    ids = [int(i) for i in np.random.default_rng(1).integers(0, m32.cfg.vocab_size, 12)]
    rt = _runtime(m32)
    _, logits = rt.forward(ids, logits="all")
    ref, _ = m64.forward(ids)
    scale = np.abs(ref).max()
    assert np.abs(logits - ref).max() <= 1e-5 * scale, np.abs(logits - ref).max()
    # Greedy decode on the chip equals the reference's, token for token.
    rt.reset()
    chip = list(rt.generate(ids, 10))
    assert chip == list(m64.greedy(ids, 10))


def test_quantized_formats_are_measured_close():
    m32, m64 = _models(MODELS["qwen3-gqa"])
    ids = [int(i) for i in np.random.default_rng(0).integers(0, 256, 40)]
    ref, _ = m64.forward(ids)
    tgt = np.array(ids[1:])
    nll_ref = -_log_softmax(ref[:-1])[np.arange(len(tgt)), tgt].mean()
    bounds = {"bf16": (0.02, 0.98, 0.05), "fp8": (0.3, 0.9, 0.3), "mxfp4": (1.0, 0.7, 1.0)}
    for fmt, (rel, top1_min, dnll_max) in bounds.items():
        _, lg = _runtime(m32, fmt=fmt).forward(ids, logits="all")
        lg = lg.astype(np.float64)
        assert np.isfinite(lg).all()
        assert np.abs(lg - ref).max() <= rel * np.abs(ref).max(), fmt
        assert np.mean(lg.argmax(-1) == ref.argmax(-1)) >= top1_min, fmt
        nll = -_log_softmax(lg[:-1])[np.arange(len(tgt)), tgt].mean()
        assert nll - nll_ref <= dnll_max, (fmt, nll - nll_ref)


def test_tiling_never_changes_bits():
    """Different arrays, scratchpads and accumulators tile every GEMM and the attention
    differently; the bits must not move."""
    m32, _ = _models(MODELS["qwen3-gqa"])
    ids = [5, 17, 99, 3, 250, 42]
    got = {}
    for cfg in (TINY, ZW810E, M890):
        rt = _runtime(m32, cfg, fmt="fp8", max_context=32)
        _, a = rt.forward(ids, logits="all")
        tok, b = rt.forward([7], logits="last", phase="decode")
        got[cfg.name] = (a.view(np.uint32), b.view(np.uint32), tok)
    for name in ("TINY", "ZW810E"):
        np.testing.assert_array_equal(got[name][0], got["M890"][0])
        np.testing.assert_array_equal(got[name][1], got["M890"][1])
        assert got[name][2] == got["M890"][2]


def test_chunked_prefill_equals_token_by_token():
    m32, _ = _models(MODELS["qwen3-gqa"])
    ids = [int(i) for i in np.random.default_rng(2).integers(0, 256, 37)]
    rt = _runtime(m32, fmt="mxfp4", prefill_chunk=16)
    _, whole = rt.forward(ids, logits="all")
    assert rt.stats["prefill"].steps >= 3
    rt.reset()
    rows = [rt.forward([t], logits="last")[1][0] for t in ids]
    np.testing.assert_array_equal(np.stack(rows).view(np.uint32), whole.view(np.uint32))


def test_paged_cache_past_2048_positions():
    """Prefill 2,050 tokens and decode past them; the logits of the last decoded token are
    checked against the float64 reference over the whole sequence. The functional chip here
    is an M890 with a larger accumulator and scratchpad, so the prefill is one step (the
    functional chip's cost is per descriptor and per reduction step, not per element)."""
    cfgd = _config(num_hidden_layers=1, max_position_embeddings=4096, vocab_size=128,
                   num_attention_heads=2, num_key_value_heads=1)
    m32, m64 = _models(cfgd)
    chip = M890.replace(name="M890_BIG", acc_rows=1 << 19, spad_bytes=32 << 20)
    rt = _runtime(m32, chip, max_context=4096, prefill_chunk=2050)
    ids = [int(i) for i in np.random.default_rng(3).integers(0, 128, 2050)]
    tok, _ = rt.forward(ids)
    seq = ids + [tok]
    for _ in range(2):
        tok, lg = rt.forward([seq[-1]], logits="last", phase="decode")
        seq.append(tok)
    assert rt.pos == 2052 and rt.kv.capacity >= 2052
    assert len(rt.kv.pages[(0, 0, "k")]) == -(-2052 // rt.kv.P)
    ref, _ = m64.forward(seq[:-1])
    assert np.abs(lg[0] - ref[-1]).max() <= 1e-4 * np.abs(ref[-1]).max()
    assert seq[-1] == int(np.argmax(ref[-1]))


# -- the driver ------------------------------------------------------------------------------

def test_device_allocator():
    dev = Device(FunctionalTransport(TINY))
    free = dev.free_bytes
    a = dev.alloc(1000, "a")
    b = dev.alloc(5000, "b")
    assert a.addr % 256 == 0 and b.addr >= a.end
    dev.write(b, b"\x01\x02\x03", offset=7)
    assert dev.read(b, 3, offset=7) == b"\x01\x02\x03"
    with pytest.raises(ValueError):
        dev.read(b, 10, offset=4995)
    dev.free(a)
    dev.free(b)
    assert dev.free_bytes == free
    with pytest.raises(ValueError):
        dev.free(a)
    with pytest.raises(OutOfDeviceMemory, match="needs"):
        dev.alloc(TINY.hbm_bytes, "too big")


def test_device_error_names_the_descriptor():
    dev = Device(FunctionalTransport(TINY))
    prog = Program()
    prog.add(1, isa.nop(), "a nop")
    bad = make_command(m=1, n=1, k=1, fmt_a=15)          # not a Format
    prog.add(1, isa.gemm(bad, cookie=7), "the bad gemm")
    with pytest.raises(DeviceError, match="the bad gemm") as e:
        dev.run(prog, "test")
    assert e.value.status is Status.BAD_FORMAT and e.value.queue == 1
    assert e.value.cookie == 7


def test_wait_that_never_comes_is_a_timeout():
    dev = Device(FunctionalTransport(TINY), wait_timeout=1000)
    prog = Program()
    prog.add(0, isa.wait(5, 1), "wait for nothing")
    with pytest.raises(DeviceTimeout, match="wait for nothing"):
        dev.run(prog)


def test_csr_refusal_is_a_device_error():
    dev = Device(FunctionalTransport(TINY))
    with pytest.raises(DeviceError) as e:
        dev.csr_write(regs.ID, 1)
    assert e.value.status is Status.CSR_READONLY


# -- errors of the runtime ---------------------------------------------------------------------

def test_unsupported_shapes_and_formats():
    m32, _ = _models(_config(head_dim=24, hidden_size=48, intermediate_size=96))
    with pytest.raises(UnsupportedConfig, match="head_dim 24"):
        _runtime(m32)
    m32, _ = _models(MODELS["qwen3-gqa"])
    with pytest.raises(UnsupportedConfig, match="int4"):
        _runtime(m32, fmt="int4")


def test_out_of_device_memory():
    m32, _ = _models(_config(hidden_size=256, intermediate_size=1024, num_hidden_layers=4))
    small = TINY.replace(name="TINY1M", hbm_bytes=1 << 20)
    with pytest.raises(OutOfDeviceMemory, match="of 1,048,576 are free"):
        _runtime(m32, small)


def test_context_and_token_limits():
    m32, _ = _models(MODELS["qwen3-gqa"])
    rt = _runtime(m32, max_context=16)
    with pytest.raises(UnsupportedConfig, match="max_context"):
        rt.forward(list(range(20)))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        rt.forward([256])
    with pytest.raises(ValueError):
        rt.forward([])


def test_bad_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist|cannot read"):
        load_checkpoint(tmp_path / "nothing")
    cfgd = _config()
    t = random_checkpoint(cfgd)
    del t["model.layers.1.mlp.down_proj.weight"]
    save_checkpoint(tmp_path / "broken", cfgd, t)
    with pytest.raises(CheckpointError, match="down_proj"):
        load_checkpoint(tmp_path / "broken")
    save_checkpoint(tmp_path / "llama", dict(cfgd, model_type="llama"), random_checkpoint(cfgd))
    with pytest.raises(UnsupportedConfig, match="llama"):
        load_checkpoint(tmp_path / "llama")
    assert issubclass(CheckpointError, M890Error) and issubclass(UnsupportedConfig, M890Error)


# -- the CLI -----------------------------------------------------------------------------------

def test_cli_json(tmp_path, capsys):
    cfgd = _config()
    path = save_checkpoint(tmp_path / "m", cfgd, random_checkpoint(cfgd))
    code = cli_main(["--model", str(path), "--prompt", "Hi there", "--tokens", "5",
                     "--sim", "functional", "--fmt", "bf16", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prompt_ids"] == list(b"Hi there")
    assert len(out["generated_ids"]) == 5
    m32, _ = _models(cfgd)
    expect = list(_runtime(m32, fmt="bf16").generate(list(b"Hi there"), 5))
    assert out["generated_ids"] == expect
    assert out["decode"]["tokens"] == 4 and out["prefill"]["tokens"] == 8


def test_cli_text_and_errors(tmp_path, capsys):
    cfgd = _config()
    path = save_checkpoint(tmp_path / "m", cfgd, random_checkpoint(cfgd))
    assert cli_main(["--model", str(path), "--prompt-ids", "1,2,3", "--tokens", "2",
                     "--sim", "functional", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "decode" in out and "cycle figures need --sim rtl" in out
    assert cli_main(["--model", str(path), "--prompt-ids", "1,x", "--sim", "functional"]) == 2
    assert "comma-separated" in capsys.readouterr().err
    assert cli_main(["--model", str(tmp_path / "none"), "--prompt", "a",
                     "--sim", "functional"]) == 2
    assert "error" in capsys.readouterr().err


def test_cli_uses_the_checkpoints_tokenizer(tmp_path, capsys):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    cfgd = _config()
    path = save_checkpoint(tmp_path / "m", cfgd, random_checkpoint(cfgd))
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["the chip runs the model", "the model runs on the chip"] * 20,
                            trainers.BpeTrainer(vocab_size=120, special_tokens=["[UNK]"]))
    tok.save(str(path / "tokenizer.json"))
    assert cli_main(["--model", str(path), "--prompt", "the chip runs", "--tokens", "3",
                     "--sim", "functional", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prompt_ids"] == tok.encode("the chip runs").ids
    assert out["text"] == tok.decode(out["generated_ids"])
