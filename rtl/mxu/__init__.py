"""The matrix engine: a weight-stationary systolic array with FP32 accumulation of every input
format, its operand fetch, and the controller that runs a whole tiled GEMM from one command.

The programmer's contract is ``docs/mxu.md``; ``golden_model/mxu.py`` is its numpy model.
"""

from .array import PSUM, W_LANE, ProcessingElement, SystolicArray, a_lane

__all__ = ["a_lane", "PSUM", "W_LANE", "ProcessingElement", "SystolicArray"]
