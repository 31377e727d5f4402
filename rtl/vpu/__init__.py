"""The vector unit: FP32 lanes for everything a decoder needs besides GEMMs.

The numerics are ``golden_model/vpu.py`` (and ``docs/vpu.md``), bit for bit.
"""

from .alu import VectorALU, vpu_alu_operands, vpu_alu_result

__all__ = ["VectorALU", "vpu_alu_operands", "vpu_alu_result"]
