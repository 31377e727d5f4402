"""The pyuvm environment of the chip regression (``ChipHost`` behind ``stream_harness``).

::

    ChipEnv
    ├── HostAgent
    │   ├── uvm_sequencer          programs (ProgramItem) from the test's sequences
    │   ├── HostDriver             one program = one harness batch (Python wakes once per batch)
    │   └── HostMonitor            (program, responses) → analysis port
    ├── ChipScoreboard             replays each program on ChipModel, compares every response;
    │                              check_phase: the whole HBM, byte for byte
    └── ChipCoverage               descriptor opcode × size class × status; holes at report_phase

The driver is the only component that touches the simulator; everything else sees whole
programs. The golden model's memories persist across the tests of one simulation (a reset
clears the chip's registers, not its memories), like the chip's.
"""

import numpy as np
from pyuvm import (ConfigDB, uvm_analysis_port, uvm_component, uvm_driver, uvm_env,
                   uvm_monitor, uvm_scoreboard, uvm_sequence, uvm_sequence_item, uvm_sequencer,
                   uvm_subscriber)

from golden_model.chip import ChipModel
from rtl.layouts import Status
from verif.common.scoreboard import ScoreboardError

from . import programs as P


__all__ = ["ProgramItem", "ProgramSequence", "HostDriver", "HostMonitor", "HostAgent",
           "ChipScoreboard", "ChipCoverage", "ChipEnv"]


class ProgramItem(uvm_sequence_item):
    """One program; the driver fills in the responses (``status``, ``data`` lists)."""

    def __init__(self, name, program):
        super().__init__(name)
        self.program = program
        self.status = None
        self.data = None
        self.cycles = 0

    def __str__(self):
        return f"{self.program.name}: {len(self.program)} requests"


class ProgramSequence(uvm_sequence):
    """Sends programs from an iterable (built lazily, in order)."""

    def __init__(self, name, programs):
        super().__init__(name)
        self.programs = programs

    async def body(self):
        for prog in self.programs:
            item = ProgramItem(prog.name, prog)
            await self.start_item(item)
            await self.finish_item(item)


class HostDriver(uvm_driver):
    """Runs each program as one ``StreamHarness`` batch and hands the item (with its
    responses) to the monitor's bus port."""

    def build_phase(self):
        self.bus = uvm_analysis_port("bus", self)
        self.harness = ConfigDB().get(self, "", "HARNESS")
        self.rng = ConfigDB().get(self, "", "RNG")
        self.throttle = ConfigDB().get(self, "", "THROTTLE")

    async def run_phase(self):
        while True:
            item = await self.seq_item_port.get_next_item()
            prog = item.program
            prob = 1.0
            if self.throttle and self.rng.random() < 0.3:
                prob = 0.6
            before = self.harness.cycles
            got = await self.harness.run(
                valid_prob=prob, ready_prob=prob, seed=int(self.rng.integers(1, 1 << 31)),
                timeout_cycles=200_000_000,
                op=prog.op, addr=prog.addr, data=np.array(prog.data, dtype=object),
                mask=np.array(prog.mask, dtype=object))
            item.status = [int(s) for s in got["status"]]
            item.data = [int(d) for d in got["data"]]
            item.cycles = self.harness.cycles - before
            self.bus.write(item)
            self.seq_item_port.item_done()


class HostMonitor(uvm_monitor):
    """Publishes every completed program with its responses on ``ap``.

    The responses come from the harness's output dump (the bulk path has no per-cycle bus to
    sample); the monitor is where the transaction-level view starts."""

    def build_phase(self):
        self.ap = uvm_analysis_port("ap", self)
        self.bus_export = _Callback("bus_export", self, self._observed)
        self.programs = 0
        self.requests = 0
        self.cycles = 0

    def _observed(self, item):
        self.programs += 1
        self.requests += len(item.program)
        self.cycles += item.cycles
        self.logger.info("%s: %d requests in %d cycles", item.program.name,
                         len(item.program), item.cycles)
        self.ap.write(item)


class _Callback(uvm_subscriber):
    def __init__(self, name, parent, fn):
        super().__init__(name, parent)
        self.fn = fn

    def write(self, tt):
        self.fn(tt)


class HostAgent(uvm_component):
    def build_phase(self):
        self.seqr = uvm_sequencer("seqr", self)
        self.driver = HostDriver("driver", self)
        self.monitor = HostMonitor("monitor", self)

    def connect_phase(self):
        self.driver.seq_item_port.connect(self.seqr.seq_item_export)
        self.driver.bus.connect(self.monitor.bus_export.analysis_export)


#: Golden memories kept across the tests of one simulation, by config.
_MEMORIES = {}


