"""The Verilated chip as a transport (``firmware/transports/verilator.py``), against the
functional chip.

One TINY build (full 16 MiB HBM) serves the module; every test opens its own instances on it
(opening one is a few milliseconds), so the tests do not depend on each other's state.

- the conformance program of ``tests/test_transports.py``, then the whole HBM, byte for byte;
- a program of DMA loads, GEMMs, vector-unit commands and stores;
- ``wait_idle`` on a WAIT nothing signals raises ``DeviceTimeout``, and the chip stays usable;
- two instances in one process keep their own memory, registers and clocks.
"""

import numpy as np
import pytest

from firmware import isa, regs
from firmware.errors import DeviceTimeout
from firmware.transports import FunctionalTransport
from golden_model.mxu import make_command, operand_bytes, pack_a, pack_b
from golden_model.vpu import make_vpu_command
from rtl.config import TINY
from rtl.layouts import Format, Status, VpuCmd
from tests.test_transports import (
    CQ, RING_LOG2, SQ, check_conformance, check_errors, compare, completions,
    conformance_program, setup_queue, state_registers, submit,
)


CFG = TINY


@pytest.fixture(scope="module")
def rtl_build():
    """Build (or find) the TINY simulator once for the module."""
    from firmware.transports.verilator import build_library
    return build_library(CFG)[0]


@pytest.fixture
def rtl(rtl_build):
    from firmware.transports.verilator import VerilatorTransport
    t = VerilatorTransport(CFG)
    assert t.library == rtl_build
    yield t
    t.close()


