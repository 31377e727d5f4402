"""Runners of the link regression (cocotb tests in cocotb_link.py, scenarios in scenarios.py).

``make test`` runs every test on a 4-lane link (the ``link_tb`` top of ``TINY_L4``) with the
regression's fast-simulation parameters; ``make sim`` scales the traffic by 10
(``LINK_SCALE``). Each test is its own simulator process, so xdist runs them side by side on
one shared build.
"""

import os

import pytest

from verif.common.harness import run_stream_harness

from .scenarios import TINY_L4

#: Cycles without a response before a batch counts as hung: a RUN answers once, at its end.
WATCHDOG = int(os.environ.get("LINK_WATCHDOG", 50_000_000))

TESTS = ["link_up_random_skew", "integrity_under_faults", "crc_detects_bursts",
         "lane_kill_degrades", "vc_fairness_with_stalled_sink", "counters_match_injections"]


def _run(testcase, scale="1"):
    run_stream_harness("link_tb", TINY_L4, test_module="verif.link.cocotb_link",
                       name=f"link-{testcase}-x{scale}", testcase=[testcase],
                       watchdog=WATCHDOG, extra_env={"LINK_SCALE": scale})


@pytest.mark.sim
@pytest.mark.parametrize("testcase", TESTS)
def test_link(testcase):
    _run(testcase)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("testcase", ["integrity_under_faults", "link_up_random_skew"])
def test_link_long(testcase):
    _run(testcase, scale="10")