class ChipScoreboard(uvm_scoreboard):
    """Replays every program on :class:`ChipModel` and compares every response.

    Checked per program: each request's status; the data of memory reads and CSR reads
    (except time-dependent CSRs); the model against the test's intent (statuses it meant).
    At a full-HBM dump (the end of every test) the images are kept, and ``check_phase``
    compares them byte for byte (scratchpad and accumulator images included, via the dump
    descriptors).
    """

    def build_phase(self):
        self.cfg = ConfigDB().get(self, "", "CFG")
        self.analysis_export = _Callback("analysis_export", self, self.write)
        self.model = None
        self.errors = []
        self.programs = 0
        self.responses = 0
        self.images = None
        self.hard_reset()

    def hard_reset(self):
        """The chip was reset: registers to their reset values, memories kept."""
        key = self.cfg.to_json()
        model = ChipModel(self.cfg)
        if key in _MEMORIES:
            hbm, spad, acc = _MEMORIES[key]
            model.hbm[:] = hbm
            model.spad[:] = spad
            model.acc[:] = acc
        self.model = model
        _MEMORIES[key] = (model.hbm, model.spad, model.acc)

    def _error(self, msg):
        self.errors.append(msg)
        if len(self.errors) <= 30:
            self.logger.error(msg)

    def write(self, item):
        prog = item.program
        exp_status, exp_data = P.replay(self.model, prog)
        self.programs += 1
        for problem in P.check_intent(self.model, prog, exp_status, exp_data):
            self._error(f"{prog.name}: test/model disagree: {problem}")
        dump = range(*((prog.full_dump[0], prog.full_dump[0] + prog.full_dump[1])
                       if prog.full_dump else (0, 0)))
        bad = 0
        for i, (es, ed) in enumerate(zip(exp_status, exp_data)):
            self.responses += 1
            gs, gd = item.status[i], item.data[i]
            if es != gs or (ed is not None and i not in dump and ed != gd):
                bad += 1
                if bad <= 12:
                    self._error(
                        f"{prog.name}: request {i} {P.OP_NAMES.get(prog.op[i], prog.op[i])} "
                        f"addr {prog.addr[i]:#x} [{prog.labels[i]}]: expected status "
                        f"{_sname(es)} data {_hx(ed)}, got status {_sname(gs)} data {_hx(gd)}"
                        + self._explain(prog, i, ed, gd))
        if bad > 12:
            self._error(f"{prog.name}: {bad} responses differ in all")
        if prog.full_dump:
            first, n = prog.full_dump
            s = prog.stripe
            self.images = (
                np.frombuffer(b"".join(int(d).to_bytes(s, "little")
                                       for d in item.data[first:first + n]), np.uint8),
                self.model.hbm.copy())
        self.logger.info("%s: %d responses compared, %d differ", prog.name, len(prog), bad)

    def _explain(self, prog, i, ed, gd):
        """For a completion read: which descriptor, decoded both ways."""
        if prog.op[i] != P.MEM_READ or ed is None:
            return ""
        out = []
        for d in prog.descs:
            if d.cpl and d.cpl[0] == i:
                e = P.completion_from(prog, d, {i: ed})
                g = P.completion_from(prog, d, {i: gd})
                if e != g:
                    out.append(f"\n    descriptor q{d.queue}#{d.index} [{d.label}] "
                               f"{d.raw.hex()}\n    expected {_cpl(e)}\n    got      {_cpl(g)}")
        return "".join(out)

    def check_phase(self):
        if self.images is not None:
            got, exp = self.images
            mm = P.MemoryMap(self.cfg)
            diff = np.flatnonzero(got != exp)
            if diff.size:
                for lo, hi in _runs(diff)[:10]:
                    self._error(f"HBM [{lo:#x}, {hi:#x}) ({_region(mm, self.cfg, lo)}) differs: "
                                f"expected {exp[lo:min(hi, lo + 32)].tobytes().hex()} got "
                                f"{got[lo:min(hi, lo + 32)].tobytes().hex()}")
                self._error(f"{diff.size} HBM bytes differ from the golden model")
            else:
                self.logger.info("whole HBM (%d bytes, scratchpad and accumulator images "
                                 "included) equals the golden model", exp.size)
        elif self.programs:
            self._error("no full-HBM dump was taken")

    def report_phase(self):
        self.logger.info("scoreboard: %d programs, %d responses, %d errors", self.programs,
                         self.responses, len(self.errors))

    def final_phase(self):
        # Raised here, not in check_phase, so that report_phase (coverage) still runs.
        if self.errors:
            raise ScoreboardError(f"{len(self.errors)} scoreboard error(s); first: "
                                  f"{self.errors[0]}")


def _sname(code):
    try:
        return Status(int(code)).name
    except ValueError:
        return hex(int(code))


