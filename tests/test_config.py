"""ChipConfig: presets, validation messages, serialisation, and the ratios the presets keep."""

import dataclasses

import pytest

from rtl.config import FPGA_ECP5, M890, PRESETS, TINY, ZW810E, ChipConfig, preset
from rtl.layouts import Format


def test_presets_exist_and_validate():
    assert set(PRESETS) == {"TINY", "M890", "ZW810E", "FPGA_ECP5"}
    for cfg in PRESETS.values():
        assert ChipConfig.from_json(cfg.to_json()) == cfg
        assert cfg.addr_width == 64


def test_public_ratios_kept():
    # 144 GB HBM3 vs 96 GB HBM2e; 800 vs 700 GB/s interchip; seven links per chip each.
    assert M890.hbm_bytes / ZW810E.hbm_bytes == pytest.approx(1.5)
    assert M890.link_gbytes_per_s / ZW810E.link_gbytes_per_s == pytest.approx(800 / 700)
    assert M890.link_ports == ZW810E.link_ports == 7


def test_frozen_and_keyword_only():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TINY.mxu_rows = 8
    with pytest.raises(TypeError):
        ChipConfig("x", 4, 4)  # positional arguments are refused


@pytest.mark.parametrize("field, value, message", [
    ("mxu_rows", 0, "mxu_rows must be a positive power of two, not 0"),
    ("mxu_cols", 6, "mxu_cols must be a positive power of two, not 6"),
    ("vpu_lanes", True, "vpu_lanes must be a positive power of two, not True"),
    ("mxu_weight_buffers", 3, "mxu_weight_buffers must be a positive power of two, not 3"),
    ("mxu_weight_buffers", 1, "mxu_weight_buffers must be 2 … 64, not 1"),
    ("mxu_weight_buffers", 128, "mxu_weight_buffers must be 2 … 64, not 128"),
    ("hbm_latency", -1, "hbm_latency must be a positive integer, not -1"),
    ("addr_width", 32, "addr_width must be 64, not 32"),
    ("link_lanes", 3, "link_lanes must be 1, 2, 4 or 8, not 3"),
    ("link_ports", 8, "link_ports must be an integer from 0 to 7, not 8"),
    ("spad_bytes", 1000, "spad_bytes must be a multiple of"),
    ("hbm_bytes", 1000, "hbm_bytes must be a multiple of"),
    ("formats", {Format.FP16}, "formats must include Format.FP32"),
    ("formats", {"FP32"}, "formats must be a set of Format members"),
    ("name", "not a name", "name must be an identifier"),
])
def test_validation_messages(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        TINY.replace(**{field: value})


def test_from_dict_rejects_unknown_fields():
    d = TINY.to_dict()
    d["mxu_depth"] = 3
    with pytest.raises(ValueError, match="unknown ChipConfig fields: \\['mxu_depth'\\]"):
        ChipConfig.from_dict(d)


def test_preset_lookup():
    assert preset("tiny") is TINY
    assert preset("FPGA_ECP5") is FPGA_ECP5
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        preset("nope")
