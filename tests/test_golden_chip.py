"""The functional chip (``golden_model.chip``) and the descriptor encoding (``firmware.isa``)
against ``docs/chip.md``.

- Encoding: every builder of ``firmware.isa`` against ``DESCRIPTOR.const(...)`` /
  ``COMPLETION.const(...)`` of Amaranth (the bit positions come from the layouts), and the
  decoders as inverses.
- Descriptors: one directed descriptor per bad-input class of § Checks, asserting the status,
  the latched error and that nothing but the completion entry was written (HBM, scratchpad,
  accumulator, semaphores).
- CSR refusals (every row of § CSR refusals), register access rules, rings wrapping with the
  phase bit, semaphores across queues, deadlock → TIMEOUT, soft and queue reset, interrupts,
  sticky flags, and GEMM / VPU descriptors leaving the same memories as ``MxuModel`` /
  ``VpuModel`` called directly.
"""

import numpy as np
import pytest

from firmware import isa
from golden_model.chip import CSR_ERR_QUEUE, ChipError, ChipModel
from golden_model.mxu import MxuModel, make_command, operand_bytes
from golden_model.vpu import VpuModel, encode_vpu_command, make_vpu_command
from rtl.cmd.regs import ID_VALUE, QueueState, register_map
from rtl.config import TINY
from rtl.layouts import (
    COMPLETION, CPL_BYTES, DESC_BYTES, DESCRIPTOR, DMA_COMMAND, MXU_COMMAND, SEM_COMMAND,
    SEMAPHORES, VPU_COMMAND, WRITE_COMMAND, DescFlags, Flags, Format, Opcode, Status, VpuCmd,
)

S = Status
CFG = TINY.replace(name="CHIP_TEST", hbm_bytes=1 << 20)
SQ0, CQ0, SQ1, CQ1 = 0x10000, 0x18000, 0x20000, 0x28000
LOG2 = 3
DATA = 0x40000        # free HBM for operands


def _chip(queues=1, log2=LOG2):
    chip = ChipModel(CFG)
    for q, (sq, cq) in enumerate([(SQ0, CQ0), (SQ1, CQ1), (0x30000, 0x38000),
                                  (0x50000, 0x58000)][:queues]):
        chip.setup_queue(q, sq, cq, log2)
    return chip


def _err(chip):
    st = chip.read_reg("ERR_STATUS")
    return {"code": st & 0xFF, "queue": (st >> 8) & 0xF, "csr": (st >> 12) & 1,
            "overflow": (st >> 30) & 1, "valid": st >> 31,
            "index": chip.read_reg("ERR_INDEX"),
            "addr": chip.read_reg("ERR_ADDR_LO") | chip.read_reg("ERR_ADDR_HI") << 32}


def _const(layout, fields):
    """The bits of ``fields`` placed by Amaranth itself (``layout.const``)."""
    return layout.const(fields).as_value().value


# -- encoding -------------------------------------------------------------------------------

def _descriptor_const(op, body_layout, body, flags=0, cookie=0):
    body_bits = 0 if body_layout is None else _const(body_layout, body)
    return _const(DESCRIPTOR, {
        "header": {"op": op, "flags": flags, "cookie": cookie}, "body": body_bits})


def _le(buf):
    assert len(buf) == DESC_BYTES
    return int.from_bytes(buf, "little")


def test_builders_match_the_amaranth_layouts():
    dma = dict(store=1, rows=7, row_bytes=0x40, spad_addr=0x1234, spad_stride=0x80,
               hbm_addr=0x1_2345_6780, hbm_stride=0xFFFF_0000_0000_0004)
    assert _le(isa.dma(cookie=0xDEADBEEF, irq=True, **dma)) == _descriptor_const(
        Opcode.DMA.value, DMA_COMMAND, dma, DescFlags.IRQ.value, 0xDEADBEEF)
    mxu = make_command(m=3, n=5, k=7, fmt_a=Format.BF16, fmt_b=Format.MXFP4, accumulate=1,
                       a_addr=0x100, b_addr=0x200, sa_addr=0x300, sb_addr=0x400, c_row=9)
    assert _le(isa.gemm(mxu, cookie=5)) == _descriptor_const(Opcode.GEMM.value, MXU_COMMAND,
                                                             mxu, 0, 5)
    assert _le(isa.gemm(_const(MXU_COMMAND, mxu))) == \
        _descriptor_const(Opcode.GEMM.value, MXU_COMMAND, mxu)
    vcmd = make_vpu_command(VpuCmd.SOFTMAX, length=300, rows=7, causal=1, query=9,
                            scalar=1.5, a={"addr": 0x40, "row": 0x80, "chunk": 16},
                            dst={"space": 1, "addr": 3})
    want = _descriptor_const(Opcode.VPU.value, VPU_COMMAND, vcmd)
    assert _le(isa.vpu(vcmd)) == want
    assert _le(isa.vpu(encode_vpu_command(vcmd))) == want
    for build, op in ((isa.signal, Opcode.SIGNAL), (isa.wait, Opcode.WAIT)):
        assert _le(build(15, 0xFFFF_FFFF, cookie=1)) == _descriptor_const(
            op.value, SEM_COMMAND, {"sem": 15, "value": 0xFFFF_FFFF}, 0, 1)
    assert _le(isa.write(0xFFFF_FFFF_FFFF_FFF8, 0x0123_4567_89AB_CDEF, irq=True)) == \
        _descriptor_const(Opcode.WRITE.value, WRITE_COMMAND,
                          {"addr": 0xFFFF_FFFF_FFFF_FFF8, "value": 0x0123_4567_89AB_CDEF},
                          DescFlags.IRQ.value)
    assert _le(isa.nop(cookie=0xFFFF_FFFF)) == _descriptor_const(0, None, None, 0, 0xFFFF_FFFF)
    body = (1 << 959) | 0x5A
    assert _le(isa.raw(0xFF, body, flags=0x80, reserved=0xFFFF, cookie=3)) == _const(
        DESCRIPTOR, DESCRIPTOR.const({"header": {"op": 0xFF, "flags": 0x80,
                                                 "reserved": 0xFFFF, "cookie": 3},
                                      "body": body}))