def _align(x, a):
    return -(-x // a) * a


def compute_program(t, cfg, *, seed=2, gemms=2, m=8, n=8, k=16, hbm=0x10000):
    """DMA loads of GEMM operands, GEMMs into the accumulator, a vector-unit command per
    GEMM (accumulator → scratchpad), DMA stores of the results; return the completions and
    the HBM range ``[hbm, end)`` the program used."""
    rng = np.random.default_rng(seed)
    v = cfg.vpu_lanes
    size_log2 = 4
    setup_queue(t, 0, SQ, CQ, size_log2)
    descs = []
    spad, acc_row, addr = 0, 0, hbm
    ops = [(VpuCmd.SCALE, 0.5), (VpuCmd.SILU, 0.0), (VpuCmd.EXP, 0.0)]
    for g in range(gemms):
        probe = make_command(m=m, n=n, k=k, fmt_a=Format.FP32, fmt_b=Format.FP32)
        sizes = operand_bytes(cfg, probe)
        a = (rng.standard_normal((m, k)) / 4).astype(np.float32).view(np.uint32)
        b = (rng.standard_normal((k, n)) / 4).astype(np.float32).view(np.uint32)
        a_bytes = np.asarray(pack_a(cfg, a, Format.FP32), np.uint8).tobytes()
        b_bytes = np.asarray(pack_b(cfg, b, Format.FP32), np.uint8).tobytes()
        a_sp = spad
        b_sp = _align(a_sp + len(a_bytes), 64)
        out_sp = _align(b_sp + len(b_bytes), 64)
        c_rows = sizes["c_rows"]
        out_bytes = c_rows * 4 * v
        spad = _align(out_sp + out_bytes, 64)
        for sp, blob in ((a_sp, a_bytes), (b_sp, b_bytes)):
            t.write(addr, blob)
            descs.append(isa.dma(rows=1, row_bytes=len(blob), spad_addr=sp,
                                 spad_stride=len(blob), hbm_addr=addr, hbm_stride=len(blob),
                                 cookie=len(descs)))
            addr = _align(addr + len(blob), 64) + 4
        cmd = make_command(m=m, n=n, k=k, fmt_a=Format.FP32, fmt_b=Format.FP32, a_addr=a_sp,
                           b_addr=b_sp, c_row=acc_row, accumulate=int(g % 2))
        descs.append(isa.gemm(cmd, cookie=len(descs)))
        op, scalar = ops[g % len(ops)]
        vcmd = make_vpu_command(op, length=v, rows=c_rows, scalar=scalar,
                                a={"space": 1, "addr": acc_row, "chunk": 1, "row": 1},
                                dst={"space": 0, "addr": out_sp, "chunk": 4 * v, "row": 4 * v})
        descs.append(isa.vpu(vcmd, cookie=len(descs)))
        descs.append(isa.dma(store=1, rows=c_rows, row_bytes=4 * v, spad_addr=out_sp,
                             spad_stride=4 * v, hbm_addr=addr, hbm_stride=4 * v + 8,
                             cookie=len(descs)))
        addr = _align(addr + c_rows * (4 * v + 8), 64)
        acc_row += c_rows
    for lo in range(0, len(descs), 1 << size_log2):
        batch = descs[lo:lo + (1 << size_log2)]
        submit(t, 0, batch, size_log2=size_log2)
        t.wait_idle(2_000_000)
    head = len(descs)
    cpl = completions(t, 0, min(head, 1 << size_log2), size_log2=size_log2,
                      first=max(0, head - (1 << size_log2)))
    return cpl, (hbm, addr)


def _whole_hbm(t):
    if isinstance(t, FunctionalTransport):
        return t.model.hbm
    return np.frombuffer(t.read(0, t.cfg.hbm_bytes), np.uint8)


def _same_hbm(rtl, ref):
    a, b = _whole_hbm(rtl), _whole_hbm(ref)
    diff = np.flatnonzero(a != b)
    assert len(diff) == 0, f"HBM differs at {len(diff)} bytes, first at {diff[0]:#x}"


@pytest.mark.sim
def test_conformance(rtl):
    ref = FunctionalTransport(CFG)
    c0 = rtl.cycles
    obs = conformance_program(rtl)
    assert rtl.cycles > c0 and rtl.cycle_accurate and rtl.name == "rtl"
    check_conformance(obs)
    compare(obs, conformance_program(ref))
    check_errors(rtl)
    _same_hbm(rtl, ref)


@pytest.mark.sim
def test_compute_program(rtl):
    ref = FunctionalTransport(CFG)
    got, (lo, hi) = compute_program(rtl, CFG, gemms=3)
    want, span = compute_program(ref, CFG, gemms=3)
    assert span == (lo, hi)
    assert [c["status"] for c in got] == [Status.SUCCESS] * len(got)
    assert got == want
    assert state_registers(rtl) == state_registers(ref)
    # Everything below the program's end (rings, operands, results), byte for byte.
    assert rtl.read(0, hi) == ref.read(0, hi)
    assert len(set(ref.read(lo, hi - lo))) > 64          # the results are not trivial


@pytest.mark.sim
def test_wait_idle_timeout(rtl):
    setup_queue(rtl, 0, SQ, CQ, RING_LOG2)
    submit(rtl, 0, [isa.wait(5, 1, cookie=7)])
    c0 = rtl.cycles
    with pytest.raises(DeviceTimeout):
        rtl.wait_idle(500)
    assert 500 <= rtl.cycles - c0 < 600
    # The request was withdrawn: the chip answers, and SIGNALling the semaphore from the
    # host (its CSR) releases the WAIT.
    assert rtl.csr_read(regs.queue_reg(0, regs.Q_HEAD)) == (0, Status.SUCCESS)
    assert rtl.csr_write(regs.sem_reg(5), 1) is Status.SUCCESS
    rtl.wait_idle(10_000)
    assert rtl.csr_read(regs.queue_reg(0, regs.Q_HEAD)) == (1, Status.SUCCESS)
    assert completions(rtl, 0, 1)[0]["status"] is Status.SUCCESS


@pytest.mark.sim
def test_two_instances(rtl):
    from firmware.transports.verilator import VerilatorTransport
    other = VerilatorTransport(CFG)
    try:
        rtl.write(0x100, b"first chip")
        other.write(0x100, b"other chip")
        assert rtl.read(0x100, 10) == b"first chip"
        assert other.read(0x100, 10) == b"other chip"
        assert rtl.csr_write(regs.IRQ_ENABLE, 1) is Status.SUCCESS
        assert other.csr_read(regs.IRQ_ENABLE) == (0, Status.SUCCESS)
        assert rtl.csr_read(regs.IRQ_ENABLE) == (1, Status.SUCCESS)
        c_rtl, c_other = rtl.cycles, other.cycles
        rtl.step(1000)
        assert rtl.cycles == c_rtl + 1000 and other.cycles == c_other
        # Work on one chip leaves the other idle.
        setup_queue(rtl, 0, SQ, CQ, RING_LOG2)
        submit(rtl, 0, [isa.write(0x200, 0x55AA, cookie=1)])
        rtl.wait_idle(10_000)
        assert rtl.read(0x200, 2) == b"\xAA\x55"
        assert other.read(0x200, 2) == b"\0\0"
        assert other.csr_read(regs.queue_reg(0, regs.Q_HEAD)) == (0, Status.SUCCESS)
    finally:
        other.close()
