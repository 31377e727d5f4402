"""The vector engine on Verilator (``vpu``: engine, scratchpad, accumulator, host port).

Each test builds a *program* of host-port requests — scratchpad line writes, accumulator row
writes, vector-unit commands, flag reads — and runs it as one batch through ``stream_harness``
(Python wakes once per batch, not per cycle). The expected response of every request comes from
``golden_model.vpu.VpuModel``, which executes the same commands against its own copy of the
memories; every program ends by reading back the *whole* scratchpad and accumulator, so a
write anywhere it should not be is caught, not only a wrong result.
"""

import os

import cocotb
import numpy as np

from golden_model.vpu import VpuModel, encode_vpu_command, make_vpu_command, written_chunks
from rtl.layouts import (MAX_DIM, MAX_VLEN, MX_BLOCK, Format, Status, VpuCmd, code_width,
                         is_mx)
from rtl.vpu.engine import VPU_COUNTERS
from rtl.vpu.host import VpuHostOp, host_op_layout, host_resp_layout
from verif.common.harness import StreamHarness
from verif.common.pack import unpack
from verif.common.scoreboard import ScoreboardError, compare_responses
from verif.common.tb import TB
from verif.common.vectors import F32_SPECIALS


SCALE = float(os.environ.get("VPU_SCALE", "1"))

ELEMENTWISE = [VpuCmd.ADD, VpuCmd.SUB, VpuCmd.MUL, VpuCmd.MAX, VpuCmd.LT, VpuCmd.LE,
               VpuCmd.EQ, VpuCmd.SCALE, VpuCmd.BCAST, VpuCmd.EXP, VpuCmd.RECIP, VpuCmd.RSQRT,
               VpuCmd.SIGMOID, VpuCmd.SILU, VpuCmd.SWIGLU, VpuCmd.ROPE_LO, VpuCmd.ROPE_HI]
SOURCES = {VpuCmd.BCAST: "", VpuCmd.SCALE: "a", VpuCmd.EXP: "a", VpuCmd.RECIP: "a",
           VpuCmd.RSQRT: "a", VpuCmd.SIGMOID: "a", VpuCmd.SILU: "a",
           VpuCmd.ROPE_LO: "abcd", VpuCmd.ROPE_HI: "abcd"}


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------

def values(rng, n, *, specials=True, spread=4):
    """``n`` FP32 bit patterns: normal values over a few binades, and with ``specials`` some
    zeros, subnormals, infinities, NaNs, huge and tiny magnitudes."""
    x = (rng.standard_normal(n) * 2.0 ** rng.integers(-spread, spread + 1, size=n))
    bits = x.astype(np.float32).view(np.uint32).copy()
    if specials:
        mask = rng.random(n) < 0.06
        k = int(mask.sum())
        pool = np.concatenate([
            F32_SPECIALS,
            rng.integers(1, 1 << 23, size=8).astype(np.uint32),                  # subnormals
            (np.float32(2.0) ** rng.integers(100, 128, size=4)).view(np.uint32),  # huge
            (np.float32(2.0) ** -rng.integers(100, 126, size=4)).view(np.uint32)])  # tiny
        bits[mask] = rng.choice(pool, size=k) ^ (rng.integers(0, 2, size=k).astype(np.uint32)
                                                 << 31)
    return bits


# ------------------------------------------------------------------------------------------
# Programs
# ------------------------------------------------------------------------------------------

