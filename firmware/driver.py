"""The driver: one chip behind a :class:`~firmware.transports.Transport`.

:class:`Device` owns the chip's HBM (an allocator), its command queues (descriptor and
completion rings, set up through the CSRs of :mod:`firmware.regs`) and its semaphores, and runs
*programs*: a list of descriptors per queue, submitted together and run to completion. It
reads the completions back, and any status other than ``SUCCESS`` raises
:class:`~firmware.errors.DeviceError` naming the descriptor. It knows nothing of models; the
compiler (:mod:`firmware.compiler`) writes the programs.

Example::

    dev = Device(FunctionalTransport(M890))
    buf = dev.alloc(4096, "x")
    dev.write(buf, data)
    prog = Program()
    prog.add(1, isa.dma(rows=1, row_bytes=4096, hbm_addr=buf.addr, spad_addr=0), "load x")
    dev.run(prog)
"""

from dataclasses import dataclass, field

import numpy as np

from rtl.layouts import CPL_BYTES, DESC_BYTES, QUEUES, SEMAPHORES, Status

from . import isa, regs
from .errors import DeviceError, DeviceTimeout, OutOfDeviceMemory, TransportError


__all__ = ["Buffer", "Program", "Device", "ALIGN"]


#: Alignment of every HBM allocation: one stripe of the widest preset, so a buffer's first
#: byte starts a stripe and bulk transfers need no partial masks.
ALIGN = 256
_MASK32 = (1 << 32) - 1


@dataclass(frozen=True)
class Buffer:
    """A region of HBM: ``size`` bytes at byte address ``addr``."""
    addr: int
    size: int
    name: str

    def __int__(self):
        return self.addr

    @property
    def end(self):
        return self.addr + self.size


@dataclass
class Program:
    """Descriptors per queue, run together: queues interlock only through semaphores.

    ``labels[q][i]`` says what descriptor ``i`` of queue ``q`` does; error messages quote it.
    """
    queues: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)

    def add(self, queue, descriptor, label=""):
        if not 0 <= queue < QUEUES:
            raise ValueError(f"queue must be 0 … {QUEUES - 1}, not {queue!r}")
        self.queues.setdefault(queue, []).append(descriptor)
        self.labels.setdefault(queue, []).append(label)

    def extend(self, other):
        for q, descs in other.queues.items():
            for d, label in zip(descs, other.labels[q]):
                self.add(q, d, label)

    def __len__(self):
        return sum(len(d) for d in self.queues.values())


