"""Transports against each other: the functional chip and the RTL in Amaranth's simulator.

Both run the same small program through the :class:`~firmware.transports.base.Transport`
interface only (CSRs of ``firmware/regs.py``, descriptors of ``firmware/isa.py``, the bulk
memory port): a queue set up through its registers, a 2-D DMA load and a store, a ``WRITE``,
descriptors that complete with error statuses, CSR refusals; then every observation (CSR
statuses and values, completions, memory) must be equal. The helpers here are shared with the
Verilator tests (``verif/transports/``), which run the same program on the Verilated chip.
"""

import numpy as np
import pytest

from firmware import isa, regs
from firmware.transports import FunctionalTransport
from rtl.config import TINY
from rtl.layouts import CPL_BYTES, DESC_BYTES, Status


#: The pysim chip: TINY with a 1 MiB HBM (an Amaranth memory of 16 MiB elaborates slowly).
PYSIM_CFG = TINY.replace(name="TINY_HBM1M", hbm_bytes=1 << 20)

#: Where the program puts things (all inside the first 64 KiB).
SQ, CQ, RING_LOG2 = 0x1000, 0x1800, 3
SRC, DST, WORD = 0x2004, 0x3008, 0x4000
#: Bytes compared after the program, from address 0.
SPAN = 0x8000


# -- program helpers (shared with verif/transports) ------------------------------------------------

def setup_queue(t, q, sq, cq, size_log2):
    """Program and enable queue ``q`` through its CSRs; every write must succeed."""
    for reg, value in ((regs.Q_SQ_BASE_LO, sq & 0xFFFF_FFFF), (regs.Q_SQ_BASE_HI, sq >> 32),
                       (regs.Q_CQ_BASE_LO, cq & 0xFFFF_FFFF), (regs.Q_CQ_BASE_HI, cq >> 32),
                       (regs.Q_SIZE_LOG2, size_log2), (regs.Q_CTRL, 1)):
        status = t.csr_write(regs.queue_reg(q, reg), value)
        assert status is Status.SUCCESS, (q, reg, status)


def submit(t, q, descriptors, *, sq=SQ, size_log2=RING_LOG2):
    """Write ``descriptors`` at ``TAIL`` of queue ``q`` and ring the doorbell."""
    tail, status = t.csr_read(regs.queue_reg(q, regs.Q_TAIL))
    assert status is Status.SUCCESS
    size = 1 << size_log2
    for i, d in enumerate(descriptors):
        t.write(sq + ((tail + i) % size) * DESC_BYTES, d)
    status = t.csr_write(regs.queue_reg(q, regs.Q_TAIL), (tail + len(descriptors)) & 0xFFFF_FFFF)
    assert status is Status.SUCCESS, status


def completions(t, q, count, *, cq=CQ, size_log2=RING_LOG2, first=0):
    """Decoded completion entries ``first … first + count − 1`` of queue ``q``."""
    size = 1 << size_log2
    return [isa.decode_completion(t.read(cq + ((first + i) % size) * CPL_BYTES, CPL_BYTES))
            for i in range(count)]


def state_registers(t):
    """The chip-wide registers a program leaves a trace in, and every queue's HEAD/TAIL."""
    out = {}
    for name in ("ERR_STATUS", "ERR_INDEX", "ERR_ADDR_LO", "ERR_ADDR_HI", "IRQ_STATUS",
                 "FLAGS", "ID", "VERSION"):
        out[name] = t.csr_read(getattr(regs, name))
    for q in range(regs.QUEUES):
        for reg in ("Q_HEAD", "Q_TAIL", "Q_CTRL"):
            out[f"Q{q}_{reg[2:]}"] = t.csr_read(regs.queue_reg(q, getattr(regs, reg)))
    return out


def conformance_program(t, seed=1):
    """Run the conformance program on transport ``t``; return everything it observed."""
    rng = np.random.default_rng(seed)
    obs = {}
    # CSR refusals first: they latch ERR_STATUS, which is then cleared.
    obs["csr_bad_addr"] = t.csr_read(0xFFC)
    obs["csr_unaligned"] = t.csr_write(regs.IRQ_ENABLE + 2, 1)
    obs["csr_readonly"] = t.csr_write(regs.ID, 0)
    obs["err_after_csr"] = t.csr_read(regs.ERR_STATUS)
    obs["err_clear"] = t.csr_write(regs.ERR_STATUS, 1 << 31)
    obs["irq_clear"] = t.csr_write(regs.IRQ_STATUS, 0x3)
    obs["irq_enable"] = t.csr_write(regs.IRQ_ENABLE, 0x3)
    setup_queue(t, 0, SQ, CQ, RING_LOG2)
    # Source rows: 4 rows of 256 bytes, every 260 bytes, at an address that is not a stripe's.
    src = rng.integers(0, 256, 4 * 260, dtype=np.uint8).tobytes()
    t.write(SRC, src)
    descs = [
        isa.dma(rows=4, row_bytes=256, spad_addr=0x100, spad_stride=256, hbm_addr=SRC,
                hbm_stride=260, cookie=0x11),
        isa.dma(store=1, rows=2, row_bytes=512, spad_addr=0x100, spad_stride=512,
                hbm_addr=DST, hbm_stride=520, cookie=0x12),
        isa.write(WORD, 0x0123_4567_89AB_CDEF, cookie=0x13),
        isa.write(WORD + 4, 1, cookie=0x14),                      # ADDR_ALIGN
        isa.raw(0x1F, cookie=0x15),                               # BAD_OPCODE
        isa.write(SQ + 8, 1, cookie=0x16),                        # OVERLAP: its own ring
        isa.nop(cookie=0x17, irq=True),
    ]
    submit(t, 0, descs)
    t.wait_idle(200_000)
    obs["completions"] = completions(t, 0, len(descs))
    obs["registers"] = state_registers(t)
    # Unaligned round trips over stripe boundaries, and reads across what the program wrote.
    blob = rng.integers(0, 256, 301, dtype=np.uint8).tobytes()
    t.write(0x5003, blob)
    obs["roundtrip"] = t.read(0x5003, len(blob)) == blob
    t.write(0x5101, b"\xAA")
    obs["one_byte"] = t.read(0x50FF, 5)
    obs["empty"] = t.read(0x5000, 0)
    obs["memory"] = t.read(0, SPAN)
    return obs