def test_decoders_invert_the_builders():
    d = isa.decode_descriptor(isa.dma(cookie=77, irq=True, rows=2, row_bytes=8, gather=1,
                                      hbm_addr=1 << 40))
    assert (d["opcode"], d["op"], d["flags"], d["cookie"], d["reserved"]) == \
        (Opcode.DMA, 1, 1, 77, 0)
    assert d["cmd"] == {"store": 0, "gather": 1, "reserved": 0, "rows": 2, "row_bytes": 8,
                        "spad_addr": 0, "spad_stride": 0, "hbm_addr": 1 << 40,
                        "hbm_stride": 0}
    vcmd = make_vpu_command(VpuCmd.MUL, length=5, rows=2, b={"addr": 64, "reserved": 3})
    assert isa.decode_descriptor(isa.vpu(vcmd))["cmd"] == vcmd
    d = isa.decode_descriptor(isa.raw(0x13, 12345, reserved=7))
    assert d["opcode"] is None and d["cmd"] is None and d["body"] == 12345
    assert d["reserved"] == 7
    assert isa.decode_descriptor(isa.nop())["cmd"] is None
    for fields in (dict(index=0xFFFF_FFFF, cookie=0x1234_5678, status=S.TIMEOUT,
                        flags=Flags.INVALID | Flags.UNDERFLOW, phase=0, queue=3),
                   dict(index=0, cookie=0, status=S.SUCCESS, flags=0, phase=1, queue=0)):
        buf = isa.encode_completion(**fields)
        want = _const(COMPLETION, fields)
        assert int.from_bytes(buf, "little") == want and len(buf) == CPL_BYTES
        got = isa.decode_completion(buf)
        assert got["status"] is fields["status"]
        assert {k: got[k] for k in ("index", "cookie", "phase", "queue")} == \
            {k: fields[k] for k in ("index", "cookie", "phase", "queue")}
        assert got["flags"] == Flags(fields["flags"]).value
    assert isa.decode_completion(bytes([0] * 8 + [0xEE] + [0] * 7))["status"] == 0xEE


def test_encoding_rejects_bad_values():
    with pytest.raises(ValueError):
        isa.dma(bogus=1)
    with pytest.raises(ValueError):
        isa.signal(256, 0)
    with pytest.raises(ValueError):
        isa.raw(0, 1 << 960)
    with pytest.raises(ValueError):
        isa.decode_descriptor(bytes(127))


# -- descriptors ----------------------------------------------------------------------------

def _run_one(chip, desc, q=0):
    """Submit ``desc`` alone on queue ``q``, run, and return ``(completion, changed HBM
    byte addresses, changed state)``."""
    chip.submit(q, [desc])
    hbm, spad, acc = chip.hbm.copy(), chip.spad.copy(), chip.acc.copy()
    sems = list(chip.sems)
    chip.run()
    cpl = chip.completions(q)[-1]
    changed = np.flatnonzero(chip.hbm != hbm)
    others = {"spad": not np.array_equal(chip.spad, spad),
              "acc": not np.array_equal(chip.acc, acc), "sems": chip.sems != sems}
    return cpl, changed, others


def _assert_error(chip, desc, status, q=0):
    s = chip.queues[q]
    index = s.head
    cq = s.cq_base + (index % s.size) * CPL_BYTES
    cpl, changed, others = _run_one(chip, desc, q)
    assert cpl["status"] is status
    assert (cpl["index"], cpl["queue"], cpl["flags"]) == (index, q, 0)
    assert ((changed >= cq) & (changed < cq + CPL_BYTES)).all(), "wrote beyond its completion"
    assert not any(others.values()), others
    e = _err(chip)
    assert (e["valid"], e["code"], e["queue"], e["csr"], e["index"]) == (1, status.value, q, 0,
                                                                          index)
    assert e["addr"] == s.sq_base + (index % s.size) * DESC_BYTES
    assert chip.irq_status & 2


_GOOD_DMA = dict(rows=2, row_bytes=16, spad_addr=0, spad_stride=16, hbm_addr=DATA,
                 hbm_stride=16)
