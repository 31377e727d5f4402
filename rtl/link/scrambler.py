"""The self-synchronizing x^58 + x^39 + 1 scrambler of 64b/66b lanes, 64 bits per cycle.

Bits are in wire order (payload bit 0 first). The scrambler sends
``s[i] = d[i] ^ s[i-39] ^ s[i-58]`` and keeps the last 58 bits it sent; the descrambler
recovers ``d[i] = s[i] ^ s[i-39] ^ s[i-58]`` from the last 58 bits it received, so it needs no
synchronisation and one flipped bit on the wire flips three bits of its output.
``golden_model/link_pcs.py`` has the same functions on Python integers.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layouts import SCRAMBLER_TAPS


__all__ = ["Scrambler", "Descrambler"]

_T1, _T2 = SCRAMBLER_TAPS
_STATE = max(SCRAMBLER_TAPS)


class Scrambler(wiring.Component):
    """Scrambles one 64-bit payload per enabled cycle.

    Members
    -------
    en : ``In(1)``
        Advance: ``o`` is the scrambled ``i`` and the state takes it.
    i, o : ``In(64)``, ``Out(64)``
        Plain and scrambled payload (combinational).
    """

    i:  In(64)
    en: In(1)
    o:  Out(64)

    def elaborate(self, platform):
        m = Module()
        state = Signal(_STATE, init=(1 << _STATE) - 1)   # bits s[-58] … s[-1]
        out = []

        def hist(j):
            return out[j] if j >= 0 else state[_STATE + j]

        for i in range(64):
            out.append(self.i[i] ^ hist(i - _T1) ^ hist(i - _T2))
        m.d.comb += self.o.eq(Cat(*out))
        with m.If(self.en):
            m.d.sync += state.eq(self.o[64 - _STATE:])
        return m


class Descrambler(wiring.Component):
    """Descrambles one 64-bit payload per enabled cycle.

    Members
    -------
    en : ``In(1)``
        Advance: the state takes ``i``.
    i, o : ``In(64)``, ``Out(64)``
        Scrambled and recovered payload (combinational).
    """

    i:  In(64)
    en: In(1)
    o:  Out(64)

    def elaborate(self, platform):
        m = Module()
        state = Signal(_STATE)

        def hist(j):
            return self.i[j] if j >= 0 else state[_STATE + j]

        m.d.comb += self.o.eq(Cat(*[self.i[i] ^ hist(i - _T1) ^ hist(i - _T2)
                                    for i in range(64)]))
        with m.If(self.en):
            m.d.sync += state.eq(self.i[64 - _STATE:])
        return m
