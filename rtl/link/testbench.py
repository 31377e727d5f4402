"""A whole link in one test top: two endpoints, the wire both ways, traffic and checkers.

::

    TrafficGen a ─► Endpoint a ─► LinkChannel ab ─► DelayLine ab ─► Endpoint b ─► TrafficCheck b
    TrafficCheck a ◄─ Endpoint a ◄─ DelayLine ba ◄─ LinkChannel ba ◄─ Endpoint b ◄─ TrafficGen b

Everything a test needs is a register of :class:`~.host.HostRegisters` (see
:func:`registers`): the endpoints' controls, injections, status and counters, both channels'
configurations and ledgers, the wire delays, the generators and checkers. The read-only ones
show a snapshot of all of them taken in one cycle by a write to ``snap``. A
``RUN`` request lets the link run until the condition selected by ``run_until`` holds, so a run
of a million flits is three requests: configure, run, read back.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from .channel import CHANNEL_LEDGER, LinkChannel, channel_cfg_layout
from .delay import DelayLine
from .endpoint import ENDPOINT_STATUS, LinkEndpoint
from .host import HOST_REQUEST, HOST_RESPONSE, Field, HostRegisters
from .layouts import BLOCK_BITS, DL_COUNTERS, INJECT, LINK_COUNTERS, PCS_LANE_COUNTERS, TrainState
from .traffic import TRAFFIC_COUNTERS, TrafficCheck, TrafficGen, check_cfg_layout, gen_cfg_layout


__all__ = ["RunUntil", "LinkTestbench", "CTL", "registers", "LINK_TOPS", "build_link_top"]


class RunUntil(enum.Enum, shape=2):
    """What a ``RUN`` request waits for (besides its cycle limit)."""
    TRAFFIC = 0   # every generator has sent its count and every checker has received it
    LINK_UP = 1   # both endpoints are ACTIVE
    CYCLES  = 2   # nothing: run the full cycle count


#: Control of one endpoint.
CTL = data.StructLayout({
    "enable": 1,
})


class LinkTestbench(wiring.Component):
    """Two endpoints back to back through channel models, behind a register host.

    Parameters
    ----------
    params : LinkParams
        Both endpoints.
    max_skew : int
        Largest per-lane delay of the channel models, in blocks.
    wire_depth : int
        Entries of each direction's delay line (power of two): the largest wire delay is
        ``wire_depth - 1`` cycles.

    Members
    -------
    i : ``In(stream.Signature(HOST_REQUEST))``, o : ``Out(stream.Signature(HOST_RESPONSE))``
        The register host.
    """

    SIDES = ("a", "b")
    DIRECTIONS = ("ab", "ba")

    def __init__(self, params, *, max_skew=32, wire_depth=512):
        self._params = params
        self._max_skew = max_skew
        self._wire_depth = wire_depth
        from amaranth.lib import stream
        super().__init__({
            "i": In(stream.Signature(HOST_REQUEST)),
            "o": Out(stream.Signature(HOST_RESPONSE)),
        })

    def registers(self):
        """The registers, in address order: ``[(Field, layout or None), ...]``."""
        return registers(self._params, max_skew=self._max_skew, wire_depth=self._wire_depth)

    def elaborate(self, platform):
        m = Module()
        p = self._params
        L, V = p.lanes, p.vcs
        m.submodules.host = host = HostRegisters([f for f, _ in self.registers()])
        wiring.connect(m, wiring.flipped(self.i), host.i)
        wiring.connect(m, host.o, wiring.flipped(self.o))

        # Read-only registers show a snapshot, taken for all of them in one cycle by a write
        # to `snap`: counters read one by one over many cycles would otherwise describe
        # different moments (a flit counted at one end and not yet at the other).
        def show(name, value):
            shadow = Signal.like(getattr(host, name), name=f"snap_{name}")
            with m.If(host.snap_we):
                m.d.sync += shadow.eq(value)
            m.d.comb += getattr(host, name).eq(shadow)

        now = Signal(64)
        m.d.sync += now.eq(now + 1)
        show("now", now)

        ep, gen, chk = {}, {}, {}
        for s in self.SIDES:
            m.submodules[f"ep_{s}"]  = ep[s]  = LinkEndpoint(p)
            m.submodules[f"gen_{s}"] = gen[s] = TrafficGen(vcs=V)
            m.submodules[f"chk_{s}"] = chk[s] = TrafficCheck(vcs=V)
            ctl = getattr(host, f"{s}_ctl")
            m.d.comb += [
                ep[s].enable   .eq(ctl[0]),
                ep[s].retrain  .eq(getattr(host, f"{s}_retrain_we")),
                ep[s].inject   .eq(getattr(host, f"{s}_inject")),
                ep[s].inject_we.eq(getattr(host, f"{s}_inject_we")),
                gen[s].cfg     .eq(getattr(host, f"{s}_gen")),
                gen[s].now     .eq(now[:32]),
                chk[s].cfg     .eq(getattr(host, f"{s}_chk")),
                chk[s].now     .eq(now[:32]),
            ]
            show(f"{s}_status", ep[s].status)
            show(f"{s}_dl",     ep[s].dl_counters)
            show(f"{s}_link",   ep[s].link_counters)
            show(f"{s}_lanes",  ep[s].lane_counters)
            show(f"{s}_sent",   gen[s].sent)
            show(f"{s}_recv",   chk[s].counters)
            for v in range(V):
                wiring.connect(m, gen[s].o[v], ep[s].tx[v])
                wiring.connect(m, ep[s].rx[v], chk[s].i[v])

        for d in self.DIRECTIONS:
            src, dst = ep[d[0]], ep[d[1]]
            m.submodules[f"chan_{d}"] = chan = LinkChannel(lanes=L, max_delay=self._max_skew)
            m.submodules[f"wire_{d}"] = wire = DelayLine(width=BLOCK_BITS * L,
                                                         depth=self._wire_depth)
            # The channel tracks flits at the striping the transmitter uses now (none while
            # it trains), so its ledger follows a degrade without the test's help.
            cfg = getattr(host, f"{d}_chan")
            active = src.status.state == TrainState.ACTIVE
            m.d.comb += [
                chan.i         .eq(src.lanes_o),
                chan.cfg       .eq(cfg),
                chan.cfg.width .eq(Mux(active, src.status.width, 0)),
                chan.cfg.offset.eq(src.status.offset),
                wire.i    .eq(chan.o),
                wire.delay.eq(getattr(host, f"{d}_wire")),
                dst.lanes_i.eq(wire.o),
            ]
            show(f"{d}_ledger", chan.ledger)

        # RUN conditions.
        traffic_done = Signal()
        terms = []
        for s, o in (("a", "b"), ("b", "a")):
            terms.append(gen[s].done)
            for v in range(V):
                # Every message the other side's generator was asked for has arrived.
                want = gen[s].cfg.count
                enabled = gen[s].cfg.enable[v]
                terms.append(~enabled | (chk[o].counters[v].messages >= want))
        m.d.comb += traffic_done.eq(_all(terms))
        link_up = (ep["a"].status.state == TrainState.ACTIVE) & \
                  (ep["b"].status.state == TrainState.ACTIVE)
        with m.Switch(host.run_until):
            with m.Case(RunUntil.TRAFFIC):
                m.d.comb += host.done.eq(traffic_done)
            with m.Case(RunUntil.LINK_UP):
                m.d.comb += host.done.eq(link_up)
        return m


def registers(params, *, max_skew, wire_depth):
    """The registers of a :class:`LinkTestbench` in address order: ``[(Field, layout or
    None), ...]`` (no elaboration needed)."""
    p = params
    L, V = p.lanes, p.vcs
    regs = [("run_until", RunUntil, True), ("snap", None, True, 1), ("now", None, False, 64)]
    for s in LinkTestbench.SIDES:
        regs += [
            (f"{s}_ctl",     CTL, True),
            (f"{s}_retrain", None, True, 1),
            (f"{s}_inject",  INJECT, True),
            (f"{s}_gen",     gen_cfg_layout(vcs=V), True),
            (f"{s}_chk",     check_cfg_layout(vcs=V), True),
            (f"{s}_status",  ENDPOINT_STATUS(L), False),
            (f"{s}_dl",      DL_COUNTERS, False),
            (f"{s}_link",    LINK_COUNTERS, False),
            (f"{s}_lanes",   data.ArrayLayout(PCS_LANE_COUNTERS, L), False),
            (f"{s}_sent",    data.ArrayLayout(32, V), False),
            (f"{s}_recv",    data.ArrayLayout(TRAFFIC_COUNTERS, V), False),
        ]
    for d in LinkTestbench.DIRECTIONS:
        regs += [
            (f"{d}_chan",   channel_cfg_layout(lanes=L, max_delay=max_skew), True),
            (f"{d}_wire",   None, True, (wire_depth - 1).bit_length()),
            (f"{d}_ledger", CHANNEL_LEDGER, False),
        ]
    out = []
    for r in regs:
        name, layout, writable = r[:3]
        width = r[3] if len(r) > 3 else _width(layout)
        out.append((Field(name, width, writable), layout))
    return out


def _width(layout):
    from amaranth.hdl import Shape
    return Shape.cast(layout).width


def _all(terms):
    out = terms[0]
    for t in terms[1:]:
        out = out & t
    return out


def link_tb_params(cfg):
    """The endpoints of the ``link_tb`` top of ``cfg`` (the regression's): fast-simulation
    periods, 6-bit sequence numbers so that a run wraps them hundreds of times, and a replay
    buffer of 16 flits."""
    from .params import LinkParams
    return LinkParams.for_chip(cfg).fast_sim(seq_bits=6, replay_depth=16, vc_slots=60,
                                             replay_timer=512)


def link_bench_params(cfg):
    """The endpoints of the ``link_bench`` top: the hardware's marker period and sequence
    numbers, and buffers deep enough for a 16-flit round trip at full rate on one VC."""
    from .params import LinkParams
    return LinkParams.for_chip(cfg, vc_slots=512, replay_depth=32, replay_timer=2048,
                               train_timeout=1 << 15)


#: Test tops by name: ``(params of cfg, LinkTestbench keyword arguments)``.
LINK_TOPS = {
    "link_tb":    (link_tb_params, {"max_skew": 32, "wire_depth": 256}),
    "link_bench": (link_bench_params, {"max_skew": 32, "wire_depth": 1024}),
}


def build_link_top(name, cfg):
    params_of, kwargs = LINK_TOPS[name]
    return LinkTestbench(params_of(cfg), **kwargs)