_DMA_BITS = _const(DMA_COMMAND, _GOOD_DMA)
_GEMM = make_command(m=2, n=2, k=2, fmt_a=Format.FP32, fmt_b=Format.FP32, b_addr=64)
_GEMM_BITS = _const(MXU_COMMAND, _GEMM)
_VPU = make_vpu_command(VpuCmd.ADD, length=4, rows=1, b={"addr": 64}, dst={"addr": 128})
_VPU_BITS = encode_vpu_command(_VPU)


def _sem_bits(**f):
    return _const(SEM_COMMAND, f)


_BAD = [
    ("opcode 0x07", isa.raw(0x07), S.BAD_OPCODE),
    ("opcode 0x10", isa.raw(0x10), S.BAD_OPCODE),
    ("opcode 0x1F", isa.raw(0x1F), S.BAD_OPCODE),
    ("opcode 0xFF", isa.raw(0xFF), S.BAD_OPCODE),
    ("bad opcode before reserved", isa.raw(0x11, 1, flags=2, reserved=1), S.BAD_OPCODE),
    ("header reserved", isa.raw(Opcode.NOP.value, reserved=0x8000), S.NONZERO_RESERVED),
    ("undefined flag", isa.raw(Opcode.NOP.value, flags=0x02), S.NONZERO_RESERVED),
    ("NOP body", isa.raw(Opcode.NOP.value, 1 << 959), S.NONZERO_RESERVED),
    ("DMA body past layout", isa.raw(Opcode.DMA.value, _DMA_BITS | 1 << DMA_COMMAND.size),
     S.NONZERO_RESERVED),
    ("GEMM body past layout", isa.raw(Opcode.GEMM.value, _GEMM_BITS | 1 << MXU_COMMAND.size),
     S.NONZERO_RESERVED),
    ("VPU body past layout", isa.raw(Opcode.VPU.value, _VPU_BITS | 1 << VPU_COMMAND.size),
     S.NONZERO_RESERVED),
    ("SIGNAL body past layout", isa.raw(Opcode.SIGNAL.value,
                                        _sem_bits(sem=1, value=1) | 1 << SEM_COMMAND.size),
     S.NONZERO_RESERVED),
    ("WRITE body past layout", isa.raw(Opcode.WRITE.value, 1 << WRITE_COMMAND.size),
     S.NONZERO_RESERVED),
    ("SIGNAL reserved", isa.raw(Opcode.SIGNAL.value, _sem_bits(sem=1, reserved=1, value=1)),
     S.NONZERO_RESERVED),
    ("WAIT reserved", isa.raw(Opcode.WAIT.value, _sem_bits(sem=1, reserved=1 << 23)),
     S.NONZERO_RESERVED),
    ("DMA reserved", isa.dma(**_GOOD_DMA, reserved=4), S.NONZERO_RESERVED),
    ("DMA gather+store", isa.dma(**_GOOD_DMA, gather=1, store=1), S.NONZERO_RESERVED),
    ("GEMM reserved", isa.gemm({**_GEMM, "reserved": 1}), S.NONZERO_RESERVED),
    ("VPU reserved", isa.vpu({**_VPU, "reserved": 1}), S.NONZERO_RESERVED),
    ("VPU bad op", isa.vpu({**_VPU, "op": 0x07}), S.BAD_OPCODE),
    ("GEMM bad format", isa.gemm({**_GEMM, "fmt_a": 15}), S.BAD_FORMAT),
    ("GEMM size", isa.gemm({**_GEMM, "k": 0}), S.SIZE_RANGE),
    ("GEMM align", isa.gemm({**_GEMM, "fmt_a": Format.BF16.value, "a_addr": 2}),
     S.ADDR_ALIGN),
    ("GEMM range", isa.gemm({**_GEMM, "c_row": CFG.acc_rows}), S.ADDR_RANGE),
    ("VPU size", isa.vpu({**_VPU, "length": 0}), S.SIZE_RANGE),
    ("VPU range", isa.vpu({**_VPU, "dst": {**_VPU["dst"], "addr": CFG.spad_bytes}}),
     S.ADDR_RANGE),
    ("DMA rows 0", isa.dma(**{**_GOOD_DMA, "rows": 0}), S.SIZE_RANGE),
    ("DMA row_bytes", isa.dma(**{**_GOOD_DMA, "row_bytes": CFG.spad_bytes + 4}),
     S.SIZE_RANGE),
    ("SIGNAL sem", isa.signal(SEMAPHORES, 1), S.INDEX_RANGE),
    ("WAIT sem", isa.wait(255, 0), S.INDEX_RANGE),
    ("DMA align", isa.dma(**{**_GOOD_DMA, "hbm_stride": 18}), S.ADDR_ALIGN),
    ("DMA gather list align", isa.dma(**{**_GOOD_DMA, "gather": 1, "hbm_addr": DATA + 4}),
     S.ADDR_ALIGN),
    ("WRITE align", isa.write(DATA + 4, 1), S.ADDR_ALIGN),
    ("DMA range", isa.dma(**{**_GOOD_DMA, "hbm_addr": CFG.hbm_bytes - 16}), S.ADDR_RANGE),
    ("DMA range wraps", isa.dma(**{**_GOOD_DMA, "hbm_stride": (1 << 64) - 16}),
     S.ADDR_RANGE),
    ("WRITE range", isa.write(CFG.hbm_bytes, 1), S.ADDR_RANGE),
    ("WRITE range wraps", isa.write((1 << 64) - 8, 1), S.ADDR_RANGE),
    ("DMA dest rows overlap", isa.dma(**{**_GOOD_DMA, "spad_stride": 8}), S.OVERLAP),
    ("DMA store over own SQ", isa.dma(**{**_GOOD_DMA, "store": 1, "hbm_addr": SQ0 + 1024 - 16}),
     S.OVERLAP),
    ("DMA store over other CQ", isa.dma(**{**_GOOD_DMA, "store": 1,
                                           "hbm_addr": CQ1 + (CPL_BYTES << LOG2) - 4}),
     S.OVERLAP),
    ("WRITE over own CQ", isa.write(CQ0 + 8, 1), S.OVERLAP),
    ("WRITE over other SQ", isa.write(SQ1 + (DESC_BYTES << LOG2) - 8, 1), S.OVERLAP),
    ("gather entry align", isa.dma(**{**_GOOD_DMA, "gather": 1, "hbm_addr": DATA + 0x100}),
     S.ADDR_ALIGN),
    ("gather entry range", isa.dma(**{**_GOOD_DMA, "gather": 1, "hbm_addr": DATA + 0x200}),
     S.ADDR_RANGE),
]


