"""The chip on Verilator (``chip`` = ``ChipHost``): pyuvm tests.

Every test resets the chip, runs its programs (each one harness batch: Python wakes once per
program, never per cycle) through :class:`~verif.chip.env.ChipEnv`, and ends with the dump
program: the scratchpad and the accumulator stored into HBM by descriptors, then all of HBM
read back and compared with the golden model byte for byte in ``check_phase``.

``CHIP_SCALE`` scales the amount of random work (1 in ``make test``).
"""

import os
import time

import cocotb
import pyuvm
from pyuvm import ConfigDB, uvm_test

from rtl.chip import ChipHostOp, chip_host_request_layout, chip_host_response_layout
from verif.common.harness import StreamHarness
from verif.common.tb import TB

from . import programs as P
from .env import ChipEnv, ProgramSequence


SCALE = float(os.environ.get("CHIP_SCALE", "1"))

assert [ChipHostOp.MEM_WRITE.value, ChipHostOp.MEM_READ.value, ChipHostOp.CSR_WRITE.value,
        ChipHostOp.CSR_READ.value, ChipHostOp.WAIT_IRQ.value, ChipHostOp.WAIT_IDLE.value] == \
    [P.MEM_WRITE, P.MEM_READ, P.CSR_WRITE, P.CSR_READ, P.WAIT_IRQ, P.WAIT_IDLE], \
    "verif/chip/programs.py request codes disagree with rtl.chip.ChipHostOp"


class ChipTestBase(uvm_test):
    """Builds the harness and the environment; runs ``programs()`` then the dump."""

    throttle = True

    def build_phase(self):
        dut = cocotb.top
        self.tb = TB(dut)
        self.cfg = self.tb.cfg
        self.rng = self.tb.rng
        harness = StreamHarness(dut, chip_host_request_layout(self.cfg),
                                chip_host_response_layout(self.cfg))
        harness.idle()
        self.harness = harness
        ConfigDB().set(None, "*", "HARNESS", harness)
        ConfigDB().set(None, "*", "CFG", self.cfg)
        ConfigDB().set(None, "*", "RNG", self.rng)
        ConfigDB().set(None, "*", "THROTTLE", self.throttle)
        self.env = ChipEnv("env", self)

    def programs(self, state, mm):
        return []

    async def run_phase(self):
        self.raise_objection()
        t0 = time.monotonic()
        await self.tb.reset()
        self.env.scoreboard.hard_reset()
        self.state = P.HostState(self.cfg)
        self.mm = P.MemoryMap(self.cfg)
        seqr = self.env.agent.seqr
        await ProgramSequence("programs", self.programs(self.state, self.mm)).start(seqr)
        await ProgramSequence("dump", [P.dump_program(self.cfg, self.state, self.mm)]
                              ).start(seqr)
        self.wall = time.monotonic() - t0
        self.drop_objection()

    def report_phase(self):
        mon = self.env.agent.monitor
        self.logger.info("%s: %d programs, %d requests, %d cycles, %.1f s wall (%.0f cycles/s)",
                         type(self).__name__, mon.programs, mon.requests, mon.cycles,
                         self.wall, mon.cycles / max(self.wall, 1e-9))


@pyuvm.test()
class SmokeTest(ChipTestBase):
    """ID/VERSION/CONFIG reads, one DMA round trip, a NOP and a WRITE on one queue."""

    def programs(self, state, mm):
        from firmware import isa
        from firmware import regs as R
        cfg = self.cfg
        prog = P.Program(cfg, state, "smoke")
        for reg in (R.ID, R.VERSION, R.CONFIG0, R.CONFIG1, R.WAIT_TIMEOUT, R.STATUS):
            prog.csr_read(reg)
        P.prologue(prog, mm, queues=(0,))
        src = mm.alloc(256)
        prog.mem_write(src, self.rng.integers(0, 256, 200, dtype="uint8").tobytes())
        dst = mm.alloc(256)
        prog.submit(0, [isa.nop(cookie=1),
                        isa.dma(rows=2, row_bytes=100, spad_addr=0x40, spad_stride=100,
                                hbm_addr=src, hbm_stride=100, cookie=2),
                        isa.dma(store=1, rows=1, row_bytes=200, spad_addr=0x40, spad_stride=0,
                                hbm_addr=dst + 4, hbm_stride=0, cookie=3),
                        isa.write(mm.alloc(8, 8), 0x0123456789ABCDEF, cookie=4, irq=True)],
                    expects=[P.Status.SUCCESS] * 4)
        prog.finish()
        prog.mem_read(dst, 256)
        yield prog


@pyuvm.test()
class MixedWorkTest(ChipTestBase):
    """DMA (2-D strided, misaligned by multiples of 4, page gather) feeding GEMM and VPU work
    across three queues ordered by SIGNAL/WAIT, DMA overlapping compute; bit-exact."""

    def programs(self, state, mm):
        n = max(2, round(6 * SCALE))
        for i in range(n):
            yield P.mixed_program(self.cfg, state, mm, self.rng, f"mixed {i}",
                                  specials=0.0 if i % 3 == 0 else 0.03)

    def final_phase(self):
        cov = self.env.coverage
        for op in ("DMA", "GEMM", "VPU", "SIGNAL", "WAIT", "WRITE"):
            assert cov.hit(op, None, "SUCCESS"), f"no successful {op} descriptor"


@pyuvm.test()
class DirectedErrorTest(ChipTestBase):
    """One program per bad-input class of docs/chip.md § Checks / § CSR refusals / § Reset:
    status, ERR_STATUS/ERR_INDEX/ERR_ADDR, the queue going on, nothing else written."""

    def programs(self, state, mm):
        return P.directed_error_programs(self.cfg, state, mm, self.rng)

    def final_phase(self):
        cov = self.env.coverage
        want = ["BAD_OPCODE", "NONZERO_RESERVED", "SIZE_RANGE", "INDEX_RANGE", "ADDR_ALIGN",
                "ADDR_RANGE", "OVERLAP", "TIMEOUT"]
        missing = [s for s in want if not cov.hit(status=s)]
        assert not missing, f"descriptor statuses never seen: {missing}"
        for st in ("CSR_ADDR", "CSR_READONLY", "CSR_BUSY", "QUEUE_OVERFLOW", "SIZE_RANGE",
                   "ADDR_ALIGN", "ADDR_RANGE"):
            assert cov.csr_bins.get(("CSR_WRITE", st)), f"CSR refusal {st} never seen"


@pyuvm.test()
class RandomMutationTest(ChipTestBase):
    """Valid descriptors with mutated ones (random bit flips, random field values)
    interleaved: no hang, every completion equal to the model's, results bit-exact."""

    throttle = False

    def programs(self, state, mm):
        total = 1000 if SCALE >= 5 else max(200, round(200 * SCALE))
        per = 100
        done = 0
        i = 0
        while done < total:
            n = min(per, total - done)
            # the model's HBM (for the screening of page lists) as the scoreboard has it now
            hbm = self.env.scoreboard.model.hbm
            yield P.random_mutation_program(self.cfg, state, mm, self.rng, f"mutation {i}", n,
                                            model_hbm=hbm)
            done += n
            i += 1
            if i % 2 == 0:
                yield P.mixed_program(self.cfg, state, mm, self.rng, f"valid work {i}")
        self.mutated = done

    def final_phase(self):
        cov = self.env.coverage
        errors = sum(n for (o, s, st), n in cov.bins.items() if st != "SUCCESS")
        self.logger.info("%d mutated descriptors; %d completions with an error status",
                         self.mutated, errors)
        assert errors >= 50, "mutation produced suspiciously few errors"
