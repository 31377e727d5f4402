"""The data link layer: flits with CRC-32C, go-back-N retry, per-VC credits, RAS and injection.

One :class:`DataLink` per endpoint sits between the users' per-VC slot streams and the flit
framer (:mod:`.framing`). It packs DATA flits from one VC at a time, numbers them, keeps them
in a replay buffer until acknowledged, piggy-backs ACK/NAK and one cumulative credit update on
every flit, and on the receive side checks the CRC, delivers in-order DATA flits to the VC
receive buffers, drops duplicates and NAKs gaps. ``golden_model/link.py`` (``DataLinkModel``)
is the transaction-level model and ``docs/link_dll.md`` the prose contract.

Within a cycle the flit handed to the framer is decided on the registered state; the flit
received in the same cycle is applied after it (so a NAK received while a new DATA flit is
taken also replays that flit), then the replay timer, then the users' pops and pushes.
"""

import functools

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import crc, data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .framing import RX_FLIT
from .layouts import (
    CRC_BYTES, DL_COUNTERS, FC_BITS, FLIT, FLIT_HEADER, FLIT_TRAILER, INJECT, LINK_SLOT,
    SLOT_BYTES, SLOTS, BlockType, FlitType, pack,
)
from .params import LinkParams


__all__ = ["FLIT_CRC", "flit_crc", "DataLink"]

#: The flit CRC: CRC-32C (Castagnoli, iSCSI).
FLIT_CRC = crc.catalog.CRC32_ISCSI

_SLOT_BITS = 8 * SLOT_BYTES
_CRC_BITS = 8 * CRC_BYTES
#: One replay-buffer entry: the payload words and what the header needs to rebuild the flit
#: (the sequence number is the entry's index; ACK and credit fields are fresh on a replay).
_REPLAY_ENTRY = data.StructLayout({
    "slots":  SLOTS * _SLOT_BITS,
    "last":   SLOTS,
    "vc":     2,
    "nslots": 4,
})


@functools.cache
def _crc_terms(nbits):
    """The CRC of an ``nbits``-bit message (bytes little-endian) as an affine map over GF(2):
    ``crc[i] = const[i] ^ parity(message & masks[i])``."""
    algo = FLIT_CRC
    if not (algo.crc_width == 32 and algo.reflect_input and algo.reflect_output):
        raise ValueError("the flit CRC must be a reflected 32-bit CRC")

    def reflect(x):
        return int(f"{x:032b}"[::-1], 2)

    poly = reflect(algo.polynomial)

    def step0(c):             # one message bit of value 0 through the reflected register
        return c >> 1 ^ (poly if c & 1 else 0)

    masks = [0] * 32
    g = poly                  # the register after a 1 at bit j and the zeros after it
    for j in reversed(range(nbits)):
        for i in range(32):
            if g >> i & 1:
                masks[i] |= 1 << j
        g = step0(g)
    c = reflect(algo.initial_crc)
    for _ in range(nbits):
        c = step0(c)
    return c ^ algo.xor_output, masks


def flit_crc(value):
    """CRC-32C of the low :data:`~.layouts.CRC_BYTES` bytes of ``value`` (a flit, words
    little-endian), as a 32-bit combinational value."""
    const, masks = _crc_terms(_CRC_BITS)
    covered = Value.cast(value)[:_CRC_BITS]
    return Cat(*[(covered & Const(masks[i], _CRC_BITS)).xor() ^ (const >> i & 1)
                 for i in range(32)])