class Program:
    """A batch of host requests and the responses the golden model expects."""

    def __init__(self, cfg, model):
        self.cfg = cfg
        self.model = model
        self.ops, self.expected = [], []
        self.counter_reads = []
        self.lb = cfg.spad_line_bytes
        self.dirty_lines, self.dirty_rows = set(), set()
        self.watch_lines, self.watch_rows = set(), set()   # to read back
        self.spad_next = 0      # bump allocators
        self.acc_next = 0

    def _add(self, op, addr, data, status=Status.SUCCESS, resp=0, check=True):
        self.ops.append((op.value, addr, data))
        self.expected.append((status.value, resp if check else None))

    # -- memory --------------------------------------------------------------------------

    def new_command(self):
        """Regions of one command never overlap; later commands reuse the memory."""
        self.spad_next = self.acc_next = 0

    def alloc_spad(self, size, align, rng):
        addr = -(-(self.spad_next + int(rng.integers(0, 3)) * align) // align) * align
        if addr + size > self.cfg.spad_bytes:
            return None
        self.spad_next = addr + size
        return addr

    def alloc_acc(self, rows, rng):
        row = self.acc_next + int(rng.integers(0, 3))
        if row + rows > self.cfg.acc_rows:
            return None
        self.acc_next = row + rows
        return row

    def put(self, operand, r, words, width=32, per_chunk=None):
        """Write ``words`` as row ``r`` of ``operand`` (a dict with its geometry) into the
        model, remembering what to send to the DUT."""
        model = self.model
        per = per_chunk or self.cfg.vpu_lanes
        words = np.asarray(words, np.uint32)
        nch = -(-words.size // per)
        for j in range(nch):
            part = words[j * per:(j + 1) * per]
            addr = operand["addr"] + r * operand["row"] + j * operand["chunk"]
            if operand["space"]:
                model.acc[addr, :part.size] = part
                self.dirty_rows.add(addr)
            else:
                raw = _pack(part, width) if per > 1 else part.astype(np.uint8)
                model.spad[addr:addr + raw.size] = raw
                self.dirty_lines.update(range(addr // self.lb, (addr + raw.size - 1) // self.lb
                                              + 1))

    def flush(self):
        """Send every line and row written into the model since the last flush."""
        for line in sorted(self.dirty_lines):
            a = line * self.lb
            self._add(VpuHostOp.SPAD_WRITE, a,
                      int.from_bytes(self.model.spad[a:a + self.lb].tobytes(), "little"))
        for row in sorted(self.dirty_rows):
            self._add(VpuHostOp.ACC_WRITE, row, _words_int(self.model.acc[row]))
        self.dirty_lines.clear()
        self.dirty_rows.clear()

    def read_back(self, everything=False):
        """Read back every line and row the commands may have written and their neighbours,
        or (``everything``) the whole scratchpad and accumulator."""
        lines = range(self.cfg.spad_lines) if everything else sorted(
            {n for line in self.watch_lines for n in (line - 1, line, line + 1)
             if 0 <= n < self.cfg.spad_lines})
        rows = range(self.cfg.acc_rows) if everything else sorted(
            {n for row in self.watch_rows for n in (row - 1, row, row + 1)
             if 0 <= n < self.cfg.acc_rows})
        for line in lines:
            a = line * self.lb
            self._add(VpuHostOp.SPAD_READ, a, 0,
                      resp=int.from_bytes(self.model.spad[a:a + self.lb].tobytes(), "little"))
        for row in rows:
            self._add(VpuHostOp.ACC_READ, row, 0, resp=_words_int(self.model.acc[row]))
        self.watch_lines.clear()
        self.watch_rows.clear()

    # -- commands ------------------------------------------------------------------------

    def command(self, cmd):
        self.flush()
        for space, addr, size in written_chunks(self.cfg, cmd):
            if space:
                self.watch_rows.add(addr)
            else:
                self.watch_lines.update(range(addr // self.lb, (addr + size - 1) // self.lb + 1))
        status, flags = self.model.execute(cmd)
        self._add(VpuHostOp.VPU, 0, encode_vpu_command(cmd), status=Status(status), resp=flags)
        return Status(status), flags

    def counters(self):
        """Read the performance counters (the response is returned by :func:`run`)."""
        self.flush()
        self.counter_reads.append(len(self.ops))
        self._add(VpuHostOp.COUNTERS, 0, 0, check=False)

    def flags(self):
        self._add(VpuHostOp.FLAGS, 0, 0, resp=self.model.sticky)
        self.model.sticky = 0

    def raw(self, op_code, addr, data, status):
        self.ops.append((op_code, addr, data))
        self.expected.append((status.value, 0))


def _pack(codes, width):
    codes = np.asarray(codes, np.uint64)
    if width == 4:
        return (codes[0::2] | (codes[1::2] << np.uint64(4))).astype(np.uint8)
    return codes.astype(np.dtype(f"<u{width // 8}")).view(np.uint8)


def _words_int(words):
    return sum(int(w) << (32 * i) for i, w in enumerate(np.asarray(words, dtype=np.uint64)))


def operand(prog, rng, length, rows, *, width=32, space=None, per_chunk=None, chunks=None):
    """Place an operand of ``rows`` rows × ``length`` elements: in the scratchpad (contiguous
    rows, or chunks with gaps) or the accumulator (rows of chunks, or the matrix engine's
    tile layout: chunk stride = rows, row stride = 1)."""
    per = per_chunk or prog.cfg.vpu_lanes
    nch = chunks if chunks is not None else -(-length // per)
    if space is None:
        space = int(rng.random() < 0.35) if width == 32 else 0
    if space:
        base = prog.alloc_acc(nch * rows, rng)
        if base is not None and rng.random() < 0.5:
            return {"space": 1, "addr": base, "chunk": rows, "row": 1}
        if base is not None:
            return {"space": 1, "addr": base, "chunk": 1, "row": nch}
    unit = per * width // 8
    gap = int(rng.integers(1, 3)) if rng.random() < 0.3 else 1
    row = nch * gap * unit + int(rng.integers(0, 2)) * unit
    base = prog.alloc_spad(row * rows + unit, unit, rng)
    if base is None:
        raise ValueError(f"{rows} rows of {length} elements do not fit in the scratchpad")
    return {"space": 0, "addr": base, "chunk": gap * unit, "row": row}


async def _setup(dut):
    tb = TB(dut)
    cfg = tb.cfg
    harness = StreamHarness(dut, host_op_layout(cfg), host_resp_layout(cfg))
    harness.idle()
    await tb.reset()
    model = _MODELS.setdefault(cfg.to_json(), VpuModel(cfg))
    return tb, harness, model


#: The golden memories, kept across the tests of one simulation (a reset clears neither).
_MODELS = {}


async def run(tb, harness, prog, name, *, valid_prob=1.0, ready_prob=1.0, corrupt=False,
              everything=False):
    """Run ``prog``, then read back the sticky flags and what its commands may have written
    (``everything``: the whole memory), and compare every response with the golden model."""
    prog.flush()
    prog.flags()
    prog.read_back(everything)
    ops = prog.ops
    got = await harness.run(
        valid_prob=valid_prob, ready_prob=ready_prob, seed=int(tb.rng.integers(1, 1 << 31)),
        timeout_cycles=100_000_000,
        op=[o[0] for o in ops], addr=[o[1] for o in ops],
        data=np.array([o[2] for o in ops], dtype=object))
    exp_status = np.array([e[0] for e in prog.expected], dtype=np.int64)
    exp_data = np.array([e[1] for e in prog.expected], dtype=object)
    got_data = np.array([int(d) if e[1] is not None else None
                         for d, e in zip(got["data"], prog.expected)], dtype=object)
    if corrupt:
        i = max(i for i, o in enumerate(ops) if o[0] == VpuHostOp.VPU.value)
        exp_status[i] ^= 1
    compare_responses(name, ops, exp_status, got["status"], exp_data, got_data, log=tb.log,
                      op_name=lambda c: VpuHostOp(c).name if c < 7 else str(c))
    out = []
    for i in prog.counter_reads:
        u = unpack(VPU_COUNTERS, [int(got["data"][i])])
        out.append({k: int(v[0]) for k, v in u.items()})
    return out


def _lengths(cfg, rng):
    """1, below, equal to, one past, a non-multiple of and more than 64× the lanes."""
    v = cfg.vpu_lanes
    out = [1, v - 1, v, v + 1, 3 * v + 2, int(rng.integers(2, 6 * v))]
    if SCALE >= 1:
        out.append(64 * v + 3)
    return [n for n in out if n >= 1]


def elementwise(prog, rng, op, length, rows, *, specials=True, in_place=False):
    srcs = SOURCES.get(op, "ab")
    prog.new_command()
    ops = {}
    for name in srcs:
        ops[name] = operand(prog, rng, length, rows)
        for r in range(rows):
            prog.put(ops[name], r, values(rng, length, specials=specials))
    dst = ops["a"] if in_place and "a" in ops else operand(prog, rng, length, rows)
    scalar = values(rng, 1, specials=specials)[0]
    cmd = make_vpu_command(op, length=length, rows=rows, scalar=int(scalar), dst=dst,
                           **{k: v for k, v in ops.items()})
    return prog.command(cmd)


# ------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------

@cocotb.test()
async def elementwise_sweep(dut):
    """Every elementwise and special-function op × lengths {1, <V, V, V+1, …, >64·V} × rows,
    operands in the scratchpad and the accumulator, specials mixed in, bit-exact with flags."""
    tb, harness, model = await _setup(dut)
    cfg, rng = tb.cfg, tb.rng
    for oi, op in enumerate(ELEMENTWISE):
        prog = Program(cfg, model)
        for li, length in enumerate(_lengths(cfg, rng)):
            rows = int(rng.integers(1, 4)) if length < 8 * cfg.vpu_lanes else 1
            elementwise(prog, rng, op, length, rows, specials=li % 3 != 1,
                        in_place=li % 4 == 3)
        throttled = oi % 3 == 2
        await run(tb, harness, prog, op.name, valid_prob=0.6 if throttled else 1.0,
                  ready_prob=0.6 if throttled else 1.0, everything=op is ELEMENTWISE[-1])
        tb.log.info("%s: bit-exact, flags included", op.name)


@cocotb.test()
async def reductions_and_fused(dut):
    """SUM, SUMSQ, RMAX, ARGMAX (ties), RMSNORM, SOFTMAX (causal, in place) over lengths up to
    more than 64·V, bit-exact with flags."""
    tb, harness, model = await _setup(dut)
    cfg, rng = tb.cfg, tb.rng
    v = cfg.vpu_lanes
    fused = (VpuCmd.SUM, VpuCmd.SUMSQ, VpuCmd.RMAX, VpuCmd.ARGMAX, VpuCmd.RMSNORM,
             VpuCmd.SOFTMAX)
    for op in fused:
        prog = Program(cfg, model)
        for li, length in enumerate(_lengths(cfg, rng)):
            rows = int(rng.integers(1, 4)) if length < 8 * v else 1
            prog.new_command()
            a = operand(prog, rng, length, rows)
            for r in range(rows):
                x = values(rng, length, specials=li % 2 == 0)
                if op is VpuCmd.ARGMAX and li % 3 == 1:
                    x = rng.choice(x[:3], size=length)        # ties
                prog.put(a, r, x)
            fields = dict(length=length, rows=rows, a=a)
            if op in (VpuCmd.SUM, VpuCmd.SUMSQ, VpuCmd.RMAX, VpuCmd.ARGMAX):
                fields["dst"] = operand(prog, rng, 1, rows)
            elif op is VpuCmd.RMSNORM:
                g = operand(prog, rng, length, 1)
                g["row"] = 0                       # one gain vector for every row
                prog.put(g, 0, values(rng, length, specials=False))
                fields.update(b=g, dst=operand(prog, rng, length, rows),
                              scalar=float(np.float32(1.0 / length)), scalar2=1e-6)
            else:
                causal = li % 2
                fields.update(dst=a if li % 3 == 0 else operand(prog, rng, length, rows),
                              causal=causal, query=int(rng.integers(0, length + 1)))
            prog.command(make_vpu_command(op, **fields))
        await run(tb, harness, prog, op.name, everything=op is fused[-1])
        tb.log.info("%s: bit-exact, flags included", op.name)


@cocotb.test()
async def conversions(dut):
    """FP32 → every format (MX: codes and block scales) and back, bit-exact with flags."""
    tb, harness, model = await _setup(dut)
    cfg, rng = tb.cfg, tb.rng
    fmts = sorted(cfg.formats, key=lambda f: f.value)
    for fmt in fmts:
        prog = Program(cfg, model)
        w = code_width(fmt)
        lengths = [MX_BLOCK, 3 * MX_BLOCK] if is_mx(fmt) else [2, cfg.vpu_lanes,
                                                               5 * cfg.vpu_lanes + 2]
        for length in lengths:
            rows = 2
            prog.new_command()
            a = operand(prog, rng, length, rows)
            codes = operand(prog, rng, length, rows, width=w)
            scales = (operand(prog, rng, length // MX_BLOCK, rows, width=8, per_chunk=1)
                      if is_mx(fmt) else {})
            for r in range(rows):
                prog.put(a, r, values(rng, length, spread=8))
            prog.command(make_vpu_command(VpuCmd.CVT_TO, fmt=fmt, length=length, rows=rows,
                                          a=a, dst=codes, **({"b": scales} if scales else {})))
            back = operand(prog, rng, length, rows)
            prog.command(make_vpu_command(VpuCmd.CVT_FROM, fmt=fmt, length=length, rows=rows,
                                          a=codes, dst=back, **({"b": scales} if scales else {})))
            # Arbitrary codes (every class) back to FP32.
            raw = operand(prog, rng, length, 1, width=w)
            prog.put(raw, 0, rng.integers(0, 1 << min(w, 31), size=length).astype(np.uint32),
                     width=w)
            if scales:
                prog.put(scales, 0, rng.choice([0, 1, 120, 127, 140, 254, 255], size=length
                                               // MX_BLOCK), width=8, per_chunk=1)
            prog.command(make_vpu_command(VpuCmd.CVT_FROM, fmt=fmt, length=length, rows=1,
                                          a=raw, dst=operand(prog, rng, length, 1),
                                          **({"b": scales} if scales else {})))
        await run(tb, harness, prog, fmt.name, everything=fmt is fmts[-1])
        tb.log.info("%s: conversions bit-exact", fmt.name)


@cocotb.test()
async def gather(dut):
    """Row gather (embedding lookup): rows of a table by indices in memory."""
    tb, harness, model = await _setup(dut)
    cfg, rng = tb.cfg, tb.rng
    prog = Program(cfg, model)
    for length in (cfg.vpu_lanes - 1, 3 * cfg.vpu_lanes + 1):
        n_table, rows = 9, 5
        prog.new_command()
        table = operand(prog, rng, length, n_table)
        for r in range(n_table):
            prog.put(table, r, values(rng, length))
        idx = operand(prog, rng, 1, rows)
        for r in range(rows):
            prog.put(idx, r, [int(rng.integers(0, n_table))])
        prog.command(make_vpu_command(VpuCmd.GATHER, length=length, rows=rows, query=n_table,
                                      a=table, b=idx, dst=operand(prog, rng, length, rows)))
        # One index out of the table: INDEX_RANGE and nothing written.
        prog.put(idx, rows - 1, [n_table])
        status, _ = prog.command(make_vpu_command(
            VpuCmd.GATHER, length=length, rows=rows, query=n_table, a=table, b=idx,
            dst=operand(prog, rng, length, rows)))
        assert status is Status.INDEX_RANGE
    await run(tb, harness, prog, "gather", everything=True)


@cocotb.test()
async def bad_commands(dut):
    """Each bad-input class gets its status and writes nothing (the whole memory is read
    back); the engine works afterwards."""
    tb, harness, model = await _setup(dut)
    cfg, rng = tb.cfg, tb.rng
    v = cfg.vpu_lanes
    prog = Program(cfg, model)
    a = operand(prog, rng, 2 * v, 2, space=0)
    b = operand(prog, rng, 2 * v, 2, space=1)
    dst = operand(prog, rng, 2 * v, 2, space=0)
    for r in range(2):
        prog.put(a, r, values(rng, 2 * v))
        prog.put(b, r, values(rng, 2 * v))
    good = make_vpu_command(VpuCmd.ADD, length=2 * v, rows=2, a=a, b=b, dst=dst)
    prog.command(good)
    unknown_fmt = [c for c in range(16) if c not in {f.value for f in cfg.formats}]
    cases = [
        ("unknown opcode", dict(op=0x07), Status.BAD_OPCODE),
        ("unknown opcode 0xFF", dict(op=0xFF), Status.BAD_OPCODE),
        ("reserved bits", dict(reserved=1), Status.NONZERO_RESERVED),
        ("causal on ADD", dict(causal=1), Status.NONZERO_RESERVED),
        ("operand reserved", dict(b=dict(b, reserved=4)), Status.NONZERO_RESERVED),
        ("format on ADD", dict(fmt=Format.BF16.value), Status.BAD_FORMAT),
        ("unknown format", dict(op=VpuCmd.CVT_TO.value, fmt=unknown_fmt[0]), Status.BAD_FORMAT),
        ("length 0", dict(length=0), Status.SIZE_RANGE),
        ("length too large", dict(length=MAX_VLEN + 1), Status.SIZE_RANGE),
        ("rows 0", dict(rows=0), Status.SIZE_RANGE),
        ("rows too large", dict(rows=MAX_DIM + 1), Status.SIZE_RANGE),
        ("length huge", dict(length=(1 << 32) - 1), Status.SIZE_RANGE),
        ("a misaligned", dict(a=dict(a, addr=a["addr"] + 4)), Status.ADDR_ALIGN),
        ("dst row stride misaligned", dict(dst=dict(dst, row=dst["row"] + 2)),
         Status.ADDR_ALIGN),
        ("a past the end", dict(a=dict(a, addr=cfg.spad_bytes - 4 * v)), Status.ADDR_RANGE),
        ("dst address wraps", dict(dst=dict(dst, addr=(1 << 32) - 4 * v)), Status.ADDR_RANGE),
        ("b past the accumulator", dict(b=dict(b, addr=cfg.acc_rows - 1)), Status.ADDR_RANGE),
        ("huge row stride", dict(dst=dict(dst, row=1 << 31)), Status.ADDR_RANGE),
        ("codes in the accumulator", dict(op=VpuCmd.CVT_TO.value, fmt=Format.BF16.value,
                                          dst=dict(b, space=1)), Status.ADDR_RANGE),
    ]
    if Format.MXFP4 in cfg.formats:
        cases.append(("MX length not a block multiple",
                      dict(op=VpuCmd.CVT_TO.value, fmt=Format.MXFP4.value, length=MX_BLOCK + 2),
                      Status.SIZE_RANGE))
    for label, change, want in cases:
        cmd = dict(good, **change)
        got, _ = prog.command(cmd)
        assert got is want, f"golden model gives {got.name} for {label}, test expects {want.name}"
    prog.raw(7, 0, 0, Status.BAD_OPCODE)
    prog.raw(VpuHostOp.SPAD_WRITE.value, cfg.spad_bytes, 0, Status.ADDR_RANGE)
    prog.raw(VpuHostOp.SPAD_READ.value, 3, 0, Status.ADDR_ALIGN)
    prog.raw(VpuHostOp.ACC_READ.value, cfg.acc_rows, 0, Status.ADDR_RANGE)
    prog.command(good)
    await run(tb, harness, prog, "bad commands", everything=True)
    tb.log.info("%d bad commands refused with their status; memory unchanged", len(cases))


@cocotb.test(expect_error=ScoreboardError)
async def corrupted_model_is_caught(dut):
    """A wrong expected status must fail the comparison."""
    tb, harness, model = await _setup(dut)
    prog = Program(tb.cfg, model)
    elementwise(prog, tb.rng, VpuCmd.ADD, 5, 1)
    await run(tb, harness, prog, "corrupted", corrupt=True)
