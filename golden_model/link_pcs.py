"""Golden model of the link PCS (``rtl/link/scrambler.py``, ``rtl/link/pcs.py``).

The 64b/66b scrambler and block codec; a lane's transmitter; the transmit PCS with striping,
IDLE fill, alignment markers and BIP-8, bit-exact cycle by cycle; and a reference decoder of
lane streams. Payloads are Python integers, bit 0 first on the wire; a block is the 66-bit
integer ``sync | payload << 2``.
"""

from rtl.link.layouts import (AM_BLOCK, AM_MAGIC, BLOCK_BITS, SCRAMBLER_TAPS, SYNC_CTRL,
                              SYNC_DATA, BlockType)


__all__ = ["Scrambler", "Descrambler", "encode_block", "decode_block", "bip8", "idle_payload",
           "am_payload", "parse_am", "LaneTxModel", "PcsTxModel", "PcsRxModel"]

_T1, _T2 = SCRAMBLER_TAPS
_STATE = max(SCRAMBLER_TAPS)
_MASK64 = (1 << 64) - 1


class Scrambler:
    """``s[i] = d[i] ^ s[i-39] ^ s[i-58]``; the state is the last 58 bits sent (initially all
    ones, as in the RTL)."""

    def __init__(self, state=(1 << _STATE) - 1):
        self.state = state

    def __call__(self, payload):
        hist = self.state            # bit j = s[j - 58]
        out = 0
        for i in range(64):
            h = hist | out << _STATE
            bit = (payload >> i ^ h >> (i - _T1 + _STATE) ^ h >> (i - _T2 + _STATE)) & 1
            out |= bit << i
        self.state = out >> (64 - _STATE)
        return out


class Descrambler:
    """``d[i] = s[i] ^ s[i-39] ^ s[i-58]`` from the last 58 bits received (initially zero)."""

    def __init__(self, state=0):
        self.state = state

    def __call__(self, scrambled):
        h = self.state | scrambled << _STATE
        out = 0
        for i in range(64):
            out |= ((scrambled >> i ^ h >> (i - _T1 + _STATE) ^ h >> (i - _T2 + _STATE)) & 1) << i
        self.state = scrambled >> (64 - _STATE)
        return out


def encode_block(payload, ctrl, scrambler):
    """The 66-bit block of ``payload`` (a control block if ``ctrl``), scrambled."""
    if not 0 <= payload <= _MASK64:
        raise ValueError(f"payload must be a 64-bit unsigned integer, not {payload!r}")
    return (SYNC_CTRL if ctrl else SYNC_DATA) | scrambler(payload) << 2


def decode_block(block, descrambler):
    """``(valid, ctrl, payload)`` of a received 66-bit block; ``valid`` is whether the sync
    header is 01 or 10 (the payload is descrambled either way, keeping the state in step)."""
    if not 0 <= block < 1 << BLOCK_BITS:
        raise ValueError(f"block must be a 66-bit unsigned integer, not {block!r}")
    sync = block & 3
    payload = descrambler(block >> 2)
    return sync in (SYNC_DATA, SYNC_CTRL), sync == SYNC_CTRL, payload


# --- Lanes, markers and striping (rtl/link/pcs.py) ---------------------------------------------

def bip8(payloads):
    """BIP-8 of 64-bit payloads: bit ``b`` is the XOR of bit ``b`` of every payload byte."""
    acc = 0
    for payload in payloads:
        acc ^= payload
    out = 0
    for byte in range(8):
        out ^= acc >> (8 * byte) & 0xFF
    return out


def idle_payload():
    """The payload of an IDLE control block."""
    return BlockType.IDLE.value


def am_payload(*, lane, width, bip):
    """The payload of an alignment marker (:data:`AM_BLOCK`)."""
    return AM_BLOCK.const({
        "type": BlockType.AM.value, "lane": lane, "width": width, "bip": bip,
        "bip_inv": ~bip & 0xFF, "magic": AM_MAGIC,
    }).as_value().value


def parse_am(payload):
    """``(lane, width, bip)`` of a marker payload, or ``None`` if ``payload`` is not a
    well-formed marker (type, magic and both BIP copies checked)."""
    am = AM_BLOCK.from_bits(payload)
    if (am.type != BlockType.AM.value or am.magic != AM_MAGIC
            or am.bip_inv != ~am.bip & 0xFF):
        return None
    return int(am.lane), int(am.width), int(am.bip)


class LaneTxModel:
    """One transmit lane (``rtl.link.pcs.LaneTx``): ``(ctrl, payload)`` → 66-bit block."""

    def __init__(self):
        self.scrambler = Scrambler()

    def __call__(self, ctrl, payload):
        return encode_block(payload, ctrl, self.scrambler)


