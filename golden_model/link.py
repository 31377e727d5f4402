"""Golden model of the link's data link layer (``rtl/link/framing.py``, ``rtl/link/dll.py``).

Three parts:

* the flit format: :func:`flit_crc` (CRC-32C from the ``crc32c`` package over the
  :data:`~rtl.link.layouts.CRC_BYTES` covered bytes), :func:`pack_flit` and
  :func:`unpack_flit` between the fields of :data:`~rtl.link.layouts.FLIT_HEADER` /
  :data:`~rtl.link.layouts.FLIT_TRAILER` plus slots and the 32 words of a flit;
* :class:`DataLinkModel`, one endpoint at the transaction level: go-back-N retry with a replay
  buffer, ACK/NAK with NAK suppression, cumulative per-VC credits, REPLAY_NUM and the
  error-injection controls, with the counters of :data:`~rtl.link.layouts.DL_COUNTERS`. It is
  told what happens (a flit received, a flit the endpoint sent, a replay-timer expiry, a user
  pop) in the order the RTL applies it within a cycle (the flit sent first, then the flit
  received, then the timer, then user pops and pushes) and returns its decisions; fed the
  RTL's own traffic it predicts every bit of every flit the RTL sends;
* :func:`retry_goodput`, the go-back-N goodput under random bit errors.

``docs/link_dll.md`` is the prose contract.
"""

from collections import deque
from dataclasses import dataclass, field

import crc32c as _crc32c

from rtl.link.layouts import (
    CRC_BYTES, DL_COUNTERS, FC_BITS, FLIT_HEADER, FLIT_TRAILER, FLIT_WORDS, SLOTS, BlockType,
    FlitType,
)
from rtl.link.params import LinkParams


__all__ = [
    "WIRE_BITS_PER_FLIT", "flit_bytes", "flit_crc", "Flit", "pack_flit", "unpack_flit",
    "RxDecision", "DataLinkModel", "retry_goodput",
]

#: Bits one flit occupies on the lanes: 32 blocks of 66 bits.
WIRE_BITS_PER_FLIT = FLIT_WORDS * 66

_MASK64 = (1 << 64) - 1
_FC_MOD = 1 << FC_BITS


def flit_bytes(words):
    """The 256 bytes of a flit, word 0 first, each word little-endian."""
    if len(words) != FLIT_WORDS:
        raise ValueError(f"a flit has {FLIT_WORDS} words, not {len(words)}")
    return b"".join(int(w).to_bytes(8, "little") for w in words)


def flit_crc(words):
    """CRC-32C of the covered bytes of a flit (words 0–30 and the low half of word 31)."""
    return _crc32c.crc32c(flit_bytes(words)[:CRC_BYTES])


@dataclass(frozen=True)
class Flit:
    """The fields of one flit.

    ``slots`` holds the ``nslots`` payload slots as 128-bit integers; ``crc_ok`` says whether
    the received CRC matches the covered bytes.
    """
    type: FlitType
    ack: bool = False
    nak: bool = False
    seq: int = 0
    ack_seq: int = 0
    vc: int = 0
    nslots: int = 0
    fc_vc: int = 0
    fc_valid: bool = False
    fc_limit: int = 0
    nak_epoch: int = 0
    replay_epoch: int = 0
    slots: tuple = ()
    last: int = 0
    crc: int = 0
    crc_ok: bool = True
    block: int = BlockType.SOF.value
    raw_type: int = 0


