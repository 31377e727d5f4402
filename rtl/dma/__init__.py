"""The DMA engine: 2-D strided and page-gathering copies between HBM and the scratchpad."""

from .engine import (DMA_COUNTERS, DMA_REGION, DMA_STATUS, REGION, DmaEngine,
                     dma_spad_ports)

__all__ = ["DMA_COUNTERS", "DMA_REGION", "DMA_STATUS", "REGION", "DmaEngine", "dma_spad_ports"]
