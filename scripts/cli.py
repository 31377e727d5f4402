"""The ``m890`` command.

Subcommands
-----------
run       generate text with a Qwen checkpoint on the simulated chip
verilog   generate (and optionally lint) Verilog for a preset
presets   list the chip presets and their modelled figures
"""

import argparse
import sys

from rtl.config import PRESETS


def _presets(argv):
    ap = argparse.ArgumentParser(prog="m890 presets", description="List the chip presets.")
    ap.parse_args(argv)
    cols = ["preset", "MXU", "lanes", "spad KiB", "HBM MiB", "HBM B/cyc", "HBM GB/s",
            "links", "link GB/s", "clock MHz"]
    rows = []
    for c in PRESETS.values():
        rows.append([c.name, f"{c.mxu_rows}x{c.mxu_cols}", c.vpu_lanes, c.spad_bytes // 1024,
                     c.hbm_bytes >> 20, c.hbm_peak_bytes_per_cycle, f"{c.hbm_gbps:g}",
                     f"{c.link_ports}x{c.link_lanes}", f"{c.link_gbytes_per_s:g}", c.clock_mhz])
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
    for r in [cols] + rows:
        print("  ".join(str(x).rjust(w) for x, w in zip(r, widths)))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    commands = {"run": None, "verilog": None, "presets": _presets}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(__doc__.strip().replace("The ``m890`` command.", "usage: m890 COMMAND [ARGS]"))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "run":
        from firmware.runtime.cli import main as run_main
        return run_main(rest)
    if cmd == "verilog":
        from scripts.gen_verilog import main as verilog_main
        return verilog_main(rest)
    return commands[cmd](rest)


if __name__ == "__main__":
    sys.exit(main())