@pytest.mark.parametrize("desc, status", [c[1:] for c in _BAD], ids=[c[0] for c in _BAD])
def test_bad_descriptor(desc, status):
    chip = _chip(queues=2)
    rng = np.random.default_rng(3)
    chip.hbm[DATA:DATA + 0x1000] = rng.integers(0, 256, 0x1000, dtype=np.uint8)
    chip.spad[:] = rng.integers(0, 256, chip.spad.size, dtype=np.uint8)
    chip.acc[:] = rng.integers(0, 1 << 32, chip.acc.shape, dtype=np.uint64).astype(np.uint32)
    # page lists: at +0x100 row 1 misaligned, at +0x200 row 1 out of range
    chip.mem_write(DATA + 0x100, np.array([0x100, 0x102], "<u8").tobytes())
    chip.mem_write(DATA + 0x200, np.array([0x100, CFG.hbm_bytes - 8], "<u8").tobytes())
    chip.sems[1] = 5
    _assert_error(chip, desc, status)


def test_wait_timeout_writes_only_its_completion():
    chip = _chip()
    _assert_error(chip, isa.wait(3, 1), S.TIMEOUT)


def test_good_descriptors_and_the_store_beside_a_ring():
    chip = _chip(queues=2)
    chip.mem_write(DATA, bytes(range(32)))
    ring_end = SQ1 + (DESC_BYTES << LOG2)
    chip.submit(0, [isa.nop(cookie=1),
                    isa.dma(**_GOOD_DMA, cookie=2),
                    isa.dma(**{**_GOOD_DMA, "store": 1, "hbm_addr": ring_end}, cookie=3),
                    isa.dma(**{**_GOOD_DMA, "store": 1, "hbm_addr": SQ1 - 32}, cookie=4),
                    isa.write(DATA + 64, 0x1122_3344_5566_7788, cookie=5),
                    isa.signal(2, 7, cookie=6),
                    isa.wait(2, 7, cookie=7)])
    assert chip.run() == 7
    cpls = chip.completions(0)
    assert [(c["index"], c["cookie"], c["status"], c["phase"], c["queue"]) for c in cpls] == \
        [(i, i + 1, S.SUCCESS, 1, 0) for i in range(7)]
    assert chip.mem_read(ring_end, 32) == bytes(range(32))
    assert chip.mem_read(SQ1 - 32, 32) == bytes(range(32))
    assert chip.mem_read(DATA + 64, 8) == bytes.fromhex("8877665544332211")
    assert chip.sems[2] == 7 and chip.read_reg("SEM2") == 7
    assert chip.read_reg("Q0_HEAD") == 7 and not _err(chip)["valid"]
    assert chip.read_reg("IRQ_STATUS") == 0


def test_a_disabled_queues_ring_is_not_protected():
    chip = _chip(queues=2)
    assert chip.write_reg("Q1_CTRL", 0) is S.SUCCESS
    chip.submit(0, [isa.write(CQ1, 5)])
    chip.run()
    assert chip.completions(0)[-1]["status"] is S.SUCCESS
    assert chip.mem_read(CQ1, 8) == (5).to_bytes(8, "little")


# -- errors, interrupts, flags --------------------------------------------------------------

