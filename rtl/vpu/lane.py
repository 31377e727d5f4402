"""One lane of the vector engine: every per-element step of every vector-unit command.

The lane is combinational: the engine registers its output. Its operations (:class:`LaneOp`)
are the per-element steps the engine's passes need; each one is exactly the golden model's
sequence of FP32 operations for that step (``golden_model/vpu.py``), built from the chip's
FP32 adder and multiplier, the special-function builders of :mod:`.sfu`, the compare of
:mod:`.alu` and the format converters of :mod:`rtl.numerics`.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from ..layouts import FP32_CANONICAL_NAN, Format, VpuOp
from ..numerics import Pipe, add_f32, product_f32
from ..numerics.convert import (
    F32_TO_FORMAT_OPERANDS, FORMAT_TO_F32_OPERANDS, f32_to_format, format_to_f32,
)
from ..numerics.fpcore import check_formats, flag_bits
from ..shared import module_name
from .alu import compare_f32
from golden_model import vpu as gold

from .sfu import (_INF, _TINY, _below, _exp_parts, _exp_range, _negate, _Ops, _scale2,
                  recip_f32, rsqrt_f32)


__all__ = ["LaneOp", "VectorLane", "lane_module_name"]


class LaneOp(enum.Enum, shape=5):
    """Per-element steps. ``a, b, c, d``: the operands read from memory; ``t``: the engine's
    scalar register (a reduction's result); ``s1, s2``: the command's scalars."""
    ADD       = 0    # a + b
    SUB       = 1    # a − b
    MUL       = 2    # a · b
    MAX       = 3    # maximum(a, b)
    LT        = 4    # quiet compares, 1.0 / 0.0
    LE        = 5
    EQ        = 6
    COPY      = 7    # a (bits unchanged)
    SCALE     = 8    # a · s1
    BCAST     = 9    # s1
    EXP       = 10
    RECIP     = 11
    RSQRT     = 12
    SIGMOID   = 13
    SILU      = 14
    SWIGLU    = 15   # silu(a) · b
    ROPE_LO   = 16   # a·c − b·d
    ROPE_HI   = 17   # a·c + b·d
    SQ        = 18   # a · a
    EXP_SUB   = 19   # exp(a − t)
    MUL_T     = 20   # a · t
    RMS       = 21   # (a · t) · b
    RSQRT_AFF = 22   # rsqrt(a · s1 + s2)
    CVT_TO    = 23   # code of a in fmt, E8M0 scale
    CVT_FROM  = 24   # FP32 of code a in fmt, E8M0 scale


def lane_module_name(formats):
    return module_name("m890_vlane_", ",".join(sorted(f.name for f in formats)))


def _neg(bits):
    return Cat(bits[:31], ~bits[31])


def _exp_family(m, x, arg_sub, *, sub, sig, silu, name="ef"):
    """exp, sigmoid and silu of one lane on one shared exp datapath and reciprocal.

    The steps are those of :func:`~.sfu.exp_f32`, :func:`~.sfu.sigmoid_f32`,
    :func:`~.sfu.silu_f32` and :func:`~.sfu.recip_f32` (and so of the golden model), but one
    lane computes only one of them at a time, so they share the Cody–Waite/Horner datapath
    and the reciprocal: exp's argument is ``x`` (EXP), ``arg_sub`` (``x − t``, softmax), or for
    sigmoid/silu ``x`` below SIGMOID_LO and ``−x`` above. silu below SIGMOID_LO scales
    ``x·p`` instead of ``p``.

    Returns ``{"exp", "exp_flags", "recip", "recip_flags", "sigmoid", "sigmoid_flags",
    "silu", "silu_flags"}``; ``recip`` is of ``x`` unless ``sig``.
    """
    ops = _Ops(m, name)
    mag = x[:31]
    finite_x = mag < _INF
    lo = ops.sig(_below(x, gold.SIGMOID_LO), 1)
    arg = ops.sig(Mux(sub, arg_sub, Mux(sig & ~lo, _negate(x), x)), 32)
    is_nan, above, below = _exp_range(arg)
    p, n = _exp_parts(ops, m, arg, f"{name}_e")
    silu_lo = silu & lo
    y = _scale2(ops, m, Mux(silu_lo, ops.mul(x, p), p), n, f"{name}_e")
    e = ops.sig(Mux(is_nan, FP32_CANONICAL_NAN, Mux(above, _INF, Mux(below, 0, y))), 32)
    arg_finite = arg[:31] < _INF
    e_flags = Signal(3, name=f"{name}_exp_flags")
    m.d.comb += e_flags.eq(flag_bits(overflow=arg_finite & (e == _INF),
                                     underflow=arg_finite & arg[31] & (arg[:31] >= _TINY)))

    r, r_flags = recip_f32(m, ops.sig(Mux(sig, ops.add(0x3F800000, e), x), 32),
                           name=f"{name}_recip")
    sigm = ops.sig(Mux(lo, e, r), 32)
    sig_flags = Signal(3, name=f"{name}_sigmoid_flags")
    m.d.comb += sig_flags.eq(flag_bits(underflow=finite_x & x[31] & (mag >= _TINY)))

    hi = ops.mul(x, r)
    silu_r = ops.sig(Mux(mag > _INF, FP32_CANONICAL_NAN,
                         Mux(lo, Mux(_below(x, gold._EXP_LO), 0x80000000, y), hi)), 32)
    silu_flags = Signal(3, name=f"{name}_silu_flags")
    m.d.comb += silu_flags.eq(flag_bits(
        underflow=finite_x & (mag != 0) & (silu_r[:31] < 0x00800000)))
    return {"exp": e, "exp_flags": e_flags, "recip": r, "recip_flags": r_flags,
            "sigmoid": sigm, "sigmoid_flags": sig_flags, "silu": silu_r,
            "silu_flags": silu_flags}


class VectorLane(wiring.Component):
    """One combinational lane (see the module docstring).

    Parameters
    ----------
    formats : set of Format
        Formats the conversions implement (``ChipConfig.formats``).
    """

    #: Ports: name → (direction, shape).
    PORTS = {
        "op":    (In, LaneOp),
        "fmt":   (In, 4),
        "scale": (In, 8),
        "a":     (In, 32),
        "b":     (In, 32),
        "c":     (In, 32),
        "d":     (In, 32),
        "t":     (In, 32),
        "s1":    (In, 32),
        "s2":    (In, 32),
        "r":     (Out, 32),
        "flags": (Out, 3),
    }

    def __init__(self, *, formats):
        self._formats = check_formats(formats)
        super().__init__({port: flow(shape) for port, (flow, shape) in self.PORTS.items()})

    def elaborate(self, platform):
        m = Module()
        op, a, b, c, d, t = self.op, self.a, self.b, self.c, self.d, self.t
        comb = Pipe(enable=1, pipelined=False)

        def mul(x, y, name):
            return product_f32(m, x, y, Format.FP32, Format.FP32, 127, 127,
                               formats={Format.FP32}, name=name)

        m1_b = Signal(32)
        with m.Switch(op):
            with m.Case(LaneOp.SCALE, LaneOp.RSQRT_AFF):
                m.d.comb += m1_b.eq(self.s1)
            with m.Case(LaneOp.SQ):
                m.d.comb += m1_b.eq(a)
            with m.Case(LaneOp.MUL_T, LaneOp.RMS):
                m.d.comb += m1_b.eq(t)
            with m.Case(LaneOp.ROPE_LO, LaneOp.ROPE_HI):
                m.d.comb += m1_b.eq(c)
            with m.Default():
                m.d.comb += m1_b.eq(b)
        m1 = mul(a, m1_b, "m1")

        rms = op == LaneOp.RMS
        m2 = mul(Mux(rms, m1.result, b), Mux(rms, b, d), "m2")

        add_a, add_b = Signal(32), Signal(32)
        with m.Switch(op):
            with m.Case(LaneOp.SUB):
                m.d.comb += [add_a.eq(a), add_b.eq(_neg(b))]
            with m.Case(LaneOp.ROPE_LO):
                m.d.comb += [add_a.eq(m1.result), add_b.eq(_neg(m2.result))]
            with m.Case(LaneOp.ROPE_HI):
                m.d.comb += [add_a.eq(m1.result), add_b.eq(m2.result)]
            with m.Case(LaneOp.EXP_SUB):
                m.d.comb += [add_a.eq(a), add_b.eq(_neg(t))]
            with m.Case(LaneOp.RSQRT_AFF):
                m.d.comb += [add_a.eq(m1.result), add_b.eq(self.s2)]
            with m.Default():
                m.d.comb += [add_a.eq(a), add_b.eq(b)]
        a1 = add_f32(m, add_a, add_b, pipe=comb, name="a1")

        ef = _exp_family(m, a, a1.result, sub=op == LaneOp.EXP_SUB,
                         sig=(op == LaneOp.SIGMOID) | (op == LaneOp.SILU) |
                             (op == LaneOp.SWIGLU),
                         silu=(op == LaneOp.SILU) | (op == LaneOp.SWIGLU))
        e_r, e_f = ef["exp"], ef["exp_flags"]
        r_r, r_f = ef["recip"], ef["recip_flags"]
        g_r, g_f = ef["sigmoid"], ef["sigmoid_flags"]
        l_r, l_f = ef["silu"], ef["silu_flags"]
        q_r, q_f = rsqrt_f32(m, Mux(op == LaneOp.RSQRT_AFF, a1.result, a), name="rsqrt")
        m3 = mul(l_r, b, "m3")
        cmp = compare_f32(m, op.as_value()[:4], a, b, name="cmp")

        to_p = Signal(F32_TO_FORMAT_OPERANDS)
        from_p = Signal(FORMAT_TO_F32_OPERANDS)
        m.d.comb += [
            to_p.value.eq(a), to_p.fmt.eq(self.fmt), to_p.scale.eq(self.scale),
            from_p.code.eq(a), from_p.fmt.eq(self.fmt), from_p.scale.eq(self.scale),
        ]
        to = f32_to_format(m, to_p, comb, formats=self._formats)
        fr = format_to_f32(m, from_p, comb, formats=self._formats)

        r, f = self.r, self.flags
        with m.Switch(op):
            with m.Case(LaneOp.ADD, LaneOp.SUB):
                m.d.comb += [r.eq(a1.result), f.eq(a1.flags)]
            with m.Case(LaneOp.MUL, LaneOp.SCALE, LaneOp.SQ, LaneOp.MUL_T):
                m.d.comb += [r.eq(m1.result), f.eq(m1.flags)]
            with m.Case(LaneOp.MAX, LaneOp.LT, LaneOp.LE, LaneOp.EQ):
                m.d.comb += [r.eq(cmp), f.eq(0)]
            with m.Case(LaneOp.COPY):
                m.d.comb += [r.eq(a), f.eq(0)]
            with m.Case(LaneOp.BCAST):
                m.d.comb += [r.eq(self.s1), f.eq(0)]
            with m.Case(LaneOp.EXP):
                m.d.comb += [r.eq(e_r), f.eq(e_f)]
            with m.Case(LaneOp.EXP_SUB):
                m.d.comb += [r.eq(e_r), f.eq(e_f | a1.flags)]
            with m.Case(LaneOp.RECIP):
                m.d.comb += [r.eq(r_r), f.eq(r_f)]
            with m.Case(LaneOp.RSQRT):
                m.d.comb += [r.eq(q_r), f.eq(q_f)]
            with m.Case(LaneOp.RSQRT_AFF):
                m.d.comb += [r.eq(q_r), f.eq(q_f | a1.flags | m1.flags)]
            with m.Case(LaneOp.SIGMOID):
                m.d.comb += [r.eq(g_r), f.eq(g_f)]
            with m.Case(LaneOp.SILU):
                m.d.comb += [r.eq(l_r), f.eq(l_f)]
            with m.Case(LaneOp.SWIGLU):
                m.d.comb += [r.eq(m3.result), f.eq(l_f | m3.flags)]
            with m.Case(LaneOp.ROPE_LO, LaneOp.ROPE_HI):
                m.d.comb += [r.eq(a1.result), f.eq(m1.flags | m2.flags | a1.flags)]
            with m.Case(LaneOp.RMS):
                m.d.comb += [r.eq(m2.result), f.eq(m1.flags | m2.flags)]
            with m.Case(LaneOp.CVT_TO):
                m.d.comb += [r.eq(to["code"]), f.eq(to["flags"])]
            with m.Case(LaneOp.CVT_FROM):
                m.d.comb += [r.eq(fr["value"]), f.eq(fr["flags"])]
            with m.Default():
                m.d.comb += [r.eq(FP32_CANONICAL_NAN), f.eq(0)]
        return m


# The compare's op codes are the low bits of the lane's.
assert all(LaneOp[o.name].value == o.value for o in VpuOp)
