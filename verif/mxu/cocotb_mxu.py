"""The matrix engine on Verilator (``mxu_tb``: engine, scratchpad, accumulator, host port).

Each test builds a *program* of host-port requests — scratchpad line writes, accumulator
writes, matrix-engine commands, accumulator reads, counter reads — and runs it as one batch
through ``stream_harness`` (Python wakes once per batch, not per cycle). The expected response
of every request comes from ``golden_model.mxu.MxuModel``, which executes the same commands
against its own copy of the memories, so the comparison covers the whole accumulator contents
that each command may have touched, not only its result.
"""

import os

import cocotb
import numpy as np

from golden_model import formats
from golden_model.mxu import MxuModel, make_command, operand_bytes
from rtl.layouts import (E8M0_NAN, MAX_DIM, MAX_K, MX_BLOCK, MXU_COMMAND, Format,
                         Status, element_format, is_mx)
from rtl.mxu.engine import MXU_COUNTERS
from rtl.mxu.host import HostOp, host_op_layout, host_resp_layout
from verif.common.harness import StreamHarness
from verif.common.pack import pack, unpack
from verif.common.scoreboard import ScoreboardError, compare_responses
from verif.common.tb import TB
from verif.common.vectors import codes_mix


SCALE = float(os.environ.get("MXU_SCALE", "1"))

#: Format pairs of the sweep: every format with itself, and the decoder's mixed cases.
PAIRS = [(f, f) for f in Format] + [
    (Format.BF16, Format.FP8_E4M3), (Format.BF16, Format.MXFP4), (Format.BF16, Format.FP8_E5M2),
    (Format.FP16, Format.FP4_E2M1), (Format.FP32, Format.BF16), (Format.MXFP8_E4M3,
                                                                   Format.MXFP4),
    (Format.INT8, Format.FP8_E4M3),
]


# ------------------------------------------------------------------------------------------
# Operands
# ------------------------------------------------------------------------------------------