def _hx(x):
    return "-" if x is None else hex(int(x))


def _cpl(c):
    return {k: (v.name if isinstance(v, Status) else v) for k, v in c.items()}


def _runs(idx):
    out = []
    lo = prev = int(idx[0])
    for x in idx[1:]:
        x = int(x)
        if x != prev + 1:
            out.append((lo, prev + 1))
            lo = x
        prev = x
    out.append((lo, prev + 1))
    return out


def _region(mm, cfg, a):
    if a < mm.rings_end:
        return "rings"
    if a < mm.data:
        return "scratch"
    if a < mm.data_end:
        return "data"
    if a < mm.acc_dump:
        return f"scratchpad image, spad byte {a - mm.spad_dump:#x}"
    return f"accumulator image, row {(a - mm.acc_dump) // (4 * cfg.mxu_cols)}"


class ChipCoverage(uvm_subscriber):
    """Descriptor opcode × size class × completion status, from the chip's own completions
    (read back in the programs); holes are logged at report_phase."""

    STATUS_BINS = ("SUCCESS", "BAD_OPCODE", "NONZERO_RESERVED", "BAD_FORMAT", "SIZE_RANGE",
                   "ADDR_RANGE", "ADDR_ALIGN", "INDEX_RANGE", "OVERLAP", "TIMEOUT")

    def build_phase(self):
        self.cfg = ConfigDB().get(self, "", "CFG")
        self.bins = {}
        self.csr_bins = {}

    def write(self, item):
        prog = item.program
        for d in prog.descs:
            c = P.completion_from(prog, d, item.data)
            if c is None:
                continue
            st = c["status"]
            key = (P.desc_op_name(d.raw), P.size_class(self.cfg, d.raw),
                   st.name if isinstance(st, Status) else hex(st))
            self.bins[key] = self.bins.get(key, 0) + 1
        for i, op in enumerate(prog.op):
            if op in (P.CSR_READ, P.CSR_WRITE):
                key = (P.OP_NAMES[op], _sname(item.status[i]))
                self.csr_bins[key] = self.csr_bins.get(key, 0) + 1

    def hit(self, op=None, size=None, status=None):
        return sum(n for (o, s, st), n in self.bins.items()
                   if (op is None or o == op) and (size is None or s == size)
                   and (status is None or st == status))

    def holes(self):
        ops = ("NOP", "DMA", "GEMM", "VPU", "SIGNAL", "WAIT", "WRITE")
        out = []
        for op in ops:
            sizes = ("tiny", "one-line", "multi-line", "large") if op in ("DMA", "GEMM",
                                                                          "VPU") else ("-",)
            for size in sizes:
                if not self.hit(op, size, "SUCCESS"):
                    out.append(f"{op}/{size}/SUCCESS")
            for st in self.STATUS_BINS[1:]:
                if not self.hit(op, None, st) and _possible(op, st):
                    out.append(f"{op}/*/{st}")
        return out

    def report_phase(self):
        total = sum(self.bins.values())
        self.logger.info("coverage: %d completions in %d bins; CSR %s", total, len(self.bins),
                         dict(sorted(self.csr_bins.items())))
        for key, n in sorted(self.bins.items()):
            self.logger.info("  %-14s %-11s %-17s %d", *key, n)
        holes = self.holes()
        if holes:
            self.logger.info("coverage holes (%d): %s", len(holes), ", ".join(holes))


def _possible(op, st):
    """Statuses a descriptor of ``op`` can complete with (docs/chip.md § Checks)."""
    common = {"NONZERO_RESERVED"}
    return st in common | {
        "NOP": set(),
        "DMA": {"SIZE_RANGE", "ADDR_ALIGN", "ADDR_RANGE", "OVERLAP"},
        "GEMM": {"BAD_FORMAT", "SIZE_RANGE", "ADDR_ALIGN", "ADDR_RANGE"},
        "VPU": {"BAD_OPCODE", "BAD_FORMAT", "SIZE_RANGE", "ADDR_ALIGN", "ADDR_RANGE",
                "INDEX_RANGE"},
        "SIGNAL": {"INDEX_RANGE"},
        "WAIT": {"INDEX_RANGE", "TIMEOUT"},
        "WRITE": {"ADDR_ALIGN", "ADDR_RANGE", "OVERLAP"},
    }[op]


class ChipEnv(uvm_env):
    def build_phase(self):
        self.agent = HostAgent("agent", self)
        self.scoreboard = ChipScoreboard("scoreboard", self)
        self.coverage = ChipCoverage("coverage", self)

    def connect_phase(self):
        self.agent.monitor.ap.connect(self.scoreboard.analysis_export.analysis_export)
        self.agent.monitor.ap.connect(self.coverage.analysis_export)
