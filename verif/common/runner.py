"""Verilog generation and Verilator builds, cached and shared between pytest-xdist workers.

``verilog_for(top, cfg)`` generates a top once per (top, config, RTL source digest) under
``build/verilog/``; ``simulation(...)`` builds a Verilator model once per set of sources and
arguments under ``build/sim/`` and runs a cocotb test module against it. Both take a file lock,
so parallel workers that need the same artefact wait for one build instead of racing.

Knobs read from the environment:

``SEED``
    Seed of the cocotb run (and so of every random test); printed, replayable.
``WAVES=1``
    Build with FST tracing and dump ``dump.fst`` into the test folder.
"""

import functools
import hashlib
import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

from filelock import FileLock

from .toolchain import setup_verilator_env


__all__ = ["ROOT", "BUILD", "verilog_for", "simulation", "seed_from_env", "waves_enabled"]

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"


def seed_from_env(default=None):
    """Return ``$SEED`` as an int, or ``default``, or a fresh random seed."""
    s = os.environ.get("SEED")
    if s:
        return int(s, 0)
    return default if default is not None else random.SystemRandom().randrange(1 << 31)


def waves_enabled():
    return os.environ.get("WAVES", "") not in ("", "0")


@functools.cache
def fst_available():
    """Whether Verilator's FST writer can be compiled here (it needs the lz4 headers)."""
    cxx = os.environ.get("CXX", "c++")
    try:
        result = subprocess.run([cxx, "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                                capture_output=True, text=True, timeout=60)
    except OSError:
        return False
    return result.returncode == 0


def trace_args():
    """Verilator arguments for ``WAVES=1``: FST where possible, else VCD (with a notice)."""
    if fst_available():
        return ["--trace-fst", "--trace-structs"]
    print("WAVES=1: the lz4 headers are missing (Debian: apt install liblz4-dev), so the "
          "waveform is a VCD (dump.vcd) instead of an FST")
    return ["--trace-structs"]


def _digest(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def verilog_for(top, cfg):
    """Return the path of the Verilog for ``top`` under ``cfg``, generating it if needed."""
    from scripts.gen_verilog import generate_top, rtl_digest
    key = _digest(top, cfg.to_json(), rtl_digest())
    out = BUILD / "verilog" / f"{cfg.name}-{top}-{key}"
    v_path = out / f"{top}.v"
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not v_path.exists():
            generate_top(top, cfg, out)
    return v_path


def _file_digest(paths):
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def simulation(*, sources, toplevel, test_module, name, extra_env=None, plusargs=(),
               build_args=(), parameters=None, defines=None, seed=None, testcase=None,
               test_dir=None):
    """Build (cached) and run a cocotb test module on Verilator; fail the caller on failure.

    Parameters
    ----------
    sources : list of Path
        Verilog sources (and ``.vlt`` control files).
    toplevel : str
        HDL top-level module.
    test_module : str
        Dotted name of the cocotb test module (``verif.numerics.cocotb_numerics``).
    name : str
        Name of the run, used for the test folder under ``build/sim/``.
    extra_env : dict, optional
        Extra environment for the cocotb process (e.g. ``DUT_CONFIG`` as JSON).
    seed : int, optional
        Seed; by default ``$SEED`` or a fresh random one (printed).
    """
    from cocotb_tools.runner import get_runner
    setup_verilator_env()
    waves = waves_enabled()
    sources = [Path(s) for s in sources]
    # cocotb's runner makes every signal public (--public-flat-rw); the harnesses only touch
    # the top level's ports, and public internals both block Verilator's optimizations and
    # bloat the build (a symbol table entry per signal), so only the harness and the DUT
    # top (depth 2) stay public.
    # -Werror-ALWNEVER: an `always @*` that reads nothing never runs in Verilator, so the
    # logic it describes would silently be missing.
    build_args = ["-Wno-fatal", "-Werror-ALWNEVER", "-O3", "--x-assign", "fast",
                  "--x-initial", "fast",
                  "--assert", "--no-public-flat-rw", "--public-depth", "2",
                  *build_args] + (trace_args() if waves else [])
    parameters = dict(parameters or {})
    defines = dict(defines or {})
    key = _digest(toplevel, build_args, sorted(parameters.items()), sorted(defines.items()),
                  _file_digest(sources))
    build_dir = BUILD / "sim" / f"{toplevel}-{key}"
    stamp = build_dir / "built.stamp"
    runner = get_runner("verilator")
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(build_dir) + ".lock"):
        if not stamp.exists():
            t0 = time.monotonic()
            if build_dir.exists():
                shutil.rmtree(build_dir)
            runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=build_dir,
                         build_args=build_args, parameters=parameters, defines=defines,
                         waves=waves, log_file=build_dir.parent / f"{toplevel}-{key}.build.log")
            stamp.write_text(json.dumps({"seconds": round(time.monotonic() - t0, 1)}))
    seed = seed_from_env() if seed is None else seed
    print(f"[{name}] SEED={seed}  (rerun with SEED={seed}); build {build_dir}")
    test_dir = Path(test_dir) if test_dir else BUILD / "sim" / "runs" / name
    test_dir.mkdir(parents=True, exist_ok=True)
    env = {"PYTHONPATH": str(ROOT)}
    env.update(extra_env or {})
    runner.test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                build_dir=build_dir,
                test_dir=test_dir, seed=seed, extra_env=env, plusargs=list(plusargs),
                testcase=testcase, waves=waves,
                results_xml=str(test_dir / "results.xml"))
    return test_dir
