"""Floating-point and integer arithmetic units, and the combinational cores they share.

The rules are ``docs/numerics.md``; :mod:`.fpcore` holds the decode, normalise and
round-and-pack functions the units (and the matrix engine and vector unit) are built from.
"""

from .pipeline import Pipe, StreamPipeline
from .convert import (F32_TO_FORMAT_OPERANDS, F32_TO_FORMAT_RESULT, FORMAT_TO_F32_OPERANDS,
                      FORMAT_TO_F32_RESULT, F32ToFormat, FormatToF32)
from .fp32 import FP32_OPERANDS, FP32_RESULT, FP32Add, FP32Mul, add_f32
from .product import PRODUCT_OPERANDS, PRODUCT_RESULT, ProductUnit, product_f32


__all__ = [
    "Pipe", "StreamPipeline",
    "F32_TO_FORMAT_OPERANDS", "F32_TO_FORMAT_RESULT", "FORMAT_TO_F32_OPERANDS",
    "FORMAT_TO_F32_RESULT", "F32ToFormat", "FormatToF32",
    "FP32_OPERANDS", "FP32_RESULT", "FP32Add", "FP32Mul", "add_f32",
    "PRODUCT_OPERANDS", "PRODUCT_RESULT", "ProductUnit", "product_f32",
]
