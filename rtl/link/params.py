"""Parameters of one link endpoint: :class:`LinkParams`.

Lanes and virtual channels come from the chip's :class:`~rtl.config.ChipConfig`; the rest are
link-layer choices with defaults sized for hardware, and :meth:`LinkParams.fast_sim` gives the
short periods and timers the simulations use (research/link.md § 5.1: short marker periods, a
narrow sequence number to force wraps, short timers).
"""

from dataclasses import dataclass, replace

from .layouts import FC_BITS, SEQ_BITS


__all__ = ["LinkParams"]


def _pow2(x):
    return isinstance(x, int) and not isinstance(x, bool) and x > 0 and x & (x - 1) == 0


@dataclass(frozen=True, kw_only=True)
class LinkParams:
    """One endpoint of an interchip link.

    Attributes
    ----------
    lanes : int
        Physical lanes, 1, 2, 4 or 8.
    vcs : int
        Virtual channels, 1 … 4.
    seq_bits : int
        Width of sequence numbers actually used (≤ 12; the header field is 12 bits). Narrow
        builds (6 bits) make wraps frequent.
    replay_depth : int
        Replay-buffer entries (flits), a power of two, < 2**seq_bits.
    vc_slots : int
        Receive buffer per VC, in 16-byte slots (the credits advertised at DL init).
    ack_every : int
        Send an ACK at least every this many DATA flits received.
    ack_timer : int
        … or this many cycles after the oldest un-ACKed DATA flit arrived.
    replay_timer : int
        Cycles without forward progress while flits are unacknowledged before a replay.
    replay_num_bits : int
        REPLAY_NUM width: the ``2**replay_num_bits``-th replay without progress retrains.
    am_period : int
        Beats between alignment markers (a marker beat included), a power of two.
    max_skew : int
        Beats of lane-to-lane skew the deskew FIFOs absorb.
    lock_good, lock_window, lock_bad : int
        Block lock: ``lock_good`` consecutive valid headers to lock; ``lock_bad`` invalid
        headers within ``lock_window`` blocks to lose it.
    hi_ber_window, hi_ber_count : int
        hi-BER: ``hi_ber_count`` invalid headers within ``hi_ber_window`` blocks.
    train_timeout : int
        Cycles a training state may last before the FSM gives up on it.
    """
    lanes:           int = 4
    vcs:             int = 4
    seq_bits:        int = SEQ_BITS
    replay_depth:    int = 32
    vc_slots:        int = 64
    ack_every:       int = 8
    ack_timer:       int = 64
    replay_timer:    int = 1024
    replay_num_bits: int = 2
    am_period:       int = 4096
    max_skew:        int = 16
    lock_good:       int = 64
    lock_window:     int = 64
    lock_bad:        int = 16
    hi_ber_window:   int = 8192
    hi_ber_count:    int = 16
    train_timeout:   int = 1 << 15

    def __post_init__(self):
        if self.lanes not in (1, 2, 4, 8):
            raise ValueError(f"lanes must be 1, 2, 4 or 8, not {self.lanes!r}")
        if self.vcs not in (1, 2, 3, 4):
            raise ValueError(f"vcs must be 1 … 4, not {self.vcs!r}")
        if not (isinstance(self.seq_bits, int) and 3 <= self.seq_bits <= SEQ_BITS):
            raise ValueError(f"seq_bits must be an integer from 3 to {SEQ_BITS}, "
                             f"not {self.seq_bits!r}")
        if not _pow2(self.replay_depth) or self.replay_depth >= 1 << self.seq_bits:
            raise ValueError(f"replay_depth must be a power of two below 2**seq_bits = "
                             f"{1 << self.seq_bits}, not {self.replay_depth!r}")
        if not (isinstance(self.vc_slots, int) and 15 <= self.vc_slots < 1 << (FC_BITS - 1)):
            raise ValueError(f"vc_slots must hold one full flit (15 slots) and be below "
                             f"{1 << (FC_BITS - 1)}, not {self.vc_slots!r}")
        if not _pow2(self.am_period) or self.am_period < 16:
            raise ValueError(f"am_period must be a power of two ≥ 16, not {self.am_period!r}")
        for name in ("ack_every", "ack_timer", "replay_timer", "max_skew", "lock_good",
                     "lock_window", "lock_bad", "hi_ber_window", "hi_ber_count",
                     "train_timeout", "replay_num_bits"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if self.lock_bad > self.lock_window:
            raise ValueError(f"lock_bad ({self.lock_bad}) must not exceed lock_window "
                             f"({self.lock_window})")

    @classmethod
    def for_chip(cls, cfg, **overrides):
        """The parameters of ``cfg``'s link ports (lanes and VCs from the chip)."""
        return cls(lanes=cfg.link_lanes, vcs=cfg.link_vcs, **overrides)

    def fast_sim(self, **overrides):
        """The same link with short periods and timers, for simulation."""
        return replace(self, **{"am_period": 128, "hi_ber_window": 1024,
                                "train_timeout": 1 << 13, **overrides})

    @property
    def seq_mod(self):
        return 1 << self.seq_bits

    @property
    def beats_per_flit(self):
        """Beats of one flit at full width."""
        return 32 // self.lanes
