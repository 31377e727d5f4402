"""The HBM model: interleaved channels with a fixed latency, and the port requesters use.

``hbm_channels`` (C) channels of ``hbm_bytes_per_cycle`` (B) bytes. Byte address ``a`` is in
channel ``(a / B) mod C``, word ``a / (B·C)`` of that channel, so a *stripe* of ``B·C`` bytes
(the unit of a request) touches every channel once. Each channel serves one word per cycle, a
read or a byte-masked write, and a read's data comes back exactly ``hbm_latency`` cycles after
the request was accepted (``docs/chip.md`` § HBM).

The storage of a channel is the Verilog module ``m890_hbm_channel`` (:data:`HBM_CHANNEL_SV`,
synchronous read, byte-enable write), instantiated as a blackbox; Amaranth simulation uses an
equivalent :class:`~amaranth.lib.memory.Memory` instead (``storage="memory"``, small capacities
only). Storage is accessed when a request is accepted; the read data then waits
``hbm_latency − 1`` cycles in a delay line that is a circular buffer in one ``Memory`` (one
stripe per entry), not a chain of registers. Only the response-valid bits are shift registers.
"""

from pathlib import Path

from amaranth.hdl import Cat, ClockSignal, Const, Instance, MemoryData, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out


__all__ = ["hbm_request_layout", "HbmPortSignature", "HBM_CHANNEL_COUNTERS", "HBM_CHANNEL_SV",
           "Hbm", "popcount"]


#: The behavioural model of one channel's storage; Verilator builds add it to their sources.
HBM_CHANNEL_SV = Path(__file__).parent / "hdl" / "m890_hbm_channel.sv"


def hbm_request_layout(cfg):
    """One request: a stripe (``hbm_channels × hbm_bytes_per_cycle`` bytes) of HBM.

    ``addr`` is the stripe index (byte address ÷ stripe bytes). ``mask`` has a bit per byte:
    the bytes to write, or for a read the bytes wanted (a channel whose bytes are all unmasked
    is not used). ``write`` selects a write.
    """
    stripe = cfg.hbm_channels * cfg.hbm_bytes_per_cycle
    return data.StructLayout({
        "write": 1,
        "addr":  cfg.addr_width - (stripe.bit_length() - 1),
        "data":  8 * stripe,
        "mask":  stripe,
    })


class HbmPortSignature(wiring.Signature):
    """An HBM port, seen from the requester.

    ``req`` is a stream of :func:`hbm_request_layout` requests. The read data of a request
    accepted in cycle t is on ``resp_data`` with ``resp_valid`` high in cycle
    t + ``hbm_latency`` (exactly; the requester must take it then, so it asks only when it has
    room). Masked-out bytes of a response are undefined. Writes have no response. Requests of
    one port are served in order.
    """

    def __init__(self, cfg):
        stripe = cfg.hbm_channels * cfg.hbm_bytes_per_cycle
        super().__init__({
            "req":        Out(stream.Signature(hbm_request_layout(cfg))),
            "resp_valid": In(1),
            "resp_data":  In(8 * stripe),
        })


#: Performance counters of one channel (cumulative since reset, 64 bits each).
HBM_CHANNEL_COUNTERS = data.StructLayout({
    "rd_bytes": 64,   # bytes read: mask bits of this channel's word in the reads it served
    "wr_bytes": 64,   # bytes written: mask bits of this channel's word in the writes it served
    "busy":     64,   # cycles in which the channel served a word
    "stall":    64,   # cycles in which a port wanted the channel and did not get it
})


def popcount(value):
    """The number of set bits of ``value``, as a balanced tree of adders."""
    terms = [value[i] for i in range(len(value))] or [Const(0, 1)]
    while len(terms) > 1:
        pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
    return terms[0]