def pack_flit(*, type, ack=False, nak=False, seq=0, ack_seq=0, vc=0, fc_vc=0,
              fc_valid=False, fc_limit=0, nak_epoch=0, replay_epoch=0, slots=(), last=0,
              crc=None, crc_flip=0):
    """The 32 words of a flit.

    Parameters
    ----------
    type : FlitType
    ack, nak : bool
    seq, ack_seq : int
        Sequence numbers (12-bit fields).
    vc : int
        VC of the slots (DATA).
    fc_vc, fc_valid, fc_limit : int
        The credit update the flit carries.
    nak_epoch, replay_epoch : int
        Which NAK a NAK is; the epoch of the last NAK the sender of a DATA flit received
        (2-bit fields).
    slots : sequence of int
        Up to 15 slots of 128 bits; ``nslots`` is their number.
    last : int
        Bit ``s``: slot ``s`` ends a message.
    crc : int or None
        The trailer's CRC; ``None`` computes the right one.
    crc_flip : int
        XORed into the CRC (error injection).

    Returns
    -------
    list of int
    """
    slots = [int(s) for s in slots]
    if len(slots) > SLOTS:
        raise ValueError(f"a flit holds at most {SLOTS} slots, not {len(slots)}")
    for s in slots:
        if not 0 <= s < 1 << 128:
            raise ValueError(f"a slot must be a 128-bit unsigned integer, not {s!r}")
    header = FLIT_HEADER.const({
        "block": BlockType.SOF.value, "type": FlitType(type), "ack": int(ack), "nak": int(nak),
        "seq": seq, "ack_seq": ack_seq, "vc": vc, "nslots": len(slots), "fc_vc": fc_vc,
        "fc_valid": int(fc_valid), "fc_limit": fc_limit, "nak_epoch": nak_epoch,
        "replay_epoch": replay_epoch,
    }).as_value().value
    words = [header]
    for s in range(SLOTS):
        v = slots[s] if s < len(slots) else 0
        words += [v & _MASK64, v >> 64]
    words.append(FLIT_TRAILER.const({"last": last, "crc": 0}).as_value().value)
    if crc is None:
        crc = flit_crc(words)
    words[31] |= (crc ^ crc_flip) << 32
    return words


def unpack_flit(words):
    """The :class:`Flit` in 32 words (fields as received; ``crc_ok`` checks the CRC)."""
    words = [int(w) for w in words]
    if len(words) != FLIT_WORDS:
        raise ValueError(f"a flit has {FLIT_WORDS} words, not {len(words)}")
    h = FLIT_HEADER.from_bits(words[0])
    t = FLIT_TRAILER.from_bits(words[31])
    raw_type = words[0] >> 8 & 3
    nslots = h.nslots
    slots = tuple(words[1 + 2 * s] | words[2 + 2 * s] << 64 for s in range(min(nslots, SLOTS)))
    return Flit(type=FlitType(raw_type) if raw_type in (0, 1) else None,
                ack=bool(h.ack), nak=bool(h.nak), seq=h.seq, ack_seq=h.ack_seq, vc=h.vc,
                nslots=nslots, fc_vc=h.fc_vc, fc_valid=bool(h.fc_valid), fc_limit=h.fc_limit,
                nak_epoch=h.nak_epoch, replay_epoch=h.replay_epoch, slots=slots, last=t.last,
                crc=t.crc, crc_ok=t.crc == flit_crc(words), block=h.block, raw_type=raw_type)


@dataclass
class RxDecision:
    """What one received flit did.

    Attributes
    ----------
    kind : str
        ``"framing_error"``, ``"crc_error"``, ``"malformed"`` (an unknown type), ``"nop"``,
        ``"deliver"``, ``"duplicate"``, ``"gap"`` (a DATA flit ahead of next_rcv) or
        ``"bad_data"`` (a DATA flit with an impossible VC or slot count).
    ack : str or None
        ACK processing: ``"progress"``, ``"none"`` (ack_seq == acked), ``"protocol_error"``,
        or ``None`` when the flit carried no ACK/NAK.
    replay : list of int
        Sequence numbers a NAK sends again (empty when none).
    fc : str or None
        ``"ok"``, ``"error"`` or ``None`` (no credit update).
    nak_scheduled : bool
        The flit made this endpoint owe a new NAK (a first one, or another because the
        partner's replay lost the flit the first one asked for).
    delivered : list of (int, bool)
        Slots written to the VC's receive buffer.
    vc : int
    fc_overflow : bool
        Slots were dropped for want of room (the partner ignored credits).
    retrain : bool
        REPLAY_NUM rolled over.
    """
    kind: str
    ack: str | None = None
    replay: list = field(default_factory=list)
    fc: str | None = None
    nak_scheduled: bool = False
    delivered: list = field(default_factory=list)
    vc: int = 0
    fc_overflow: bool = False
    retrain: bool = False


