"""Generated Verilog: every top of every preset converts, carries its sidecar, and is lint-clean
under ``verilator --lint-only -Wall``."""

import json

import pytest

from rtl.config import PRESETS
from rtl.tops import TOPS
from scripts.gen_verilog import generate, lint
from scripts.cli import main as m890

pytestmark = pytest.mark.sim


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_verilog_is_lint_clean(preset, tmp_path):
    cfg = PRESETS[preset]
    paths = generate(cfg, tmp_path)
    assert sorted(p.stem for p in paths) == sorted(TOPS)
    for p in paths:
        meta = json.loads(p.with_suffix(".json").read_text())
        assert meta["config"] == cfg.to_dict()
        assert meta["module"] == p.stem
        assert f"module {p.stem}(" in p.read_text()
        names = {port["name"] for port in meta["ports"]}
        if p.stem == "link":
            # The link endpoint's ports are its wire and its virtual channels.
            assert {"clk", "rst", "lanes_o", "lanes_i", "tx__0__valid", "rx__0__valid"} <= names
        else:
            assert {"clk", "rst", "i__valid", "i__ready", "o__valid", "o__ready"} <= names
    lint(paths)


def test_cli_writes_verilog_and_sidecar(tmp_path, capsys):
    assert m890(["verilog", "--preset", "TINY", "-o", str(tmp_path), "--top", "fp32_add",
                 "--lint"]) == 0
    assert (tmp_path / "fp32_add.v").exists()
    assert json.loads((tmp_path / "fp32_add.json").read_text())["config"]["name"] == "TINY"
    assert "lint-clean" in capsys.readouterr().out


def test_lint_reports_warnings(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input [7:0] a, output [3:0] y);\n  assign y = a;\nendmodule\n")
    with pytest.raises(RuntimeError, match="WIDTH"):
        lint([bad])
