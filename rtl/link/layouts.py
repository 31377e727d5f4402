"""Shared definitions of the interchip link: block and flit formats, parameters, counters.

Imported by ``rtl/link``, ``golden_model/link*.py``, ``verif/link`` and the firmware, so that a
bit position or an encoding is written once. ``docs/link.md`` is the prose contract.

Wire format, bottom up:

* A **block** is 66 bits on one lane: bits 0–1 the sync header (``SYNC_DATA`` = 0b01 or
  ``SYNC_CTRL`` = 0b10, bit 0 first on the wire), bits 2–65 the 64-bit payload, scrambled by
  the self-synchronizing x^58 + x^39 + 1 scrambler (the sync header is not scrambled).
  A control block's payload has its type (:class:`BlockType`) in bits 0–7.
* A **beat** is one block per active lane in one cycle. Flit words are striped round-robin:
  word ``i`` of a flit goes to active lane ``i mod W`` (``W`` the current width).
* Every ``am_period`` beats the PCS sends one beat of alignment markers (:data:`AM_BLOCK`):
  each lane its lane ID and the BIP-8 of the blocks it sent since its previous marker.
* A **flit** is 32 words of 64 bits (256 B). Word 0 is sent as an ``SOF`` control block whose
  payload is :data:`FLIT_HEADER` (the type byte included); words 1–30 are data blocks with
  the 240-byte payload (15 slots of 16 bytes, slot ``s`` in words ``1+2s`` and ``2+2s``,
  little-endian); word 31 is a data block holding :data:`FLIT_TRAILER`. The CRC-32C covers
  the 252 bytes of words 0–30 and the low 32 bits of word 31 (little-endian bytes).
"""

from amaranth.hdl import Cat, Const, Shape
from amaranth.lib import data, enum


__all__ = [
    "SYNC_DATA", "SYNC_CTRL", "BLOCK_BITS", "SCRAMBLER_TAPS", "BlockType", "AM_BLOCK",
    "TS_BLOCK", "FLIT_WORDS", "FLIT_BYTES", "SLOT_BYTES", "SLOTS", "CRC_BYTES", "FlitType",
    "FLIT_HEADER", "FLIT_TRAILER", "SEQ_BITS", "FC_BITS", "LINK_SLOT", "DL_COUNTERS",
    "PCS_LANE_COUNTERS", "LINK_COUNTERS", "TrainState", "INJECT", "BLOCK", "beat_layout",
    "FLIT", "AM_MAGIC", "TS_MAGIC", "pack", "lane_active",
]


def lane_active(lane, offset, width):
    """Whether physical lane ``lane`` (an int) is in ``[offset, offset + width)``, without a
    comparison that the signals' widths make constant (a lint error in the Verilog)."""
    above = (offset <= lane) if lane < (1 << len(offset)) - 1 else Const(1)
    return above & (lane < offset + width)


def pack(layout, **fields):
    """The value of a struct of ``layout`` with these fields (others zero), as one expression.

    Assigning a struct field by field leaves each constant field as its own ``always @*``
    block reading nothing in the generated Verilog, which an event-driven simulator never
    runs (Verilator warns ALWNEVER and the field stays 0); one assignment of this value does
    not.
    """
    unknown = set(fields) - {name for name, _ in layout}
    if unknown:
        raise KeyError(f"no field(s) {sorted(unknown)} in the layout")
    parts = []
    for name, f in layout:
        width = Shape.cast(f.shape).width
        v = fields.get(name, 0)
        if isinstance(v, int):
            v = Const(v, width)
        elif hasattr(v, "value") and not hasattr(v, "shape"):   # an enum member
            v = Const(v.value, width)
        v = v.as_value() if hasattr(v, "as_value") else v
        parts.append(Cat(v, Const(0, width))[:width])   # zero-extended, then cut to width
    return Cat(*parts)

#: Sync headers (2 bits, bit 0 first on the wire).
SYNC_DATA = 0b01
SYNC_CTRL = 0b10
#: Bits of one block on the wire.
BLOCK_BITS = 66
#: The scrambler x^58 + x^39 + 1: ``s[i] = d[i] ^ s[i-39] ^ s[i-58]`` over the payload bits in
#: wire order, ``s`` the scrambled bits (so the descrambler is self-synchronizing).
SCRAMBLER_TAPS = (39, 58)


#: One block before scrambling (after descrambling): a control flag and the 64-bit payload.
BLOCK = data.StructLayout({
    "ctrl": 1,
    "data": 64,
})


def beat_layout(lanes):
    """One beat: a :data:`BLOCK` per lane (logical lanes when striped, physical when raw)."""
    return data.ArrayLayout(BLOCK, lanes)


class BlockType(enum.Enum, shape=8):
    """Type byte (payload bits 0–7) of a control block."""
    IDLE = 0x1E   # nothing to send; payload bits 8–63 zero
    SOF  = 0x78   # word 0 of a flit: payload bits 8–63 are the rest of FLIT_HEADER
    AM   = 0x4B   # alignment marker (AM_BLOCK)
    TS1  = 0x2D   # training set 1: capabilities (TS_BLOCK)
    TS2  = 0x55   # training set 2: acknowledge (TS_BLOCK)


#: Payload of an alignment-marker block.
AM_BLOCK = data.StructLayout({
    "type":    8,    # BlockType.AM
    "lane":    4,    # physical lane ID of the sender
    "width":   4,    # lanes the sender is striping over (its current W)
    "bip":     8,    # even parity per bit position over the payload bytes of every block
                     # the lane sent since its previous marker (that marker excluded)
    "bip_inv": 8,    # ~bip: a marker whose two copies disagree is not a marker
    "magic":   32,   # AM_MAGIC
})
AM_MAGIC = 0x4D383930   # "M890"

