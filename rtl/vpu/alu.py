"""The vector unit's elementwise ALU: V FP32 lanes of add, sub, mul, max and compares."""

from amaranth.hdl import Mux, Signal
from amaranth.lib import data

from ..layouts import FP32_CANONICAL_NAN, Format, VpuOp
from ..numerics import StreamPipeline, add_f32, product_f32
from ..numerics.fpcore import decode_format


__all__ = ["vpu_alu_operands", "vpu_alu_result", "compare_f32", "VectorALU"]

_ONE = 0x3F800000


def vpu_alu_operands(lanes):
    return data.StructLayout({
        "op": VpuOp,
        "a":  data.ArrayLayout(32, lanes),
        "b":  data.ArrayLayout(32, lanes),
    })


def vpu_alu_result(lanes):
    return data.StructLayout({
        "r":     data.ArrayLayout(32, lanes),
        "flags": data.ArrayLayout(3, lanes),
    })


class VectorALU(StreamPipeline):
    """``r[i] = a[i] op b[i]`` on ``lanes`` FP32 lanes, one vector per cycle.

    ADD/SUB/MUL are IEEE binary32 with round to nearest even, subnormals and canonical NaN, with
    their flags; MAX is IEEE 754-2019 ``maximum``; LT/LE/EQ are quiet compares giving 1.0 or
    0.0. Every lane has the latency of the adder (:attr:`latency`: 3 pipelined, else 1); the
    multiplier and the compares are registered to match.

    Parameters
    ----------
    lanes : int
        Lanes (``ChipConfig.vpu_lanes``).
    pipelined : bool
        Insert the stage registers.
    """

    STAGES = 2

    def __init__(self, *, lanes, pipelined=True):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self._lanes = lanes
        super().__init__(vpu_alu_operands(lanes), vpu_alu_result(lanes), pipelined=pipelined)

    def datapath(self, m, p, pipe):
        # The op rides the unit's own pipe; each lane's adder, multiplier and compare path has
        # its own registers on the same enable, as many as the adder's.
        op = pipe.cut(m, op=p.op)
        op = pipe.cut(m, op=op.op).op
        out_r = Signal(data.ArrayLayout(32, self._lanes))
        out_f = Signal(data.ArrayLayout(3, self._lanes))
        for i in range(self._lanes):
            a, b = p.a[i], p.b[i]
            b_add = Mux(p.op == VpuOp.SUB, b ^ (1 << 31), b)
            s = add_f32(m, a, b_add, pipe=pipe.sibling(), name=f"add{i}")
            mul_pipe = pipe.sibling()
            prod = product_f32(m, a, b, Format.FP32, Format.FP32, 127, 127,
                               formats={Format.FP32}, pipe=mul_pipe, name=f"mul{i}")
            mul = mul_pipe.cut(m, result=prod.result, flags=prod.flags)
            other_pipe = pipe.sibling()
            other = other_pipe.cut(m, value=compare_f32(m, p.op, a, b, name=f"cmp{i}"))
            other = other_pipe.cut(m, value=other.value)
            with m.Switch(op):
                with m.Case(VpuOp.ADD, VpuOp.SUB):
                    m.d.comb += [out_r[i].eq(s.result), out_f[i].eq(s.flags)]
                with m.Case(VpuOp.MUL):
                    m.d.comb += [out_r[i].eq(mul.result), out_f[i].eq(mul.flags)]
                with m.Default():
                    m.d.comb += [out_r[i].eq(other.value), out_f[i].eq(0)]
        return {"r": out_r, "flags": out_f}


def compare_f32(m, op, a_bits, b_bits, *, name="cmp"):
    """MAX (IEEE maximum), LT, LE or EQ (quiet; 1.0 or 0.0) of FP32 codes by ``op`` (a
    :class:`VpuOp`); any other op gives the canonical NaN."""
    a = decode_format(m, a_bits, Format.FP32, sig_width=24, name=f"{name}_a")
    b = decode_format(m, b_bits, Format.FP32, sig_width=24, name=f"{name}_b")
    nan = a.nan | b.nan
    # Total order on the magnitude bits, then signs: a < b as numbers (zeros equal).
    both_zero = (a_bits[:31] == 0) & (b_bits[:31] == 0)
    a_mag, b_mag = a_bits[:31], b_bits[:31]
    lt_num = Signal(name=f"{name}_lt")
    m.d.comb += lt_num.eq(~both_zero & Mux(
        a.sign != b.sign, a.sign,                          # negative < positive
        Mux(a.sign, a_mag > b_mag, a_mag < b_mag)))
    eq_num = both_zero | (a_bits == b_bits)
    # maximum: b if a < b, or a = −0 and b = +0.
    b_wins = lt_num | (both_zero & a.sign & ~b.sign)
    value = Signal(32, name=f"{name}_value")
    with m.Switch(op):
        with m.Case(VpuOp.MAX):
            m.d.comb += value.eq(Mux(nan, FP32_CANONICAL_NAN, Mux(b_wins, b_bits, a_bits)))
        with m.Case(VpuOp.LT):
            m.d.comb += value.eq(Mux(~nan & lt_num, _ONE, 0))
        with m.Case(VpuOp.LE):
            m.d.comb += value.eq(Mux(~nan & (lt_num | eq_num), _ONE, 0))
        with m.Case(VpuOp.EQ):
            m.d.comb += value.eq(Mux(~nan & eq_num, _ONE, 0))
        with m.Default():
            m.d.comb += value.eq(FP32_CANONICAL_NAN)
    return value
