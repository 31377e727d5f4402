"""Pipeline registers and the stream wrapper shared by the arithmetic units.

Every unit in :mod:`rtl.numerics` is a straight pipe: all of its stages advance together when
the output register is empty or being drained (``advance = ~o.valid | o.ready``), the input is
ready exactly when the pipe advances, and ``o.valid`` is the last bit of a shift register of
valid bits, so it never depends combinationally on ``o.ready``.
"""

from types import SimpleNamespace

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out


__all__ = ["Pipe", "StreamPipeline"]


class Pipe:
    """Registers cut into a combinational datapath, all loaded on one enable.

    A datapath written as a chain of combinational steps calls :meth:`cut` between them. When
    the pipe is ``pipelined``, each call returns registered copies of its arguments (loaded
    when ``enable`` is high) and counts one stage; otherwise it returns the arguments unchanged,
    so the same datapath code elaborates to the combinational unit.

    Parameters
    ----------
    enable : Value
        Load enable of every register of the pipe (the unit's ``advance``).
    pipelined : bool
        Whether :meth:`cut` inserts registers.
    domain : str
        Clock domain of the registers.
    """

    def __init__(self, *, enable, pipelined, domain="sync"):
        if not isinstance(pipelined, bool):
            raise TypeError(f"pipelined must be a bool, not {pipelined!r}")
        self._enable    = enable
        self._pipelined = pipelined
        self._domain    = domain
        self._depth     = 0

    @property
    def pipelined(self):
        """Whether :meth:`cut` inserts registers."""
        return self._pipelined

    @property
    def depth(self):
        """Number of register stages inserted so far."""
        return self._depth

    def sibling(self):
        """A new pipe on the same enable, for a parallel path that needs its own cuts."""
        return Pipe(enable=self._enable, pipelined=self._pipelined, domain=self._domain)

    def cut(self, m, **values):
        """Register ``values`` (when pipelined) and return them as attributes of a namespace.

        Values may be plain :class:`Value` s or value-castables with a shape (``data.View``,
        enum views); each register has the shape of its value and the name ``s<n>_<key>``.
        """
        if not self._pipelined:
            return SimpleNamespace(**values)
        self._depth += 1
        regs = {}
        for key, value in values.items():
            # Only the valid bits need a reset; data registers are loaded before they matter.
            reg = Signal(value.shape(), name=f"s{self._depth}_{key}", reset_less=True)
            with m.If(self._enable):
                m.d[self._domain] += reg.eq(value)
            regs[key] = reg
        return SimpleNamespace(**regs)


class StreamPipeline(wiring.Component):
    """Base class of a unit that maps each input transaction to one output transaction.

    Subclasses define ``datapath(m, p, pipe)``, which builds the datapath from input payload
    ``p``, cuts ``pipe`` ``STAGES`` times and returns a dict of output field values; the base
    class builds the handshake, the valid shift register and the output register.

    Parameters
    ----------
    i_layout, o_layout : data.StructLayout
        Payload layouts of the input and output streams.
    pipelined : bool
        Insert the internal stage registers (otherwise the datapath is combinational and only
        the output is registered).

    Members
    -------
    i : ``In(stream.Signature(i_layout))``
        Operands.
    o : ``Out(stream.Signature(o_layout))``
        Results, in input order, :attr:`latency` cycles after the input was accepted when the
        output is not stalled.
    """

    #: Pipeline cuts made by :meth:`datapath` when pipelined.
    STAGES = 0

    def __init__(self, i_layout, o_layout, *, pipelined):
        if not callable(getattr(self, "datapath", None)):
            raise TypeError(f"{type(self).__name__} must define datapath(m, p, pipe), which "
                            f"builds the datapath from payload p and returns the output fields")
        if not isinstance(pipelined, bool):
            raise TypeError(f"pipelined must be a bool, not {pipelined!r}")
        self._pipelined = pipelined
        super().__init__({
            "i": In(stream.Signature(i_layout)),
            "o": Out(stream.Signature(o_layout)),
        })

    @property
    def pipelined(self):
        """Whether internal stage registers are present."""
        return self._pipelined

    @property
    def latency(self):
        """Cycles from an input being accepted to its result being valid (without stalls)."""
        return (self.STAGES if self._pipelined else 0) + 1

    def elaborate(self, platform):
        m = Module()

        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
        ]

        pipe = Pipe(enable=advance, pipelined=self._pipelined)
        result = self.datapath(m, self.i.payload, pipe)
        assert pipe.depth == (self.STAGES if self._pipelined else 0), \
            f"{type(self).__name__} made {pipe.depth} cuts, declared {self.STAGES}"

        # One valid bit per register stage; the last one is o.valid, a register.
        valid = self.i.valid
        for n in range(pipe.depth):
            stage_valid = Signal(name=f"s{n + 1}_valid")
            with m.If(advance):
                m.d.sync += stage_valid.eq(valid)
            valid = stage_valid
        with m.If(advance):
            m.d.sync += self.o.valid.eq(valid)
            for name, value in result.items():
                m.d.sync += getattr(self.o.payload, name).eq(value)

        return m