class DataLink(wiring.Component):
    """One endpoint of the data link layer.

    Parameters
    ----------
    params : LinkParams

    Members
    -------
    tx : ``In(stream.Signature(LINK_SLOT)).array(vcs)``
        User slots to send, per VC. Up to 15 are staged per VC; ``ready`` drops while 15 wait.
    rx : ``Out(stream.Signature(LINK_SLOT)).array(vcs)``
        Delivered slots, per VC, from a receive buffer of ``vc_slots`` slots (popped with
        ``ready``; a pop returns credit to the partner).
    flit_o : ``Out(stream.Signature(FLIT))``
        Flits to the framer. ``valid`` and ``payload`` are decided on registered state; the flit
        is committed (sequence number, replay buffer, counters) in the cycle ``ready`` takes it.
    flit_i : ``In(stream.Signature(RX_FLIT))``
        Flits from the framer, one cycle each (``ready`` is always 1).
    active : ``In(1)``
        Link trained. While low nothing is sent and the timers hold; all state is kept.
    init : ``In(1)``
        Pulse at first link-up: start sending, advertise every VC's credit limit (FC init).
    retrain_req : ``Out(1)``
        One-cycle pulse, the cycle after REPLAY_NUM rolls over.
    inject : ``In(INJECT)``, inject_we : ``In(1)``
        Error injection: ``inject_we`` replaces every control with ``inject``.
    counters : ``Out(DL_COUNTERS)``
        RAS counters (``docs/link_dll.md`` § Counters).
    next_rcv, acked, sent : ``Out(seq_bits)``
        Next sequence number expected; last acknowledged and last sent by this TX.
    replay_num : ``Out(replay_num_bits)``
        Replays since the last forward progress.
    replaying, up : ``Out(1)``
        A replay is in progress; ``init`` has been seen.
    """

    def __init__(self, params):
        if not isinstance(params, LinkParams):
            raise TypeError(f"params must be a LinkParams, not {params!r}")
        self._p = params
        sb = params.seq_bits
        super().__init__({
            "tx":          In(stream.Signature(LINK_SLOT)).array(params.vcs),
            "rx":          Out(stream.Signature(LINK_SLOT)).array(params.vcs),
            "flit_o":      Out(stream.Signature(FLIT)),
            "flit_i":      In(stream.Signature(RX_FLIT)),
            "active":      In(1),
            "init":        In(1),
            "retrain_req": Out(1),
            "inject":      In(INJECT),
            "inject_we":   In(1),
            "counters":    Out(DL_COUNTERS),
            "next_rcv":    Out(sb),
            "acked":       Out(sb, init=(1 << sb) - 1),
            "sent":        Out(sb, init=(1 << sb) - 1),
            "replay_num":  Out(params.replay_num_bits),
            "replaying":   Out(1),
            "up":          Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self._p
        V = p.vcs
        sb = p.seq_bits
        D = p.replay_depth
        lines = -(-p.vc_slots // SLOTS)      # receive-buffer lines of 15 slots per VC
        cnt = self.counters

        def seqv(x):
            return x[:sb]

        def fcv(x):
            return x[:FC_BITS]

        # --- registers --------------------------------------------------------------------
        up         = self.up
        next_seq   = Signal(sb)
        acked      = Signal(sb, init=(1 << sb) - 1)
        replaying  = self.replaying
        replay_ptr = Signal(sb)
        replay_num = self.replay_num
        rtimer     = Signal(range(p.replay_timer))
        dup_pend   = Signal()
        dup_seq    = Signal(sb)
        vc_rr      = Signal(range(V))
        fc_rr      = Signal(range(V))
        inj        = Signal(INJECT)
        consumed   = [Signal(FC_BITS, name=f"consumed{v}") for v in range(V)]
        limit_rx   = [Signal(FC_BITS, name=f"limit_rx{v}") for v in range(V)]
        last_sent  = [Signal(FC_BITS, name=f"last_sent{v}") for v in range(V)]
        fc_force   = [Signal(name=f"fc_force{v}") for v in range(V)]
        popped     = [Signal(FC_BITS, name=f"popped{v}") for v in range(V)]
        st_slots   = [Signal(SLOTS * _SLOT_BITS, name=f"st_slots{v}") for v in range(V)]
        st_last    = [Signal(SLOTS, name=f"st_last{v}") for v in range(V)]
        st_n       = [Signal(range(SLOTS + 1), name=f"st_n{v}") for v in range(V)]

        next_rcv   = self.next_rcv
        rcvd_any   = Signal()
        nak_sched  = Signal()      # a NAK was owed since the last in-order DATA flit
        nak_send   = Signal()      # … and this epoch of it has not gone out yet
        nak_ep     = Signal(2)     # epoch of this receiver's latest NAK
        nak_age    = Signal(range(p.ack_timer + 1))   # cycles since the NAK last went out
        peer_ep    = Signal(2)     # epoch of the latest NAK received from the partner
        ack_cnt    = Signal(range(p.ack_every + 1))
        ack_age    = Signal(range(p.ack_timer + 1))
        ack_force  = Signal()
        occ        = [Signal(range(p.vc_slots + 1), name=f"occ{v}") for v in range(V)]
        wp_lo      = [Signal(range(SLOTS), name=f"wp_lo{v}") for v in range(V)]
        wp_hi      = [Signal(range(lines), name=f"wp_hi{v}") for v in range(V)]
        rp_lo      = [Signal(range(SLOTS), name=f"rp_lo{v}") for v in range(V)]
        rp_hi      = [Signal(range(lines), name=f"rp_hi{v}") for v in range(V)]

        m.d.comb += [
            self.acked.eq(acked),
            self.sent.eq(seqv(next_seq - 1)),
        ]
        outstanding = seqv(next_seq - 1 - acked)
        limit_now = [fcv(p.vc_slots + popped[v]) for v in range(V)]
        credits = [fcv(limit_rx[v] - consumed[v]) for v in range(V)]

        # --- transmit: arbitration --------------------------------------------------------
        elig = Signal(V)
        for v in range(V):
            m.d.comb += elig[v].eq((st_n[v] != 0) & (credits[v] >= st_n[v]))
        vc_sel = Signal(range(V))
        with m.Switch(vc_rr):
            for r in range(V):
                with m.Case(r):
                    for i in reversed(range(V)):      # the last assignment wins: r first
                        with m.If(elig[(r + i) % V]):
                            m.d.comb += vc_sel.eq((r + i) % V)
        want_data = elig.any() & (outstanding < D)

        fc_pending = Signal()
        m.d.comb += fc_pending.eq(Cat(*[fc_force[v] | (limit_now[v] != last_sent[v])
                                        for v in range(V)]).any())
        need_nop = (nak_send | inj.force_nak | (nak_sched & (nak_age >= p.ack_timer))
                    | ack_force | (ack_cnt >= p.ack_every)
                    | ((ack_cnt != 0) & (ack_age >= p.ack_timer)) | fc_pending)
        m.d.comb += self.flit_o.valid.eq(up & self.active
                                         & (dup_pend | replaying | want_data | need_nop))

        # --- transmit: the flit -----------------------------------------------------------
        m.submodules.replay_mem = rmem = Memory(shape=_REPLAY_ENTRY, depth=D, init=[])
        rmem_w = rmem.write_port()
        rmem_r = rmem.read_port(domain="comb")
        abits = (D - 1).bit_length()
        m.d.comb += rmem_r.addr.eq(Mux(dup_pend, dup_seq, replay_ptr)[:abits])

        src_slots = Signal(SLOTS * _SLOT_BITS)
        src_last  = Signal(SLOTS)
        src_vc    = Signal(2)
        src_n     = Signal(4)
        src_seq   = Signal(sb)
        is_data   = Signal()
        from_buf  = dup_pend | replaying
        with m.If(from_buf):
            m.d.comb += [
                src_slots.eq(rmem_r.data.slots),
                src_last.eq(rmem_r.data.last),
                src_vc.eq(rmem_r.data.vc),
                src_n.eq(rmem_r.data.nslots),
                src_seq.eq(Mux(dup_pend, dup_seq, replay_ptr)),
                is_data.eq(1),
            ]
        with m.Elif(want_data):
            with m.Switch(vc_sel):
                for v in range(V):
                    with m.Case(v):
                        m.d.comb += [
                            src_slots.eq(st_slots[v]),
                            src_last.eq(st_last[v]),
                            src_n.eq(st_n[v]),
                        ]
            m.d.comb += [
                src_vc.eq(vc_sel),
                src_seq.eq(next_seq),
                is_data.eq(1),
            ]

        strip = inj.block_acks != 0
        nak_o = Signal()
        ack_o = Signal()
        m.d.comb += [
            nak_o.eq((nak_sched | inj.force_nak) & ~strip),
            ack_o.eq((rcvd_any | nak_o) & ~strip),
        ]
        fc_off = Mux(inj.fc_vc == fc_rr, inj.fc_offset, 0)
        hdr = Signal(FLIT_HEADER)
        m.d.comb += hdr.eq(pack(
            FLIT_HEADER,
            block=BlockType.SOF,
            type=Mux(is_data, FlitType.DATA, FlitType.NOP),
            ack=ack_o,
            nak=nak_o,
            seq=Mux(is_data, seqv(src_seq + inj.seq_offset), 0),
            ack_seq=Mux(ack_o, seqv(next_rcv - 1), 0),
            vc=src_vc,
            nslots=src_n,
            fc_vc=Mux(up, fc_rr, 0),
            fc_valid=up,
            fc_limit=Mux(up, fcv(Array(limit_now)[fc_rr] + fc_off), 0),
            nak_epoch=Mux(nak_o, nak_ep, 0),
            replay_epoch=Mux(is_data, peer_ep, 0),
        ))
        # The covered bits: header, slots, and the trailer below its CRC (last, reserved).
        body = Cat(hdr, src_slots, src_last,
                   Const(0, _CRC_BITS - len(hdr.as_value()) - len(src_slots) - SLOTS))
        m.d.comb += self.flit_o.payload.eq(
            Cat(body, flit_crc(body) ^ (inj.crc_corrupt != 0)))

        commit = self.flit_o.valid & self.flit_o.ready
        c_dup    = commit & dup_pend
        c_replay = commit & ~dup_pend & replaying
        c_new    = commit & ~from_buf & want_data
        c_nop    = commit & ~is_data
        c_sent   = commit & ~strip          # the flit carried this endpoint's ACK/NAK state

        m.d.comb += [
            rmem_w.addr.eq(next_seq[:abits]),
            rmem_w.en.eq(c_new),
            rmem_w.data.slots.eq(src_slots),
            rmem_w.data.last.eq(src_last),
            rmem_w.data.vc.eq(vc_sel),
            rmem_w.data.nslots.eq(src_n),
        ]

        # Values after this cycle's commit (the received flit is applied to these).
        next_seq_c   = Signal(sb)
        replay_ptr_c = Signal(sb)
        replaying_c  = Signal()
        consumed_c   = [Signal(FC_BITS, name=f"consumed_c{v}") for v in range(V)]
        m.d.comb += [
            next_seq_c.eq(seqv(next_seq + c_new)),
            replay_ptr_c.eq(seqv(replay_ptr + c_replay)),
            replaying_c.eq(replaying & ~(c_replay & (seqv(replay_ptr + 1) == next_seq))),
        ]
        for v in range(V):
            m.d.comb += consumed_c[v].eq(
                fcv(consumed[v] + Mux(c_new & (vc_sel == v), st_n[v], 0)))

        # --- staging of user slots ----------------------------------------------------------
        for v in range(V):
            port = self.tx[v]
            push = port.valid & port.ready
            take = c_new & (vc_sel == v)
            m.d.comb += port.ready.eq(st_n[v] != SLOTS)
            with m.If(take):
                m.d.sync += [
                    st_n[v].eq(push),
                    st_slots[v].eq(Mux(push, port.payload.data, 0)),
                    st_last[v].eq(Mux(push, port.payload.last, 0)),
                ]
            with m.Elif(push):
                m.d.sync += st_n[v].eq(st_n[v] + 1)
                with m.Switch(st_n[v]):
                    for i in range(SLOTS):
                        with m.Case(i):
                            m.d.sync += [
                                st_slots[v].word_select(i, _SLOT_BITS).eq(port.payload.data),
                                st_last[v][i].eq(port.payload.last),
                            ]

        # --- receive: check -----------------------------------------------------------------
        fi = self.flit_i
        m.d.comb += fi.ready.eq(1)
        rwords = fi.payload.words.as_value()
        rh = data.View(FLIT_HEADER, rwords[:64])
        rt = data.View(FLIT_TRAILER, rwords[64 * 31:])
        raw_type = rwords[8:10]
        fe = fi.valid & fi.payload.framing_error
        crc_ok = Signal()
        m.d.comb += crc_ok.eq(flit_crc(rwords) == rt.crc)
        crc_bad = fi.valid & ~fi.payload.framing_error & ~crc_ok
        good = Signal()
        m.d.comb += good.eq(fi.valid & ~fi.payload.framing_error & crc_ok)
        known = good & (raw_type < 2)

        # ACK / NAK (CRC-good flits only).
        has_ack = known & (rh.ack | rh.nak)
        a = rh.ack_seq[:sb]
        dist = seqv(a - acked)
        out_c = seqv(next_seq_c - 1 - acked)
        progress = Signal()
        ack_perr = Signal()
        m.d.comb += [
            progress.eq(has_ack & (dist != 0) & (dist <= out_c)),
            ack_perr.eq(has_ack & (dist != 0) & (dist > out_c)),
        ]
        acked_n = Signal(sb)
        m.d.comb += acked_n.eq(Mux(progress, a, acked))
        # A NAK acts once: repeats of the partner's latest NAK (same epoch) are ACKs only.
        nak_rx = known & rh.nak & (rh.nak_epoch != peer_ep)
        with m.If(known & rh.nak):
            m.d.sync += peer_ep.eq(rh.nak_epoch)
        nak_replay = Signal()
        m.d.comb += nak_replay.eq(nak_rx & ~ack_perr & (seqv(next_seq_c - 1 - acked_n) != 0))

        # Replay timer: counts active cycles while flits are outstanding and no replay runs.
        count = self.active & ~replaying & (outstanding != 0)
        timeout = Signal()
        m.d.comb += timeout.eq(count & (rtimer == p.replay_timer - 1) & ~progress & ~nak_replay)
        replay_start = nak_replay | timeout
        with m.If(progress | replay_start | (seqv(next_seq_c - 1 - acked_n) == 0)):
            m.d.sync += rtimer.eq(0)
        with m.Elif(count):
            m.d.sync += rtimer.eq(rtimer + 1)

        rn = Signal(p.replay_num_bits + 1)
        rollover = Signal()
        m.d.comb += [
            rn.eq(Mux(progress, 0, replay_num) + 1),
            rollover.eq(replay_start & (rn == 1 << p.replay_num_bits)),
        ]
        m.d.sync += [
            next_seq.eq(next_seq_c),
            acked.eq(acked_n),
            self.retrain_req.eq(rollover),
        ]
        with m.If(replay_start):
            m.d.sync += [
                replaying.eq(1),
                replay_ptr.eq(seqv(acked_n + 1)),
                replay_num.eq(Mux(rollover, 0, rn)),
            ]
        with m.Else():
            rp_n = Signal(sb)
            with m.If(progress & replaying_c & (seqv(replay_ptr_c - acked - 1) < dist)):
                m.d.comb += rp_n.eq(seqv(a + 1))
            with m.Else():
                m.d.comb += rp_n.eq(replay_ptr_c)
            m.d.sync += [
                replay_ptr.eq(rp_n),
                replaying.eq(replaying_c & (rp_n != next_seq_c)),
            ]
            with m.If(progress):
                m.d.sync += replay_num.eq(0)

        with m.If(c_dup):
            m.d.sync += dup_pend.eq(0)
        with m.If(c_new & inj.duplicate):
            m.d.sync += [dup_pend.eq(1), dup_seq.eq(next_seq)]
        with m.If(c_new):
            m.d.sync += vc_rr.eq(Mux(vc_sel == V - 1, 0, vc_sel + 1))

        # Credits received.
        fc_upd = known & rh.fc_valid
        fc_d = fcv(rh.fc_limit - Array(consumed_c)[rh.fc_vc[:max(1, (V - 1).bit_length())]])
        fc_bad = Signal()
        m.d.comb += fc_bad.eq(fc_upd & ((rh.fc_vc >= V) | (fc_d > p.vc_slots)))
        for v in range(V):
            m.d.sync += consumed[v].eq(consumed_c[v])
            with m.If(fc_upd & ~fc_bad & (rh.fc_vc == v)):
                m.d.sync += limit_rx[v].eq(rh.fc_limit)

        # Credits sent: one VC per flit, round-robin.
        with m.If(commit & up):
            for v in range(V):
                with m.If(fc_rr == v):
                    m.d.sync += [last_sent[v].eq(limit_now[v]), fc_force[v].eq(0)]
            m.d.sync += fc_rr.eq(Mux(fc_rr == V - 1, 0, fc_rr + 1))
        # Credit refresh: a limit lost with a dropped flit is sent again after replay_timer
        # active cycles in which nothing was sent (the partner may be waiting for it).
        fc_idle = Signal(range(p.replay_timer))
        refresh = Signal()
        m.d.comb += refresh.eq(up & self.active & ~commit & (fc_idle == p.replay_timer - 1))
        with m.If(commit | refresh):
            m.d.sync += fc_idle.eq(0)
        with m.Elif(up & self.active):
            m.d.sync += fc_idle.eq(fc_idle + 1)
        with m.If(self.init | refresh):
            m.d.sync += [fc_force[v].eq(1) for v in range(V)]
        with m.If(self.init):
            m.d.sync += up.eq(1)

        # DATA received.
        rx_data = known & (raw_type == FlitType.DATA.value)
        bad_data = Signal()
        # Only the checks a field's width leaves possible (a constant comparison would be
        # a lint error in the generated Verilog).
        bad_fields = [rh.nslots == 0]
        if V < 1 << len(rh.vc):
            bad_fields.append(rh.vc >= V)
        if SLOTS < (1 << len(rh.nslots)) - 1:
            bad_fields.append(rh.nslots > SLOTS)
        m.d.comb += bad_data.eq(rx_data & Cat(*bad_fields).any())
        rseq = rh.seq[:sb]
        behind = seqv(next_rcv - rseq)
        in_order = Signal()
        dup_rx = Signal()
        gap = Signal()
        m.d.comb += [
            in_order.eq(rx_data & ~bad_data & (rseq == next_rcv)),
            dup_rx.eq(rx_data & ~bad_data & (behind != 0) & (behind <= D)),
            gap.eq(rx_data & ~bad_data & (rseq != next_rcv) & ~((behind != 0) & (behind <= D))),
        ]
        rvc = rh.vc[:max(1, (V - 1).bit_length())]
        room = Signal(range(p.vc_slots + 1))
        n_eff = Signal(4)
        overflow = Signal()
        m.d.comb += [
            room.eq(p.vc_slots - Array(occ)[rvc]),
            overflow.eq(in_order & (rh.nslots > room)),
            n_eff.eq(Mux(~in_order, 0, Mux(rh.nslots > room, room, rh.nslots))),
        ]

        with m.If(in_order):
            m.d.sync += [next_rcv.eq(seqv(next_rcv + 1)), rcvd_any.eq(1)]

        # NAK owed (suppressed until an in-order DATA flit arrives), in every flit sent
        # meanwhile. A gap in DATA sent after the partner received this NAK means the replay
        # lost next_rcv again: a new NAK (the next epoch) is owed.
        nak_trig = fe | crc_bad | gap
        renak = Signal()
        new_nak = Signal()
        m.d.comb += [
            renak.eq(gap & nak_sched & (rh.replay_epoch == nak_ep)),
            new_nak.eq((nak_trig & ~nak_sched) | renak),
        ]
        with m.If(in_order):
            m.d.sync += [nak_sched.eq(0), nak_send.eq(0)]
        with m.Elif(new_nak):
            m.d.sync += [nak_sched.eq(1), nak_send.eq(1)]
        with m.Elif(c_sent):
            m.d.sync += nak_send.eq(0)
        m.d.sync += nak_ep.eq(nak_ep + new_nak + (self.inject_we & self.inject.force_nak))
        # A NAK not acted on (every flit carrying it lost, the link otherwise quiet) goes out
        # again on a NOP after ack_timer active cycles.
        with m.If(c_sent | ~nak_sched):
            m.d.sync += nak_age.eq(0)
        with m.Elif(self.active & (nak_age != p.ack_timer)):
            m.d.sync += nak_age.eq(nak_age + 1)

        # ACK owed.
        cnt_base = Mux(c_sent, 0, ack_cnt)
        ack_cnt_n = Signal.like(ack_cnt)
        m.d.comb += ack_cnt_n.eq(Mux(cnt_base + in_order > p.ack_every, p.ack_every,
                                     cnt_base + in_order))
        m.d.sync += [
            ack_cnt.eq(ack_cnt_n),
            ack_force.eq((ack_force & ~c_sent) | dup_rx),
        ]
        with m.If(c_sent | (ack_cnt == 0)):
            m.d.sync += ack_age.eq(0)
        with m.Elif(self.active & (ack_age != p.ack_timer)):
            m.d.sync += ack_age.eq(ack_age + 1)

        # --- receive buffers: 15 banks of slots, line-interleaved -------------------------------
        rslots = [rwords[64 + _SLOT_BITS * s:64 + _SLOT_BITS * (s + 1)] for s in range(SLOTS)]
        wlo = Array(wp_lo)[rvc]
        whi = Array(wp_hi)[rvc]
        banks = []
        for b in range(SLOTS):
            bank = Memory(shape=LINK_SLOT, depth=V * lines, init=[])
            m.submodules[f"rx_bank{b}"] = bank
            wp = bank.write_port()
            s_b = Signal(range(SLOTS), name=f"s_b{b}")
            line = Signal(range(lines), name=f"line{b}")
            m.d.comb += s_b.eq(Mux(wlo <= b, b - wlo, b + SLOTS - wlo))
            if lines > 1:
                m.d.comb += line.eq(Mux(wlo <= b, whi, Mux(whi == lines - 1, 0, whi + 1)))
            m.d.comb += [
                wp.en.eq(s_b < n_eff),
                wp.addr.eq(rvc * lines + line),
                wp.data.data.eq(Array(rslots)[s_b]),
                wp.data.last.eq(rt.last.bit_select(s_b, 1)),
            ]
            banks.append([bank.read_port(domain="comb") for _ in range(V)])

        for v in range(V):
            port = self.rx[v]
            pop = port.valid & port.ready
            for b in range(SLOTS):
                m.d.comb += banks[b][v].addr.eq(v * lines + rp_hi[v])
            with m.Switch(rp_lo[v]):
                for b in range(SLOTS):
                    with m.Case(b):
                        m.d.comb += port.payload.eq(banks[b][v].data)
            m.d.comb += port.valid.eq(occ[v] != 0)
            wr = Mux(rvc == v, n_eff, 0)
            m.d.sync += occ[v].eq(occ[v] - pop + wr)
            with m.If(pop):
                m.d.sync += popped[v].eq(popped[v] + 1)
                with m.If(rp_lo[v] == SLOTS - 1):
                    m.d.sync += rp_lo[v].eq(0)
                    if lines > 1:
                        m.d.sync += rp_hi[v].eq(Mux(rp_hi[v] == lines - 1, 0, rp_hi[v] + 1))
                with m.Else():
                    m.d.sync += rp_lo[v].eq(rp_lo[v] + 1)
            with m.If(in_order & (rvc == v)):
                lo = Signal(range(2 * SLOTS), name=f"wlo_n{v}")
                m.d.comb += lo.eq(wp_lo[v] + n_eff)
                with m.If(lo >= SLOTS):
                    m.d.sync += wp_lo[v].eq(lo - SLOTS)
                    if lines > 1:
                        m.d.sync += wp_hi[v].eq(Mux(wp_hi[v] == lines - 1, 0, wp_hi[v] + 1))
                with m.Else():
                    m.d.sync += wp_lo[v].eq(lo)

        # --- injection controls ------------------------------------------------------------
        with m.If(self.inject_we):
            m.d.sync += inj.eq(self.inject)
        with m.Elif(commit):
            with m.If(inj.crc_corrupt != 0):
                m.d.sync += inj.crc_corrupt.eq(inj.crc_corrupt - 1)
            with m.If(strip):
                m.d.sync += inj.block_acks.eq(inj.block_acks - 1)
            with m.Else():
                m.d.sync += inj.force_nak.eq(0)
            with m.If(is_data):
                m.d.sync += inj.seq_offset.eq(0)
            with m.If(c_new):
                m.d.sync += inj.duplicate.eq(0)
            with m.If(up & (inj.fc_vc == fc_rr)):
                m.d.sync += inj.fc_offset.eq(0)

        # --- counters ----------------------------------------------------------------------
        def bump(name, inc):
            m.d.sync += getattr(cnt, name).eq(getattr(cnt, name) + inc)

        bump("tx_flits",         commit)
        bump("tx_data",          c_new)
        bump("tx_nop",           c_nop)
        bump("rx_flits",         good)
        bump("crc_errors",       crc_bad)
        bump("framing_errors",   fe)
        bump("seq_errors",       gap)
        bump("duplicates",       dup_rx)
        bump("naks_tx",          commit & nak_o & (nak_send | inj.force_nak))
        bump("naks_rx",          nak_rx)
        bump("replays",          replay_start)
        bump("replayed_flits",   c_replay)
        bump("replay_timeouts",  timeout)
        bump("replay_rollovers", rollover)
        bump("protocol_errors",  (good & ~known) + ack_perr + bad_data)
        bump("fc_errors",        fc_bad + overflow)
        bump("delivered_slots",  n_eff)
        return m
