"""The link on Verilator (``link_tb``: two endpoints back to back through channel models).

Each test resets the top, brings the link up and runs its scenario from
:mod:`verif.link.scenarios` through the bulk harness: Python configures, issues one ``RUN``
and reads the counters back, never touching a cycle. ``LINK_SCALE`` scales the traffic
(1 in ``make test``; ``make sim`` runs 10).
"""

import os
import random

import cocotb

from rtl.link.host import HOST_REQUEST, HOST_RESPONSE
from rtl.link.testbench import LINK_TOPS, registers
from verif.common.harness import StreamHarness
from verif.common.tb import TB

from . import scenarios as S
from .host import TbHost, harness_exchange


SCALE = float(os.environ.get("LINK_SCALE", "1"))


async def _link(dut):
    tb = TB(dut)
    top = os.environ["DUT_TOP"]
    params_of, kwargs = LINK_TOPS[top]
    params = params_of(tb.cfg)
    harness = StreamHarness(dut, HOST_REQUEST, HOST_RESPONSE)
    harness.idle()
    await tb.reset()
    regs = registers(params, **kwargs)
    host = TbHost(regs, harness_exchange(harness))
    rng = random.Random(tb.seed)
    link = S.Link(host, params, max_skew=kwargs["max_skew"], log=dut._log.info)
    return link, rng


@cocotb.test()
async def link_up_random_skew(dut):
    """G8: the link trains to full width from random per-lane skews and bit offsets."""
    link, rng = await _link(dut)
    await S.training_sweep(link, rng, seeds=int(20 * SCALE))


@cocotb.test()
async def integrity_under_faults(dut):
    """G1: every message once, in order, intact, through every fault class; at least 10^5
    DATA flits (10^6 under ``make sim``)."""
    link, rng = await _link(dut)
    await S.integrity_campaign(link, rng, scale=SCALE, min_flits=int(100_000 * SCALE))


@cocotb.test()
async def crc_detects_bursts(dut):
    """G2: every flit the channel hit with a burst of 1 … 32 bits is rejected."""
    link, rng = await _link(dut)
    await S.crc_campaign(link, rng, scale=SCALE)


@cocotb.test()
async def lane_kill_degrades(dut):
    """G9: a dead lane → retrain at half width, nothing lost, half the goodput."""
    link, rng = await _link(dut)
    await S.degrade_scenario(link, rng, scale=SCALE)


@cocotb.test()
async def vc_fairness_with_stalled_sink(dut):
    """G10: VC 0's sink stalled; VCs 1–3 keep their share; VC 0 completes once released."""
    link, rng = await _link(dut)
    await S.fairness_scenario(link, rng, scale=SCALE)


@cocotb.test()
async def counters_match_injections(dut):
    """G11: each injection class moves exactly the counters it should."""
    link, rng = await _link(dut)
    await S.injection_scenario(link, rng, scale=SCALE)
