"""The matrix engine: command checks, operand fetch, tile sequencing, write-back and counters.

One command (``rtl.layouts.MXU_COMMAND``) runs a whole tiled GEMM, ``docs/mxu.md`` being the
contract. The engine checks the command (and rejects it with a status, touching nothing),
then starts four :class:`~.fetch.OperandFetch` walks (A vectors, A scales, B vectors, B
scales) and runs the tiles K tile by K tile (``kt`` outer, ``nt`` inner):

* the *filler* writes the rows of B tiles straight into the PEs' weight buffers (tile ``t`` into
  buffer ``t mod NB``), several rows per cycle when a scratchpad line holds several B vectors,
  each row as soon as the tile that used that buffer before has left the row;
* the *issuer* sends A rows into the array, one per cycle, with the partial sums read from the
  accumulator (or +0 for the first K tile of a non-accumulating command); a tile's first row
  waits until the filler has written the whole tile, so the array never waits for a weight,
  and its last row carries the release bits that free its buffer row by row;
* the *write-back* writes each result row into the accumulator and ORs its flags.

A row is not issued while the row it would read is still on its way back (at most
``NT·M`` rows are outstanding, the distance between two visits of the same accumulator row).
"""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..layouts import (E8M0_BIAS, MAX_DIM, MAX_K, MX_BLOCK, MXU_COMMAND, MXU_STATUS, Format,
                       Status, code_width, is_mx)
from ..memory import ACC_WRITE, AccReadSignature, SpadReadSignature
from .array import SystolicArray, a_lane
from .fetch import FETCH_WALK, OperandFetch


__all__ = ["MXU_COUNTERS", "MatrixEngine"]


#: Performance counters (cumulative since reset, 64 bits each).
MXU_COUNTERS = data.StructLayout({
    "busy":         64,
    "macs":         64,
    "stall_weight": 64,
    "stall_input":  64,
    "stall_output": 64,
    "stall_drain":  64,
})

#: log2 of the code width in bits, by format code (4 → 2 … 32 → 5).
_WIDTH_LOG2 = {f: code_width(f).bit_length() - 1 for f in Format}


def _log2(x):
    return x.bit_length() - 1


