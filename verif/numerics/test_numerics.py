"""Runners of the numerics regression on Verilator (cocotb tests in cocotb_numerics.py)."""

import json
import os

import pytest

from rtl.config import TINY
from rtl.tops import NUMERICS_TOPS as TOPS
from verif.common.harness import run_stream_harness
from verif.common.runner import BUILD

pytestmark = pytest.mark.sim



@pytest.mark.parametrize("top", TOPS)
def test_numerics(top):
    out = BUILD / "sim" / "runs" / f"numerics-{top}" / "throughput.json"
    run_stream_harness(top, TINY, test_module="verif.numerics.cocotb_numerics",
                       name=f"numerics-{top}",
                       extra_env={"NUMERICS_SCALE": os.environ.get("NUMERICS_SCALE", "1"),
                                  "NUMERICS_THROUGHPUT_FILE": str(out)})
    stats = json.loads(out.read_text())
    print(f"{top}: {stats['vectors']} vectors, {stats['vectors'] / stats['wall_s']:.0f}/s")


@pytest.mark.slow
@pytest.mark.parametrize("top", TOPS)
def test_numerics_long(top):
    """Ten times the vectors, and the unpipelined variant of each unit."""
    run_stream_harness(top, TINY, test_module="verif.numerics.cocotb_numerics",
                       name=f"numerics-long-{top}", extra_env={"NUMERICS_SCALE": "10"},
                       testcase="sweep")
    run_stream_harness(top, TINY.replace(fp_pipeline=False),
                       test_module="verif.numerics.cocotb_numerics",
                       name=f"numerics-comb-{top}", testcase="sweep")
