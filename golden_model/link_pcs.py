"""Golden model of the link PCS: the 64b/66b scrambler and block codec (``rtl/link``).

Payloads are Python integers, bit 0 first on the wire; a block is the 66-bit integer
``sync | payload << 2``.
"""

from rtl.link.layouts import BLOCK_BITS, SCRAMBLER_TAPS, SYNC_CTRL, SYNC_DATA


__all__ = ["Scrambler", "Descrambler", "encode_block", "decode_block"]

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
