"""Golden model of the link test traffic and channel generators (``rtl/link/traffic.py``,
``rtl/link/channel.py``).

The message format and PRBS of :class:`~rtl.link.traffic.TrafficGen` and
:class:`~rtl.link.traffic.TrafficCheck`, the generators that choose message lengths and flit
drops, and the conversion between a bit error rate and the channel's ``ber_threshold``.
Slots are ``(data, last)`` with ``data`` a 128-bit integer.
"""

from rtl.link.channel import xorshift64_seed
from rtl.link.layouts import BLOCK_BITS, SLOTS
from rtl.link.traffic import GEN_LEN_KEYS, PRBS_KEY


__all__ = ["xorshift32", "xorshift64", "prbs", "header", "parse_header", "message_slots",
           "message_lengths", "ber_to_threshold", "threshold_to_ber", "channel_drops"]

_M32 = (1 << 32) - 1
_M64 = (1 << 64) - 1


def xorshift32(x):
    """One step of the 32-bit xorshift (13, 17, 5) the RTL generators use."""
    x ^= (x << 13) & _M32
    x ^= x >> 17
    return x ^ (x << 5) & _M32


def xorshift64(x):
    """One step of the 64-bit xorshift (13, 7, 17)."""
    x ^= (x << 13) & _M64
    x ^= x >> 7
    return x ^ (x << 17) & _M64


def prbs(vc, msg, slot):
    """The 128-bit PRBS of slot ``slot`` of message ``msg`` on VC ``vc``."""
    if not (0 <= vc < 16 and 0 <= msg <= _M32 and 0 <= slot < 16):
        raise ValueError(f"vc, msg, slot out of range: {vc!r}, {msg!r}, {slot!r}")
    a = xorshift64(xorshift64((msg | slot << 32 | vc << 36) ^ PRBS_KEY))
    return a | xorshift64(a) << 64


def header(vc, msg, length, stamp):
    """Slot 0's 128-bit data (``TRAFFIC_HEADER``)."""
    if not 1 <= length <= SLOTS:
        raise ValueError(f"length must be 1 … {SLOTS}, not {length!r}")
    return (msg | (stamp & _M32) << 32 | vc << 64 | length << 68
            | (prbs(vc, msg, 0) & ((1 << 56) - 1)) << 72)


def parse_header(data):
    """``dict(msg, stamp, vc, length, prbs)`` of a slot 0."""
    return {
        "msg":    data & _M32,
        "stamp":  data >> 32 & _M32,
        "vc":     data >> 64 & 0xF,
        "length": data >> 68 & 0xF,
        "prbs":   data >> 72,
    }


def message_slots(vc, msg, length, stamp):
    """The ``length`` slots ``(data, last)`` of a message."""
    return [(header(vc, msg, length, stamp) if s == 0 else prbs(vc, msg, s), s == length - 1)
            for s in range(length)]


def message_lengths(vc, seed, n, *, fixed_len=None):
    """Lengths of the first ``n`` messages of VC ``vc`` from a generator seeded ``seed``
    (random mode), or ``fixed_len`` each (fixed mode; 0 acts as 1)."""
    if fixed_len is not None:
        return [max(fixed_len, 1)] * n
    r = (seed ^ GEN_LEN_KEYS[vc]) or GEN_LEN_KEYS[vc]
    out = []
    for _ in range(n):
        out.append(((r & 0xFF) * 15 >> 8) + 1)
        r = xorshift32(r)
    return out


def channel_drops(seed, threshold, n):
    """Which of the first ``n`` flits a channel seeded ``seed`` drops at ``drop_threshold``
    (drop_at aside): one 64-bit draw per flit, dropped when its low 32 bits are below."""
    r = xorshift64_seed(seed, 8)
    out = []
    for _ in range(n):
        out.append((r & _M32) < threshold)
        r = xorshift64(r)
    return out


def ber_to_threshold(ber, *, burst_len=1):
    """The channel ``ber_threshold`` for a per-bit error rate ``ber``.

    An event flips ``burst_len`` bits and happens per 66-bit block with probability
    ``threshold / 2**32``, so the bit error rate is ``threshold / 2**32 * burst_len / 66``.
    The approximation holds while that probability is small: there is at most one event per
    block per lane (no Poisson pile-up), and no event starts in a block a burst spills into
    (for ``burst_len > 1`` a relative deficit of at most ``P(event) · (burst_len - 1) / 66``).

    Parameters
    ----------
    ber : float
        Bits in error per bit sent, ≥ 0.
    burst_len : int
        The channel's ``burst_len``, 1 … 64.

    Returns
    -------
    int
        The threshold, rounded and clipped to ``0 … 2**32 - 1``.
    """
    if not 1 <= burst_len <= 64:
        raise ValueError(f"burst_len must be 1 … 64, not {burst_len!r}")
    if not ber >= 0:
        raise ValueError(f"ber must be a non-negative number, not {ber!r}")
    return min(round(ber * BLOCK_BITS / burst_len * 2**32), _M32)


def threshold_to_ber(threshold, *, burst_len=1):
    """The per-bit error rate of a channel ``ber_threshold`` (inverse of
    :func:`ber_to_threshold`)."""
    return threshold / 2**32 * burst_len / BLOCK_BITS
