"""The vector engine: command checks, operand walks, passes over rows, reductions, write-back.

One command (``rtl.layouts.VPU_COMMAND``) processes ``rows`` rows of ``length`` elements,
``docs/vpu.md`` being the contract. The engine checks the command (rejecting it with a status
and touching nothing), then runs each row as a short program of *passes* (:data:`PROGRAMS`):

* a **map** pass walks the row chunk by chunk (V elements, one per lane): it reads the chunk
  of each source operand, computes the V lanes (:class:`~.lane.VectorLane`, one step each),
  writes the results to the destination and/or feeds them to a reduction;
* a **reduction** consumes the lanes' results one element per cycle *in index order* (the
  golden rule: compensated sum, IEEE maximum, argmax), or, for the MX scale, the largest
  magnitude of the chunk at once (an integer maximum, whose order does not matter);
* a **scalar** pass runs one lane step on the reduction's result (``recip``, ``rsqrt``) and
  keeps it in the scalar register ``t`` that later passes broadcast to every lane;
* the **store**, **MX scale** and **gather index** passes write a reduction's result, compute
  and write an MX block scale (or read it back), and read a gather index.

The FP flags of every valid element are ORed into the command's flags, which are also ORed
into the sticky :attr:`VectorEngine.flags` register.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ..layouts import (E8M0_BIAS, E8M0_NAN, FLOAT_SPECS, MAX_DIM, MAX_VLEN, MX_BLOCK,
                       VPU_COMMAND, VPU_OPERAND, VPU_STATUS, Format, Status, VpuCmd, code_width,
                       element_format, is_mx)
from ..memory import ACC_WRITE, SPAD_WRITE, AccReadSignature, SpadReadSignature
from ..numerics import Pipe, add_f32
from ..shared import shared_instance
from .alu import compare_f32
from .lane import LaneOp, VectorLane, lane_module_name


__all__ = ["VPU_COUNTERS", "PassKind", "Reduce", "PROGRAMS", "VectorEngine"]


#: Performance counters (cumulative since reset, 64 bits each).
VPU_COUNTERS = data.StructLayout({
    "busy":     64,   # cycles with a command in the engine
    "commands": 64,   # commands completed (any status)
    "chunks":   64,   # chunks computed by map passes
})


class PassKind(enum.Enum, shape=3):
    MAP       = 0
    SCALAR    = 1   # t = lane0(op, a = t)
    STORE     = 2   # dst word 0 of the row = t (argmax: the index)
    MX_SCALE  = 3   # scale = E8M0 of the block's largest magnitude; write it to b
    MX_LOAD   = 4   # scale = the byte at b
    GATHER    = 5   # the a row of this row: a.addr + b[r] · a.row


class Reduce(enum.Enum, shape=3):
    NONE   = 0
    SUM    = 1   # compensated (Kahan) sum in index order
    MAX    = 2   # IEEE maximum in index order
    ARGMAX = 3
    AMAX   = 4   # largest magnitude bits (MX scale)


#: Sources of a map pass: bit k reads operand k (a, b, c, d).
A, B, C, D = 1, 2, 4, 8

PASS = data.StructLayout({
    "kind":     PassKind,
    "op":       LaneOp,
    "srcs":     4,
    "a_is_dst": 1,   # source a is read from the destination operand
    "write":    1,   # write the lanes' results to the destination
    "reduce":   Reduce,
    "causal":   1,   # elements beyond the causal limit read as −inf
})


def _p(kind=PassKind.MAP, op=LaneOp.COPY, srcs=0, a_is_dst=0, write=0, reduce=Reduce.NONE,
       causal=0):
    return {"kind": kind, "op": op, "srcs": srcs, "a_is_dst": a_is_dst, "write": write,
            "reduce": reduce, "causal": causal}


def _map(op, srcs, **kw):
    return _p(op=op, srcs=srcs, write=1, **kw)


_ELEMENTWISE = {
    VpuCmd.ADD: (LaneOp.ADD, A | B), VpuCmd.SUB: (LaneOp.SUB, A | B),
    VpuCmd.MUL: (LaneOp.MUL, A | B), VpuCmd.MAX: (LaneOp.MAX, A | B),
    VpuCmd.LT: (LaneOp.LT, A | B), VpuCmd.LE: (LaneOp.LE, A | B), VpuCmd.EQ: (LaneOp.EQ, A | B),
    VpuCmd.SCALE: (LaneOp.SCALE, A), VpuCmd.BCAST: (LaneOp.BCAST, 0),
    VpuCmd.EXP: (LaneOp.EXP, A), VpuCmd.RECIP: (LaneOp.RECIP, A),
    VpuCmd.RSQRT: (LaneOp.RSQRT, A), VpuCmd.SIGMOID: (LaneOp.SIGMOID, A),
    VpuCmd.SILU: (LaneOp.SILU, A), VpuCmd.SWIGLU: (LaneOp.SWIGLU, A | B),
    VpuCmd.ROPE_LO: (LaneOp.ROPE_LO, A | B | C | D),
    VpuCmd.ROPE_HI: (LaneOp.ROPE_HI, A | B | C | D),
}

#: The passes of each command (per row; MX conversions: per 32-element block).
PROGRAMS = {
    **{cmd: [_map(op, srcs)] for cmd, (op, srcs) in _ELEMENTWISE.items()},
    VpuCmd.SUM:     [_p(op=LaneOp.COPY, srcs=A, reduce=Reduce.SUM), _p(kind=PassKind.STORE)],
    VpuCmd.SUMSQ:   [_p(op=LaneOp.SQ, srcs=A, reduce=Reduce.SUM), _p(kind=PassKind.STORE)],
    VpuCmd.RMAX:    [_p(op=LaneOp.COPY, srcs=A, reduce=Reduce.MAX), _p(kind=PassKind.STORE)],
    VpuCmd.ARGMAX:  [_p(op=LaneOp.COPY, srcs=A, reduce=Reduce.ARGMAX), _p(kind=PassKind.STORE)],
    VpuCmd.RMSNORM: [_p(op=LaneOp.SQ, srcs=A, reduce=Reduce.SUM),
                     _p(kind=PassKind.SCALAR, op=LaneOp.RSQRT_AFF),
                     _map(LaneOp.RMS, A | B)],
    VpuCmd.SOFTMAX: [_p(op=LaneOp.COPY, srcs=A, reduce=Reduce.MAX, causal=1),
                     _map(LaneOp.EXP_SUB, A, reduce=Reduce.SUM, causal=1),
                     _p(kind=PassKind.SCALAR, op=LaneOp.RECIP),
                     _map(LaneOp.MUL_T, A, a_is_dst=1)],
    VpuCmd.CVT_TO:  [_map(LaneOp.CVT_TO, A)],
    VpuCmd.CVT_FROM: [_map(LaneOp.CVT_FROM, A)],
    VpuCmd.GATHER:  [_p(kind=PassKind.GATHER), _map(LaneOp.COPY, A)],
}
#: MX conversions, per block.
MX_PROGRAMS = {
    VpuCmd.CVT_TO:   [_p(op=LaneOp.COPY, srcs=A, reduce=Reduce.AMAX),
                      _p(kind=PassKind.MX_SCALE), _map(LaneOp.CVT_TO, A)],
    VpuCmd.CVT_FROM: [_p(kind=PassKind.MX_LOAD), _map(LaneOp.CVT_FROM, A)],
}
MAX_PASSES = max(len(p) for p in (*PROGRAMS.values(), *MX_PROGRAMS.values()))


class Role(enum.Enum, shape=3):
    """What an operand is to its command (its geometry follows)."""
    UNUSED = 0
    VECTOR = 1   # FP32 elements, ceil(L/V) chunks per row
    ONE    = 2   # one FP32 / uint32 word per row (chunk 0, word 0)
    CODES  = 3   # codes of the command's format, ceil(L/V) chunks per row
    SCALES = 4   # MX scale bytes, one per block: L/32 "chunks" of one byte per row
    TABLE  = 5   # FP32 vectors, ``query`` rows (the gather table)


def _roles(cmd, mx):
    """``[role of a, b, c, d, dst]`` for a command."""
    U, V_, ONE = Role.UNUSED, Role.VECTOR, Role.ONE
    if cmd is VpuCmd.BCAST:
        return [U, U, U, U, V_]
    if cmd in (VpuCmd.SUM, VpuCmd.SUMSQ, VpuCmd.RMAX, VpuCmd.ARGMAX):
        return [V_, U, U, U, ONE]
    if cmd in (VpuCmd.ROPE_LO, VpuCmd.ROPE_HI):
        return [V_, V_, V_, V_, V_]
    if cmd is VpuCmd.GATHER:
        return [Role.TABLE, ONE, U, U, V_]
    if cmd is VpuCmd.CVT_TO:
        return [V_, Role.SCALES if mx else U, U, U, Role.CODES]
    if cmd is VpuCmd.CVT_FROM:
        return [Role.CODES, Role.SCALES if mx else U, U, U, V_]
    srcs = PROGRAMS[cmd][-1]["srcs"] if cmd in _ELEMENTWISE else A
    if cmd is VpuCmd.RMSNORM:
        srcs = A | B
    return [V_ if srcs & (1 << k) else U for k in range(4)] + [V_]


def _log2(x):
    return x.bit_length() - 1


class VectorEngine(wiring.Component):
    """The vector engine (see the module docstring and ``docs/vpu.md``).

    Parameters
    ----------
    cfg : ChipConfig
    spad_addr_width, acc_addr_width : int
        Address widths of the scratchpad (lines) and the accumulator (rows).
    shared_lane : bool
        Instantiate the lanes as one shared Verilog module (Verilog generation).

    Members
    -------
    cmd : ``In(stream.Signature(VPU_COMMAND))``
    status : ``Out(stream.Signature(VPU_STATUS))``
        One per command, when it has completed (or been rejected).
    spad_read : ``Out(SpadReadSignature)``, spad_write : ``Out(stream.Signature(SPAD_WRITE))``
    acc_read : ``Out(AccReadSignature)``, acc_write : ``Out(stream.Signature(ACC_WRITE))``
    flags : ``Out(3)``
        Sticky FP flags: the OR of every command's flags since the last ``flags_clear``.
    flags_clear : ``In(1)``
    counters : ``Out(VPU_COUNTERS)``
    """

    def __init__(self, cfg, *, spad_addr_width, acc_addr_width, shared_lane=False):
        self._cfg = cfg
        self._shared_lane = shared_lane
        lb = cfg.spad_line_bytes
        super().__init__({
            "cmd":         In(stream.Signature(VPU_COMMAND)),
            "status":      Out(stream.Signature(VPU_STATUS)),
            "spad_read":   Out(SpadReadSignature(line_bits=8 * lb, addr_width=spad_addr_width)),
            "spad_write":  Out(stream.Signature(SPAD_WRITE(lb, spad_addr_width))),
            "acc_read":    Out(AccReadSignature(cols=cfg.mxu_cols, addr_width=acc_addr_width)),
            "acc_write":   Out(stream.Signature(ACC_WRITE(cfg.mxu_cols, acc_addr_width))),
            "flags":       Out(3),
            "flags_clear": In(1),
            "counters":    Out(VPU_COUNTERS),
        })

    def _lane(self, m, i):
        formats = self._cfg.formats
        if not self._shared_lane:
            lane = VectorLane(formats=formats)
            m.submodules[f"lane{i}"] = lane
            return lane
        return shared_instance(m, module=lane_module_name(formats), ports=VectorLane.PORTS,
                               factory=lambda: VectorLane(formats=formats),
                               instance=f"lane{i}", clocked=False)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        V = cfg.vpu_lanes
        LB = cfg.spad_line_bytes
        lb_log2 = _log2(LB)
        formats = sorted(cfg.formats, key=lambda f: f.value)
        widths = sorted({code_width(f) for f in formats} | {8, 32})

        cmd = Signal(VPU_COMMAND)
        opnd = [cmd.a, cmd.b, cmd.c, cmd.d, cmd.dst]
        op = cmd.op
        fmt = cmd.fmt
        status = Signal(Status)
        cmd_flags = Signal(3)

        # ---- static properties of the command --------------------------------------------
        known = Signal()
        mx = Signal()          # an MX conversion (its program runs per block)
        fmt_ok = Signal()
        fmt_w = Signal(6)      # code width of fmt
        emax = Signal(range(16))
        roles = [Signal(3, name=f"role{k}") for k in range(5)]
        with m.Switch(fmt):
            for f in formats:
                with m.Case(f):
                    m.d.comb += [fmt_ok.eq(1), fmt_w.eq(code_width(f))]
                    if is_mx(f):
                        m.d.comb += emax.eq(FLOAT_SPECS[element_format(f)].emax)
        is_cvt = (op == VpuCmd.CVT_TO) | (op == VpuCmd.CVT_FROM)
        m.d.comb += mx.eq(is_cvt & fmt_ok & Cat(*[fmt == f for f in formats if is_mx(f)]).any()
                          if any(is_mx(f) for f in formats) else 0)
        with m.Switch(op):
            for c in VpuCmd:
                with m.Case(c):
                    m.d.comb += known.eq(1)
                    plain = [roles[k].eq(x.value) for k, x in enumerate(_roles(c, False))]
                    if c in MX_PROGRAMS:
                        with m.If(mx):
                            m.d.comb += [roles[k].eq(x.value)
                                         for k, x in enumerate(_roles(c, True))]
                        with m.Else():
                            m.d.comb += plain
                    else:
                        m.d.comb += plain

        length, rows = cmd.length, cmd.rows
        nch = Signal(32)        # chunks per row
        m.d.comb += nch.eq((length + V - 1) >> _log2(V))
        seg_chunks = MX_BLOCK // V
        vb32 = 4 * V            # bytes of an FP32 vector
        codes_vb = Signal(range(vb32 + 1))
        m.d.comb += codes_vb.eq((V * fmt_w) >> 3)

        # ---- the check sequence: operands one per cycle, alignment sweep then range sweep -
        k_chk = Signal(range(5))
        sweep = Signal()        # 0 alignment, 1 range
        o = Signal(VPU_OPERAND)
        role = Signal(3)
        with m.Switch(k_chk):
            for k in range(5):
                with m.Case(k):
                    m.d.comb += [o.eq(opnd[k]), role.eq(roles[k])]
        unit = Signal(32)       # bytes of a chunk (scratchpad) or 1 row
        o_chunks = Signal(32)
        o_rows = Signal(32)
        with m.Switch(role):
            with m.Case(Role.ONE.value):
                m.d.comb += [unit.eq(vb32), o_chunks.eq(1), o_rows.eq(rows)]
            with m.Case(Role.CODES.value):
                m.d.comb += [unit.eq(codes_vb), o_chunks.eq(nch), o_rows.eq(rows)]
            with m.Case(Role.SCALES.value):
                m.d.comb += [unit.eq(1), o_chunks.eq(length >> _log2(MX_BLOCK)),
                             o_rows.eq(rows)]
            with m.Case(Role.TABLE.value):
                m.d.comb += [unit.eq(vb32), o_chunks.eq(nch), o_rows.eq(cmd.query)]
            with m.Default():
                m.d.comb += [unit.eq(vb32), o_chunks.eq(nch), o_rows.eq(rows)]
        in_acc = o.space
        misaligned = Signal()
        m.d.comb += misaligned.eq(~in_acc & (((o.addr | o.chunk | o.row) & (unit - 1)) != 0))
        end = Signal(96)
        m.d.comb += end.eq(o.addr + (o_rows - 1) * o.row + (o_chunks - 1) * o.chunk
                           + Mux(in_acc, 1, unit))
        out_of_range = Signal()
        narrow = ((role == Role.CODES.value) & (fmt_w != 32)) | (role == Role.SCALES.value)
        m.d.comb += out_of_range.eq(Mux(in_acc, (end > cfg.acc_rows) | narrow,
                                        end > cfg.spad_bytes))
        used_reserved = Cat(*[(roles[k] != Role.UNUSED.value) & (opnd[k].reserved != 0)
                              for k in range(5)]).any()

        # ---- lanes --------------------------------------------------------------------------
        lanes = [self._lane(m, i) for i in range(V)]
        opv = [Signal(data.ArrayLayout(32, V), name=f"opv{k}") for k in range(4)]
        t = Signal(32)
        scale = Signal(8)
        res = Signal(data.ArrayLayout(32, V))
        res_valid = Signal(V)
        cur = Signal(PASS)
        pc = Signal(range(MAX_PASSES))
        r = Signal(32)          # row
        j = Signal(32)          # chunk of the row
        seg_j = Signal(32)      # first chunk of the current segment
        e0 = Signal(33)
        m.d.comb += e0.eq(j << _log2(V))
        lane_valid = Signal(V)
        masked = Signal(V)
        limit = Signal(34)
        m.d.comb += limit.eq(cmd.query + r)
        for i in range(V):
            m.d.comb += [
                lane_valid[i].eq(e0 + i < length),
                masked[i].eq(cur.causal & cmd.causal & (e0 + i > limit)),
            ]
        scalar_step = Signal()
        for i, lane in enumerate(lanes):
            a_in = Mux(masked[i], 0xFF800000, opv[0][i])
            if i == 0:
                a_in = Mux(scalar_step, t, a_in)
            m.d.comb += [
                lane.op.eq(cur.op), lane.fmt.eq(fmt), lane.scale.eq(scale),
                lane.a.eq(a_in), lane.b.eq(opv[1][i]), lane.c.eq(opv[2][i]),
                lane.d.eq(opv[3][i]), lane.t.eq(t), lane.s1.eq(cmd.scalar),
                lane.s2.eq(cmd.scalar2),
            ]

        # ---- the program ------------------------------------------------------------------
        with m.Switch(op):
            for c, prog in PROGRAMS.items():
                with m.Case(c):
                    progs = [(Const(1, 1) if c not in MX_PROGRAMS else ~mx, prog)]
                    if c in MX_PROGRAMS:
                        progs.append((mx, MX_PROGRAMS[c]))
                    for cond, pr in progs:
                        with m.If(cond):
                            with m.Switch(pc):
                                for n, ps in enumerate(pr):
                                    with m.Case(n):
                                        m.d.comb += cur.eq(PASS.const(ps))
        n_passes = Signal(range(MAX_PASSES + 1))
        with m.Switch(op):
            for c, prog in PROGRAMS.items():
                with m.Case(c):
                    if c in MX_PROGRAMS:
                        m.d.comb += n_passes.eq(Mux(mx, len(MX_PROGRAMS[c]), len(prog)))
                    else:
                        m.d.comb += n_passes.eq(len(prog))
        seg_end = Signal(32)    # chunk after the current segment
        m.d.comb += seg_end.eq(Mux(mx, seg_j + seg_chunks, nch))

        # ---- operand pointers -------------------------------------------------------------
        row_ptr = [Signal(32, name=f"row_ptr{k}") for k in range(5)]
        seg_ptr = [Signal(32, name=f"seg_ptr{k}") for k in range(5)]
        ptr = [Signal(32, name=f"ptr{k}") for k in range(5)]
        sptr = Signal(32)       # MX scale byte of the current block

        # ---- memory access ----------------------------------------------------------------
        rd_k = Signal(range(5))   # operand read
        rd_slot = Signal(range(4))
        rd_addr = Signal(32)
        m.d.comb += rd_addr.eq(Array(ptr)[rd_k])
        rd_space = Array(o_.space for o_ in opnd)[rd_k]
        rd_off = Signal(lb_log2 + 1)
        line = Signal(8 * LB)
        m.d.comb += line.eq(self.spad_read.data)
        shifted = Signal(8 * LB)
        m.d.comb += shifted.eq(line >> (rd_off << 3))
        got = Signal(data.ArrayLayout(32, V))     # the chunk read, unpacked to 32-bit words
        unpack_w = Signal(6)
        cap_space = Signal()    # the read being captured: accumulator (1) or scratchpad
        cap_codes = Signal()    # ... and holds codes of the command's format
        with m.If(cap_space):
            m.d.comb += got.eq(self.acc_read.data)
        with m.Else():
            with m.Switch(unpack_w):
                for w in widths:
                    with m.Case(w):
                        for i in range(V):
                            m.d.comb += got[i].eq(shifted[i * w:(i + 1) * w])

        # write data
        wr_k = Signal(range(5))
        wr_addr = Signal(32)
        m.d.comb += wr_addr.eq(Array(ptr)[wr_k])
        wr_space = Array(o_.space for o_ in opnd)[wr_k]
        wr_words = Signal(data.ArrayLayout(32, V))
        wr_lanes = Signal(V)
        wr_w = Signal(6)
        wr_bytes_mask = Signal(LB)
        wr_packed = Signal(8 * LB)
        with m.Switch(wr_w):
            for w in widths:
                with m.Case(w):
                    m.d.comb += wr_packed.eq(Cat(*[wr_words[i][:w] for i in range(V)]))
                    per_byte = []
                    for byte in range(V * w // 8):
                        lane_of = (byte * 8) // w
                        per_byte.append(wr_lanes[lane_of])
                    m.d.comb += wr_bytes_mask.eq(Cat(*per_byte))
        wr_off = wr_addr[:lb_log2]
        m.d.comb += [
            self.spad_write.payload.addr.eq(wr_addr >> lb_log2),
            self.spad_write.payload.data.eq(wr_packed << (wr_off << 3)),
            self.spad_write.payload.mask.eq(wr_bytes_mask << wr_off),
            self.acc_write.payload.row.eq(wr_addr),
            self.acc_write.payload.data.eq(wr_words),
            self.acc_write.payload.mask.eq(wr_lanes),
        ]
        wr_go = Signal()
        m.d.comb += [
            self.spad_write.valid.eq(wr_go & ~wr_space),
            self.acc_write.valid.eq(wr_go & wr_space),
        ]
        wr_done = Mux(wr_space, self.acc_write.ready, self.spad_write.ready)

        # ---- reductions -------------------------------------------------------------------
        ks, kc = Signal(32), Signal(32)   # Kahan sum and compensation
        best = Signal(32)
        best_idx = Signal(32)
        amax = Signal(31)
        special = Signal()
        red_i = Signal(range(V))
        x = Signal(32)      # the element the reduction consumes this cycle
        m.d.comb += x.eq(Array(res[i] for i in range(V))[red_i])
        comb = Pipe(enable=1, pipelined=False)
        y0 = add_f32(m, x, Cat(kc[:31], ~kc[31]), pipe=comb, name="kahan_y")
        y = Signal(32)
        m.d.comb += y.eq(Mux(y0.result[23:31] != 0xFF, y0.result, x))           # guard 1
        ts = add_f32(m, ks, y, pipe=comb, name="kahan_t")
        d1 = add_f32(m, ts.result, Cat(ks[:31], ~ks[31]), pipe=comb, name="kahan_d")
        d2 = add_f32(m, d1.result, Cat(y[:31], ~y[31]), pipe=comb, name="kahan_c")
        c_finite = d2.result[23:31] != 0xFF                                     # guard 2
        vmax = compare_f32(m, Const(3, 4), best, x, name="rmax")
        gt = compare_f32(m, Const(4, 4), best, x, name="argmax") != 0    # best < x
        x_nan = (x[23:31] == 0xFF) & (x[:23] != 0)
        best_nan = (best[23:31] == 0xFF) & (best[:23] != 0)
        # Largest magnitude of the valid lanes of a chunk (an integer maximum).
        chunk_amax = Const(0, 31)
        chunk_special = Const(0, 1)
        for i in range(V):
            mag = res[i][:31]
            v_i = res_valid[i]
            step = Signal(31, name=f"chunk_amax{i}")     # a signal per step: no re-expansion
            m.d.comb += step.eq(Mux(v_i & (mag > chunk_amax), mag, chunk_amax))
            chunk_amax = step
            chunk_special = chunk_special | (v_i & (mag >= 0x7F800000))
        # E8M0 of the block: floor(log2(amax)) − emax, clamped, biased.
        a_field = amax[23:31]
        a_frac = amax[:23]
        frac_msb = Signal(range(24))
        for bit in range(23):
            with m.If(a_frac[bit]):
                m.d.comb += frac_msb.eq(bit)
        floor_log2 = Signal(range(-160, 160))
        m.d.comb += floor_log2.eq(Mux(a_field != 0, a_field - 127, frac_msb - 149))
        e_unb = Signal(range(-200, 200))
        m.d.comb += e_unb.eq(floor_log2 - emax)
        mx_scale = Signal(8)
        m.d.comb += mx_scale.eq(Mux(special, E8M0_NAN, Mux(
            amax == 0, 0, Mux(e_unb < -127, 0, Mux(e_unb > 127, 254, e_unb + E8M0_BIAS)))))

        # ---- counters -----------------------------------------------------------------------
        busy = Signal()
        m.d.sync += self.counters.busy.eq(self.counters.busy + busy)
        with m.If(self.flags_clear):
            m.d.sync += self.flags.eq(0)

        gather_idx = Signal(32)
        pending = Signal(4)
        lowest = Signal(range(4))
        for k in reversed(range(4)):
            with m.If(pending[k]):
                m.d.comb += lowest.eq(k)
        remaining = Signal(4)       # CAPTURE: the sources still to read after this one
        m.d.comb += remaining.eq(pending & ~(1 << rd_slot))
        next_slot = Signal(range(4))
        for k in reversed(range(4)):
            with m.If(remaining[k]):
                m.d.comb += next_slot.eq(k)

        def issue(slot):
            """Ask for the chunk of source ``slot`` (``rd_k`` must select its operand); when
            accepted, the data is captured in the next cycle."""
            accepted = rd_space | self.spad_read.ready
            m.d.comb += [
                self.spad_read.valid.eq(~rd_space),
                self.spad_read.addr.eq(rd_addr >> lb_log2),
                self.acc_read.en.eq(rd_space),
                self.acc_read.addr.eq(rd_addr),
            ]
            with m.If(accepted):
                m.d.sync += [rd_off.eq(rd_addr[:lb_log2]), rd_slot.eq(slot),
                             cap_space.eq(rd_space),
                             cap_codes.eq(Array(roles)[rd_k] == Role.CODES.value)]
            return accepted

        def source(slot):
            """The operand a source slot reads (a may read the destination)."""
            return Mux((slot == 0) & cur.a_is_dst, 4, slot)

        def advance_chunk():
            """Move to the next chunk of the pass, or end the pass."""
            m.d.sync += [*[ptr[k].eq(ptr[k] + opnd[k].chunk) for k in range(5)], j.eq(j + 1)]
            with m.If(j + 1 == seg_end):
                m.next = "END_PASS"
            with m.Else():
                m.d.sync += pending.eq(cur.srcs)
                m.next = "READ"

        with m.FSM(name="vpu"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [cmd.eq(self.cmd.payload), cmd_flags.eq(0), scale.eq(E8M0_BIAS),
                                 status.eq(Status.SUCCESS), k_chk.eq(0), sweep.eq(0)]
                    m.next = "CHECK"

            with m.State("CHECK"):
                m.d.comb += busy.eq(1)
                with m.If(~known):
                    m.d.sync += status.eq(Status.BAD_OPCODE)
                    m.next = "DONE"
                with m.Elif((cmd.reserved != 0) | (cmd.causal & (op != VpuCmd.SOFTMAX))
                            | used_reserved):
                    m.d.sync += status.eq(Status.NONZERO_RESERVED)
                    m.next = "DONE"
                with m.Elif(Mux(is_cvt, ~fmt_ok, fmt != Format.FP32)):
                    m.d.sync += status.eq(Status.BAD_FORMAT)
                    m.next = "DONE"
                with m.Elif((length == 0) | (length > MAX_VLEN) | (rows == 0) | (rows > MAX_DIM)
                            | (mx & (length[:_log2(MX_BLOCK)] != 0))
                            | (is_cvt & (fmt_w == 4) & length[0])
                            | ((op == VpuCmd.GATHER) & ((cmd.query == 0)
                                                        | (cmd.query > MAX_DIM)))):
                    m.d.sync += status.eq(Status.SIZE_RANGE)
                    m.next = "DONE"
                with m.Else():
                    m.next = "CHECK_OPERANDS"

            with m.State("CHECK_OPERANDS"):
                m.d.comb += busy.eq(1)
                bad = Mux(sweep, out_of_range, misaligned) & (role != Role.UNUSED.value)
                with m.If(bad):
                    m.d.sync += status.eq(Mux(sweep, Status.ADDR_RANGE, Status.ADDR_ALIGN))
                    m.next = "DONE"
                with m.Elif(k_chk == 4):
                    m.d.sync += [k_chk.eq(0), sweep.eq(1)]
                    with m.If(sweep):
                        m.d.sync += [
                            *[row_ptr[k].eq(opnd[k].addr) for k in range(5)],
                            *[seg_ptr[k].eq(opnd[k].addr) for k in range(5)],
                            r.eq(0),
                        ]
                        with m.If(op == VpuCmd.GATHER):
                            m.next = "SCAN"
                        with m.Else():
                            m.next = "ROW"
                with m.Else():
                    m.d.sync += k_chk.eq(k_chk + 1)

            # GATHER: every index is checked before anything is written.
            with m.State("SCAN"):
                m.d.comb += [busy.eq(1), rd_k.eq(1), rd_addr.eq(row_ptr[1])]
                with m.If(issue(0)):
                    m.next = "SCAN_CHECK"
            with m.State("SCAN_CHECK"):
                m.d.comb += [busy.eq(1), rd_k.eq(1), unpack_w.eq(32)]
                with m.If(got[0] >= cmd.query):
                    m.d.sync += status.eq(Status.INDEX_RANGE)
                    m.next = "DONE"
                with m.Elif(r + 1 == rows):
                    m.d.sync += [r.eq(0), row_ptr[1].eq(cmd.b.addr)]
                    m.next = "ROW"
                with m.Else():
                    m.d.sync += [r.eq(r + 1), row_ptr[1].eq(row_ptr[1] + cmd.b.row)]
                    m.next = "SCAN"

            with m.State("ROW"):
                m.d.comb += busy.eq(1)
                m.d.sync += [
                    *[seg_ptr[k].eq(row_ptr[k]) for k in range(5)],
                    *[ptr[k].eq(row_ptr[k]) for k in range(5)],
                    sptr.eq(row_ptr[1]), seg_j.eq(0), j.eq(0), pc.eq(0),
                ]
                m.next = "PASS"

            with m.State("PASS"):
                # Begin pass ``pc``.
                m.d.comb += busy.eq(1)
                m.d.sync += [*[ptr[k].eq(seg_ptr[k]) for k in range(5)], j.eq(seg_j)]
                with m.Switch(cur.kind):
                    with m.Case(PassKind.MAP):
                        # A map pass starts its reduction afresh; the passes after it use
                        # the result.
                        m.d.sync += [
                            pending.eq(cur.srcs),
                            ks.eq(0), kc.eq(0), best.eq(0xFF800000), best_idx.eq(0),
                            amax.eq(0), special.eq(0),
                        ]
                        m.next = "READ"
                    with m.Case(PassKind.SCALAR):
                        m.next = "SCALAR"
                    with m.Case(PassKind.STORE):
                        m.next = "STORE"
                    with m.Case(PassKind.MX_SCALE):
                        m.next = "MX_SCALE"
                    with m.Case(PassKind.MX_LOAD):
                        m.next = "MX_LOAD"
                    with m.Case(PassKind.GATHER):
                        m.next = "GATHER"

            # -- map passes: read the chunk's sources one by one --------------------------------
            with m.State("READ"):
                m.d.comb += [busy.eq(1), rd_k.eq(source(lowest))]
                with m.If(pending == 0):
                    m.next = "COMPUTE"
                with m.Else():
                    with m.If(issue(lowest)):
                        m.next = "CAPTURE"
            with m.State("CAPTURE"):
                # Take the chunk asked for in the previous cycle, and ask for the next one.
                m.d.comb += [busy.eq(1), unpack_w.eq(Mux(cap_codes, fmt_w, 32))]
                m.d.sync += pending.eq(remaining)
                with m.Switch(rd_slot):
                    for k in range(4):
                        with m.Case(k):
                            m.d.sync += opv[k].eq(got)
                with m.If(remaining == 0):
                    m.next = "COMPUTE"
                with m.Else():
                    m.d.comb += rd_k.eq(source(next_slot))
                    with m.If(~issue(next_slot)):
                        m.next = "READ"
            with m.State("COMPUTE"):
                m.d.comb += busy.eq(1)
                valid_flags = Const(0, 3)
                for i in range(V):
                    valid_flags = valid_flags | Mux(lane_valid[i], lanes[i].flags, 0)
                m.d.sync += [
                    res.eq(Cat(*[lane.r for lane in lanes])),
                    res_valid.eq(lane_valid),
                    cmd_flags.eq(cmd_flags | valid_flags),
                    red_i.eq(0),
                    self.counters.chunks.eq(self.counters.chunks + 1),
                ]
                with m.If(cur.write):
                    m.next = "WRITE"
                with m.Else():
                    m.next = "REDUCE"
            with m.State("WRITE"):
                m.d.comb += [busy.eq(1), wr_k.eq(4), wr_go.eq(1), wr_words.eq(res),
                             wr_lanes.eq(res_valid),
                             wr_w.eq(Mux(roles[4] == Role.CODES.value, fmt_w, 32))]
                with m.If(wr_done):
                    with m.If(cur.reduce == Reduce.NONE):
                        advance_chunk()
                    with m.Else():
                        m.next = "REDUCE"
            with m.State("REDUCE"):
                m.d.comb += busy.eq(1)
                next_valid = Signal()
                with m.Switch(red_i):
                    for i in range(V - 1):
                        with m.Case(i):
                            m.d.comb += next_valid.eq(res_valid[i + 1])
                last = ~next_valid
                with m.Switch(cur.reduce):
                    with m.Case(Reduce.SUM):
                        m.d.sync += [
                            ks.eq(ts.result),
                            kc.eq(Mux(c_finite, d2.result, 0)),
                            cmd_flags.eq(cmd_flags | ts.flags),
                        ]
                    with m.Case(Reduce.MAX):
                        m.d.sync += best.eq(vmax)
                    with m.Case(Reduce.ARGMAX):
                        first = (j == 0) & (red_i == 0)
                        with m.If(first | gt | (x_nan & ~best_nan)):
                            m.d.sync += [best.eq(x), best_idx.eq(e0 + red_i)]
                    with m.Case(Reduce.AMAX):
                        m.d.sync += [
                            amax.eq(Mux(chunk_amax > amax, chunk_amax, amax)),
                            special.eq(special | chunk_special),
                        ]
                single = (cur.reduce == Reduce.NONE) | (cur.reduce == Reduce.AMAX)
                with m.If(single | last):
                    advance_chunk()
                with m.Else():
                    m.d.sync += red_i.eq(red_i + 1)

            with m.State("END_PASS"):
                m.d.comb += busy.eq(1)
                # The reduction's result becomes the scalar register.
                with m.Switch(cur.reduce):
                    with m.Case(Reduce.SUM):
                        m.d.sync += t.eq(ks)
                    with m.Case(Reduce.MAX, Reduce.ARGMAX):
                        m.d.sync += t.eq(best)
                m.next = "NEXT_PASS"

            with m.State("SCALAR"):
                m.d.comb += [busy.eq(1), scalar_step.eq(1)]
                m.d.sync += [t.eq(lanes[0].r), cmd_flags.eq(cmd_flags | lanes[0].flags)]
                m.next = "NEXT_PASS"

            with m.State("STORE"):
                m.d.comb += [busy.eq(1), wr_k.eq(4), wr_go.eq(1), wr_w.eq(32),
                             wr_words[0].eq(Mux(op == VpuCmd.ARGMAX, best_idx, t)),
                             wr_lanes.eq(1)]
                with m.If(wr_done):
                    m.next = "NEXT_PASS"

            with m.State("MX_SCALE"):
                m.d.comb += [busy.eq(1), wr_k.eq(1), wr_go.eq(1), wr_w.eq(8),
                             wr_words[0].eq(mx_scale), wr_lanes.eq(1)]
                m.d.comb += wr_addr.eq(sptr)
                with m.If(wr_done):
                    m.d.sync += [scale.eq(mx_scale), sptr.eq(sptr + cmd.b.chunk)]
                    m.next = "NEXT_PASS"

            with m.State("MX_LOAD"):
                m.d.comb += [busy.eq(1), rd_k.eq(1), rd_addr.eq(sptr)]
                with m.If(issue(0)):
                    m.next = "MX_LOAD_CAPTURE"
            with m.State("MX_LOAD_CAPTURE"):
                m.d.comb += [busy.eq(1), rd_k.eq(1), unpack_w.eq(8)]
                m.d.sync += [scale.eq(got[0][:8]), sptr.eq(sptr + cmd.b.chunk)]
                m.next = "NEXT_PASS"

            with m.State("GATHER"):
                m.d.comb += [busy.eq(1), rd_k.eq(1)]
                with m.If(issue(0)):
                    m.next = "GATHER_CAPTURE"
            with m.State("GATHER_CAPTURE"):
                m.d.comb += [busy.eq(1), rd_k.eq(1), unpack_w.eq(32)]
                m.d.sync += gather_idx.eq(got[0])
                m.next = "GATHER_ROW"
            with m.State("GATHER_ROW"):
                m.d.comb += busy.eq(1)
                m.d.sync += seg_ptr[0].eq(cmd.a.addr + gather_idx * cmd.a.row)
                m.next = "NEXT_PASS"

            with m.State("NEXT_PASS"):
                m.d.comb += busy.eq(1)
                with m.If(pc + 1 < n_passes):
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "PASS"
                with m.Elif(mx & (j < nch)):
                    # The next MX block of the row: its chunks follow this one's.
                    m.d.sync += [*[seg_ptr[k].eq(ptr[k]) for k in range(5)], seg_j.eq(j),
                                 pc.eq(0)]
                    m.next = "PASS"
                with m.Elif(r + 1 < rows):
                    m.d.sync += [
                        *[row_ptr[k].eq(row_ptr[k] + opnd[k].row) for k in range(5)],
                        r.eq(r + 1),
                    ]
                    m.next = "ROW"
                with m.Else():
                    m.next = "DONE"

            with m.State("DONE"):
                m.d.comb += [
                    self.status.valid.eq(1),
                    self.status.payload.status.eq(status),
                    self.status.payload.flags.eq(cmd_flags),
                ]
                with m.If(self.status.ready):
                    m.d.sync += [
                        self.flags.eq(Mux(self.flags_clear, 0, self.flags) | cmd_flags),
                        self.counters.commands.eq(self.counters.commands + 1),
                    ]
                    m.next = "IDLE"
        return m