def check_conformance(obs):
    """What the program must observe on any transport (beyond equality between them)."""
    S = Status
    assert obs["csr_bad_addr"] == (0, S.CSR_ADDR)
    assert obs["csr_unaligned"] is S.CSR_ADDR
    assert obs["csr_readonly"] is S.CSR_READONLY
    assert obs["err_after_csr"][0] >> 31 == 1
    statuses = [c["status"] for c in obs["completions"]]
    assert statuses == [S.SUCCESS, S.SUCCESS, S.SUCCESS, S.ADDR_ALIGN, S.BAD_OPCODE,
                        S.OVERLAP, S.SUCCESS]
    assert [c["cookie"] for c in obs["completions"]] == list(range(0x11, 0x18))
    assert obs["registers"]["Q0_HEAD"] == (7, S.SUCCESS)
    assert obs["registers"]["ID"] == (regs.ID_VALUE, S.SUCCESS)
    mem = np.frombuffer(obs["memory"], np.uint8)
    src = mem[SRC:SRC + 4 * 260].reshape(4, 260)[:, :256].reshape(-1)
    dst = mem[DST:DST + 2 * 520].reshape(2, 520)[:, :512].reshape(-1)
    assert np.array_equal(src, dst)
    assert mem[WORD:WORD + 8].tobytes() == (0x0123_4567_89AB_CDEF).to_bytes(8, "little")
    assert obs["roundtrip"] is True
    assert obs["one_byte"][2] == 0xAA and obs["empty"] == b""


def compare(a, b):
    """Assert two observation dicts are equal, naming the first difference."""
    assert a.keys() == b.keys()
    for key in a:
        if key == "memory":
            x, y = np.frombuffer(a[key], np.uint8), np.frombuffer(b[key], np.uint8)
            diff = np.flatnonzero(x != y)
            assert len(diff) == 0, f"memory differs at {len(diff)} bytes, first {diff[0]:#x}"
        else:
            assert a[key] == b[key], key


def check_errors(t):
    """Argument errors every transport raises before touching the chip."""
    hbm = t.cfg.hbm_bytes
    with pytest.raises(ValueError):
        t.read(hbm - 4, 8)
    with pytest.raises(ValueError):
        t.write(hbm, b"\0")
    with pytest.raises(ValueError):
        t.read(-1, 1)
    with pytest.raises(ValueError):
        t.csr_write(regs.IRQ_ENABLE, 1 << 32)
    assert t.read(hbm - 4, 4) == bytes(4)
    # A bad CSR address is a status, not an exception.
    assert t.csr_read(0x3FC)[1] is Status.CSR_ADDR
    assert t.csr_write(0x3FC, 0) is Status.CSR_ADDR


# -- the tests -----------------------------------------------------------------------------------

def test_functional_conformance():
    t = FunctionalTransport(PYSIM_CFG)
    obs = conformance_program(t)
    check_conformance(obs)
    check_errors(t)
    assert t.cycles == 0 and not t.cycle_accurate


def test_pysim():
    """The RTL in pysim (one chip: elaborating it takes ~20 s): the conformance program equals
    the functional chip's; the argument errors; a wait that times out."""
    from firmware.errors import DeviceTimeout
    from firmware.transports.pysim import PysimTransport
    t = PysimTransport(PYSIM_CFG)
    assert t.cycle_accurate and t.name == "pysim"
    c0 = t.cycles
    obs = conformance_program(t)
    assert t.cycles > c0
    check_conformance(obs)
    compare(obs, conformance_program(FunctionalTransport(PYSIM_CFG)))
    check_errors(t)

    # A WAIT that nothing signals keeps the chip busy until WAIT_TIMEOUT (16 M cycles).
    assert t.csr_write(regs.CTRL, 1) is Status.SUCCESS            # soft reset: queues off
    setup_queue(t, 0, SQ, CQ, RING_LOG2)
    submit(t, 0, [isa.wait(3, 1, cookie=1)])
    c0 = t.cycles
    with pytest.raises(DeviceTimeout):
        t.wait_idle(200)
    assert 200 <= t.cycles - c0 < 300
    # The chip is still usable: a soft reset drops the queue, then it is idle.
    assert t.csr_write(regs.CTRL, 1) is Status.SUCCESS
    t.wait_idle(1000)
    assert t.csr_read(regs.queue_reg(0, regs.Q_CTRL)) == (0, Status.SUCCESS)