def test_error_latch_overflow_and_clear():
    chip = _chip(queues=2)
    chip.submit(1, [isa.nop(), isa.raw(0x20)])
    chip.submit(0, [isa.signal(99, 0), isa.nop()])
    chip.run()                    # round robin: q0 #0, q1 #0, q0 #1, q1 #1
    assert chip.completions(0)[0]["status"] is S.INDEX_RANGE
    assert chip.completions(1)[1]["status"] is S.BAD_OPCODE
    e = _err(chip)
    assert (e["code"], e["queue"], e["index"], e["addr"], e["overflow"]) == \
        (S.INDEX_RANGE.value, 0, 0, SQ0, 1)
    assert chip.write_reg("ERR_STATUS", 1 << 30) is S.SUCCESS     # clears overflow only
    assert _err(chip)["overflow"] == 0 and _err(chip)["valid"] == 1
    assert chip.write_reg("ERR_STATUS", 1 << 31) is S.SUCCESS
    assert _err(chip) == {"code": 0, "queue": 0, "csr": 0, "overflow": 0, "valid": 0,
                          "index": 0, "addr": 0}
    chip.submit(1, [isa.raw(0x10)])
    chip.run()
    e = _err(chip)
    assert (e["code"], e["queue"], e["index"], e["addr"], e["overflow"]) == \
        (S.BAD_OPCODE.value, 1, 2, SQ1 + 2 * DESC_BYTES, 0)


def test_interrupts():
    chip = _chip()
    assert not chip.irq
    chip.submit(0, [isa.nop(irq=True)])
    chip.run()
    assert chip.read_reg("IRQ_STATUS") == 1 and not chip.irq
    chip.write_reg("IRQ_ENABLE", 0xFFFF_FFFF)
    assert chip.read_reg("IRQ_ENABLE") == 3 and chip.irq
    chip.write_reg("IRQ_STATUS", 1)
    assert chip.read_reg("IRQ_STATUS") == 0 and not chip.irq
    chip.write_reg("IRQ_ENABLE", 2)
    chip.submit(0, [isa.nop(irq=True)])
    chip.run()
    assert chip.read_reg("IRQ_STATUS") == 1 and not chip.irq
    chip.submit(0, [isa.raw(0x30, flags=DescFlags.IRQ.value)])    # an error with IRQ
    chip.run()
    assert chip.read_reg("IRQ_STATUS") == 3 and chip.irq


