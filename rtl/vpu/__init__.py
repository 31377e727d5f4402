"""The vector unit: FP32 lanes for everything a decoder needs besides GEMMs.

The numerics are ``golden_model/vpu.py`` (and ``docs/vpu.md``), bit for bit.
"""

from .alu import VectorALU, compare_f32, vpu_alu_operands, vpu_alu_result
from .engine import PROGRAMS, VPU_COUNTERS, VectorEngine
from .host import VpuHost, VpuHostOp
from .lane import LaneOp, VectorLane
from .sfu import (ExpUnit, RecipUnit, RsqrtUnit, SigmoidUnit, SiluUnit, exp_f32, recip_f32,
                  rsqrt_f32, sigmoid_f32, silu_f32)

__all__ = ["VectorALU", "compare_f32", "vpu_alu_operands", "vpu_alu_result",
           "VectorEngine", "VPU_COUNTERS", "PROGRAMS", "VpuHost", "VpuHostOp",
           "VectorLane", "LaneOp",
           "exp_f32", "recip_f32", "rsqrt_f32", "sigmoid_f32", "silu_f32",
           "ExpUnit", "RecipUnit", "RsqrtUnit", "SigmoidUnit", "SiluUnit"]