class DataLinkModel:
    """One endpoint of the data link layer at the transaction level.

    Parameters
    ----------
    params : LinkParams

    Attributes
    ----------
    counters : dict
        The fields of :data:`~rtl.link.layouts.DL_COUNTERS`.
    next_rcv, acked, next_seq, replay_num : int
    replaying : bool
    rx_buffers : list of deque
        Per VC, the slots delivered and not yet popped, as ``(data, last)``.
    tx_queues : list of deque
        Per VC, the slots offered by the user and not yet sent in a flit.
    """

    def __init__(self, params):
        if not isinstance(params, LinkParams):
            raise TypeError(f"params must be a LinkParams, not {params!r}")
        self.p = params
        self.M = params.seq_mod
        self.counters = {name: 0 for name in DL_COUNTERS.members}
        # Receiver.
        self.next_rcv = 0
        self.rcvd_any = False
        self.nak_scheduled = False
        self.nak_to_send = False
        self.nak_epoch = 0               # epoch of this receiver's latest NAK (2 bits)
        self.peer_epoch = 0              # epoch of the latest NAK received
        self.rx_buffers = [deque() for _ in range(params.vcs)]
        self.popped = [0] * params.vcs
        # Transmitter.
        self.up = False
        self.next_seq = 0
        self.acked = self.M - 1
        self.replay_buf = {}
        self.replaying = False
        self.replay_ptr = 0
        self.dup = None                  # (seq, vc, slots, last) still to be sent again
        self.replay_num = 0
        self.consumed = [0] * params.vcs
        self.limit_rx = [0] * params.vcs
        self.fc_rr = 0
        self.vc_rr = 0
        self.last_sent = [0] * params.vcs
        self.fc_force = [False] * params.vcs
        self.tx_queues = [deque() for _ in range(params.vcs)]
        self.inj = self._no_injection()

    @staticmethod
    def _no_injection():
        return {"crc_corrupt": 0, "seq_offset": 0, "block_acks": 0, "force_nak": 0,
                "fc_offset": 0, "fc_vc": 0, "duplicate": 0}

    # -- derived state ------------------------------------------------------------------------

    @property
    def outstanding(self):
        """DATA flits sent and not acknowledged."""
        return (self.next_seq - 1 - self.acked) % self.M

    def credits(self, vc):
        """Slots VC ``vc`` may still send."""
        return (self.limit_rx[vc] - self.consumed[vc]) % _FC_MOD

    def fc_limit(self, vc):
        """The cumulative limit this endpoint advertises on ``vc``."""
        return (self.p.vc_slots + self.popped[vc]) % _FC_MOD

    def fc_pending(self):
        """Some VC's advertised limit has not been sent since it changed (or since init)."""
        return any(self.fc_force[v] or self.fc_limit(v) != self.last_sent[v]
                   for v in range(self.p.vcs))

    def eligible(self, vc, n=None):
        """VC ``vc`` may send a new DATA flit of ``n`` slots (default: all queued, ≤ 15)."""
        if n is None:
            n = min(len(self.tx_queues[vc]), SLOTS)
        return (0 < n <= min(len(self.tx_queues[vc]), SLOTS) and self.credits(vc) >= n
                and self.outstanding < self.p.replay_depth)

    # -- user side ----------------------------------------------------------------------------

    def init(self):
        """The ``init`` pulse: start sending and advertise every VC's limit (FC init)."""
        self.up = True
        self.fc_force = [True] * self.p.vcs

    def offer(self, vc, data, last=False):
        """The user handed slot ``(data, last)`` to the TX of ``vc``."""
        self.tx_queues[vc].append((int(data), bool(last)))

    def pop(self, vc):
        """The user popped the oldest delivered slot of ``vc``; returns ``(data, last)``."""
        if not self.rx_buffers[vc]:
            raise AssertionError(f"pop from the empty receive buffer of VC {vc}")
        self.popped[vc] = (self.popped[vc] + 1) % _FC_MOD
        return self.rx_buffers[vc].popleft()

    def inject(self, **fields):
        """An INJECT write: the whole set of controls is replaced (missing fields are 0)."""
        unknown = set(fields) - set(self._no_injection())
        if unknown:
            raise ValueError(f"unknown injection fields {sorted(unknown)}")
        self.inj = self._no_injection() | {k: int(v) for k, v in fields.items()}
        if self.inj["force_nak"]:
            self.nak_epoch = (self.nak_epoch + 1) % 4

    # -- transmitter --------------------------------------------------------------------------

    def next_kind(self):
        """The source the transmitter must use next: ``"dup"``, ``"replay"`` or ``None``
        (then a new DATA flit or a NOP, the endpoint's choice)."""
        if self.dup is not None:
            return "dup"
        if self.replaying:
            return "replay"
        return None

    def choose(self):
        """The flit the RTL's arbitration would send now, if it had to send one:
        ``("dup"|"replay", None, None)``, ``("data", vc, n)`` (round-robin over the eligible
        VCs, every queued slot up to 15) or ``("nop", None, None)``."""
        kind = self.next_kind()
        if kind is not None:
            return kind, None, None
        for i in range(self.p.vcs):
            v = (self.vc_rr + i) % self.p.vcs
            if self.eligible(v):
                return "data", v, min(len(self.tx_queues[v]), SLOTS)
        return "nop", None, None

    def _header_fields(self):
        strip = self.inj["block_acks"] > 0
        nak = (self.nak_scheduled or bool(self.inj["force_nak"])) and not strip
        ack = (self.rcvd_any or nak) and not strip
        f = {"ack": ack, "nak": nak, "ack_seq": (self.next_rcv - 1) % self.M if ack else 0,
             "nak_epoch": self.nak_epoch if nak else 0}
        if self.up:
            v = self.fc_rr
            off = self.inj["fc_offset"] if self.inj["fc_vc"] == v else 0
            f |= {"fc_valid": True, "fc_vc": v, "fc_limit": (self.fc_limit(v) + off) % _FC_MOD}
        return f

    def build(self, kind, vc=None, n=None):
        """The words of the flit the endpoint would send as ``kind`` now (no state change)."""
        f = self._header_fields()
        if kind == "nop":
            f |= {"type": FlitType.NOP}
        else:
            if kind == "data":
                if not self.eligible(vc, n):
                    raise AssertionError(f"VC {vc} may not send {n} slots now (credits "
                                         f"{self.credits(vc)}, queued "
                                         f"{len(self.tx_queues[vc])}, outstanding "
                                         f"{self.outstanding})")
                seq = self.next_seq
                items = list(self.tx_queues[vc])[:n]
                slots = tuple(d for d, _ in items)
                last = sum(int(end) << i for i, (_, end) in enumerate(items))
            elif kind == "replay":
                seq = self.replay_ptr
                vc, slots, last = self.replay_buf[seq]
            elif kind == "dup":
                seq, vc, slots, last = self.dup
            else:
                raise ValueError(f"unknown flit kind {kind!r}")
            f |= {"type": FlitType.DATA, "seq": (seq + self.inj["seq_offset"]) % self.M,
                  "vc": vc, "slots": slots, "last": last, "replay_epoch": self.peer_epoch}
        return pack_flit(**f, crc_flip=1 if self.inj["crc_corrupt"] > 0 else 0)

    def send(self, kind, vc=None, n=None):
        """Send a flit as ``kind`` (see :meth:`build`) and apply it; returns its words."""
        words = self.build(kind, vc, n)
        self._commit(kind, vc, n, words)
        return words

    def sent(self, words):
        """The endpoint sent ``words``: check that it is a flit this state allows, bit for
        bit, and apply it. Returns the kind (``"dup"``, ``"replay"``, ``"data"``, ``"nop"``).

        Raises
        ------
        AssertionError
            The flit is not one the endpoint may send now.
        """
        words = [int(w) for w in words]
        f = unpack_flit(words)
        kind = self.next_kind()
        vc = n = None
        if kind is None:
            if f.type == FlitType.DATA:
                kind, vc, n = "data", f.vc, f.nslots
                if vc >= self.p.vcs:
                    raise AssertionError(f"DATA flit on VC {vc} of {self.p.vcs}")
            else:
                kind = "nop"
        expected = self.build(kind, vc, n)
        if words != expected:
            diff = [i for i in range(FLIT_WORDS) if words[i] != expected[i]]
            raise AssertionError(f"sent {kind} flit differs in words {diff}: got "
                                 f"{unpack_flit(words)}, expected {unpack_flit(expected)}")
        self._commit(kind, vc, n, words)
        return kind

    def _commit(self, kind, vc, n, words):
        c = self.counters
        f = unpack_flit(words)
        c["tx_flits"] += 1
        if kind == "data":
            items = [self.tx_queues[vc].popleft() for _ in range(n)]
            slots = tuple(d for d, _ in items)
            last = sum(int(end) << i for i, (_, end) in enumerate(items))
            seq = self.next_seq
            self.replay_buf[seq] = (vc, slots, last)
            self.consumed[vc] = (self.consumed[vc] + n) % _FC_MOD
            self.next_seq = (seq + 1) % self.M
            self.vc_rr = (vc + 1) % self.p.vcs
            c["tx_data"] += 1
            if self.inj["duplicate"]:
                self.inj["duplicate"] = 0
                self.dup = (seq, vc, slots, last)
        elif kind == "replay":
            self.replay_ptr = (self.replay_ptr + 1) % self.M
            if self.replay_ptr == self.next_seq:
                self.replaying = False
            c["replayed_flits"] += 1
        elif kind == "dup":
            self.dup = None
        else:
            c["tx_nop"] += 1
        if kind != "nop":
            self.inj["seq_offset"] = 0
        if self.inj["crc_corrupt"]:
            self.inj["crc_corrupt"] -= 1
        if self.inj["block_acks"]:
            self.inj["block_acks"] -= 1
        else:
            if f.nak and (self.nak_to_send or self.inj["force_nak"]):
                c["naks_tx"] += 1
            self.nak_to_send = False
            self.inj["force_nak"] = 0
        if self.up:
            v = self.fc_rr
            self.last_sent[v] = self.fc_limit(v)
            self.fc_force[v] = False
            if self.inj["fc_vc"] == v:
                self.inj["fc_offset"] = 0
            self.fc_rr = (v + 1) % self.p.vcs

    # -- receiver -----------------------------------------------------------------------------

    def _schedule_nak(self, d, again=False):
        """A NAK is owed: a new one unless one is already owed (NAK suppression), or, with
        ``again``, a new one in any case."""
        if again or not self.nak_scheduled:
            self.nak_scheduled = self.nak_to_send = True
            self.nak_epoch = (self.nak_epoch + 1) % 4
            d.nak_scheduled = True

    def _replay_event(self, d):
        """Start a replay from acked + 1 (NAK or timer); REPLAY_NUM and its rollover."""
        c = self.counters
        self.replaying = True
        self.replay_ptr = (self.acked + 1) % self.M
        d.replay = [(self.replay_ptr + i) % self.M for i in range(self.outstanding)]
        c["replays"] += 1
        self.replay_num += 1
        if self.replay_num == 1 << self.p.replay_num_bits:
            self.replay_num = 0
            c["replay_rollovers"] += 1
            d.retrain = True

    def receive(self, words=None, *, framing_error=False):
        """A flit (or a framing error) arrived; returns the :class:`RxDecision`."""
        c = self.counters
        if framing_error:
            d = RxDecision("framing_error")
            c["framing_errors"] += 1
            self._schedule_nak(d)
            return d
        f = unpack_flit(words)
        if not f.crc_ok:
            d = RxDecision("crc_error")
            c["crc_errors"] += 1
            self._schedule_nak(d)
            return d
        c["rx_flits"] += 1
        if f.type is None:
            c["protocol_errors"] += 1
            return RxDecision("malformed")
        d = RxDecision("nop" if f.type == FlitType.NOP else "data", vc=f.vc)
        # ACK / NAK, from CRC-good flits only.
        if f.ack or f.nak:
            a = f.ack_seq % self.M
            dist = (a - self.acked) % self.M
            if dist == 0:
                d.ack = "none"
            elif dist <= self.outstanding:
                d.ack = "progress"
                for i in range(dist):
                    self.replay_buf.pop((self.acked + 1 + i) % self.M, None)
                old = self.acked
                self.acked = a
                self.replay_num = 0
                if self.replaying:
                    if (self.replay_ptr - old - 1) % self.M < dist:
                        self.replay_ptr = (a + 1) % self.M
                    if self.replay_ptr == self.next_seq:
                        self.replaying = False
            else:
                d.ack = "protocol_error"
                c["protocol_errors"] += 1
            if f.nak and f.nak_epoch != self.peer_epoch:     # a new NAK, not a repeat
                c["naks_rx"] += 1
                if d.ack != "protocol_error" and self.outstanding:
                    self._replay_event(d)
            if f.nak:
                self.peer_epoch = f.nak_epoch
        # Credits.
        if f.fc_valid:
            v = f.fc_vc
            if v >= self.p.vcs or (f.fc_limit - self.consumed[v]) % _FC_MOD > self.p.vc_slots:
                d.fc = "error"
                c["fc_errors"] += 1
            else:
                d.fc = "ok"
                self.limit_rx[v] = f.fc_limit
        if f.type == FlitType.NOP:
            return d
        if f.vc >= self.p.vcs or not 1 <= f.nslots <= SLOTS:
            d.kind = "bad_data"
            c["protocol_errors"] += 1
            return d
        seq = f.seq % self.M
        if seq == self.next_rcv:
            d.kind = "deliver"
            buf = self.rx_buffers[f.vc]
            room = self.p.vc_slots - len(buf)
            n = min(f.nslots, room)
            if n < f.nslots:
                d.fc_overflow = True
                c["fc_errors"] += 1
            d.delivered = [(f.slots[s], bool(f.last >> s & 1)) for s in range(n)]
            buf.extend(d.delivered)
            c["delivered_slots"] += n
            self.next_rcv = (self.next_rcv + 1) % self.M
            self.rcvd_any = True
            self.nak_scheduled = self.nak_to_send = False
        elif 1 <= (self.next_rcv - seq) % self.M <= self.p.replay_depth:
            d.kind = "duplicate"
            c["duplicates"] += 1
        else:
            d.kind = "gap"
            c["seq_errors"] += 1
            # Sent after the partner received the owed NAK, yet not next_rcv: the replay
            # lost it again.
            self._schedule_nak(d, again=self.nak_scheduled
                               and f.replay_epoch == self.nak_epoch)
        return d

    def timeout(self):
        """The replay timer expired: replay from acked + 1; returns the :class:`RxDecision`
        (kind ``"timeout"``) with the sequence numbers to resend."""
        if not self.outstanding or self.replaying:
            raise AssertionError("replay timeout with nothing outstanding or during a replay")
        d = RxDecision("timeout")
        self.counters["replay_timeouts"] += 1
        self._replay_event(d)
        return d


def retry_goodput(ber, rtt_flits, eta0):
    """Go-back-N goodput under independent bit errors: ``η0 / (1 + FER·R)``.

    Parameters
    ----------
    ber : float
        Bit error rate on the wire, 0 ≤ ber < 1.
    rtt_flits : float
        Round trip in flits (flits lost per error).
    eta0 : float
        Error-free efficiency.

    Returns
    -------
    float
        ``FER = 1 − (1 − ber)**2112`` (the 32 × 66 bits of a flit on the wire).
    """
    if not 0 <= ber < 1:
        raise ValueError(f"ber must be in [0, 1), not {ber!r}")
    if rtt_flits < 0:
        raise ValueError(f"rtt_flits must be non-negative, not {rtt_flits!r}")
    fer = 1 - (1 - ber) ** WIRE_BITS_PER_FLIT
    return eta0 / (1 + fer * rtt_flits)