class PcsTxModel:
    """The transmit PCS (``rtl.link.pcs.PcsTx``), cycle by cycle.

    Parameters
    ----------
    params : rtl.link.params.LinkParams
        ``lanes`` and ``am_period`` are used.

    Attributes
    ----------
    plain : list of (int, int)
        After :meth:`step`: each physical lane's ``(ctrl, payload)`` before scrambling.
    """

    def __init__(self, params):
        self.lanes = params.lanes
        self.am_period = params.am_period
        self.phase = 0
        self.bip = [0] * self.lanes
        self.tx = [LaneTxModel() for _ in range(self.lanes)]
        self.plain = []

    def step(self, valid, beat, *, raw=False, width=None, offset=0):
        """One cycle.

        Parameters
        ----------
        valid : bool
            A beat is offered.
        beat : sequence of (int, int)
            ``(ctrl, payload)`` per logical lane (striped) or physical lane (raw); ignored
            unless the beat is taken.
        raw : bool
        width, offset : int
            Striping (``width`` defaults to every lane).

        Returns
        -------
        ready : bool
            ``ready`` of the RTL: not the marker cycle (the beat is taken if also ``valid``).
        blocks : list of int
            Each physical lane's 66-bit block (on the RTL's ``o`` one cycle later).
        """
        L = self.lanes
        width = L if width is None else width
        if not 0 <= width <= L or not 0 <= offset < L:
            raise ValueError(f"width {width} and offset {offset} do not fit {L} lanes")
        marker = self.phase == 0
        self.phase = (self.phase + 1) % self.am_period
        take = valid and not marker
        plain = []
        for lane in range(L):
            if marker:
                blk = (1, am_payload(lane=lane, width=width, bip=self.bip[lane]))
            elif take and raw:
                blk = tuple(beat[lane])
            elif take and offset <= lane < offset + width:
                blk = tuple(beat[lane - offset])
            else:
                blk = (1, idle_payload())
            self.bip[lane] = 0 if marker else self.bip[lane] ^ bip8([blk[1]])
            plain.append(blk)
        self.plain = plain
        return not marker, [tx(c, d) for tx, (c, d) in zip(self.tx, plain)]


class PcsRxModel:
    """A reference decoder of lane streams (what ``rtl.link.pcs.PcsRx`` delivers).

    Takes the blocks of the active lanes without skew or bit offset, descrambles them, aligns
    on the first marker beat that is well formed on every lane, then returns every beat but the
    marker beats and checks each marker's BIP-8 against the blocks received since the previous
    one.

    Parameters
    ----------
    params : rtl.link.params.LinkParams
    """

    def __init__(self, params):
        self.am_period = params.am_period

    def decode(self, lanes, *, offset=0):
        """Decode equal-length lists of 66-bit blocks (one list per lane, logical order).

        Parameters
        ----------
        lanes : list of list of int
            Logical lane ``j``'s blocks, sent by physical lane ``offset + j``.
        offset : int

        Returns
        -------
        beats : list of list of (int, int)
            ``(ctrl, payload)`` per lane of every beat after the first marker beat, marker
            beats excluded.
        bip_errors : list of int
            Per lane, markers after the first whose BIP-8 disagrees with the blocks received.
        am_errors : list of int
            Per lane, marker beats after the first where the lane has no well-formed marker,
            or one with a lane ID other than its physical lane.
        header_errors : list of int
            Per lane, blocks with an invalid sync header.
        """
        n = len(lanes[0])
        if any(len(blocks) != n for blocks in lanes):
            raise ValueError("every lane must have the same number of blocks")
        plain = []
        header_errors = []
        for blocks in lanes:
            desc = Descrambler()
            decoded = [decode_block(b, desc) for b in blocks]
            header_errors.append(sum(not ok for ok, _, _ in decoded))
            plain.append([(int(ctrl), payload) for _, ctrl, payload in decoded])

        def is_marker(t):
            return all(c and parse_am(d) is not None for c, d in (lane[t] for lane in plain))

        start = next((t for t in range(n) if is_marker(t)), None)
        beats = []
        bip_errors = [0] * len(lanes)
        am_errors = [0] * len(lanes)
        if start is None:
            return beats, bip_errors, am_errors, header_errors
        acc = [0] * len(lanes)
        for t in range(start + 1, n):
            if (t - start) % self.am_period == 0:
                for i, lane in enumerate(plain):
                    am = parse_am(lane[t][1]) if lane[t][0] else None
                    if am is None or am[0] != offset + i:
                        am_errors[i] += 1
                    if am is not None and am[2] != bip8([acc[i]]):
                        bip_errors[i] += 1
                    acc[i] = 0
            else:
                beats.append([lane[t] for lane in plain])
                for i, lane in enumerate(plain):
                    acc[i] ^= lane[t][1]
        return beats, bip_errors, am_errors, header_errors
