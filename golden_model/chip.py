"""Functional model of the whole chip (``docs/chip.md``): CSRs, descriptor rings, units.

:class:`ChipModel` holds the HBM image, the scratchpad and accumulator (shared by a
:class:`~golden_model.mxu.MxuModel` and a :class:`~golden_model.vpu.VpuModel`), the registers of
:func:`rtl.cmd.regs.register_map`, the semaphores and the queues. The host drives it like the
chip: :meth:`ChipModel.csr_read` / :meth:`ChipModel.csr_write` (the CSR bus),
:meth:`ChipModel.mem_write` / :meth:`ChipModel.mem_read` (the bulk memory port) and
:attr:`ChipModel.irq`. Work runs when the host calls :meth:`ChipModel.run`.

What is modelled exactly, and what is not:

- Memory contents, completions (every field), ``HEAD``, ``ERR_*``, ``IRQ_STATUS``, ``FLAGS``,
  semaphores and every CSR refusal are exact for a race-free program (one whose result does not
  depend on how the queues interleave).
- Scheduling: :meth:`ChipModel.run` runs the enabled queues round-robin, one descriptor at a
  time (queue 0, 1, 2, 3, 0, …), until nothing can progress. A descriptor is read from its slot
  when it runs. A ``WAIT`` whose semaphore is below its value blocks its queue (the other
  queues go on). When every enabled queue with work is blocked on a ``WAIT``, no semaphore can
  change any more, so the oldest blocked ``WAIT`` (the one that blocked first) completes with
  ``TIMEOUT``; then the scheduling goes on. This is the cycle timeout, exact for deadlocks;
  the value of ``WAIT_TIMEOUT`` is stored but not used (the model has no cycles), so a program
  that relies on a ``WAIT`` outliving or not outliving ``WAIT_TIMEOUT`` while other work runs
  is not modelled. ``run(timeouts=False)`` leaves the blocked ``WAIT`` s waiting instead
  (for a host that releases them by writing a ``SEM`` register).
- Time-dependent registers are not modelled: the performance counters read 0; ``STATUS``
  shows queue ``n`` busy while it is enabled with ``HEAD ≠ TAIL`` and the unit bits read 0;
  ``Q_STATE`` reads ``WAIT`` for a queue blocked on a ``WAIT``, ``FETCH`` for any other queue
  with work, else ``IDLE``. A reset completes at once.

Decisions where ``docs/chip.md`` is silent (see also the method docstrings):

- A CSR refusal is latched with ``ERR_STATUS.queue`` = :data:`CSR_ERR_QUEUE` (15, the
  ``regs.py`` field doc), ``csr`` = 1, ``ERR_INDEX`` = 0 and the CSR address as fault address;
  a refused read returns 0.
- Register bits outside a register's fields are ignored on write and read as 0 (registers
  without fields hold 32 bits).
- ``ERR_STATUS``: writing 1 to ``valid`` clears the whole register, ``ERR_INDEX`` and
  ``ERR_ADDR``; writing 1 to ``overflow`` clears only ``overflow``.
- ``IRQ_STATUS.DONE`` is set by a descriptor with ``DescFlags.IRQ`` whatever its status.
- ``SIGNAL`` adds modulo 2³²; a semaphore is a 32-bit register.
- ``Q_CTRL`` with ``reset`` set resets the queue (disabled, ``HEAD = TAIL = 0``) and ignores
  ``enable``; it touches no chip-wide state. ``CTRL.soft_reset`` keeps ring bases, sizes,
  ``IRQ_ENABLE`` and ``WAIT_TIMEOUT``.
- Enabling checks both ring bases for alignment (``ADDR_ALIGN``) before either ring for range
  (``ADDR_RANGE``); writing ``enable`` = 1 to an enabled queue checks nothing.
- A ``SIZE_LOG2`` write while enabled is ``CSR_BUSY`` (before the ``SIZE_RANGE`` check).
"""

import numpy as np

