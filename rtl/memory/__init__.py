"""On-chip memories: the banked scratchpad and the FP32 accumulator."""

from .sram import (ACC_WRITE, SPAD_WRITE, AccReadSignature, Accumulator, Scratchpad,
                   SpadReadSignature)

__all__ = ["ACC_WRITE", "SPAD_WRITE", "AccReadSignature", "Accumulator", "Scratchpad",
           "SpadReadSignature"]