class Device:
    """One chip, driven through ``transport``.

    Parameters
    ----------
    transport : firmware.transports.Transport
    ring_log2 : int
        log2 of the slots of each queue's rings (the largest program per queue).
    queues : int
        How many queues to set up (0 … ``queues − 1``). The Qwen runtime uses three: weights,
        computation and KV-cache gathers.
    wait_timeout : int
        Cycles a WAIT descriptor may wait before it completes with ``TIMEOUT``.
    max_cycles : int
        Default limit of one :meth:`run` on a cycle-accurate transport.
    """

    def __init__(self, transport, *, ring_log2=12, queues=3, wait_timeout=1 << 26,
                 max_cycles=1 << 34):
        self.transport = transport
        self.cfg = transport.cfg
        self.max_cycles = max_cycles
        ident = self.csr_read(regs.ID)
        if ident != regs.ID_VALUE:
            raise TransportError(f"no M890 chip behind the transport: ID reads {ident:#010x}")
        self._free = [(0, self.cfg.hbm_bytes)]       # sorted, disjoint (start, end)
        self.buffers = {}
        self.ring_slots = 1 << ring_log2
        self.csr_write(regs.CTRL, 1 << regs.FIELDS["CTRL"]["soft_reset"][0])
        self.csr_write(regs.WAIT_TIMEOUT, wait_timeout)
        self.tail = [0] * queues
        self.sq, self.cq = [], []
        for q in range(queues):
            sq = self.alloc(self.ring_slots * DESC_BYTES, f"queue {q} descriptors")
            cq = self.alloc(self.ring_slots * CPL_BYTES, f"queue {q} completions")
            self.sq.append(sq)
            self.cq.append(cq)
            for reg, value in ((regs.Q_SQ_BASE_LO, sq.addr & _MASK32),
                               (regs.Q_SQ_BASE_HI, sq.addr >> 32),
                               (regs.Q_CQ_BASE_LO, cq.addr & _MASK32),
                               (regs.Q_CQ_BASE_HI, cq.addr >> 32),
                               (regs.Q_SIZE_LOG2, ring_log2), (regs.Q_CTRL, 1)):
                self.csr_write(regs.queue_reg(q, reg), value)
        #: Semaphore values as the programs run so far leave them (the compiler reads them).
        self.sems = [0] * SEMAPHORES
        self.programs = 0
        self.descriptors = 0

    # -- CSRs -----------------------------------------------------------------------------------

    def csr_write(self, addr, value):
        status = self.transport.csr_write(addr, value)
        if status is not Status.SUCCESS:
            raise DeviceError(status, f"CSR write {addr:#x} = {value:#x}")

    def csr_read(self, addr):
        value, status = self.transport.csr_read(addr)
        if status is not Status.SUCCESS:
            raise DeviceError(status, f"CSR read {addr:#x}")
        return value

    def counters(self):
        """The chip's 64-bit performance counters as a dict (``CYCLES``, ``MXU_MACS``, …, and
        ``HBM<c>_<name>`` per channel). All 0 on a transport without a clock."""
        out = {}
        for name, addr in regs.COUNTERS.items():
            out[name] = self._counter(addr)
        for c in range(self.cfg.hbm_channels):
            for name in regs.HBM_COUNTERS:
                out[f"HBM{c}_{name}"] = self._counter(regs.hbm_counter(c, name))
        return out

    def _counter(self, addr):
        lo = self.csr_read(addr)               # latches the high word
        return lo | self.csr_read(addr + 4) << 32

    # -- memory ---------------------------------------------------------------------------------

    def alloc(self, nbytes, name):
        """Allocate ``nbytes`` of HBM (aligned to :data:`ALIGN`); raises
        :class:`OutOfDeviceMemory` when no free region is large enough."""
        nbytes = int(nbytes)
        if nbytes <= 0:
            raise ValueError(f"allocation {name!r} of {nbytes} bytes")
        size = -(-nbytes // ALIGN) * ALIGN
        for i, (lo, hi) in enumerate(self._free):
            start = -(-lo // ALIGN) * ALIGN
            if start + size <= hi:
                pieces = [(a, b) for a, b in ((lo, start), (start + size, hi)) if b > a]
                self._free[i:i + 1] = pieces
                buf = Buffer(start, nbytes, name)
                self.buffers[start] = buf
                return buf
        raise OutOfDeviceMemory(name, nbytes, self.free_bytes, self.cfg.hbm_bytes)

    def free(self, buf):
        """Return ``buf`` to the allocator."""
        if self.buffers.pop(buf.addr, None) is None:
            raise ValueError(f"{buf.name!r} at {buf.addr:#x} is not allocated")
        size = -(-buf.size // ALIGN) * ALIGN
        free = sorted(self._free + [(buf.addr, buf.addr + size)])
        merged = [free[0]]
        for lo, hi in free[1:]:
            if lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        self._free = merged

    @property
    def free_bytes(self):
        return sum(hi - lo for lo, hi in self._free)

    def write(self, dst, data, offset=0):
        """Write ``data`` (bytes or a numpy array, taken as its raw bytes) into buffer ``dst``
        at ``offset`` (or at HBM address ``dst`` when it is an int)."""
        raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
        addr = self._addr(dst, offset, len(raw))
        self.transport.write(addr, raw)

    def read(self, src, nbytes=None, offset=0):
        """Read ``nbytes`` (default: the rest of the buffer) from ``src`` at ``offset``."""
        if nbytes is None:
            if not isinstance(src, Buffer):
                raise ValueError("read from an address needs nbytes")
            nbytes = src.size - offset
        return self.transport.read(self._addr(src, offset, nbytes), nbytes)

    def _addr(self, where, offset, n):
        if isinstance(where, Buffer):
            if offset < 0 or offset + n > where.size:
                raise ValueError(f"bytes {offset} … {offset + n} are outside {where.name!r} "
                                 f"({where.size} bytes)")
            return where.addr + offset
        return int(where) + offset

    # -- programs -------------------------------------------------------------------------------

    def run(self, program, what="program", *, max_cycles=None):
        """Submit ``program`` on every queue it uses, run the chip until idle and check every
        completion. Returns the cycles the run took (0 on the functional chip).

        Raises :class:`DeviceError` for the first descriptor (in queue order) that completed
        with an error status, :class:`DeviceTimeout` if the chip does not go idle.
        """
        items = sorted(program.queues.items())
        for q, descs in items:
            if q >= len(self.sq):
                raise ValueError(f"the program uses queue {q}; the device set up {len(self.sq)}")
            if len(descs) > self.ring_slots:
                raise ValueError(f"{what}: {len(descs)} descriptors on queue {q} exceed the "
                                 f"{self.ring_slots}-slot ring")
        t0 = self.transport.cycles
        for q, descs in items:
            self._write_ring(self.sq[q], DESC_BYTES, self.tail[q], b"".join(descs))
        for q, descs in items:
            self.tail[q] = (self.tail[q] + len(descs)) & _MASK32
            self.csr_write(regs.queue_reg(q, regs.Q_TAIL), self.tail[q])
        try:
            self.transport.wait_idle(max_cycles or self.max_cycles)
        except DeviceTimeout as e:
            raise DeviceTimeout(f"{what}: {e}") from None
        for q, descs in items:
            head = self.csr_read(regs.queue_reg(q, regs.Q_HEAD))
            first = (self.tail[q] - len(descs)) & _MASK32
            raw = self._read_ring(self.cq[q], CPL_BYTES, first, len(descs))
            cpl = np.frombuffer(raw, np.uint8).reshape(len(descs), CPL_BYTES)
            status = _status_column(cpl)
            bad = np.flatnonzero(status != Status.SUCCESS.value)
            if bad.size:
                i = int(bad[0])
                entry = isa.decode_completion(cpl[i].tobytes())
                label = program.labels[q][i]
                if entry["status"] is Status.TIMEOUT:
                    raise DeviceTimeout(f"{what}: {label}: WAIT timed out (queue {q}, "
                                        f"descriptor {entry['index']})")
                raise DeviceError(entry["status"], f"{what}: {label}", queue=q,
                                  index=entry["index"], cookie=entry["cookie"])
            if head != self.tail[q]:
                raise DeviceTimeout(f"{what}: queue {q} completed {head - first} of "
                                    f"{len(descs)} descriptors")
        self.descriptors += sum(len(d) for _, d in items)
        self.programs += 1
        return self.transport.cycles - t0

    def _write_ring(self, ring, slot_bytes, index, data):
        slots = self.ring_slots
        n = len(data) // slot_bytes
        first = index % slots
        head = min(n, slots - first)
        self.write(ring, data[:head * slot_bytes], first * slot_bytes)
        if n > head:
            self.write(ring, data[head * slot_bytes:], 0)

    def _read_ring(self, ring, slot_bytes, index, n):
        slots = self.ring_slots
        first = index % slots
        head = min(n, slots - first)
        out = self.read(ring, head * slot_bytes, first * slot_bytes)
        if n > head:
            out += self.read(ring, (n - head) * slot_bytes, 0)
        return out


def _status_column(cpl):
    """The status of every completion entry (rows of ``cpl``), from the layout's bit offset."""
    from rtl.layouts import COMPLETION
    f = COMPLETION["status"]
    width = 8
    word = np.zeros(len(cpl), np.uint64)
    lo = f.offset // 8
    for b in range(lo, min(CPL_BYTES, (f.offset + width) // 8 + 1)):
        word |= cpl[:, b].astype(np.uint64) << np.uint64(8 * (b - lo))
    return ((word >> np.uint64(f.offset % 8)) & np.uint64((1 << width) - 1)).astype(np.int64)
