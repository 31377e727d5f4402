"""The chip's RTL in Amaranth's own simulator (pysim), for small tests with no C++ toolchain.

:class:`PysimTransport` elaborates :class:`rtl.chip.ChipHost` with the Amaranth-memory HBM
storage (``hbm_storage="memory"``; the Verilog channel model is a blackbox pysim cannot run)
and the processing elements and vector lanes inlined (``shared_units=False``: a shared module is
a Verilog instance, also a blackbox here). It drives the same request/response stream as
:class:`~firmware.transports.verilator.VerilatorTransport`, with the same packing and the
same checks, so the two differ only in the simulator under the stream.

The simulator runs one background testbench that serves batches: the transport posts a batch
(packed requests, how many answers to collect, a watchdog) and advances the simulation until
the testbench reports it done. Every cycle goes through Python: on TINY the chip takes about
20 s to elaborate and simulates about a thousand cycles per second. Use a small configuration,
e.g. ``TINY.replace(hbm_bytes=1 << 20)`` (an Amaranth memory of a real HBM's depth also takes
long to elaborate).
"""

import numpy as np
from amaranth.sim import Simulator

from rtl.chip import ChipHost, chip_host_request_layout, chip_host_response_layout

from .verilator import StreamTransport


__all__ = ["PysimTransport"]

#: Simulated clock period (only the cycle count matters).
_PERIOD = 1e-6


class _Batch:
    def __init__(self, requests, n_resp, watchdog):
        self.requests = requests
        self.n_resp = n_resp
        self.watchdog = watchdog
        self.responses = []
        self.taken = 0
        self.done = False


class _PysimTop:
    """The stream top in pysim, with the interface of
    :class:`~firmware.transports.verilator.StreamTop` (``run``, ``step``, ``cycles``, ``taken``,
    ``close``). Signals start at their reset values, so no reset is needed."""

    def __init__(self, dut, in_width, out_width):
        self.dut = dut
        self.in_words = max(1, (in_width + 31) // 32)
        self.out_words = max(1, (out_width + 31) // 32)
        self.cycles = 0
        self.taken = 0
        self._batch = None
        self._steps = 0
        self.sim = Simulator(dut)
        self.sim.add_clock(_PERIOD)
        self.sim.add_testbench(self._serve, background=True)

    async def _serve(self, ctx):
        dut = self.dut
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 0)
        while True:
            if self._steps:
                ctx.set(dut.i.valid, 0)
                ctx.set(dut.o.ready, 0)
                await ctx.tick()
                self.cycles += 1
                self._steps -= 1
                continue
            batch = self._batch
            if batch is None or batch.done:
                await ctx.tick()
                self.cycles += 1
                continue
            ints = [int.from_bytes(row.tobytes(), "little") for row in batch.requests]
            sent = 0
            quiet = 0
            ctx.set(dut.o.ready, 1)
            while len(batch.responses) < batch.n_resp:
                offer = sent < len(ints)
                ctx.set(dut.i.valid, offer)
                if offer:
                    ctx.set(dut.i.payload.as_value(), ints[sent])
                _, _, i_ready, o_valid, o_payload = await ctx.tick().sample(
                    dut.i.ready, dut.o.valid, dut.o.payload.as_value())
                self.cycles += 1
                if offer and i_ready:
                    sent += 1
                if o_valid:
                    batch.responses.append(int(o_payload))
                    quiet = 0
                else:
                    quiet += 1
                    if batch.watchdog and quiet >= batch.watchdog:
                        break
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.o.ready, 0)
            batch.taken = sent
            batch.done = True

    def _advance_until(self, done):
        while not done():
            self.sim.advance()

    def step(self, cycles):
        self._steps = int(cycles)
        self._advance_until(lambda: self._steps == 0)

    def run(self, requests, n_resp=None, watchdog=0):
        req = np.ascontiguousarray(requests, dtype=np.uint32)
        n_resp = len(req) if n_resp is None else n_resp
        batch = _Batch(req, n_resp, int(watchdog))
        self._batch = batch
        self._advance_until(lambda: batch.done)
        self.taken = batch.taken
        out = np.zeros((len(batch.responses), self.out_words), np.uint32)
        for k, value in enumerate(batch.responses):
            out[k] = np.frombuffer(value.to_bytes(4 * self.out_words, "little"), "<u4")
        return out

    def close(self):
        pass


class PysimTransport(StreamTransport):
    """:class:`rtl.chip.ChipHost` in Amaranth's simulator as a transport.

    Parameters
    ----------
    cfg : ChipConfig
        A small configuration (an HBM of a few MiB at most).
    """

    name = "pysim"
    cycle_accurate = True

    def __init__(self, cfg):
        dut = ChipHost(cfg, hbm_storage="memory", shared_units=False)
        top = _PysimTop(dut, chip_host_request_layout(cfg).size,
                        chip_host_response_layout(cfg).size)
        super().__init__(cfg, top)
        # Start the simulation (pysim compiles the design on its first step).
        top.step(1)
