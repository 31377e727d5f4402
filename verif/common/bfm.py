"""Ready/valid bus models for Amaranth ``stream`` ports under cocotb 2.

An Amaranth stream port ``i`` appears in Verilog as ``i__payload``, ``i__valid``, ``i__ready``.
:class:`StreamSource` drives one, :class:`StreamSink` consumes one and :class:`StreamMonitor`
watches one passively. Payloads are plain ints, or dicts of fields packed with the port's
Amaranth layout (so no bit position is restated here). Each model takes an optional pause
generator (an iterator of bools; True inserts an idle/backpressure cycle), as cocotbext-axi's
models do.

These models touch every cycle from Python; use them for directed and protocol tests. Bulk
vector sweeps go through :mod:`verif.common.harness`.
"""

import itertools

import cocotb
from cocotb.queue import Queue
from cocotb.triggers import Event, FallingEdge, ReadOnly, RisingEdge

from .pack import pack, unpack


__all__ = ["StreamSource", "StreamSink", "StreamMonitor", "random_pause"]


def random_pause(rng, p_pause):
    """Endless pause generator: True (pause) with probability ``p_pause`` each cycle."""
    while True:
        yield bool(rng.random() < p_pause)


class _StreamBase:
    def __init__(self, dut, prefix, clock, layout=None):
        self.clock = clock
        self.layout = layout
        self.payload = getattr(dut, f"{prefix}__payload")
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.name = prefix
        self._pause = itertools.repeat(False)

    def set_pause_generator(self, generator=None):
        self._pause = itertools.repeat(False) if generator is None else generator

    def _encode(self, item):
        if isinstance(item, dict):
            return pack(self.layout, 1, **item)[0]
        return int(item)

    def _decode(self, word):
        if self.layout is None:
            return word
        return {k: int(v[0]) for k, v in unpack(self.layout, [word]).items()}


class StreamSource(_StreamBase):
    """Drive a stream: ``await send(x)`` queues ``x``; ``await wait()`` waits until all sent."""

    def __init__(self, dut, prefix, clock, layout=None):
        super().__init__(dut, prefix, clock, layout)
        self.queue = Queue()
        self.sent = 0
        self._idle = Event()
        self._idle.set()
        self.valid.value = 0
        cocotb.start_soon(self._run())

    async def send(self, item):
        self.send_nowait(item)

    def send_nowait(self, item):
        self._idle.clear()
        self.queue.put_nowait(self._encode(item))

    def idle(self):
        return self.queue.empty() and self._idle.is_set()

    async def wait(self):
        await self._idle.wait()

    async def _run(self):
        current = None
        while True:
            # Drive just after a rising edge; sample the handshake once everything has settled
            # half a cycle later, which is what the DUT sees at the next rising edge.
            await RisingEdge(self.clock)
            if current is None and not self.queue.empty() and not next(self._pause):
                current = self.queue.get_nowait()
            if current is None:
                self.valid.value = 0
                if self.queue.empty():
                    self._idle.set()
                continue
            # Once offered, a payload stays valid until taken (stream rule).
            self.payload.value = current
            self.valid.value = 1
            await FallingEdge(self.clock)
            await ReadOnly()
            if int(self.ready.value):
                current = None
                self.sent += 1


class StreamSink(_StreamBase):
    """Consume a stream: ``await recv()`` returns the next payload (int or dict of fields)."""

    def __init__(self, dut, prefix, clock, layout=None):
        super().__init__(dut, prefix, clock, layout)
        self.queue = Queue()
        self.ready.value = 0
        cocotb.start_soon(self._run())

    async def recv(self):
        return await self.queue.get()

    def recv_nowait(self):
        return self.queue.get_nowait()

    def empty(self):
        return self.queue.empty()

    def count(self):
        return self.queue.qsize()

    async def _run(self):
        while True:
            await RisingEdge(self.clock)
            ready = 0 if next(self._pause) else 1
            self.ready.value = ready
            await FallingEdge(self.clock)
            await ReadOnly()
            if ready and int(self.valid.value):
                self.queue.put_nowait(self._decode(int(self.payload.value)))


class StreamMonitor(_StreamBase):
    """Record every transfer on a stream without driving it."""

    def __init__(self, dut, prefix, clock, layout=None, callback=None):
        super().__init__(dut, prefix, clock, layout)
        self.queue = Queue()
        self.callback = callback
        cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await FallingEdge(self.clock)
            await ReadOnly()
            if int(self.valid.value) and int(self.ready.value):
                item = self._decode(int(self.payload.value))
                if self.callback:
                    self.callback(item)
                else:
                    self.queue.put_nowait(item)
