"""The firmware on the Verilated chip equals the firmware on the functional chip, bit for bit.

The same runtime drives two devices with the same model: the ``chip`` RTL through the
in-process Verilator transport, and ``golden_model.chip`` through the functional transport.
Every step's greedy token and every logit's bits must be equal, for the shipped demo model
(Qwen3, FP8 weights) and for a random Qwen2 model with biases (MXFP4 and BF16 weights). The
chip is ``TINY`` (a 4×4 array and a 16 KiB scratchpad): every GEMM is tiled finely, every
weight block streams through the double-buffered weight queue, and the KV cache spans several
pages. The counters of the RTL run must add up as well.
"""

from pathlib import Path

import numpy as np
import pytest

from firmware.driver import Device
from firmware.runtime import Runtime, load_checkpoint
from firmware.transports import FunctionalTransport
from golden_model.qwen import QwenConfig, QwenModel, random_checkpoint
from rtl.config import TINY


pytestmark = pytest.mark.sim

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "models" / "tiny-qwen3-bytes"


@pytest.fixture(scope="module")
def rtl_device():
    from firmware.transports.verilator import VerilatorTransport
    transport = VerilatorTransport(TINY)
    yield lambda: Device(transport)
    transport.close()


def _steps(model, device, fmt, prompt, decode, page_size=None):
    """Tokens and FP32 logits (as bits) of a prefill and ``decode`` single-token steps."""
    rt = Runtime(model, device, fmt=fmt, max_context=len(prompt) + decode + 8,
                 page_size=page_size, prefill_chunk=8)
    tok, lg = rt.forward(prompt, logits="all")
    out = [(tok, lg.view(np.uint32).copy())]
    for _ in range(decode):
        tok, lg = rt.forward([tok], logits="last", phase="decode")
        out.append((tok, lg.view(np.uint32).copy()))
    return out, rt


def _compare(rtl, fun):
    assert len(rtl) == len(fun)
    for i, ((t_r, l_r), (t_f, l_f)) in enumerate(zip(rtl, fun)):
        assert t_r == t_f, f"step {i}: token {t_r} on the RTL, {t_f} on the functional chip"
        r, f = l_r.reshape(-1), l_f.reshape(-1)
        bad = np.flatnonzero(r != f)
        assert bad.size == 0, (f"step {i}: {bad.size} logits differ, first at {bad[0]}: "
                               f"{r[bad[0]]:#010x} vs {f[bad[0]]:#010x}")


def test_demo_model_rtl_equals_functional(rtl_device):
    model = load_checkpoint(DEMO)
    prompt = list(b"def read(")
    rtl, rt = _steps(model, rtl_device(), "fp8", prompt, decode=3)
    fun, _ = _steps(model, Device(FunctionalTransport(TINY)), "fp8", prompt, decode=3)
    _compare(rtl, fun)
    # The counters saw the work: every weight byte streamed once per step, MACs as issued.
    dec = rt.figures("decode")
    assert dec["cycles"] > 0 and dec["mxu_macs"] > 0
    assert dec["hbm_bytes"] >= dec["steps"] * rt.image.weight_bytes


def test_random_qwen2_rtl_equals_functional(rtl_device):
    d = dict(model_type="qwen2", vocab_size=96, hidden_size=32, intermediate_size=64,
             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
             max_position_embeddings=256, rope_theta=1e6, tie_word_embeddings=False)
    model = QwenModel(QwenConfig.from_dict(d), random_checkpoint(d, seed=5), np.float32)
    prompt = [int(i) for i in np.random.default_rng(5).integers(0, 96, 11)]
    for fmt in ("mxfp4", "bf16"):
        rtl, _ = _steps(model, rtl_device(), fmt, prompt, decode=2, page_size=4)
        fun, _ = _steps(model, Device(FunctionalTransport(TINY)), fmt, prompt, decode=2,
                        page_size=4)
        _compare(rtl, fun)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["M890", "ZW810E"])
def test_demo_model_on_the_demo_chips(name):
    """The demo's own chips (``make sim``): a prefill and two decode steps, bit for bit."""
    from firmware.transports.verilator import VerilatorTransport
    from rtl.config import preset
    cfg = preset(name)
    model = load_checkpoint(DEMO)
    prompt = list(b"import os\n")
    with VerilatorTransport(cfg) as transport:
        rtl, _ = _steps(model, Device(transport), "fp8", prompt, decode=2)
    fun, _ = _steps(model, Device(FunctionalTransport(cfg)), "fp8", prompt, decode=2)
    _compare(rtl, fun)