def _vpu_setup(cfg, rng, op=VpuCmd.MUL, big=False):
    v = cfg.vpu_lanes
    L, R = 2 * v + 1, 3
    nch = -(-L // v)
    a = {"addr": 0, "chunk": 4 * v, "row": 4 * v * nch}
    b = {"addr": 1024, "chunk": 4 * v, "row": 4 * v * nch}
    dst = {"addr": 2048, "chunk": 4 * v, "row": 4 * v * nch}
    cmd = make_vpu_command(op, length=L, rows=R, a=a, b=b, dst=dst)
    spad = rng.standard_normal(cfg.spad_bytes // 4).astype(np.float32)
    if big:
        spad[:] = 3e38
    return cmd, spad.view(np.uint8), 4 * v * nch * R


def test_vpu_descriptor_equals_vpu_model():
    rng = np.random.default_rng(4)
    cmd, image, size = _vpu_setup(CFG, rng)
    ref = VpuModel(CFG)
    ref.spad[:] = image
    status, flags = ref.execute(cmd)
    assert status is S.SUCCESS
    chip = _chip()
    chip.mem_write(DATA, image[:4096])
    load = dict(rows=1, row_bytes=4096, spad_addr=0, hbm_addr=DATA)
    store = dict(store=1, rows=1, row_bytes=size, spad_addr=2048, hbm_addr=DATA + 0x10000)
    chip.submit(0, [isa.dma(**load), isa.vpu(cmd, cookie=9), isa.dma(**store)])
    assert chip.run() == 3
    assert [c["status"] for c in chip.completions(0)] == [S.SUCCESS] * 3
    assert chip.completions(0)[1]["flags"] == flags
    assert chip.mem_read(DATA + 0x10000, size) == ref.spad[2048:2048 + size].tobytes()
    np.testing.assert_array_equal(chip.spad[:4096], ref.spad[:4096])


def test_vpu_flags_are_sticky():
    rng = np.random.default_rng(5)
    cmd, image, _ = _vpu_setup(CFG, rng, big=True)
    chip = _chip()
    chip.spad[:] = image
    chip.submit(0, [isa.vpu(cmd), isa.nop()])
    chip.run()
    c = chip.completions(0)
    assert c[0]["flags"] == Flags.OVERFLOW.value and c[1]["flags"] == 0
    assert chip.read_reg("FLAGS") == Flags.OVERFLOW.value
    chip.write_reg("FLAGS", Flags.INVALID.value)
    assert chip.read_reg("FLAGS") == Flags.OVERFLOW.value
    chip.write_reg("FLAGS", 7)
    assert chip.read_reg("FLAGS") == 0


def test_gemm_descriptor_equals_mxu_model():
    rng = np.random.default_rng(6)
    m, n, k = 5, 6, 9
    cmd = make_command(m=m, n=n, k=k, fmt_a=Format.BF16, fmt_b=Format.FP8_E4M3, c_row=3,
                       accumulate=1)
    sizes = operand_bytes(CFG, cmd)
    cmd["b_addr"] = -(-sizes["a"] // 64) * 64
    ref = MxuModel(CFG)
    ref.acc[:] = rng.integers(0, 1 << 16, ref.acc.shape).astype(np.float32).view(np.uint32)
    ref.load(cmd, rng.integers(0, 1 << 16, (m, k)) & 0xBFFF, rng.integers(0, 256, (k, n)))
    chip = _chip()
    chip.acc[:] = ref.acc
    chip.mem_write(DATA, ref.spad[:4096])
    status, flags = ref.execute(cmd)
    assert status is S.SUCCESS
    chip.submit(0, [isa.dma(rows=1, row_bytes=4096, hbm_addr=DATA), isa.gemm(cmd, cookie=2)])
    chip.run()
    c = chip.completions(0)[1]
    assert (c["status"], c["flags"], c["cookie"]) == (S.SUCCESS, flags, 2)
    np.testing.assert_array_equal(chip.acc, ref.acc)
    np.testing.assert_array_equal(chip.spad, ref.spad)
    assert chip.read_reg("FLAGS") == flags


# -- rings, semaphores, scheduling ------------------------------------------------------------

def test_ring_wraps_with_phase():
    chip = _chip(log2=2)
    size = 4
    index = 0
    for batch in (3, 4, 1, 4, 2, 4):
        chip.submit(0, [isa.nop(cookie=index + i) for i in range(batch)])
        assert chip.run() == batch
        for i in range(index, index + batch):
            c = isa.decode_completion(chip.mem_read(CQ0 + (i % size) * CPL_BYTES, CPL_BYTES))
            assert (c["index"], c["cookie"], c["phase"], c["status"]) == \
                (i, i, 1 - ((i >> 2) & 1), S.SUCCESS)
        index += batch
        assert chip.read_reg("Q0_HEAD") == chip.read_reg("Q0_TAIL") == index
    with pytest.raises(ChipError) as e:
        chip.submit(0, [isa.nop()] * 5)
    assert e.value.status is S.QUEUE_OVERFLOW


def test_ring_of_one_slot():
    chip = _chip(log2=0)
    for i in range(3):
        chip.submit(0, [isa.nop(cookie=i)])
        chip.run()
        c = chip.completions(0)
        assert len(c) == 1 and (c[0]["index"], c[0]["phase"]) == (i, 1 - (i & 1))


def test_semaphores_order_queues():
    chip = _chip(queues=3)
    chip.mem_write(DATA, bytes(range(64)))
    # q0 stores what q1 loads, after q1 and q2 both signal semaphore 4.
    chip.submit(0, [isa.wait(4, 5), isa.dma(rows=1, row_bytes=64, store=1,
                                            hbm_addr=DATA + 0x1000, spad_addr=256)])
    chip.submit(1, [isa.nop(), isa.nop(), isa.dma(rows=1, row_bytes=64, hbm_addr=DATA,
                                                  spad_addr=256), isa.signal(4, 2)])
    chip.submit(2, [isa.signal(4, 3)])
    assert chip.run() == 7
    assert chip.mem_read(DATA + 0x1000, 64) == bytes(range(64))
    assert all(c["status"] is S.SUCCESS for q in range(3) for c in chip.completions(q))
    assert chip.read_reg("SEM4") == 5


def test_semaphore_wraps_and_wait_is_unsigned():
    chip = _chip()
    chip.write_reg("SEM0", 0xFFFF_FFFF)
    chip.submit(0, [isa.wait(0, 0xFFFF_FFFF), isa.signal(0, 2), isa.wait(0, 2)])
    chip.run()
    assert [c["status"] for c in chip.completions(0)] == [S.SUCCESS, S.SUCCESS, S.TIMEOUT]
    assert chip.read_reg("SEM0") == 1


def test_deadlock_times_out_the_oldest_wait():
    chip = _chip(queues=2)
    chip.submit(0, [isa.nop(), isa.wait(0, 1), isa.signal(1, 1)])
    chip.submit(1, [isa.wait(1, 1), isa.signal(0, 1)])
    chip.run()
    # q1's WAIT blocked before q0's (q0 ran its NOP first): it times out, signals 0, and q0 goes on.
    assert [c["status"] for c in chip.completions(1)] == [S.TIMEOUT, S.SUCCESS]
    assert [c["status"] for c in chip.completions(0)] == [S.SUCCESS] * 3
    e = _err(chip)
    assert (e["code"], e["queue"], e["index"], e["addr"]) == (S.TIMEOUT.value, 1, 0, SQ1)
    assert chip.sems[:2] == [1, 1]


def test_run_without_timeouts_leaves_waits_blocked():
    chip = _chip(queues=2)
    chip.submit(0, [isa.wait(7, 2), isa.nop()])
    assert chip.run(timeouts=False) == 0
    assert chip.read_reg("Q0_STATE") == QueueState.WAIT and chip.read_reg("STATUS") == 1
    assert chip.read_reg("Q1_STATE") == QueueState.IDLE
    chip.write_reg("SEM7", 2)
    assert chip.run(timeouts=False) == 2
    assert chip.read_reg("Q0_STATE") == QueueState.IDLE and chip.read_reg("STATUS") == 0


# -- CSRs -------------------------------------------------------------------------------------

def _assert_refused(chip, status, addr, write=True, value=0):
    before = chip.read_reg("ERR_STATUS")
    if write:
        got = chip.csr_write(addr, value)
    else:
        got, got_status = chip.csr_read(addr)
        assert got == 0
        got = got_status
    assert got is status
    e = _err(chip)
    if before == 0:
        assert (e["valid"], e["code"], e["queue"], e["csr"], e["index"], e["addr"]) == \
            (1, status.value, CSR_ERR_QUEUE, 1, 0, addr)
    assert chip.irq_status & 2
    chip.write_reg("ERR_STATUS", 1 << 31)
    chip.write_reg("IRQ_STATUS", 3)


def test_csr_addr_and_readonly():
    chip = _chip()
    for addr in (0x002, 0x101, 0x038, 0x0FC, 0x124, 0x13C, 0x240, 0x3FC, 0x10000):
        _assert_refused(chip, S.CSR_ADDR, addr, write=False)
        _assert_refused(chip, S.CSR_ADDR, addr, value=1)
    for r in register_map(CFG):
        if r.access.value == "ro":
            before = chip.csr_read(r.addr)[0]
            _assert_refused(chip, S.CSR_READONLY, r.addr, value=1)
            assert chip.csr_read(r.addr)[0] == before
    assert chip.read_reg("ID") == ID_VALUE


def test_csr_busy_size_and_rings():
    chip = _chip()
    for name in ("SQ_BASE_LO", "SQ_BASE_HI", "CQ_BASE_LO", "CQ_BASE_HI", "SIZE_LOG2"):
        _assert_refused(chip, S.CSR_BUSY, chip.addr_of[f"Q0_{name}"], value=0)
    assert chip.read_reg("Q0_SQ_BASE_LO") == SQ0 and chip.read_reg("Q0_SIZE_LOG2") == LOG2
    _assert_refused(chip, S.CSR_BUSY, chip.addr_of["Q0_SIZE_LOG2"], value=17)  # busy first
    q1 = {n: chip.addr_of[f"Q1_{n}"] for n in ("SQ_BASE_LO", "SQ_BASE_HI", "CQ_BASE_LO",
                                               "CQ_BASE_HI", "SIZE_LOG2", "CTRL")}
    _assert_refused(chip, S.SIZE_RANGE, q1["SIZE_LOG2"], value=17)
    assert chip.csr_write(q1["SIZE_LOG2"], 16) is S.SUCCESS
    assert chip.read_reg("Q1_SIZE_LOG2") == 16
    chip.csr_write(q1["SIZE_LOG2"], 4)
    for sq, cq, status in ((SQ1 + 64, CQ1, S.ADDR_ALIGN), (SQ1, CQ1 + 8, S.ADDR_ALIGN),
                           (CFG.hbm_bytes - 15 * DESC_BYTES, CQ1, S.ADDR_RANGE),
                           (SQ1, CFG.hbm_bytes - 15 * CPL_BYTES, S.ADDR_RANGE),
                           (SQ1, CQ1 | 1 << 32, S.ADDR_RANGE),
                           (SQ1 + 64 | 1 << 40, CQ1, S.ADDR_ALIGN)):
        for reg, value in (("SQ_BASE_LO", sq & 0xFFFF_FFFF), ("SQ_BASE_HI", sq >> 32),
                           ("CQ_BASE_LO", cq & 0xFFFF_FFFF), ("CQ_BASE_HI", cq >> 32)):
            assert chip.csr_write(q1[reg], value) is S.SUCCESS
        _assert_refused(chip, status, q1["CTRL"], value=1)
        assert chip.read_reg("Q1_CTRL") == 0
    for reg, value in (("SQ_BASE_LO", CFG.hbm_bytes - 16 * DESC_BYTES), ("SQ_BASE_HI", 0),
                       ("CQ_BASE_LO", CFG.hbm_bytes - 16 * DESC_BYTES - 16 * CPL_BYTES),
                       ("CQ_BASE_HI", 0)):
        chip.csr_write(q1[reg], value)
    assert chip.csr_write(q1["CTRL"], 1) is S.SUCCESS        # rings ending at the last byte
    assert chip.read_reg("Q1_CTRL") == 1


def test_tail_rule():
    chip = _chip(log2=2)
    tail = chip.addr_of["Q0_TAIL"]
    _assert_refused(chip, S.QUEUE_OVERFLOW, tail, value=5)
    _assert_refused(chip, S.QUEUE_OVERFLOW, tail, value=0xFFFF_FFFF)
    assert chip.csr_write(tail, 4) is S.SUCCESS          # exactly full (NOP slots: zeros)
    assert chip.csr_write(tail, 4) is S.SUCCESS          # unchanged
    _assert_refused(chip, S.QUEUE_OVERFLOW, tail, value=3)           # behind TAIL
    _assert_refused(chip, S.QUEUE_OVERFLOW, tail, value=5)           # > HEAD + size
    chip.run()
    assert chip.read_reg("Q0_HEAD") == 4
    assert chip.csr_write(tail, 8) is S.SUCCESS
    chip.run()
    assert chip.read_reg("Q0_TAIL") == 8
    # free-running counts wrap at 2**32
    chip.queues[0].head = chip.queues[0].tail = 0xFFFF_FFFE
    assert chip.csr_write(tail, 2) is S.SUCCESS
    chip.run()
    assert chip.read_reg("Q0_HEAD") == 2
    assert [c["index"] for c in chip.completions(0, 0xFFFF_FFFE, 2)] == \
        [0xFFFF_FFFE, 0xFFFF_FFFF]


def test_register_access_rules():
    chip = _chip()
    chip.write_reg("WAIT_TIMEOUT", 0xFFFF_FFFF)
    assert chip.read_reg("WAIT_TIMEOUT") == 0xFFFF_FFFF
    assert chip.read_reg("CTRL") == 0
    assert chip.read_reg("Q0_CTRL") == 1
    chip.write_reg("SEM15", 0xABCD)
    assert chip.read_reg("SEM15") == 0xABCD and chip.sems[15] == 0xABCD
    assert chip.read_reg("CYCLES_LO") == 0
    assert chip.write_reg("CTRL", 2) is S.SUCCESS       # clear_counters: nothing to clear
    assert chip.read_reg("Q0_SQ_BASE_LO") == SQ0 and chip.read_reg("Q0_CQ_BASE_LO") == CQ0
    with pytest.raises(ValueError):
        chip.csr_write(0x30, 1 << 32)


# -- reset ----------------------------------------------------------------------------------

def _busy_chip():
    chip = _chip(queues=2)
    chip.write_reg("IRQ_ENABLE", 3)
    chip.write_reg("WAIT_TIMEOUT", 1000)
    chip.mem_write(DATA, b"keep")
    cmd, image, _ = _vpu_setup(CFG, np.random.default_rng(7), big=True)
    chip.spad[:] = image
    chip.submit(0, [isa.signal(3, 9), isa.raw(0x10), isa.vpu(cmd), isa.wait(5, 1), isa.nop()])
    chip.submit(1, [isa.wait(6, 1)])
    assert chip.run(timeouts=False) == 3
    assert chip.read_reg("FLAGS") == Flags.OVERFLOW.value
    return chip


def test_soft_reset():
    chip = _busy_chip()
    assert chip.read_reg("Q0_STATE") == QueueState.WAIT and chip.read_reg("IRQ_STATUS")
    assert chip.write_reg("CTRL", 1) is S.SUCCESS
    for q in range(2):
        assert [chip.read_reg(f"Q{q}_{r}") for r in ("CTRL", "HEAD", "TAIL", "STATE")] == \
            [0, 0, 0, QueueState.IDLE]
    assert chip.sems == [0] * SEMAPHORES
    assert [chip.read_reg(r) for r in ("ERR_STATUS", "ERR_INDEX", "ERR_ADDR_LO", "IRQ_STATUS",
                                       "FLAGS", "STATUS")] == [0] * 6
    assert not chip.irq
    # kept: memories, ring programming, IRQ_ENABLE, WAIT_TIMEOUT
    assert chip.mem_read(DATA, 4) == b"keep"
    assert (chip.read_reg("Q1_SQ_BASE_LO"), chip.read_reg("Q1_SIZE_LOG2")) == (SQ1, LOG2)
    assert (chip.read_reg("IRQ_ENABLE"), chip.read_reg("WAIT_TIMEOUT")) == (3, 1000)
    # the queues restart at index 0, slot 0, phase 1
    chip.write_reg("Q1_CTRL", 1)
    chip.submit(1, [isa.nop(cookie=42)])
    chip.run()
    c = chip.completions(1)
    assert len(c) == 1 and (c[0]["index"], c[0]["cookie"], c[0]["phase"]) == (0, 42, 1)
    assert chip.mem_read(SQ1, DESC_BYTES) == isa.nop(cookie=42)


def test_queue_reset():
    chip = _busy_chip()
    err = chip.read_reg("ERR_STATUS")
    assert chip.write_reg("Q1_CTRL", 3) is S.SUCCESS    # reset wins over enable
    assert [chip.read_reg(f"Q1_{r}") for r in ("CTRL", "HEAD", "TAIL", "STATE")] == \
        [0, 0, 0, QueueState.IDLE]
    # nothing else changed
    assert chip.read_reg("Q0_STATE") == QueueState.WAIT and chip.read_reg("Q0_HEAD") == 3
    assert chip.read_reg("SEM3") == 9 and chip.read_reg("ERR_STATUS") == err
    assert chip.read_reg("FLAGS") == Flags.OVERFLOW.value
    # a reprogrammed queue runs again; q0 is released by a semaphore write
    assert chip.write_reg("Q1_SIZE_LOG2", 1) is S.SUCCESS
    chip.write_reg("Q1_CTRL", 1)
    chip.submit(1, [isa.signal(5, 1)])
    chip.run()
    assert [c["status"] for c in chip.completions(0)] == \
        [S.SUCCESS, S.BAD_OPCODE, S.SUCCESS, S.SUCCESS, S.SUCCESS]
    assert chip.completions(1)[0]["index"] == 0


def test_memory_port_bounds():
    chip = ChipModel(CFG)
    chip.mem_write(CFG.hbm_bytes - 4, b"abcd")
    assert chip.mem_read(CFG.hbm_bytes - 4, 4) == b"abcd"
    with pytest.raises(ValueError):
        chip.mem_write(CFG.hbm_bytes - 3, b"abcd")
    with pytest.raises(ValueError):
        chip.mem_read(-1, 2)
