"""One end of an interchip link: PCS, training, flit framing and the data link layer.

::

    user slots ─► DataLink ─► FlitTx ─┐            ┌─► PcsTx ─► lanes_o (66 bits per lane per cycle)
    (per VC)                          ├─ TX mux ───┤
                          Trainer ────┘ (tx_sel)   │
    user slots ◄─ DataLink ◄─ FlitRx ◄─ PcsRx ◄─ lanes_i
                                 Trainer ◄── lock / alignment / TS blocks

The trainer owns the transmitter until the link is up, then hands it to the data link
(``tx_sel``); the data link keeps its sequence numbers, replay buffer and credits across
retrains, so a retrain loses nothing.
"""

from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .dll import DataLink
from .framing import FlitRx, FlitTx
from .layouts import (DL_COUNTERS, INJECT, LINK_COUNTERS, LINK_SLOT, PCS_LANE_COUNTERS,
                      TrainState)
from .pcs import PcsRx, PcsTx
from .train import Trainer


__all__ = ["LinkEndpoint", "ENDPOINT_STATUS"]


def ENDPOINT_STATUS(lanes):
    """Status of an endpoint: training state, width in use, lane health."""
    return data.StructLayout({
        "state":    TrainState,
        "width":    4,
        "offset":   3,
        "lanes_ok": lanes,
        "locked":   lanes,
        "hi_ber":   lanes,
        "aligned":  1,
        "next_rcv": 12,
        "acked":    12,
        "sent":     12,
    })


class LinkEndpoint(wiring.Component):
    """A link endpoint.

    Parameters
    ----------
    params : LinkParams

    Members
    -------
    lanes_o : ``Out(data.ArrayLayout(66, lanes))``, lanes_i : ``In(data.ArrayLayout(66, lanes))``
        The wire: one 66-bit block per lane per cycle.
    tx : ``In(stream.Signature(LINK_SLOT)).array(vcs)``
        Slots to send, per virtual channel.
    rx : ``Out(stream.Signature(LINK_SLOT)).array(vcs)``
        Slots received, per virtual channel.
    enable : ``In(1)``
        Train the link (low: hold in reset).
    retrain : ``In(1)``
        A pulse requests a retrain.
    inject : ``In(INJECT)``, inject_we : ``In(1)``
        Error injection (latched on ``inject_we``).
    status : ``Out(ENDPOINT_STATUS(lanes))``
    dl_counters, link_counters, lane_counters : counters of the data link, the training and
        each lane's PCS.
    """

    def __init__(self, params):
        self._params = params
        L, V = params.lanes, params.vcs
        super().__init__({
            "lanes_o":       Out(data.ArrayLayout(66, L)),
            "lanes_i":       In(data.ArrayLayout(66, L)),
            "tx":            In(stream.Signature(LINK_SLOT)).array(V),
            "rx":            Out(stream.Signature(LINK_SLOT)).array(V),
            "enable":        In(1),
            "retrain":       In(1),
            "inject":        In(INJECT),
            "inject_we":     In(1),
            "status":        Out(ENDPOINT_STATUS(L)),
            "dl_counters":   Out(DL_COUNTERS),
            "link_counters": Out(LINK_COUNTERS),
            "lane_counters": Out(data.ArrayLayout(PCS_LANE_COUNTERS, L)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self._params
        m.submodules.pcs_tx  = pcs_tx  = PcsTx(p)
        m.submodules.pcs_rx  = pcs_rx  = PcsRx(p)
        m.submodules.flit_tx = flit_tx = FlitTx(p)
        m.submodules.flit_rx = flit_rx = FlitRx(p)
        m.submodules.dll     = dll     = DataLink(p)
        m.submodules.trainer = trainer = Trainer(p)

        # The wire.
        m.d.comb += [
            self.lanes_o.eq(pcs_tx.o),
            pcs_rx.i.eq(self.lanes_i),
        ]

        # Training watches the receiver and steers both PCS halves.
        m.d.comb += [
            trainer.enable      .eq(self.enable),
            trainer.csr_retrain .eq(self.retrain),
            trainer.locked      .eq(pcs_rx.locked),
            trainer.hi_ber      .eq(pcs_rx.hi_ber),
            trainer.lane_o      .eq(pcs_rx.lane_o),
            trainer.lane_valid  .eq(pcs_rx.lane_valid),
            trainer.aligned     .eq(pcs_rx.aligned),
            trainer.deskew_error.eq(pcs_rx.deskew_error),
            trainer.dl_retrain  .eq(dll.retrain_req),
            pcs_rx.realign      .eq(trainer.realign),
            pcs_rx.width        .eq(trainer.width),
            pcs_rx.offset       .eq(trainer.offset),
            pcs_tx.raw          .eq(trainer.raw),
            pcs_tx.width        .eq(trainer.width),
            pcs_tx.offset       .eq(trainer.offset),
            flit_tx.width       .eq(trainer.width),
            flit_rx.width       .eq(trainer.width),
        ]

        # The transmitter: training sets until the link is up, then flits.
        with m.If(trainer.tx_sel):
            m.d.comb += [
                pcs_tx.beat.valid  .eq(flit_tx.beat.valid),
                pcs_tx.beat.payload.eq(flit_tx.beat.payload),
                flit_tx.beat.ready .eq(pcs_tx.beat.ready),
            ]
        with m.Else():
            m.d.comb += [
                pcs_tx.beat.valid  .eq(trainer.tx_beat.valid),
                pcs_tx.beat.payload.eq(trainer.tx_beat.payload),
                trainer.tx_beat.ready.eq(pcs_tx.beat.ready),
            ]

        # The receiver: deskewed beats reach the flit framer only while the link is up.
        m.d.comb += [
            flit_rx.beat.valid  .eq(pcs_rx.beat.valid & trainer.dl_active),
            flit_rx.beat.payload.eq(pcs_rx.beat.payload),
            pcs_rx.beat.ready   .eq(1),
        ]

        # The data link.
        wiring.connect(m, dll.flit_o, flit_tx.flit)
        wiring.connect(m, flit_rx.flit, dll.flit_i)
        m.d.comb += [
            dll.active   .eq(trainer.dl_active),
            dll.init     .eq(trainer.dl_init),
            dll.inject   .eq(self.inject),
            dll.inject_we.eq(self.inject_we),
        ]
        for v in range(p.vcs):
            wiring.connect(m, wiring.flipped(self.tx[v]), dll.tx[v])
            wiring.connect(m, dll.rx[v], wiring.flipped(self.rx[v]))

        s = self.status
        m.d.comb += [
            s.state   .eq(trainer.state),
            s.width   .eq(trainer.width),
            s.offset  .eq(trainer.offset),
            s.lanes_ok.eq(trainer.lanes_ok),
            s.locked  .eq(pcs_rx.locked),
            s.hi_ber  .eq(pcs_rx.hi_ber),
            s.aligned .eq(pcs_rx.aligned),
            s.next_rcv.eq(dll.next_rcv),
            s.acked   .eq(dll.acked),
            s.sent    .eq(dll.sent),
            self.dl_counters  .eq(dll.counters),
            self.link_counters.eq(trainer.counters),
            self.lane_counters.eq(pcs_rx.counters),
        ]
        return m
