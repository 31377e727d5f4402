"""Modules that designs instantiate by name, so that Verilog has them once.

A design with many copies of one block (the array's PEs, the vector lanes) instantiates it with
:func:`shared_instance`: in Verilog the block is one module, compiled once by Verilator (it is
kept out of line by ``rtl/waivers.vlt``) instead of once per copy.
"""

import hashlib
from types import SimpleNamespace

from amaranth.hdl import ClockSignal, Instance, ResetSignal, Signal
from amaranth.lib.wiring import In


__all__ = ["SHARED_MODULES", "module_name", "shared_instance"]

#: Verilog modules that designs instantiate by name and that the Verilog generator must emit
#: beside them: module name → factory of the elaboratable. Filled during elaboration.
SHARED_MODULES = {}


def module_name(prefix, key):
    """``prefix`` + a short digest of ``key`` (the parameters that make a variant)."""
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:10]


def shared_instance(m, *, module, factory, ports, instance, clocked=True):
    """Instantiate ``module`` (built by ``factory``) as submodule ``instance`` of ``m``.

    ``ports`` maps port names to ``(flow, shape)`` (``In`` or ``Out`` seen from the block).
    Returns a namespace of the signals connected to the ports.
    """
    SHARED_MODULES[module] = factory
    sigs = {port: Signal(shape, name=f"{instance}_{port}")
            for port, (_, shape) in ports.items()}
    kwargs = {("i_" if flow is In else "o_") + port: sigs[port]
              for port, (flow, _) in ports.items()}
    if clocked:
        kwargs.update(i_clk=ClockSignal(), i_rst=ResetSignal())
    m.submodules[instance] = Instance(module, **kwargs)
    return SimpleNamespace(**sigs)
