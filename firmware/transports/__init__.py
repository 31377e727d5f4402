"""Transports: the host port of one chip, simulated three ways.

- :class:`FunctionalTransport` — the functional chip (``golden_model/chip.py``): whole-model
  speed, no clock.
- ``VerilatorTransport`` (:mod:`firmware.transports.verilator`) — the chip's RTL, Verilated
  into a shared library driven in bulk from Python.
- ``PysimTransport`` (:mod:`firmware.transports.pysim`) — the RTL in Amaranth's simulator, for
  small tests with no C++ toolchain.
"""

from .base import Transport
from .functional import FunctionalTransport


__all__ = ["Transport", "FunctionalTransport", "open_transport"]


def open_transport(kind, cfg, **kwargs):
    """A transport by name: ``"rtl"`` (Verilator), ``"functional"`` or ``"pysim"``."""
    if kind == "functional":
        return FunctionalTransport(cfg)
    if kind in ("rtl", "verilator"):
        from .verilator import VerilatorTransport
        return VerilatorTransport(cfg, **kwargs)
    if kind == "pysim":
        from .pysim import PysimTransport
        return PysimTransport(cfg, **kwargs)
    raise ValueError(f"unknown transport {kind!r}; choose rtl, functional or pysim")
