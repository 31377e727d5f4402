"""Every top-level component Verilog is generated for, by name.

A top is a function of a :class:`~rtl.config.ChipConfig` returning an elaboratable
``wiring.Component``. ``scripts/gen_verilog.py`` (``m890 verilog``) writes one Verilog file per
top, and the cocotb regression builds them by the same names.
"""

from .chip import ChipHost
from .link.endpoint import LinkEndpoint
from .link.params import LinkParams
from .link.testbench import build_link_top
from .memory.hbm import HBM_CHANNEL_SV
from .mxu.host import MxuHost
from .numerics import F32ToFormat, FormatToF32, FP32Add, FP32Mul, ProductUnit
from .vpu.host import VpuHost


__all__ = ["TOPS", "TEST_TOPS", "TOP_VERILOG", "NUMERICS_TOPS", "build_top"]


TOPS = {
    "f32_to_format": lambda cfg: F32ToFormat(formats=cfg.formats, pipelined=cfg.fp_pipeline),
    "format_to_f32": lambda cfg: FormatToF32(formats=cfg.formats, pipelined=cfg.fp_pipeline),
    "fp32_add":      lambda cfg: FP32Add(pipelined=cfg.fp_pipeline),
    "fp32_mul":      lambda cfg: FP32Mul(pipelined=cfg.fp_pipeline),
    "product":       lambda cfg: ProductUnit(formats=cfg.formats, pipelined=cfg.fp_pipeline),
    # The matrix engine with its scratchpad and accumulator behind the host port.
    "mxu":           lambda cfg: MxuHost(cfg, shared_pe=True),
    # The same with stall injection, for the regression.
    "mxu_tb":        lambda cfg: MxuHost(cfg, stall_injection=True, shared_pe=True),
    # The vector engine with its scratchpad and accumulator behind the host port.
    "vpu":           lambda cfg: VpuHost(cfg, shared_lane=True),
    # The chip behind one request/response stream (CSRs, bulk memory, waits).
    "chip":          lambda cfg: ChipHost(cfg),
    # One end of an interchip link port (lanes and virtual channels of the chip).
    "link":          lambda cfg: LinkEndpoint(LinkParams.for_chip(cfg)),
}

#: Test-only tops (channel models, traffic generators), built by the regression and the
#: benchmark but not part of ``m890 verilog``: two link endpoints back to back with traffic
#: and checkers, with the regression's parameters and with the benchmark's.
TEST_TOPS = {
    "link_tb":       lambda cfg: build_link_top("link_tb", cfg),
    "link_bench":    lambda cfg: build_link_top("link_bench", cfg),
}

#: Hand-written Verilog models a top instantiates, appended to its generated Verilog.
TOP_VERILOG = {"chip": (HBM_CHANNEL_SV,)}

#: The arithmetic units, which the numerics regression streams vectors through.
NUMERICS_TOPS = ("f32_to_format", "format_to_f32", "fp32_add", "fp32_mul", "product")


def build_top(name, cfg):
    """Return a fresh instance of top ``name`` for ``cfg``."""
    factory = TOPS.get(name) or TEST_TOPS.get(name)
    if factory is None:
        raise ValueError(f"unknown top {name!r}; choose from "
                         f"{', '.join([*TOPS, *TEST_TOPS])}")
    return factory(cfg)