def operand(rng, fmt, shape, k_axis, specials):
    """Random codes of ``fmt`` (and MX scales along ``k_axis``), shape ``shape``.

    Values are normally distributed over a few binades; with ``specials`` a few percent of the
    codes are zeros of both signs, subnormals, the largest values, infinities and NaNs (as the
    format has them), and a few MX scales are extreme or NaN.
    """
    fmt = Format(fmt)
    x = (rng.standard_normal(shape) * 2.0 ** rng.integers(-3, 4)).astype(np.float32)
    scales = None
    if element_format(fmt) is Format.INT8:
        codes = rng.integers(-20, 21, size=shape).astype(np.uint32) & 0xFF
    elif is_mx(fmt):
        xt = np.moveaxis(x, k_axis, -1)
        k = xt.shape[-1]
        kb = -(-k // MX_BLOCK)
        padded = np.zeros(xt.shape[:-1] + (kb * MX_BLOCK,), np.float32)
        padded[..., :k] = xt
        codes, scales = formats.mx_quantize(padded, fmt)
        codes = np.moveaxis(codes[..., :k], -1, k_axis).astype(np.uint32)
        scales = np.moveaxis(scales, -1, k_axis).astype(np.uint32)
    else:
        codes = np.asarray(formats.quantize(x, fmt), dtype=np.uint32)
    if specials:
        mask = rng.random(shape) < 0.03
        codes[mask] = codes_mix(rng, fmt, int(mask.sum()))
        if scales is not None:
            smask = rng.random(scales.shape) < 0.05
            scales[smask] = rng.choice([0, 1, 100, 150, 254, E8M0_NAN], size=int(smask.sum()))
    return codes, scales


# ------------------------------------------------------------------------------------------
# Programs
# ------------------------------------------------------------------------------------------

class Program:
    """A batch of host requests and the responses the golden model expects."""

    def __init__(self, cfg, model):
        self.cfg = cfg
        self.model = model
        self.ops = []        # (op, addr, data)
        self.expected = []   # (status, data, check_data)
        self.counter_reads = []
        self.line = cfg.spad_line_bytes

    def _add(self, op, addr, data, status=Status.SUCCESS, resp=0, check=True):
        self.ops.append((op.value, addr, data))
        self.expected.append((status.value, resp, check))

    def spad_region(self, start, size):
        """Write the scratchpad lines covering ``[start, start+size)`` from the model's copy."""
        lb = self.line
        for addr in range(start // lb * lb, -(-(start + size) // lb) * lb, lb):
            data = int.from_bytes(self.model.spad[addr:addr + lb].tobytes(), "little")
            self._add(HostOp.SPAD_WRITE, addr, data)

    def acc_write(self, row, words):
        self.model.acc[row] = words
        self._add(HostOp.ACC_WRITE, row, _words_int(words))

    def acc_read(self, row):
        if 0 <= row < self.cfg.acc_rows:
            self._add(HostOp.ACC_READ, row, 0, resp=_words_int(self.model.acc[row]))

    def command(self, cmd):
        status, flags = self.model.execute(cmd)
        self._add(HostOp.MXU, 0, pack(MXU_COMMAND, **cmd)[0], status=Status(status), resp=flags)
        return Status(status)

    def counters(self):
        self.counter_reads.append(len(self.ops))
        self._add(HostOp.COUNTERS, 0, 0, check=False)

    def inject(self, seed, a_prob, o_prob):
        self._add(HostOp.INJECT, 0, seed | (a_prob << 32) | (o_prob << 40))

    def raw(self, op_code, addr, data, status):
        """A request with any op code (to test refusals)."""
        self.ops.append((op_code, addr, data))
        self.expected.append((status.value, 0, True))


def _words_int(words):
    return sum(int(w) << (32 * i) for i, w in enumerate(np.asarray(words, dtype=np.uint64)))


def place(rng, cfg, sizes, aligns):
    """Random non-overlapping placement of regions in the scratchpad; None if they don't fit."""
    order = [k for k in sizes if sizes[k]]
    total = sum(sizes[k] + aligns[k] for k in order)
    if total > cfg.spad_bytes:
        return None
    slack = cfg.spad_bytes - total
    addr = int(rng.integers(0, slack // 4 + 1))
    out = {}
    for k in order:
        addr = -(-addr // aligns[k]) * aligns[k]
        out[k] = addr
        addr += sizes[k] + int(rng.integers(0, max(1, slack // (4 * len(order))) + 1))
    return out if addr <= cfg.spad_bytes else None


def gemm(prog, rng, fmt_a, fmt_b, m, n, k, *, accumulate=False, specials=True, c_row=None,
         counters=False):
    """Append one GEMM (operands, optional accumulator preload, command, read-back).

    With ``counters``, the performance counters are read just before and after the command.
    """
    cfg, model = prog.cfg, prog.model
    cmd = make_command(m=m, n=n, k=k, fmt_a=fmt_a, fmt_b=fmt_b, accumulate=int(accumulate))
    sizes = operand_bytes(cfg, cmd)
    regions = {"a": sizes["a"], "b": sizes["b"], "sa": sizes["sa"], "sb": sizes["sb"]}
    aligns = {"a": sizes["a_align"], "b": sizes["b_align"], "sa": 1, "sb": sizes["sb_align"]}
    where = place(rng, cfg, regions, aligns)
    if where is None or sizes["c_rows"] > cfg.acc_rows:
        raise ValueError(f"GEMM {m}x{n}x{k} {fmt_a.name}x{fmt_b.name} does not fit")
    if c_row is None:
        c_row = int(rng.integers(0, cfg.acc_rows - sizes["c_rows"] + 1))
    cmd.update(a_addr=where["a"], b_addr=where["b"], c_row=c_row,
               sa_addr=where.get("sa", 0), sb_addr=where.get("sb", 0))
    a, sa = operand(rng, fmt_a, (m, k), 1, specials)
    b, sb = operand(rng, fmt_b, (k, n), 0, specials)
    model.load(cmd, a, b, sa, sb, fill=rng)
    for key in ("a", "b", "sa", "sb"):
        if regions[key]:
            prog.spad_region(where[key], regions[key])
    rows = range(c_row, c_row + sizes["c_rows"])
    if accumulate:
        int_mode = element_format(fmt_a) is Format.INT8 and element_format(fmt_b) is Format.INT8
        for row in rows:
            if int_mode:
                words = rng.integers(-1 << 20, 1 << 20, size=cfg.mxu_cols).astype(np.uint32)
            else:
                words = formats.quantize(rng.standard_normal(cfg.mxu_cols).astype(np.float32),
                                         Format.FP32).astype(np.uint32)
            prog.acc_write(row, words)
    if counters:
        prog.counters()
    status = prog.command(cmd)
    if counters:
        prog.counters()
    # Read back every row the command may touch, and one on each side.
    for row in range(c_row - 1, c_row + sizes["c_rows"] + 1):
        prog.acc_read(row)
    return cmd, status


# ------------------------------------------------------------------------------------------
# Running programs
# ------------------------------------------------------------------------------------------

#: The golden model of the memories, kept across the tests of one simulation: a reset does not
#: clear the scratchpad and the accumulator, so neither may the model.
_MODELS = {}


async def _setup(dut):
    tb = TB(dut)
    cfg = tb.cfg
    harness = StreamHarness(dut, host_op_layout(cfg), host_resp_layout(cfg))
    harness.idle()
    await tb.reset()
    model = _MODELS.setdefault(cfg.to_json(), MxuModel(cfg))
    return tb, harness, model


async def run(tb, harness, prog, name, *, valid_prob=1.0, ready_prob=1.0, corrupt=False):
    ops = prog.ops
    got = await harness.run(
        valid_prob=valid_prob, ready_prob=ready_prob, seed=int(tb.rng.integers(1, 1 << 31)),
        timeout_cycles=50_000_000,
        op=[o[0] for o in ops], addr=[o[1] for o in ops],
        data=np.array([o[2] for o in ops], dtype=object))
    exp_status = np.array([e[0] for e in prog.expected], dtype=np.int64)
    exp_data = np.array([e[1] if e[2] else 0 for e in prog.expected], dtype=object)
    got_data = np.array([int(d) if e[2] else 0 for d, e in zip(got["data"], prog.expected)],
                        dtype=object)
    if corrupt:
        # One wrong bit in the last result read back.
        i = max(i for i, o in enumerate(ops) if o[0] == HostOp.ACC_READ.value)
        exp_data[i] ^= 1 << 7
    compare_responses(name, ops, exp_status, got["status"], exp_data, got_data, log=tb.log,
                      op_name=lambda c: HostOp(c).name if c < 6 else str(c))
    out = []
    for i in prog.counter_reads:
        u = unpack(MXU_COUNTERS, [int(got["data"][i])])
        out.append({k: int(v[0]) for k, v in u.items()})
    return out


def _shapes(cfg, rng):
    """M, N, K cases: 1, below, equal to, a non-multiple of and ≥ 8× the array size."""
    r, c = cfg.mxu_rows, cfg.mxu_cols
    big = 8 * max(r, c)
    return [
        (1, 1, 1),
        (r - 1, c - 1, r - 1),
        (r, c, r),
        (2 * r + 1, 3 * c - 1, 2 * r + 3),
        (int(rng.integers(1, 3 * r)), int(rng.integers(1, 3 * c)), int(rng.integers(1, 70))),
        # Many short tiles: several weight tokens in flight at once.
        (2, 3 * c + 1, 5 * r + 3),
        (big, big, big),
    ]


def _fits(cfg, fmt_a, fmt_b, m, n, k):
    cmd = make_command(m=m, n=n, k=k, fmt_a=fmt_a, fmt_b=fmt_b)
    s = operand_bytes(cfg, cmd)
    return (s["a"] + s["b"] + s["sa"] + s["sb"] + 4 * cfg.spad_line_bytes <= cfg.spad_bytes
            and s["c_rows"] <= cfg.acc_rows)


# ------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------

@cocotb.test()
async def gemm_sweep(dut):
    """Every format pair × shapes {1, <, =, non-multiple, random, 8×} × stalls, bit-exact."""
    tb, harness, model = await _setup(dut)
    cfg, rng = tb.cfg, tb.rng
    pairs = [p for p in PAIRS if p[0] in cfg.formats and p[1] in cfg.formats]
    n_done = 0
    for pi, (fa, fb) in enumerate(pairs):
        prog = Program(cfg, model)
        throttled = pi % 2 == 1
        if throttled:
            prog.inject(int(rng.integers(1, 1 << 31)), int(rng.integers(60, 200)),
                        int(rng.integers(60, 200)))
        for si, (m, n, k) in enumerate(_shapes(cfg, rng)):
            if SCALE < 1 and (m, n, k) == (8 * max(cfg.mxu_rows, cfg.mxu_cols),) * 3:
                continue
            if not _fits(cfg, fa, fb, m, n, k):
                m, n, k = (max(1, m // 2), max(1, n // 2), k)
            gemm(prog, rng, fa, fb, m, n, k, accumulate=bool(rng.integers(0, 2)),
                 specials=si % 2 == 0)
            n_done += 1
        if throttled:
            prog.inject(0, 255, 255)
        await run(tb, harness, prog, f"{fa.name}x{fb.name}",
                  valid_prob=0.7 if throttled else 1.0, ready_prob=0.7 if throttled else 1.0)
        tb.log.info("%s x %s: bit-exact (%s)", fa.name, fb.name,
                    "random stalls" if throttled else "no stalls")
    tb.log.info("%d GEMMs bit-exact in %d cycles", n_done, harness.cycles)


@cocotb.test()
async def counters_add_up(dut):
    """macs = M·N·K per command, and every busy cycle is an issue or exactly one stall cause."""
    tb, harness, model = await _setup(dut)
    cfg, rng = tb.cfg, tb.rng
    r, c = cfg.mxu_rows, cfg.mxu_cols
    for throttle in (False, True):
        prog = Program(cfg, model)
        prog.counters()
        if throttle:
            prog.inject(int(rng.integers(1, 1 << 31)), 120, 120)
        shapes = [(2 * r + 1, 2 * c + 3, 3 * r + 1), (4 * r, 4 * c, 4 * r), (3, 2, 1)]
        for m, n, k in shapes:
            gemm(prog, rng, Format.BF16, Format.FP8_E4M3, m, n, k, specials=False)
        prog.counters()
        prog.inject(0, 255, 255)
        before, after = await run(tb, harness, prog, "counters")
        d = {key: after[key] - before[key] for key in after}
        macs = sum(m * n * k for m, n, k in shapes)
        assert d["macs"] == macs, f"macs counted {d['macs']}, expected {macs}"
        issue_cycles = sum(m * -(-n // c) * -(-k // r) for m, n, k in shapes)
        stalls = d["stall_weight"] + d["stall_input"] + d["stall_output"] + d["stall_drain"]
        assert d["busy"] == issue_cycles + stalls, \
            f"busy {d['busy']} != issue cycles {issue_cycles} + stalls {stalls}: {d}"
        if throttle:
            assert d["stall_input"] > 0 and d["stall_output"] > 0, d
        tb.log.info("counters (%s): %s", "stalls injected" if throttle else "no stalls", d)


@cocotb.test()
async def bad_commands(dut):
    """Each bad-input class gets its status and writes nothing; good commands still work."""
    tb, harness, model = await _setup(dut)
    cfg, rng = tb.cfg, tb.rng
    prog = Program(cfg, model)
    # A good GEMM first, so the accumulator holds values that a bad command must not change.
    good, _ = gemm(prog, rng, Format.BF16, Format.FP8_E4M3, 5, 6, 7, c_row=10)
    r, c = cfg.mxu_rows, cfg.mxu_cols
    unknown = [code for code in range(16) if code not in {f.value for f in cfg.formats}]
    base = dict(good)
    cases = [
        ("reserved bits", dict(reserved=1), Status.NONZERO_RESERVED),
        ("unknown fmt_a", dict(fmt_a=unknown[0]), Status.BAD_FORMAT),
        ("unknown fmt_b", dict(fmt_b=unknown[-1]), Status.BAD_FORMAT),
        ("M = 0", dict(m=0), Status.SIZE_RANGE),
        ("N = 0", dict(n=0), Status.SIZE_RANGE),
        ("K = 0", dict(k=0), Status.SIZE_RANGE),
        ("M too large", dict(m=MAX_DIM + 1), Status.SIZE_RANGE),
        ("K too large", dict(k=MAX_K + 1), Status.SIZE_RANGE),
        ("N huge", dict(n=(1 << 32) - 1), Status.SIZE_RANGE),
        ("A misaligned", dict(a_addr=good["a_addr"] + 1), Status.ADDR_ALIGN),
        ("B misaligned", dict(b_addr=good["b_addr"] + 1), Status.ADDR_ALIGN),
        ("A past the end", dict(a_addr=cfg.spad_bytes - 2 * r * 2), Status.ADDR_RANGE),
        ("B past the end", dict(b_addr=cfg.spad_bytes), Status.ADDR_RANGE),
        ("A address wraps", dict(a_addr=(1 << 32) - 2 * r), Status.ADDR_RANGE),
        ("C past the end", dict(c_row=cfg.acc_rows - 1), Status.ADDR_RANGE),
        ("C row huge", dict(c_row=(1 << 32) - 1), Status.ADDR_RANGE),
        ("M needs more rows than the accumulator", dict(m=cfg.acc_rows + 1, c_row=0),
         Status.ADDR_RANGE),
    ]
    if Format.MXFP4 in cfg.formats:
        cases += [
            ("MX B scales misaligned", dict(fmt_b=Format.MXFP4.value, sb_addr=1),
             Status.ADDR_ALIGN),
            ("MX A scales past the end", dict(fmt_a=Format.MXFP4.value,
                                              sa_addr=cfg.spad_bytes - 1), Status.ADDR_RANGE),
        ]
    for label, change, status in cases:
        cmd = dict(base, **change)
        got = prog.command(cmd)
        assert got is status, f"golden model gives {got.name} for {label}, test expects " \
                              f"{status.name}"
        for row in range(good["c_row"] - 1, good["c_row"] + 3):
            prog.acc_read(row)
    # Host-port refusals.
    prog.raw(7, 0, 0, Status.BAD_OPCODE)
    prog.raw(HostOp.SPAD_WRITE.value, cfg.spad_bytes, 0, Status.ADDR_RANGE)
    prog.raw(HostOp.SPAD_WRITE.value, 3, 0, Status.ADDR_ALIGN)
    prog.raw(HostOp.ACC_WRITE.value, cfg.acc_rows, 0, Status.ADDR_RANGE)
    # The engine still works afterwards.
    gemm(prog, rng, Format.FP32, Format.FP32, 2 * r + 1, c + 1, r + 2)
    await run(tb, harness, prog, "bad commands")
    tb.log.info("%d bad commands refused with their status; memory unchanged", len(cases))


@cocotb.test(expect_error=ScoreboardError)
async def corrupted_model_is_caught(dut):
    """One flipped bit in the golden model's result must fail the comparison."""
    tb, harness, model = await _setup(dut)
    prog = Program(tb.cfg, model)
    gemm(prog, tb.rng, Format.BF16, Format.FP8_E4M3, 5, 6, 7, specials=False)
    await run(tb, harness, prog, "corrupted", corrupt=True)