from firmware import isa
from rtl.cmd.regs import (
    CSR_ERR_QUEUE,
    Access, COUNTER_BASE, QUEUE_BASE, QUEUE_STRIDE, SEM_BASE, QueueState, register_map,
)
from rtl.layouts import (
    CPL_BYTES, DESC_BODIES, DESC_BYTES, MAX_RING_LOG2, QUEUES, SEM_COMMAND, SEMAPHORES,
    DescFlags, Opcode, Status,
)

from .dma import run_dma
from .mxu import MxuModel
from .vpu import VpuModel


__all__ = ["ChipModel", "QueueModel", "CSR_ERR_QUEUE", "ChipError", "hbm_span"]


_MASK32 = (1 << 32) - 1
_IRQ_DONE, _IRQ_ERROR = 1 << 0, 1 << 1
_ERR_VALID, _ERR_OVERFLOW, _ERR_CSR = 1 << 31, 1 << 30, 1 << 12
_WRITE_BYTES = 8


def hbm_span(cfg, addr, n):
    """``(addr, n)`` as ints, or ``ValueError`` if the bytes lie outside ``cfg``'s HBM (the
    host port's check, shared by every transport)."""
    addr, n = int(addr), int(n)
    if addr < 0 or n < 0 or addr + n > cfg.hbm_bytes:
        raise ValueError(f"HBM bytes {addr:#x} … +{n:#x} are outside the "
                         f"{cfg.hbm_bytes:#x}-byte HBM")
    return addr, n


class ChipError(RuntimeError):
    """A convenience call (:meth:`ChipModel.setup_queue`, :meth:`ChipModel.submit`) that the
    chip refused; ``status`` is the refusal."""

    def __init__(self, status, message):
        super().__init__(f"{Status(status).name}: {message}")
        self.status = Status(status)


class QueueModel:
    """State of one queue."""

    def __init__(self):
        self.sq_base = 0
        self.cq_base = 0
        self.size_log2 = 0
        self.enable = False
        self.head = 0
        self.tail = 0
        #: Scheduler step at which the WAIT at HEAD first blocked, or None.
        self.blocked_since = None

    @property
    def size(self):
        return 1 << self.size_log2

    @property
    def pending(self):
        return self.enable and self.head != self.tail

    def rings(self):
        """The byte ranges ``[lo, hi)`` of the descriptor ring and the completion ring."""
        return [(self.sq_base, self.sq_base + (DESC_BYTES << self.size_log2)),
                (self.cq_base, self.cq_base + (CPL_BYTES << self.size_log2))]

    def reset(self):
        self.enable = False
        self.head = self.tail = 0
        self.blocked_since = None


def _field_mask(reg):
    if not reg.fields:
        return _MASK32
    mask = 0
    for f in reg.fields:
        mask |= ((1 << f.width) - 1) << f.lsb
    return mask


