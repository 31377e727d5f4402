"""A long, cheap wire delay for link test tops: a circular buffer in one memory.

The channel model (:mod:`.channel`) adds per-lane skew of a few blocks; round trips of tens of
flits (hundreds of cycles at one lane) would make its shift registers slow to simulate, so the
bulk of a wire's flight time is this memory instead: one write and one read per cycle,
whatever the delay.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out


__all__ = ["DelayLine"]


class DelayLine(wiring.Component):
    """``o`` is ``i`` as it was ``delay + 1`` cycles ago (``delay`` < ``depth``).

    Parameters
    ----------
    width : int
        Bits per cycle.
    depth : int
        Memory entries, a power of two; the largest delay is ``depth - 1``.

    Members
    -------
    i : ``In(width)``, o : ``Out(width)``
        The wire in and out.
    delay : ``In(range(depth))``
        Extra cycles of delay; changing it while running repeats or skips values.
    """

    def __init__(self, *, width, depth):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        if not isinstance(depth, int) or depth < 2 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two ≥ 2, not {depth!r}")
        self._width, self._depth = width, depth
        super().__init__({
            "i":     In(width),
            "o":     Out(width),
            "delay": In(range(depth)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=self._width, depth=self._depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port(domain="comb")
        ptr = Signal(range(self._depth))
        m.d.sync += ptr.eq(ptr + 1)
        m.d.comb += [
            wr.addr.eq(ptr),
            wr.data.eq(self.i),
            wr.en.eq(1),
            rd.addr.eq(ptr - self.delay),
        ]
        # The read of the entry written `delay` cycles ago; with delay 0 it is this cycle's
        # write, which a comb read port does not see yet, so bypass it.
        out = Signal(self._width)
        m.d.comb += out.eq(rd.data)
        with m.If(self.delay == 0):
            m.d.comb += out.eq(self.i)
        m.d.sync += self.o.eq(out)
        return m