def _unpack(m, vector, width_log2, lanes, name):
    """Split ``vector`` into ``lanes`` codes of ``2**width_log2`` bits (4 … 32); codes past
    the end of ``vector`` are 0."""
    codes = Signal(data.ArrayLayout(32, lanes), name=name)
    with m.Switch(width_log2):
        for wl in (2, 3, 4, 5):
            w = 1 << wl
            with m.Case(wl):
                for i in range(min(lanes, len(vector) // w)):
                    m.d.comb += codes[i].eq(vector[i * w:(i + 1) * w])
    return codes


class MatrixEngine(wiring.Component):
    """The MXU: a :class:`SystolicArray` and everything that keeps it busy.

    Parameters
    ----------
    cfg : ChipConfig
        Array size, memory geometry, formats, pipelining.
    spad_addr_width, acc_addr_width : int
        Line/row address widths of the scratchpad and accumulator ports.
    shared_pe : bool
        Instantiate the PEs as one shared Verilog module (for Verilog generation; see
        :class:`SystolicArray`).
    stall_injection : bool
        Add ``inject`` (test builds only): pseudo-random gaps in the A stream and refusals of
        the accumulator write, to exercise every stall path.

    Members
    -------
    cmd : ``In(stream.Signature(MXU_COMMAND))``
        Commands, one at a time.
    status : ``Out(stream.Signature(MXU_STATUS))``
        One completion per command.
    spad : ``Out(SpadReadSignature).array(4)``
        Scratchpad read ports: B vectors, B scales, A scales, A vectors (in priority order).
    acc_read : ``Out(AccReadSignature)``, acc_write : ``Out(stream.Signature(ACC_WRITE))``
        Accumulator ports.
    counters : ``Out(MXU_COUNTERS)``
        Performance counters.
    inject : ``In({seed, a_prob, o_prob})``
        Only with ``stall_injection``: P(A row offered) = (a_prob+1)/256, P(write accepted)
        = (o_prob+1)/256 per cycle.
    """

    def __init__(self, cfg, *, spad_addr_width, acc_addr_width, stall_injection=False,
                 shared_pe=False):
        self._cfg = cfg
        self._stall_injection = stall_injection
        self._line_bytes = cfg.spad_line_bytes
        self._array = SystolicArray(rows=cfg.mxu_rows, cols=cfg.mxu_cols, formats=cfg.formats,
                                    pipelined=cfg.fp_pipeline, buffers=cfg.mxu_weight_buffers,
                                    shared_pe=shared_pe)
        members = {
            "cmd":       In(stream.Signature(MXU_COMMAND)),
            "status":    Out(stream.Signature(MXU_STATUS)),
            "spad":      Out(SpadReadSignature(line_bits=8 * self._line_bytes,
                                               addr_width=spad_addr_width)).array(4),
            "acc_read":  Out(AccReadSignature(cols=cfg.mxu_cols, addr_width=acc_addr_width)),
            "acc_write": Out(stream.Signature(ACC_WRITE(cfg.mxu_cols, acc_addr_width))),
            "counters":  Out(MXU_COUNTERS),
        }
        if stall_injection:
            members["inject"] = In(data.StructLayout({"seed": 32, "a_prob": 8, "o_prob": 8}))
        self._acc_addr_width = acc_addr_width
        self._spad_addr_width = spad_addr_width
        super().__init__(members)

    @property
    def latency(self):
        """Cycles of the array pipeline (issue to result)."""
        return self._array.latency

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C = cfg.mxu_rows, cfg.mxu_cols
        log_r, log_c = _log2(R), _log2(C)
        blocks_per_tile_log2 = _log2(MX_BLOCK // R)    # K tiles per MX block, log2

        m.submodules.array = array = self._array
        NB = cfg.mxu_weight_buffers
        # Most B vectors of one scratchpad line (FP4 codes: C/2 bytes a vector).
        W = max(1, min(R, 2 * self._line_bytes // C))
        fetch = {}
        for i, name in enumerate(("b", "bs", "as", "a")):
            m.submodules[f"fetch_{name}"] = fetch[name] = OperandFetch(
                line_bytes=self._line_bytes, addr_width=self._spad_addr_width,
                max_vectors=W if name == "b" else 1)
            wiring.connect(m, fetch[name].spad, wiring.flipped(self.spad[i]))

        # ---- The command and what is derived from it -------------------------------------
        cmd = Signal(MXU_COMMAND)
        fmt_ok_a = Signal()
        fmt_ok_b = Signal()
        mx_a, mx_b = Signal(), Signal()
        wl_a, wl_b = Signal(3), Signal(3)        # log2 code widths
        int_mode = Signal()

        def fmt_props(code, ok, mx, wl):
            with m.Switch(code):
                for f in Format:
                    with m.Case(f.value):
                        if f in cfg.formats:
                            m.d.sync += [ok.eq(1), mx.eq(int(is_mx(f))), wl.eq(_WIDTH_LOG2[f])]
                        else:
                            m.d.sync += ok.eq(0)
                with m.Default():
                    m.d.sync += ok.eq(0)

        kt_n = Signal(17)     # ceil(K / R)
        nt_n = Signal(17)     # ceil(N / C)
        kb_n = Signal(17)     # ceil(K / 32)
        k_last = Signal(range(R + 1))   # rows of the last K tile
        n_last = Signal(range(C + 1))   # columns of the last N tile
        vs_a = Signal(3)      # log2 bytes of an A vector
        vs_b = Signal(3)

        # Sizes for the range checks (products of bounded quantities: 64 bits is plenty).
        a_end  = Signal(64)
        b_end  = Signal(64)
        sa_end = Signal(64)
        sb_end = Signal(64)
        c_end  = Signal(64)
        rows_per_kt = Signal(34)   # NT·M: rows issued between two visits of an accumulator row

        # ---- Counters --------------------------------------------------------------------
        ctr = self.counters
        stall_cause = Signal(range(5))   # 0: none (a row issued or idle)
        macs_inc = Signal(16)
        with m.Switch(stall_cause):
            with m.Case(1):
                m.d.sync += ctr.stall_weight.eq(ctr.stall_weight + 1)
            with m.Case(2):
                m.d.sync += ctr.stall_input.eq(ctr.stall_input + 1)
            with m.Case(3):
                m.d.sync += ctr.stall_output.eq(ctr.stall_output + 1)
            with m.Case(4):
                m.d.sync += ctr.stall_drain.eq(ctr.stall_drain + 1)
        m.d.sync += ctr.macs.eq(ctr.macs + macs_inc)
        WEIGHT, INPUT, OUTPUT, DRAIN = 1, 2, 3, 4

        # ---- Stall injection (test builds) ----------------------------------------------
        a_gate = Const(1)
        o_gate = Const(1)
        if self._stall_injection:
            # xorshift32 (period 2**32 − 1), offset by the seed.
            lfsr = Signal(32, init=1)
            x1 = (lfsr ^ (lfsr << 13))[:32]
            x2 = x1 ^ (x1 >> 17)
            x3 = (x2 ^ (x2 << 5))[:32]
            m.d.sync += lfsr.eq(Mux(x3 == 0, 1, x3))
            mixed = Signal(32)
            m.d.comb += mixed.eq(lfsr ^ self.inject.seed)
            a_gate = mixed[0:8] <= self.inject.a_prob
            o_gate = mixed[8:16] <= self.inject.o_prob

        # ---- Pipeline control ------------------------------------------------------------
        advance      = Signal()
        out_valid    = Signal()                 # the array's result row is valid
        write_ready  = self.acc_write.ready & o_gate
        m.d.comb += [
            advance.eq(~out_valid | write_ready),
            array.advance.eq(advance),
            array.fmt_a.eq(cmd.fmt_a),
            array.fmt_b.eq(cmd.fmt_b),
            array.int_mode.eq(int_mode),
        ]

        # ---- Filler: B vectors → weight buffers -----------------------------------------
        # occ[r]: tiles written into row r's buffers and not yet released by the array. A
        # row may take the next tile while fewer than NB are there: tiles are written and
        # released in order, so the buffer it overwrites belongs to a tile that has left.
        occ     = [Signal(range(NB + 1), name=f"occ{r}") for r in range(R)]
        f_row   = Signal(range(R))
        f_kt    = Signal(17)
        f_nt    = Signal(17)
        f_tile  = Signal(34)           # tiles completely written
        f_done  = Signal()
        f_scale = Signal(data.ArrayLayout(8, C))
        running = Signal()

        b_entry  = fetch["b"].o
        b_count  = fetch["b"].count
        bs_bytes = Signal(data.ArrayLayout(8, C))
        m.d.comb += bs_bytes.eq(fetch["bs"].o.payload)
        f_rows = Mux(f_kt == kt_n - 1, k_last, R)
        f_needs_scale = mx_b & (f_row == 0)
        in_entry = Signal(R)           # rows the entry on the B stream would write
        for r in range(R):
            # (f_row ≤ R − 1 always: no constant comparison for the last row.)
            after_first = (f_row <= r) if r < R - 1 else 1
            m.d.comb += in_entry[r].eq(after_first & (r < f_row + b_count))
        blocked = Signal()
        m.d.comb += blocked.eq(_or([in_entry[r] & (occ[r] == NB) for r in range(R)]))
        f_go = Signal()
        m.d.comb += f_go.eq(running & ~f_done & b_entry.valid & ~blocked &
                            (~f_needs_scale | fetch["bs"].o.valid))
        m.d.comb += [
            b_entry.ready.eq(f_go),
            fetch["bs"].o.ready.eq(f_go & f_needs_scale),
        ]
        scale_now = Signal(data.ArrayLayout(8, C))
        m.d.comb += scale_now.eq(Mux(f_needs_scale, bs_bytes, f_scale))
        with m.If(f_go & f_needs_scale):
            m.d.sync += f_scale.eq(bs_bytes)

        # Row r of the array takes vector j = r − f_row of the entry: code j·C + c of the
        # entry's flat run of codes.
        flat = _unpack(m, b_entry.payload, wl_b, W * C, "b_flat")
        j_bits = max(1, (W - 1).bit_length())
        for r in range(R):
            codes = Signal(data.ArrayLayout(32, C), name=f"w_codes{r}")
            with m.Switch((r - f_row)[:j_bits]):
                for j in range(min(W, r + 1)):
                    with m.Case(j):
                        m.d.comb += codes.eq(flat.as_value()[32 * j * C:32 * (j + 1) * C])
            for c in range(C):
                m.d.comb += [
                    array.w_data[r][c].code.eq(codes[c]),
                    array.w_data[r][c].scale.eq(Mux(mx_b, scale_now[c], E8M0_BIAS)),
                ]
        m.d.comb += [
            array.w_we.eq(Mux(f_go, in_entry, 0)),
            array.w_buf.eq(f_tile),
        ]
        for r in range(R):
            freed = array.freed[r] & advance
            with m.If(array.w_we[r] & ~freed):
                m.d.sync += occ[r].eq(occ[r] + 1)
            with m.Elif(~array.w_we[r] & freed):
                m.d.sync += occ[r].eq(occ[r] - 1)
        with m.If(f_go):
            m.d.sync += f_row.eq(f_row + b_count)
            with m.If(f_row + b_count == f_rows):
                m.d.sync += [f_row.eq(0), f_tile.eq(f_tile + 1), f_nt.eq(f_nt + 1)]
                with m.If(f_nt == nt_n - 1):
                    m.d.sync += [f_nt.eq(0), f_kt.eq(f_kt + 1)]
                    with m.If(f_kt == kt_n - 1):
                        m.d.sync += f_done.eq(1)

        # ---- Issuer: A rows → array -------------------------------------------------------
        i_m        = Signal(17)
        i_kt       = Signal(17)
        i_nt       = Signal(17)
        i_tile     = Signal(34)        # tiles issued (selects the weight buffer)
        i_done     = Signal()
        i_row      = Signal(self._acc_addr_width + 1)
        issued     = Signal(40)
        written    = Signal(40)
        a_codes = _unpack(m, fetch["a"].o.payload, wl_a, R, "a_codes")
        a_scale = fetch["as"].o.payload[:8]

        a_avail = fetch["a"].o.valid & (~mx_a | fetch["as"].o.valid) & a_gate
        tile_ready = (i_m != 0) | (i_tile < f_tile)     # its weights are all written
        room    = (issued - written) < rows_per_kt
        can_issue = running & ~i_done & tile_ready & room
        issue = Signal()
        m.d.comb += issue.eq(advance & can_issue & a_avail)
        m.d.comb += [
            fetch["a"].o.ready.eq(issue),
            fetch["as"].o.ready.eq(issue & mx_a),
        ]

        i_rows_k = Mux(i_kt == kt_n - 1, k_last, R)
        i_cols_n = Mux(i_nt == nt_n - 1, n_last, C)
        with m.If(issue):
            m.d.sync += [
                issued.eq(issued + 1),
                i_m.eq(i_m + 1),
                i_row.eq(i_row + 1),
            ]
            m.d.comb += macs_inc.eq(i_rows_k * i_cols_n)
            with m.If(i_m == cmd.m - 1):
                m.d.sync += [i_m.eq(0), i_tile.eq(i_tile + 1), i_nt.eq(i_nt + 1)]
                with m.If(i_nt == nt_n - 1):
                    m.d.sync += [i_nt.eq(0), i_kt.eq(i_kt + 1), i_row.eq(cmd.c_row)]
                    with m.If(i_kt == kt_n - 1):
                        m.d.sync += i_done.eq(1)

        # The issue register: what the array sees in the next advancing cycle.
        x_valid   = Signal()
        x_zero    = Signal()
        x_release = Signal(R)
        x_row     = Signal(self._acc_addr_width)
        x_mask    = Signal(C)
        x_a       = Signal(data.ArrayLayout(a_lane(NB), R))
        lane_en  = Signal(R)
        col_mask = Signal(C)
        for r in range(R):
            m.d.comb += lane_en[r].eq(r < i_rows_k)
        for c in range(C):
            m.d.comb += col_mask[c].eq(c < i_cols_n)
        with m.If(advance):
            m.d.sync += [
                x_valid  .eq(issue),
                x_zero   .eq((i_kt == 0) & ~cmd.accumulate),
                x_release.eq(Mux(issue & (i_m == cmd.m - 1), lane_en, 0)),
                x_row    .eq(i_row),
                x_mask   .eq(col_mask),
            ]
            for r in range(R):
                m.d.sync += [
                    x_a[r].code .eq(a_codes[r]),
                    x_a[r].scale.eq(Mux(mx_a, a_scale, E8M0_BIAS)),
                    x_a[r].sel  .eq(i_tile),
                    x_a[r].en   .eq(issue & lane_en[r]),
                ]
        m.d.comb += [
            self.acc_read.en  .eq(advance),
            self.acc_read.addr.eq(i_row),
            array.a.eq(x_a),
            array.release.eq(x_release),
        ]
        for c in range(C):
            m.d.comb += array.seed[c].eq(Mux(x_zero, 0, self.acc_read.data[c]))

        # ---- Write-back ---------------------------------------------------------------------
        tag = data.StructLayout({"valid": 1, "row": self._acc_addr_width, "mask": C})
        t = Signal(tag)
        m.d.comb += [t.valid.eq(x_valid), t.row.eq(x_row), t.mask.eq(x_mask)]
        for n in range(array.latency):
            reg = Signal(tag, name=f"tag_d{n}")
            with m.If(advance):
                m.d.sync += reg.eq(t)
            t = reg
        m.d.comb += out_valid.eq(t.valid)
        w = self.acc_write
        m.d.comb += [
            w.valid.eq(t.valid & o_gate),
            w.payload.row.eq(t.row),
            w.payload.mask.eq(t.mask),
        ]
        out_flags = Signal(3)
        flags_acc = Signal(3)
        flag_terms = []
        for c in range(C):
            m.d.comb += w.payload.data[c].eq(array.result[c].value)
            flag_terms.append(Mux(t.mask[c], array.result[c].flags, 0))
        m.d.comb += out_flags.eq(_or(flag_terms))
        accepted = w.valid & w.ready
        with m.If(accepted):
            m.d.sync += [written.eq(written + 1), flags_acc.eq(flags_acc | out_flags)]

        # ---- Command FSM ---------------------------------------------------------------------
        status = Signal(Status)
        m.d.comb += [
            self.status.payload.status.eq(status),
            self.status.payload.flags.eq(flags_acc),
        ]
        m.d.comb += running.eq(0)
        walk = {name: Signal(FETCH_WALK, name=f"walk_{name}") for name in fetch}
        for name in fetch:
            m.d.comb += fetch[name].walk.eq(walk[name])
        self._walks(m, walk, cmd, kt_n, nt_n, k_last, vs_a, vs_b, log_c, blocks_per_tile_log2)

        with m.FSM(name="mxu"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    c = self.cmd.payload
                    m.d.sync += cmd.eq(c)
                    fmt_props(c.fmt_a, fmt_ok_a, mx_a, wl_a)
                    fmt_props(c.fmt_b, fmt_ok_b, mx_b, wl_b)
                    m.d.sync += [
                        kt_n.eq((c.k + R - 1) >> log_r),
                        nt_n.eq((c.n + C - 1) >> log_c),
                        kb_n.eq((c.k + MX_BLOCK - 1) >> 5),
                        k_last.eq(c.k - (((c.k + R - 1) >> log_r) - 1) * R),
                        n_last.eq(c.n - (((c.n + C - 1) >> log_c) - 1) * C),
                        int_mode.eq((c.fmt_a == Format.INT8.value) &
                                    (c.fmt_b == Format.INT8.value)),
                    ]
                    m.next = "SIZES"
            with m.State("SIZES"):
                m.d.comb += stall_cause.eq(DRAIN)
                # log2 of the vector sizes in bytes (R, C ≥ 2, so never negative).
                vsa = (wl_a + log_r - 3)[:3]
                vsb = (wl_b + log_c - 3)[:3]
                m.d.sync += [
                    vs_a.eq(vsa),
                    vs_b.eq(vsb),
                    a_end .eq(cmd.a_addr + ((kt_n * cmd.m) << vsa)),
                    b_end .eq(cmd.b_addr + ((nt_n * cmd.k) << vsb)),
                    sa_end.eq(cmd.sa_addr + kb_n * cmd.m),
                    sb_end.eq(cmd.sb_addr + ((kb_n * nt_n) << log_c)),
                    c_end .eq(cmd.c_row + nt_n * cmd.m),
                    rows_per_kt.eq(nt_n * cmd.m),
                    flags_acc.eq(0),   # a refused command reports no flags
                ]
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += stall_cause.eq(DRAIN)
                align_a = cmd.a_addr & ((1 << vs_a) - 1)
                align_b = cmd.b_addr & ((1 << vs_b) - 1)
                align_s = cmd.sb_addr & (C - 1)
                spad = cfg.spad_bytes
                with m.If(cmd.reserved != 0):
                    m.d.sync += status.eq(Status.NONZERO_RESERVED)
                    m.next = "DONE"
                with m.Elif(~fmt_ok_a | ~fmt_ok_b):
                    m.d.sync += status.eq(Status.BAD_FORMAT)
                    m.next = "DONE"
                with m.Elif((cmd.m == 0) | (cmd.n == 0) | (cmd.k == 0) | (cmd.m > MAX_DIM) |
                            (cmd.n > MAX_DIM) | (cmd.k > MAX_K)):
                    m.d.sync += status.eq(Status.SIZE_RANGE)
                    m.next = "DONE"
                with m.Elif((align_a != 0) | (align_b != 0) | (mx_b & (align_s != 0))):
                    m.d.sync += status.eq(Status.ADDR_ALIGN)
                    m.next = "DONE"
                with m.Elif((a_end > spad) | (b_end > spad) | (mx_a & (sa_end > spad)) |
                            (mx_b & (sb_end > spad)) | (c_end > cfg.acc_rows)):
                    m.d.sync += status.eq(Status.ADDR_RANGE)
                    m.next = "DONE"
                with m.Else():
                    # Start: the fetchers take their walks (combinational from the command
                    # registers) in this cycle, and the run state is cleared.
                    m.d.sync += status.eq(Status.SUCCESS)
                    m.d.comb += [
                        fetch["a"].start.eq(1),
                        fetch["b"].start.eq(1),
                        fetch["as"].start.eq(mx_a),
                        fetch["bs"].start.eq(mx_b),
                    ]
                    m.d.sync += [
                        f_row.eq(0), f_kt.eq(0), f_nt.eq(0), f_tile.eq(0), f_done.eq(0),
                        i_m.eq(0), i_kt.eq(0), i_nt.eq(0), i_tile.eq(0), i_done.eq(0),
                        i_row.eq(cmd.c_row),
                        issued.eq(0), written.eq(0), flags_acc.eq(0),
                    ]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += running.eq(1)
                with m.If(~issue):
                    with m.If(~advance):
                        m.d.comb += stall_cause.eq(OUTPUT)
                    with m.Elif(i_done | ~room):
                        m.d.comb += stall_cause.eq(DRAIN)
                    with m.Elif(~tile_ready):
                        m.d.comb += stall_cause.eq(WEIGHT)
                    with m.Else():
                        m.d.comb += stall_cause.eq(INPUT)
                with m.If(i_done & (written + accepted == issued) & ~x_valid):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [
                    stall_cause.eq(DRAIN),
                    self.status.valid.eq(1),
                ]
                with m.If(self.status.ready):
                    m.next = "IDLE"

        with m.If(~self.cmd.ready):
            m.d.sync += ctr.busy.eq(ctr.busy + 1)
        return m

    def _walks(self, m, walk, cmd, kt_n, nt_n, k_last, vs_a, vs_b, log_c, bpt_log2):
        R, C = self._cfg.mxu_rows, self._cfg.mxu_cols
        m.d.comb += [
            # A vectors (kt, m): for each nt again.
            walk["a"].base.eq(cmd.a_addr),
            walk["a"].vshift.eq(vs_a),
            walk["a"].inner_n.eq(cmd.m),
            walk["a"].inner_last.eq(cmd.m),
            walk["a"].mid_n.eq(nt_n),
            walk["a"].mid_step.eq(0),
            walk["a"].outer_n.eq(kt_n),
            walk["a"].outer_step.eq(cmd.m << vs_a),
            walk["a"].outer_every.eq(0),
            # A scales (kb, m): bytes, the block changing every 32 / R K tiles.
            walk["as"].base.eq(cmd.sa_addr),
            walk["as"].vshift.eq(0),
            walk["as"].inner_n.eq(cmd.m),
            walk["as"].inner_last.eq(cmd.m),
            walk["as"].mid_n.eq(nt_n),
            walk["as"].mid_step.eq(0),
            walk["as"].outer_n.eq(kt_n),
            walk["as"].outer_step.eq(cmd.m),
            walk["as"].outer_every.eq(bpt_log2),
            # B vectors (nt, k): the rows of K tile kt of N tile nt.
            walk["b"].base.eq(cmd.b_addr),
            walk["b"].vshift.eq(vs_b),
            walk["b"].inner_n.eq(R),
            walk["b"].inner_last.eq(k_last),
            walk["b"].mid_n.eq(nt_n),
            walk["b"].mid_step.eq(cmd.k << vs_b),
            walk["b"].outer_n.eq(kt_n),
            walk["b"].outer_step.eq(R << vs_b),
            walk["b"].outer_every.eq(0),
            # B scales (kb, nt): one C-byte vector per tile.
            walk["bs"].base.eq(cmd.sb_addr),
            walk["bs"].vshift.eq(log_c),
            walk["bs"].inner_n.eq(1),
            walk["bs"].inner_last.eq(1),
            walk["bs"].mid_n.eq(nt_n),
            walk["bs"].mid_step.eq(C),
            walk["bs"].outer_n.eq(kt_n),
            walk["bs"].outer_step.eq(nt_n << log_c),
            walk["bs"].outer_every.eq(bpt_log2),
        ]


def _or(values):
    out = values[0]
    for v in values[1:]:
        out = out | v
    return out