class ChipModel:
    """The functional chip.

    Parameters
    ----------
    cfg : ChipConfig

    Attributes
    ----------
    cfg : ChipConfig
    hbm : numpy.ndarray of uint8, shape [hbm_bytes]
    spad : numpy.ndarray of uint8, shape [spad_bytes]
    acc : numpy.ndarray of uint32, shape [acc_rows, mxu_cols]
    mxu : MxuModel
    vpu : VpuModel
        The units, working on :attr:`spad` and :attr:`acc`.
    queues : list of QueueModel
    sems : list of int
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.hbm = np.zeros(cfg.hbm_bytes, np.uint8)
        self.mxu = MxuModel(cfg)
        self.spad, self.acc = self.mxu.spad, self.mxu.acc
        self.vpu = VpuModel(cfg, self.spad, self.acc)
        self.regs = {r.addr: r for r in register_map(cfg)}
        self.addr_of = {r.name: r.addr for r in self.regs.values()}
        self.queues = [QueueModel() for _ in range(QUEUES)]
        self.sems = [0] * SEMAPHORES
        # Plain storage of the registers without special behaviour (RO constants, IRQ_ENABLE,
        # WAIT_TIMEOUT, and the sticky W1C registers).
        self._value = {a: r.reset for a, r in self.regs.items()}
        self.err_index = 0
        self.err_addr = 0
        self._step = 0

    # -- registers ----------------------------------------------------------------------------

    def _queue_reg(self, addr):
        """``(queue, register suffix)`` of a per-queue register, else None."""
        reg = self.regs[addr]
        if reg.index is None or not QUEUE_BASE <= addr < QUEUE_BASE + QUEUES * QUEUE_STRIDE:
            return None
        return reg.index, reg.name.split("_", 1)[1]

    @property
    def err_status(self):
        return self._value[self.addr_of["ERR_STATUS"]]

    @property
    def irq_status(self):
        return self._value[self.addr_of["IRQ_STATUS"]]

    @property
    def flags(self):
        return self._value[self.addr_of["FLAGS"]]

    @property
    def irq(self):
        """The interrupt line: ``|(IRQ_STATUS & IRQ_ENABLE)``."""
        return bool(self.irq_status & self._value[self.addr_of["IRQ_ENABLE"]])

    def _or(self, name, bits):
        self._value[self.addr_of[name]] |= bits

    def _latch_error(self, status, queue, index, fault_addr, csr=False):
        addr = self.addr_of["ERR_STATUS"]
        if self._value[addr] & _ERR_VALID:
            self._value[addr] |= _ERR_OVERFLOW
        else:
            self._value[addr] = (Status(status).value | queue << 8 | (_ERR_CSR if csr else 0)
                                 | _ERR_VALID)
            self.err_index = index & _MASK32
            self.err_addr = fault_addr
        self._or("IRQ_STATUS", _IRQ_ERROR)

    def _refuse(self, status, addr):
        self._latch_error(status, CSR_ERR_QUEUE, 0, addr, csr=True)
        return Status(status)

    def csr_read(self, addr):
        """Read the CSR at byte address ``addr``: ``(value, status)``.

        ``status`` is ``Status.SUCCESS`` or ``Status.CSR_ADDR`` (the refusal is latched, the
        value is 0).
        """
        if addr % 4 or addr not in self.regs:
            return 0, self._refuse(Status.CSR_ADDR, addr)
        return self._read(addr), Status.SUCCESS

    def _read(self, addr):
        reg = self.regs[addr]
        name = reg.name
        qr = self._queue_reg(addr)
        if qr is not None:
            q, suffix = qr
            s = self.queues[q]
            return {
                "SQ_BASE_LO": s.sq_base & _MASK32, "SQ_BASE_HI": s.sq_base >> 32,
                "CQ_BASE_LO": s.cq_base & _MASK32, "CQ_BASE_HI": s.cq_base >> 32,
                "SIZE_LOG2": s.size_log2, "CTRL": int(s.enable), "TAIL": s.tail,
                "HEAD": s.head, "STATE": self._state(s),
            }[suffix]
        if SEM_BASE <= addr < SEM_BASE + 4 * SEMAPHORES:
            return self.sems[reg.index]
        if name == "STATUS":
            return sum(1 << q for q, s in enumerate(self.queues) if s.pending)
        if name == "ERR_INDEX":
            return self.err_index
        if name == "ERR_ADDR_LO":
            return self.err_addr & _MASK32
        if name == "ERR_ADDR_HI":
            return self.err_addr >> 32
        if reg.access is Access.W1S:
            return 0
        if addr >= COUNTER_BASE:
            return 0        # a performance counter: not modelled
        return self._value[addr]

    @staticmethod
    def _state(s):
        if s.pending:
            return QueueState.WAIT if s.blocked_since is not None else QueueState.FETCH
        return QueueState.IDLE

    def csr_write(self, addr, value):
        """Write ``value`` (32 bits) to the CSR at byte address ``addr``.

        Returns ``Status.SUCCESS`` or the refusal of ``docs/chip.md`` § CSR refusals (then
        nothing changed but the latched error).
        """
        value = int(value)
        if not 0 <= value <= _MASK32:
            raise ValueError(f"a CSR value is 32 bits, not {value:#x}")
        if addr % 4 or addr not in self.regs:
            return self._refuse(Status.CSR_ADDR, addr)
        reg = self.regs[addr]
        if reg.access is Access.RO:
            return self._refuse(Status.CSR_READONLY, addr)
        value &= _field_mask(reg)
        qr = self._queue_reg(addr)
        if qr is not None:
            status = self._queue_write(*qr, value)
            return status if status is Status.SUCCESS else self._refuse(status, addr)
        if SEM_BASE <= addr < SEM_BASE + 4 * SEMAPHORES:
            self.sems[reg.index] = value
        elif reg.name == "CTRL":
            if value & 1:
                self.soft_reset()
        elif reg.name == "ERR_STATUS":
            if value & _ERR_VALID:
                self._value[addr] = 0
                self.err_index = self.err_addr = 0
            elif value & _ERR_OVERFLOW:
                self._value[addr] &= ~_ERR_OVERFLOW
        elif reg.access is Access.W1C:
            self._value[addr] &= ~value
        else:
            self._value[addr] = value
        return Status.SUCCESS

    def _queue_write(self, q, suffix, value):
        s = self.queues[q]
        if suffix in ("SQ_BASE_LO", "SQ_BASE_HI", "CQ_BASE_LO", "CQ_BASE_HI", "SIZE_LOG2"):
            if s.enable:
                return Status.CSR_BUSY
            if suffix == "SIZE_LOG2":
                if value > MAX_RING_LOG2:
                    return Status.SIZE_RANGE
                s.size_log2 = value
                return Status.SUCCESS
            attr = "sq_base" if suffix.startswith("SQ") else "cq_base"
            old = getattr(s, attr)
            new = (old & ~_MASK32 | value) if suffix.endswith("LO") else \
                (old & _MASK32 | value << 32)
            setattr(s, attr, new)
            return Status.SUCCESS
        if suffix == "CTRL":
            if value & 2:
                s.reset()
                return Status.SUCCESS
            if value & 1 and not s.enable:
                status = self._check_rings(s)
                if status is not Status.SUCCESS:
                    return status
            s.enable = bool(value & 1)
            return Status.SUCCESS
        if suffix == "TAIL":
            if (value - s.head) & _MASK32 > s.size or (value - s.tail) & _MASK32 > s.size:
                return Status.QUEUE_OVERFLOW
            s.tail = value
            return Status.SUCCESS
        raise AssertionError(f"unhandled queue register {suffix}")

    def _check_rings(self, s):
        if s.sq_base % DESC_BYTES or s.cq_base % CPL_BYTES:
            return Status.ADDR_ALIGN
        if any(hi > self.cfg.hbm_bytes for _, hi in s.rings()):
            return Status.ADDR_RANGE
        return Status.SUCCESS

    def soft_reset(self):
        """``CTRL.soft_reset``: every queue disabled with ``HEAD = TAIL = 0``; semaphores,
        ``ERR_*``, ``IRQ_STATUS`` and ``FLAGS`` cleared. Memories keep their contents."""
        for s in self.queues:
            s.reset()
        self.sems = [0] * SEMAPHORES
        for name in ("ERR_STATUS", "IRQ_STATUS", "FLAGS"):
            self._value[self.addr_of[name]] = 0
        self.err_index = self.err_addr = 0

    # -- named access (convenience) -------------------------------------------------------------

    def read_reg(self, name):
        """:meth:`csr_read` by register name; returns the value (raises on a refusal)."""
        value, status = self.csr_read(self.addr_of[name])
        if status is not Status.SUCCESS:
            raise ChipError(status, f"read of {name}")
        return value

    def write_reg(self, name, value):
        """:meth:`csr_write` by register name; returns the status."""
        return self.csr_write(self.addr_of[name], value)

    # -- bulk memory port ---------------------------------------------------------------------

    def _span(self, addr, n):
        return hbm_span(self.cfg, addr, n)

    def mem_write(self, addr, data):
        """Write ``data`` (bytes or a uint8 array) to HBM at byte address ``addr``."""
        data = np.frombuffer(bytes(data), np.uint8) if not isinstance(data, np.ndarray) \
            else np.asarray(data, np.uint8).reshape(-1)
        addr, n = self._span(addr, data.size)
        self.hbm[addr:addr + n] = data

    def mem_read(self, addr, n):
        """Read ``n`` bytes of HBM at byte address ``addr`` (a copy, as ``bytes``)."""
        addr, n = self._span(addr, n)
        return self.hbm[addr:addr + n].tobytes()

    # -- execution ----------------------------------------------------------------------------

    def _protect(self):
        return [r for s in self.queues if s.enable for r in s.rings()]

    def _touches_ring(self, lo, hi):
        return any(lo < rhi and hi > rlo for rlo, rhi in self._protect())

    def run(self, timeouts=True):
        """Run the queues to quiescence (see the module docstring).

        Returns the number of descriptors completed. With ``timeouts=False`` a deadlock leaves
        the blocked WAITs waiting instead of completing the oldest with ``TIMEOUT``.
        """
        done = 0
        while True:
            progressed = False
            for q in range(QUEUES):
                if self._step_queue(q):
                    done += 1
                    progressed = True
            if progressed:
                continue
            blocked = [(s.blocked_since, q) for q, s in enumerate(self.queues)
                       if s.pending and s.blocked_since is not None]
            if not blocked or not timeouts:
                return done
            _, q = min(blocked)
            s = self.queues[q]
            desc = self._fetch(s)
            self._complete(q, s, desc, Status.TIMEOUT, 0)
            done += 1

    def _fetch(self, s):
        addr = s.sq_base + (s.head % s.size) * DESC_BYTES
        return isa.decode_descriptor(self.hbm[addr:addr + DESC_BYTES].tobytes())

    def _step_queue(self, q):
        """Run the descriptor at ``HEAD`` of queue ``q``; return whether it completed."""
        s = self.queues[q]
        if not s.pending:
            return False
        self._step += 1
        desc = self._fetch(s)
        result = self._execute(desc)
        if result is None:                       # a WAIT that must wait
            if s.blocked_since is None:
                s.blocked_since = self._step
            return False
        self._complete(q, s, desc, *result)
        return True

    def _complete(self, q, s, desc, status, flags):
        index = s.head
        status = Status(status)
        entry = isa.encode_completion(index, desc["cookie"], status, flags,
                                      phase=1 - ((index >> s.size_log2) & 1), queue=q)
        addr = s.cq_base + (index % s.size) * CPL_BYTES
        self.hbm[addr:addr + CPL_BYTES] = np.frombuffer(entry, np.uint8)
        s.head = (s.head + 1) & _MASK32
        s.blocked_since = None
        self._or("FLAGS", flags)
        if desc["flags"] & DescFlags.IRQ.value:
            self._or("IRQ_STATUS", _IRQ_DONE)
        if status is not Status.SUCCESS:
            self._latch_error(status, q, index, s.sq_base + (index % s.size) * DESC_BYTES)

    def _header_status(self, desc):
        op = desc["opcode"]
        if op is None:
            return Status.BAD_OPCODE
        layout = DESC_BODIES.get(op)
        body_bits = 0 if layout is None else layout.size
        if (desc["reserved"] or desc["flags"] & ~DescFlags.IRQ.value
                or desc["body"] >> body_bits):
            return Status.NONZERO_RESERVED
        if layout is SEM_COMMAND and desc["cmd"]["reserved"]:
            return Status.NONZERO_RESERVED
        return Status.SUCCESS

    def _execute(self, desc):
        """``(status, flags)`` of one descriptor, or None for a WAIT that must wait."""
        status = self._header_status(desc)
        if status is not Status.SUCCESS:
            return status, 0
        op, cmd = desc["opcode"], desc["cmd"]
        if op is Opcode.NOP:
            return Status.SUCCESS, 0
        if op is Opcode.DMA:
            return run_dma(self.cfg, cmd, self.hbm, self.spad, protect=self._protect()), 0
        if op is Opcode.GEMM:
            status, flags = self.mxu.execute(cmd)
            return status, int(flags)
        if op is Opcode.VPU:
            status, flags = self.vpu.execute(cmd)
            return status, int(flags)
        if op in (Opcode.SIGNAL, Opcode.WAIT):
            sem, value = cmd["sem"], cmd["value"]
            if sem >= SEMAPHORES:
                return Status.INDEX_RANGE, 0
            if op is Opcode.SIGNAL:
                self.sems[sem] = (self.sems[sem] + value) & _MASK32
                return Status.SUCCESS, 0
            return (Status.SUCCESS, 0) if self.sems[sem] >= value else None
        assert op is Opcode.WRITE
        addr = cmd["addr"]
        if addr % _WRITE_BYTES:
            return Status.ADDR_ALIGN, 0
        if addr + _WRITE_BYTES > self.cfg.hbm_bytes:
            return Status.ADDR_RANGE, 0
        if self._touches_ring(addr, addr + _WRITE_BYTES):
            return Status.OVERLAP, 0
        self.hbm[addr:addr + _WRITE_BYTES] = np.frombuffer(
            cmd["value"].to_bytes(_WRITE_BYTES, "little"), np.uint8)
        return Status.SUCCESS, 0

    # -- convenience layer (tests, driver) ------------------------------------------------------

    def _q(self, q, suffix):
        return self.addr_of[f"Q{q}_{suffix}"]

    def _must(self, status, what):
        if status is not Status.SUCCESS:
            raise ChipError(status, what)

    def setup_queue(self, q, sq_base, cq_base, size_log2):
        """Program and enable queue ``q`` (which must be disabled) through its CSRs; raises
        :class:`ChipError` on a refusal."""
        for suffix, value in (("SQ_BASE_LO", sq_base & _MASK32), ("SQ_BASE_HI", sq_base >> 32),
                              ("CQ_BASE_LO", cq_base & _MASK32), ("CQ_BASE_HI", cq_base >> 32),
                              ("SIZE_LOG2", size_log2), ("CTRL", 1)):
            self._must(self.csr_write(self._q(q, suffix), value), f"Q{q}_{suffix} = {value:#x}")

    def submit(self, q, descriptors):
        """Write ``descriptors`` (128-byte slots) at ``TAIL`` of queue ``q`` and ring the
        doorbell; raises :class:`ChipError` if the doorbell is refused. Does not run them."""
        s = self.queues[q]
        descriptors = [bytes(d) for d in descriptors]
        for i, d in enumerate(descriptors):
            if len(d) != DESC_BYTES:
                raise ValueError(f"a descriptor is {DESC_BYTES} bytes, not {len(d)}")
            self.mem_write(s.sq_base + ((s.tail + i) % s.size) * DESC_BYTES, d)
        tail = (s.tail + len(descriptors)) & _MASK32
        self._must(self.csr_write(self._q(q, "TAIL"), tail), f"Q{q}_TAIL = {tail}")

    def completions(self, q, first=None, count=None):
        """Decoded completion entries of queue ``q``, read from its completion ring.

        By default those of the last ``min(HEAD, size)`` completed descriptors, oldest first;
        else of indices ``first … first + count − 1``.
        """
        s = self.queues[q]
        if first is None:
            first = max(0, s.head - s.size)
        if count is None:
            count = s.head - first
        out = []
        for index in range(first, first + count):
            addr = s.cq_base + (index % s.size) * CPL_BYTES
            out.append(isa.decode_completion(self.mem_read(addr, CPL_BYTES)))
        return out