#: Payload of a training-set block (sent on every lane during training).
TS_BLOCK = data.StructLayout({
    "type":     8,    # BlockType.TS1 or TS2
    "lane":     4,    # physical lane ID of the sender
    "width":    4,    # width the sender proposes (TS1) or accepts (TS2)
    "offset":   4,    # first physical lane of that width
    "lanes_ok": 8,    # bitmap of physical lanes the sender has locked and aligned
    "seq":      8,    # increments per TS beat (diagnostics)
    "magic":    28,   # TS_MAGIC
})
TS_MAGIC = 0x7531EA5

#: Flit geometry.
FLIT_WORDS = 32
FLIT_BYTES = 256
SLOT_BYTES = 16
SLOTS = 15
CRC_BYTES = 252            # words 0–30 and the low half of word 31
SEQ_BITS = 12              # sequence numbers are modulo 2**SEQ_BITS (a parameter may narrow it)
FC_BITS = 12               # cumulative credit counters are modulo 2**FC_BITS


#: A whole flit as the data link layer sees it: 32 words, word 0 the header.
FLIT = data.ArrayLayout(64, 32)


class FlitType(enum.Enum, shape=2):
    NOP  = 0   # ACK / NAK / credits only; not sequenced, never replayed
    DATA = 1   # carries slots of one VC; sequenced and replayed


#: Word 0 of a flit (the SOF control block payload, type byte included).
FLIT_HEADER = data.StructLayout({
    "block":    8,          # BlockType.SOF
    "type":     FlitType,
    "ack":      1,          # ack_seq is valid: every DATA flit up to ack_seq was received
    "nak":      1,          # NAK: replay everything after ack_seq
    "seq":      SEQ_BITS,   # DATA: this flit's sequence number
    "ack_seq":  SEQ_BITS,
    "vc":       2,          # DATA: virtual channel of the slots
    "nslots":   4,          # DATA: slots used, 1 … 15
    "fc_vc":    2,          # the VC whose credit limit fc_limit updates
    "fc_valid": 1,
    "fc_limit": FC_BITS,    # cumulative: slots the receiver has ever allowed on fc_vc
    "nak_epoch": 2,         # with nak: which NAK this is (a new value is a new NAK)
    "replay_epoch": 2,      # DATA: the nak_epoch of the last NAK its sender received
    "reserved": 3,
})

#: Word 31 of a flit.
FLIT_TRAILER = data.StructLayout({
    "last":     SLOTS,      # bit s: slot s ends a message
    "reserved": 17,
    "crc":      32,         # CRC-32C (iSCSI) of the CRC_BYTES covered bytes
})

#: One slot at the user interface of a VC: 16 bytes, and whether it ends a message.
LINK_SLOT = data.StructLayout({
    "data": 8 * SLOT_BYTES,
    "last": 1,
})


class TrainState(enum.Enum, shape=4):
    """States of the training FSM (docs/link.md § Training)."""
    RESET     = 0
    LANE_LOCK = 1
    ALIGN     = 2
    TS1       = 3
    TS2       = 4
    DL_INIT   = 5
    ACTIVE    = 6
    RETRAIN   = 7
    DISABLED  = 8   # no width left: every lane failed


#: Data-link-layer counters (cumulative, 32 bits each).
DL_COUNTERS = data.StructLayout({
    "tx_flits":         32,   # every flit sent (DATA, NOP, replayed)
    "tx_data":          32,   # new DATA flits (not replays)
    "tx_nop":           32,
    "rx_flits":         32,   # flits that passed framing and CRC
    "crc_errors":       32,   # flits failing CRC
    "framing_errors":   32,   # a flit cut short by a control block, or a stray data block
    "seq_errors":       32,   # a DATA flit ahead of next_rcv (a gap)
    "duplicates":       32,   # a DATA flit behind next_rcv (dropped, re-ACKed)
    "naks_tx":          32,
    "naks_rx":          32,
    "replays":          32,   # replay events (NAK or timer)
    "replayed_flits":   32,
    "replay_timeouts":  32,
    "replay_rollovers": 32,   # REPLAY_NUM rolled over: retrain requested
    "protocol_errors":  32,   # an ACK/NAK outside (acked, sent]
    "fc_errors":        32,   # a credit limit beyond what the receiver can have allowed
    "delivered_slots":  32,
})

#: Per-lane PCS counters.
PCS_LANE_COUNTERS = data.StructLayout({
    "bad_headers":  32,   # sync headers neither 01 nor 10 while locked
    "lock_losses":  32,
    "bip_errors":   32,   # markers whose BIP-8 disagrees with the blocks received
    "am_errors":    32,   # a marker missing where expected, or with a wrong lane ID
})

#: Link (PCS and training) counters.
LINK_COUNTERS = data.StructLayout({
    "retrains":      32,
    "degrades":      32,
    "deskew_errors": 32,
    "hi_ber":        32,   # hi-BER events
    "train_timeouts": 32,
})

#: Error-injection controls of one endpoint (docs/link.md § RAS). Each count-based field is
#: decremented per affected flit; writing it arms the injection.
INJECT = data.StructLayout({
    "crc_corrupt":  16,   # corrupt the CRC of the next N flits sent
    "seq_offset":   SEQ_BITS,  # add to the seq of the next DATA flit sent (one flit)
    "block_acks":   16,   # send the next N flits without ACK/NAK
    "force_nak":    1,    # send one NAK now
    "fc_offset":    FC_BITS,   # add to the next credit update of fc_vc (one update)
    "fc_vc":        2,
    "duplicate":    1,    # send the next DATA flit twice
})
