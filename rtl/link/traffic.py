"""Test-only RTL traffic generator and checker for the link's virtual channels.

:class:`TrafficGen` sends numbered messages of PRBS slots on each VC; :class:`TrafficCheck`
receives them, recomputes every slot and counts gaps, duplicates, content errors and latency.
A long run then needs no Python on the cycle path: the test configures both, runs, and reads
the counters. ``golden_model/link_traffic.py`` has the same message format and PRBS in Python;
``docs/link_verif.md`` describes both blocks.

Message format (VC ``v``, message number ``n``, ``length`` slots, 1 … 15): slot 0 is
:data:`TRAFFIC_HEADER` ``{msg: n, stamp, vc: v, length, prbs: low 56 bits of PRBS(v, n, 0)}``;
slot ``s ≥ 1`` is the 128-bit ``PRBS(v, n, s)``; ``last`` is set on slot ``length - 1`` only.
``PRBS(v, n, s)`` is ``A | B << 64`` with ``A = xs(xs(z))``, ``B = xs(A)``,
``z = (n | s << 32 | v << 36) ^ PRBS_KEY`` and ``xs`` the xorshift64 step (13, 7, 17): a
bijection, so no two (vc, message, slot) share ``A``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import LINK_SLOT, SLOTS


__all__ = ["PRBS_KEY", "TRAFFIC_HEADER", "LenMode", "TRAFFIC_COUNTERS", "gen_cfg_layout",
           "check_cfg_layout", "TrafficGen", "TrafficCheck", "GEN_LEN_KEYS", "GEN_IDLE_KEYS",
           "CHECK_STALL_KEYS"]

#: XORed into the PRBS input so that message 0 of VC 0 is not a sparse word.
PRBS_KEY = 0x9E3779B97F4A7C15

#: Slot 0 of a message (the ``data`` of :data:`~.layouts.LINK_SLOT`).
TRAFFIC_HEADER = data.StructLayout({
    "msg":    32,   # message number on this VC, from 0
    "stamp":  32,   # generator's ``now`` when the message was started
    "vc":     4,
    "length": 4,    # slots, 1 … 15
    "prbs":   56,   # low 56 bits of PRBS(vc, msg, 0)
})


class LenMode(enum.Enum, shape=1):
    """How :class:`TrafficGen` chooses message lengths."""
    FIXED  = 0   # every message has ``fixed_len`` slots
    RANDOM = 1   # 1 … 15 slots from the VC's length generator


#: Counters of one VC of :class:`TrafficCheck` (cumulative since reset).
TRAFFIC_COUNTERS = data.StructLayout({
    "messages":               32,   # messages received (a slot with last set)
    "slots":                  32,   # slots received
    "gaps":                   32,   # a header whose message number is ahead of the expected one
    "duplicates_or_reorders": 32,   # ... behind the expected one
    "content_errors":         32,   # messages with any slot, length, last or vc mismatch
    "latency_min":            32,   # now - stamp at the last slot, over messages with a
    "latency_max":            32,   # good header (min starts at all ones)
    "latency_sum":            64,
})

# Seeds of the xorshift32 generators: state = seed ^ key, or key when that is zero.
GEN_LEN_KEYS = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A)
GEN_IDLE_KEYS = (0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)
CHECK_STALL_KEYS = (0xCBBB9D5D, 0x629A292A, 0x9159015A, 0x152FECD8)

_ALL_ONES = 0xFFFFFFFF


def _check_vcs(vcs):
    if vcs not in (1, 2, 3, 4):
        raise ValueError(f"vcs must be 1 … 4, not {vcs!r}")


def _check_seed_width(seed_width):
    if not isinstance(seed_width, int) or isinstance(seed_width, bool) or \
            not 1 <= seed_width <= 32:
        raise ValueError(f"seed_width must be an integer from 1 to 32, not {seed_width!r}")


def gen_cfg_layout(*, vcs, seed_width=32):
    """Configuration of a :class:`TrafficGen` (its ``cfg`` member).

    Fields
    ------
    enable
        Bit ``v``: VC ``v`` may start messages (a started message always completes).
    count
        Messages per VC to send since reset; raising it resumes the numbering.
    seed
        Seed of the length and idle generators; they restart from it in the cycle after it
        changes (and from seed 0 at reset).
    len_mode, fixed_len
        :class:`LenMode`; ``fixed_len`` 1 … 15 (0 acts as 1).
    idle_threshold
        Between slots, the VC leaves ``valid`` low for a cycle with probability
        ``idle_threshold / 2**32`` (0: saturating traffic).
    """
    _check_vcs(vcs)
    _check_seed_width(seed_width)
    return data.StructLayout({
        "enable":         vcs,
        "count":          32,
        "seed":           seed_width,
        "len_mode":       LenMode,
        "fixed_len":      4,
        "idle_threshold": 32,
    })


def check_cfg_layout(*, vcs, seed_width=32):
    """Configuration of a :class:`TrafficCheck` (its ``cfg`` member).

    Fields
    ------
    stall_threshold[v]
        VC ``v``'s ``ready`` is low in a cycle with probability ``stall_threshold / 2**32``;
        0 is always ready, all ones never ready.
    seed
        Seed of the stall generators (restart as in :func:`gen_cfg_layout`).
    """
    _check_vcs(vcs)
    _check_seed_width(seed_width)
    return data.StructLayout({
        "stall_threshold": data.ArrayLayout(32, vcs),
        "seed":            seed_width,
    })


def _xorshift(m, x, shifts, name):
    """One xorshift step of ``x``; each stage is a signal, because Amaranth copies an
    expression every time it is used and a chain of them would grow exponentially."""
    width = len(x)
    for n, (d, s) in enumerate(zip("<><", shifts)):
        y = Signal(width, name=f"{name}_{n}")
        m.d.comb += y.eq(x ^ ((x << s)[:width] if d == "<" else x >> s))
        x = y
    return x


def _xorshift32(m, x, name):
    return _xorshift(m, x, (13, 17, 5), name)


def _xorshift64(m, x, name):
    return _xorshift(m, x, (13, 7, 17), name)


def _prbs(m, vc, msg, slot, name):
    """The 128-bit PRBS of slot ``slot`` of message ``msg`` on VC ``vc`` (a constant)."""
    z = Signal(64, name=f"{name}_z")
    m.d.comb += z.eq(Cat(msg, slot[:4], Const(vc, 4), Const(0, 24)) ^ PRBS_KEY)
    a = _xorshift64(m, _xorshift64(m, z, f"{name}_a0"), f"{name}_a")
    return Cat(a, _xorshift64(m, a, f"{name}_b"))


def _rng32(m, seed, seed_q, key, name, step=1):
    """A xorshift32 register stepping when ``step``, restarting from ``seed ^ key`` (``key``
    if that is zero) in the cycle after ``seed`` changes."""
    r = Signal(32, init=key, name=name)   # seed 0 at reset
    start = Signal(32, name=f"{name}_seed")
    m.d.comb += start.eq(seed ^ key)
    with m.If(seed != seed_q):
        m.d.sync += r.eq(Mux(start == 0, key, start))
    with m.Elif(step):
        m.d.sync += r.eq(_xorshift32(m, r, f"{name}_next"))
    return r


class TrafficGen(wiring.Component):
    """Sends numbered PRBS messages on each VC.

    Parameters
    ----------
    vcs : int
        Virtual channels, 1 … 4.
    seed_width : int
        Width of ``cfg.seed``, 1 … 32.

    Members
    -------
    o : ``Out(stream.Signature(LINK_SLOT)).array(vcs)``
        One slot stream per VC. ``valid`` rises in the cycle after a slot is decided and stays
        high until the slot is taken; messages follow the module's format.
    cfg : ``In(gen_cfg_layout(vcs=vcs, seed_width=seed_width))``
        Run-time configuration.
    now : ``In(32)``
        A free-running cycle counter (shared with the checker); a message's ``stamp`` is its
        value in the cycle the message is started, one cycle before slot 0 is offered.
    sent : ``Out(data.ArrayLayout(32, vcs))``
        Messages completely sent per VC (the number of the next message).
    done : ``Out(1)``
        Every enabled VC has sent ``count`` messages (high when none is enabled).

    Notes
    -----
    Each VC has two xorshift32 generators: the length generator steps once per message (so
    message ``k``'s length depends only on the seed, not on backpressure), the idle generator
    once per cycle. A random length is ``((r & 0xFF) * 15 >> 8) + 1``.
    """

    def __init__(self, *, vcs, seed_width=32):
        _check_vcs(vcs)
        _check_seed_width(seed_width)
        self._vcs = vcs
        super().__init__({
            "o":    Out(stream.Signature(LINK_SLOT)).array(vcs),
            "cfg":  In(gen_cfg_layout(vcs=vcs, seed_width=seed_width)),
            "now":  In(32),
            "sent": Out(data.ArrayLayout(32, vcs)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        seed_q = Signal.like(cfg.seed)
        m.d.sync += seed_q.eq(cfg.seed)
        fixed_len = Mux(cfg.fixed_len == 0, 1, cfg.fixed_len)
        finished = []
        for v in range(self._vcs):
            o = self.o[v]
            msg = self.sent[v]
            in_msg = Signal(name=f"in_msg{v}")
            slot = Signal(4, name=f"slot{v}")
            length = Signal(4, name=f"length{v}")
            stamp = Signal(32, name=f"stamp{v}")
            start = Signal(name=f"start{v}")
            len_rng = _rng32(m, cfg.seed, seed_q, GEN_LEN_KEYS[v], f"len_rng{v}", step=start)
            idle_rng = _rng32(m, cfg.seed, seed_q, GEN_IDLE_KEYS[v], f"idle_rng{v}")
            idle = idle_rng < cfg.idle_threshold

            last = slot == length - 1
            prbs = _prbs(m, v, msg, slot, f"prbs{v}")
            header = Cat(msg, stamp, Const(v, 4), length, prbs[:56])
            m.d.comb += [
                o.payload.data.eq(Mux(slot == 0, header, prbs)),
                o.payload.last.eq(last),
            ]

            xfer = o.valid & o.ready
            ends = xfer & last
            busy_after = in_msg & ~ends
            msg_after = msg + ends
            # No message starts while the generators restart, so that message k's length is
            # always the k-th draw from the new seed.
            can_start = cfg.enable[v] & (msg_after < cfg.count) & (cfg.seed == seed_q)
            with m.If(xfer):
                m.d.sync += slot.eq(slot + 1)
                with m.If(last):
                    m.d.sync += [in_msg.eq(0), msg.eq(msg_after)]
            m.d.comb += start.eq((~o.valid | xfer) & ~busy_after & can_start & ~idle)
            with m.If(~o.valid | xfer):
                m.d.sync += o.valid.eq((busy_after | can_start) & ~idle)
                with m.If(start):
                    rand_len = ((len_rng[:8] * 15) >> 8)[:4] + 1
                    m.d.sync += [
                        in_msg.eq(1),
                        slot.eq(0),
                        length.eq(Mux(cfg.len_mode == LenMode.RANDOM, rand_len, fixed_len)),
                        stamp.eq(self.now),
                    ]
            finished.append(~cfg.enable[v] | (~in_msg & (msg >= cfg.count)))
        m.d.comb += self.done.eq(Cat(*finished).all())
        return m


class TrafficCheck(wiring.Component):
    """Receives the messages of :class:`TrafficGen` on each VC and counts what is wrong.

    Parameters
    ----------
    vcs : int
        Virtual channels, 1 … 4.
    seed_width : int
        Width of ``cfg.seed``, 1 … 32.

    Members
    -------
    i : ``In(stream.Signature(LINK_SLOT)).array(vcs)``
        One slot stream per VC; ``ready`` comes from the VC's stall generator (a register, it
        does not depend on ``valid``).
    cfg : ``In(check_cfg_layout(vcs=vcs, seed_width=seed_width))``
        Run-time configuration.
    now : ``In(32)``
        The cycle counter the generator stamps with.
    counters : ``Out(data.ArrayLayout(TRAFFIC_COUNTERS, vcs))``
        Per VC, updated in the cycle after the slot that causes the change.

    Notes
    -----
    A message starts with the first slot after a slot with ``last`` (or reset). Its header is
    *good* when its ``vc`` is this VC, ``length`` is not 0 and ``prbs`` matches ``msg``. A good
    header's ``msg`` is compared with the expected number ``e`` (0 at reset): equal, ``e``
    becomes ``msg + 1``; ahead (``msg - e`` mod 2**32 below 2**31), ``gaps`` counts one and
    ``e`` becomes ``msg + 1``; behind, ``duplicates_or_reorders`` counts one and ``e`` stays.
    A bad header is taken for the expected message (``e`` advances by one) so that one
    corrupted header counts once, as a content error. ``content_errors`` counts a message
    once if its header is bad, a slot differs from the PRBS, or ``last`` is not exactly on
    slot ``length - 1``. Latency statistics cover messages with a good header.
    """

    def __init__(self, *, vcs, seed_width=32):
        _check_vcs(vcs)
        _check_seed_width(seed_width)
        self._vcs = vcs
        super().__init__({
            "i":        In(stream.Signature(LINK_SLOT)).array(vcs),
            "cfg":      In(check_cfg_layout(vcs=vcs, seed_width=seed_width)),
            "now":      In(32),
            "counters": Out(data.ArrayLayout(TRAFFIC_COUNTERS, vcs),
                            init=[{"latency_min": _ALL_ONES}] * vcs),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        seed_q = Signal.like(cfg.seed)
        m.d.sync += seed_q.eq(cfg.seed)
        for v in range(self._vcs):
            i = self.i[v]
            cnt = self.counters[v]
            thr = cfg.stall_threshold[v]
            stall_rng = _rng32(m, cfg.seed, seed_q, CHECK_STALL_KEYS[v], f"stall_rng{v}")
            m.d.comb += i.ready.eq((stall_rng >= thr) & (thr != _ALL_ONES))

            in_msg = Signal(name=f"in_msg{v}")
            slot = Signal(4, name=f"slot{v}")      # index of the next slot (saturates at 15)
            msg = Signal(32, name=f"msg{v}")
            length = Signal(4, name=f"length{v}")
            stamp = Signal(32, name=f"stamp{v}")
            err = Signal(name=f"err{v}")
            good = Signal(name=f"good{v}")
            expected = Signal(32, name=f"expected{v}")

            hdr = data.View(TRAFFIC_HEADER, i.payload.data)
            prbs = _prbs(m, v, Mux(in_msg, msg, hdr.msg), Mux(in_msg, slot, 0), f"prbs{v}")
            hdr_good = (hdr.vc == v) & (hdr.length != 0) & (hdr.prbs == prbs[:56])
            cur_len = Mux(in_msg, length, hdr.length)
            cur_slot = Mux(in_msg, slot, 0)
            last_ok = i.payload.last == (cur_slot == cur_len - 1)
            slot_err = Mux(in_msg, i.payload.data != prbs, ~hdr_good) | ~last_ok
            err_now = (in_msg & err) | slot_err
            good_now = Mux(in_msg, good, hdr_good)
            latency = Signal(32, name=f"latency{v}")
            m.d.comb += latency.eq(self.now - Mux(in_msg, stamp, hdr.stamp))

            with m.If(i.valid & i.ready):
                m.d.sync += cnt.slots.eq(cnt.slots + 1)
                with m.If(~in_msg):
                    m.d.sync += [
                        msg.eq(hdr.msg),
                        length.eq(hdr.length),
                        stamp.eq(hdr.stamp),
                        good.eq(hdr_good),
                    ]
                    ahead = hdr.msg - expected
                    with m.If(~hdr_good):
                        m.d.sync += expected.eq(expected + 1)
                    with m.Elif(ahead == 0):
                        m.d.sync += expected.eq(hdr.msg + 1)
                    with m.Elif(~ahead[31]):
                        m.d.sync += [
                            cnt.gaps.eq(cnt.gaps + 1),
                            expected.eq(hdr.msg + 1),
                        ]
                    with m.Else():
                        m.d.sync += cnt.duplicates_or_reorders.eq(
                            cnt.duplicates_or_reorders + 1)
                with m.If(i.payload.last):
                    m.d.sync += [
                        in_msg.eq(0),
                        slot.eq(0),
                        cnt.messages.eq(cnt.messages + 1),
                        cnt.content_errors.eq(cnt.content_errors + err_now),
                    ]
                    with m.If(good_now):
                        m.d.sync += [
                            cnt.latency_sum.eq(cnt.latency_sum + latency),
                            cnt.latency_max.eq(Mux(latency > cnt.latency_max, latency,
                                                   cnt.latency_max)),
                            cnt.latency_min.eq(Mux(latency < cnt.latency_min, latency,
                                                   cnt.latency_min)),
                        ]
                with m.Else():
                    m.d.sync += [
                        in_msg.eq(1),
                        slot.eq(Mux(cur_slot == SLOTS, SLOTS, cur_slot + 1)),
                        err.eq(err_now),
                    ]
        return m