class Hbm(wiring.Component):
    """HBM channels behind ``ports`` requester ports with fixed priority (port 0 highest).

    A request touches the channels in which its mask has a bit set; it is accepted (``ready``)
    when none of them is taken this cycle by a port before it that is accepted. A request whose
    mask is all zero touches nothing and is accepted at once (a read still gets its response,
    with undefined data). Every accepted read gets ``resp_valid`` exactly ``hbm_latency``
    cycles later; ``resp_data`` is shared by all ports (a port's bytes in a response are the
    bytes of the channels it was served by; the others are undefined).

    Addresses beyond the capacity use the low bits of the word index (requesters check their
    ranges).

    Parameters
    ----------
    cfg : ChipConfig
        Geometry: ``hbm_channels``, ``hbm_bytes_per_cycle``, ``hbm_latency``, ``hbm_bytes``.
    ports : int
        Number of requester ports.
    storage : ``"verilog"`` or ``"memory"``
        ``"verilog"``: a blackbox ``m890_hbm_channel`` per channel (:data:`HBM_CHANNEL_SV`),
        for Verilog builds. ``"memory"``: an Amaranth ``Memory`` per channel, for Amaranth
        simulation of small capacities; :attr:`channel_data` then holds the
        ``MemoryData`` of each channel (word ``w`` of channel ``c`` is bytes
        ``w·stripe + c·B …`` of HBM).
    init : bytes-like, optional
        ``storage="memory"`` only: initial contents, from byte address 0 (zero-filled).

    Members
    -------
    port : ``In(HbmPortSignature(cfg)).array(ports)``
        The requester ports.
    counters : ``Out(data.ArrayLayout(HBM_CHANNEL_COUNTERS, hbm_channels))``
        Per-channel performance counters.
    """

    def __init__(self, cfg, *, ports, storage="verilog", init=None):
        if storage not in ("verilog", "memory"):
            raise ValueError(f"storage must be 'verilog' or 'memory', not {storage!r}")
        if not isinstance(ports, int) or ports < 1:
            raise ValueError(f"ports must be a positive integer, not {ports!r}")
        if init is not None and storage != "memory":
            raise ValueError("init is only supported with storage='memory'")
        self._cfg, self._ports, self._storage = cfg, ports, storage
        self._chans, self._bpc = cfg.hbm_channels, cfg.hbm_bytes_per_cycle
        self.stripe = self._chans * self._bpc
        #: Words of each channel.
        self.words = cfg.hbm_bytes // self.stripe
        self._word_bits = max(1, (self.words - 1).bit_length())
        super().__init__({
            "port":     In(HbmPortSignature(cfg)).array(ports),
            "counters": Out(data.ArrayLayout(HBM_CHANNEL_COUNTERS, self._chans)),
        })
        self.channel_data = []
        if storage == "memory":
            words = [[] for _ in range(self._chans)]
            if init is not None:
                raw = bytes(init)[:cfg.hbm_bytes]
                raw = raw + bytes(-len(raw) % self.stripe)
                for s in range(len(raw) // self.stripe):
                    for c in range(self._chans):
                        lo = s * self.stripe + c * self._bpc
                        words[c].append(int.from_bytes(raw[lo:lo + self._bpc], "little"))
            self.channel_data = [
                MemoryData(shape=8 * self._bpc, depth=1 << self._word_bits, init=words[c])
                for c in range(self._chans)]

    def elaborate(self, platform):
        m = Module()
        C, B, S = self._chans, self._bpc, self.stripe
        latency = self._cfg.hbm_latency
        ports = self.port

        # -- Arbitration: per port, the channels its request touches; fixed priority. ------
        touch = [Signal(C, name=f"touch{p}") for p in range(len(ports))]
        grant = [Signal(name=f"grant{p}") for p in range(len(ports))]
        taken = Const(0, C)
        for p, port in enumerate(ports):
            mask = port.req.payload.mask
            m.d.comb += touch[p].eq(Cat(mask[c * B:(c + 1) * B].any() for c in range(C)))
            m.d.comb += grant[p].eq(port.req.valid & ~(touch[p] & taken).any())
            m.d.comb += port.req.ready.eq(grant[p])
            taken = taken | Cat(t & grant[p] for t in touch[p])
        taken_sig = Signal(C)
        wanted = Signal(C)
        m.d.comb += [
            taken_sig.eq(taken),
            wanted.eq(Cat(Cat(touch[p][c] & ports[p].req.valid & ~grant[p]
                              for p in range(len(ports))).any() for c in range(C))),
        ]

        # -- Channels: the request of the port that owns each, then the storage. --------------
        read_words = []
        for c in range(C):
            addr = Signal(self._word_bits, name=f"ch{c}_addr")
            wdata = Signal(8 * B, name=f"ch{c}_wdata")
            wmask = Signal(B, name=f"ch{c}_wmask")
            rmask = Signal(B, name=f"ch{c}_rmask")
            re = Signal(name=f"ch{c}_re")
            rdata = Signal(8 * B, name=f"ch{c}_rdata")
            first = True
            for p, port in enumerate(ports):
                req = port.req.payload
                cond = grant[p] & touch[p][c]
                with (m.If(cond) if first else m.Elif(cond)):
                    chan_mask = req.mask[c * B:(c + 1) * B]
                    m.d.comb += [
                        addr.eq(req.addr[:self._word_bits]),
                        wdata.eq(req.data[8 * c * B:8 * (c + 1) * B]),
                        re.eq(~req.write),
                        rmask.eq(Mux(req.write, 0, chan_mask)),
                        wmask.eq(Mux(req.write, chan_mask, 0)),
                    ]
                first = False
            if self._storage == "verilog":
                m.submodules[f"channel{c}"] = Instance(
                    "m890_hbm_channel",
                    p_WIDTH=B, p_DEPTH=self.words,
                    i_clk=ClockSignal(), i_re=re, i_addr=addr, i_we=wmask, i_wdata=wdata,
                    o_rdata=rdata)
            else:
                mem = Memory(self.channel_data[c])
                m.submodules[f"channel{c}"] = mem
                wp = mem.write_port(granularity=8)
                rp = mem.read_port()
                m.d.comb += [
                    wp.addr.eq(addr), wp.data.eq(wdata), wp.en.eq(wmask),
                    rp.addr.eq(addr), rp.en.eq(re), rdata.eq(rp.data),
                ]
            read_words.append(rdata)

            cnt = self.counters[c]
            served = Signal(name=f"ch{c}_served")
            m.d.comb += served.eq(taken_sig[c])
            m.d.sync += [
                cnt.rd_bytes.eq(cnt.rd_bytes + popcount(rmask)),
                cnt.wr_bytes.eq(cnt.wr_bytes + popcount(wmask)),
                cnt.busy.eq(cnt.busy + served),
                cnt.stall.eq(cnt.stall + wanted[c]),
            ]

        # -- Read data: storage output (t+1), then latency − 1 cycles in a circular buffer. ---
        stripe_data = Signal(8 * S)
        m.d.comb += stripe_data.eq(Cat(read_words))
        stages = latency - 1
        resp_data = Signal(8 * S)
        if stages == 0:
            m.d.comb += resp_data.eq(stripe_data)
        elif stages == 1:
            m.d.sync += resp_data.eq(stripe_data)
        else:
            depth_bits = (stages - 1).bit_length()
            m.submodules.delay = delay = Memory(shape=8 * S, depth=1 << depth_bits, init=[])
            wp = delay.write_port()
            rp = delay.read_port(transparent_for=())
            wptr = Signal(depth_bits)
            m.d.sync += wptr.eq(wptr + 1)
            m.d.comb += [
                wp.addr.eq(wptr), wp.data.eq(stripe_data), wp.en.eq(1),
                rp.addr.eq(wptr - (stages - 1)),
                resp_data.eq(rp.data),
            ]

        for p, port in enumerate(ports):
            valid = Signal(latency, name=f"resp_pipe{p}")
            accepted_read = grant[p] & ~port.req.payload.write
            m.d.sync += valid.eq(Cat(accepted_read, valid[:-1]))
            m.d.comb += [
                port.resp_valid.eq(valid[-1]),
                port.resp_data.eq(resp_data),
            ]
        return m

