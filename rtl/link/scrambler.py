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
# The word-wide expressions below are written for these taps.
assert (_T1, _T2) == (39, 58)


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
        # s[i] = d[i] ^ s[i-39] ^ s[i-58] in three word-wide pieces: bits 0–38 take both taps
        # from the state, bits 39–57 one from this word, bits 58–63 both.
        lo  = Signal(39)
        mid = Signal(19)
        hi  = Signal(6)
        m.d.comb += [
            lo .eq(self.i[0:39] ^ state[19:58] ^ state[0:39]),
            mid.eq(self.i[39:58] ^ lo[0:19] ^ state[39:58]),
            hi .eq(self.i[58:64] ^ lo[19:25] ^ lo[0:6]),
            self.o.eq(Cat(lo, mid, hi)),
        ]
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
        # d[i] = s[i] ^ s[i-39] ^ s[i-58]: one XOR of three windows of (state, input).
        full = Cat(state, self.i)
        m.d.comb += self.o.eq(self.i ^ full[_STATE - _T1:_STATE - _T1 + 64] ^ full[0:64])
        with m.If(self.en):
            m.d.sync += state.eq(self.i[64 - _STATE:])
        return m
