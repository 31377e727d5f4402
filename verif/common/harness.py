"""Bulk vector streaming through a one-in/one-out stream block, with Python off the cycle path.

Two halves:

* pytest side: :func:`run_stream_harness` builds ``hdl/stream_harness.sv`` around a generated
  top (widths from the top's JSON sidecar) and runs a cocotb module against it.
* cocotb side: :class:`StreamHarness` sends whole batches: it writes the packed inputs to a hex
  file, pulses ``start`` and awaits ``done`` — one Python wake-up per batch, not per cycle — then
  reads the outputs back. Gaps and backpressure come from an LFSR in the harness.
"""

import json
import time
from pathlib import Path

from .pack import from_hex_lines, layout_width, pack, to_hex_lines, unpack
from .runner import ROOT, simulation, verilog_for


__all__ = ["HARNESS_SV", "run_stream_harness", "StreamHarness", "HarnessHung"]

HARNESS_SV = Path(__file__).parent / "hdl" / "stream_harness.sv"
ADDR_W = 16


def run_stream_harness(top, cfg, *, test_module, name, extra_env=None, seed=None,
                       testcase=None, watchdog=100_000):
    """Build the harness around ``top`` for ``cfg`` and run ``test_module`` on it.

    ``watchdog`` is the number of cycles without an output after which a batch is declared
    hung (a long command answers once, at its end).
    """
    v_path = verilog_for(top, cfg)
    sidecar = json.loads(v_path.with_suffix(".json").read_text())
    widths = {p["name"]: p["width"] for p in sidecar["ports"]}
    env = {"DUT_TOP": top, "DUT_CONFIG": cfg.to_json(),
           "DUT_LATENCY": str(sidecar.get("latency"))}
    env.update(extra_env or {})
    return simulation(
        sources=[ROOT / "rtl" / "waivers.vlt", v_path, HARNESS_SV],
        toplevel="stream_harness", test_module=test_module, name=name,
        parameters={"IN_W": widths["i__payload"], "OUT_W": widths["o__payload"],
                    "ADDR_W": ADDR_W, "WATCHDOG": watchdog},
        defines={"DUT": top}, extra_env=env, seed=seed, testcase=testcase)


class HarnessHung(AssertionError):
    """The DUT stopped producing output before the batch was complete."""


class StreamHarness:
    """cocotb driver of ``stream_harness``.

    Parameters
    ----------
    dut : cocotb handle
        The ``stream_harness`` top.
    in_layout, out_layout : Amaranth layouts
        Payload layouts of the DUT's ``i`` and ``o`` streams.
    """

    def __init__(self, dut, in_layout, out_layout):
        self.dut = dut
        self.in_layout = in_layout
        self.out_layout = out_layout
        self.in_width = layout_width(in_layout)
        self.out_width = layout_width(out_layout)
        if self.in_width != len(dut.dut.i__payload) or self.out_width != len(dut.dut.o__payload):
            raise ValueError("payload layouts do not match the DUT's port widths")
        self.batch = 1 << ADDR_W
        # The simulator runs in the test folder and opens these names (its defaults).
        self.in_path = Path.cwd() / "harness_in.hex"
        self.out_path = Path.cwd() / "harness_out.hex"
        self.cycles = 0
        self.vectors = 0
        self.wall = 0.0

    def idle(self):
        """Drive the harness inputs to idle; call before the reset."""
        d = self.dut
        d.start.value = 0
        d.count.value = 0
        d.valid_prob.value = 255
        d.ready_prob.value = 255
        d.seed.value = 1

    async def run(self, *, valid_prob=1.0, ready_prob=1.0, seed=1, timeout_cycles=None,
                  **fields):
        """Stream the given input field arrays through the DUT; return the output fields.

        ``valid_prob`` / ``ready_prob`` are the probabilities that the source offers an input /
        the sink takes an output in a cycle.
        """
        from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
        words = pack(self.in_layout, **fields)
        outs = []
        d = self.dut
        vp = max(0, min(255, round(valid_prob * 256) - 1))
        rp = max(0, min(255, round(ready_prob * 256) - 1))
        for lo in range(0, len(words), self.batch):
            chunk = words[lo:lo + self.batch]
            t0 = time.monotonic()
            self.in_path.write_text(to_hex_lines(chunk, self.in_width))
            d.count.value = len(chunk)
            d.valid_prob.value = vp
            d.ready_prob.value = rp
            d.seed.value = (seed * 0x9E3779B1 + lo) & 0xFFFFFFFF or 1
            d.start.value = 1
            await ClockCycles(d.clk, 1)
            d.start.value = 0
            limit = timeout_cycles or (len(chunk) * 300 + 200_000)
            await with_timeout(RisingEdge(d.done), limit * 10, "ns")
            await ClockCycles(d.clk, 1)
            if int(d.hung.value):
                raise HarnessHung(f"DUT produced {int(d.out_count.value)} of {len(chunk)} "
                                  f"outputs of batch at {lo}, then stalled")
            got = from_hex_lines(self.out_path.read_text())
            if len(got) != len(chunk):
                raise AssertionError(f"harness dumped {len(got)} results, expected {len(chunk)}")
            outs.extend(got)
            self.cycles += int(d.cycles.value)
            self.vectors += len(chunk)
            self.wall += time.monotonic() - t0
        return unpack(self.out_layout, outs)
