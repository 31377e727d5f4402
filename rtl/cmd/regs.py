"""The register map of the command processor: every CSR, declared once.

The RTL decodes the CSR bus from :func:`register_map`; ``scripts/gen_regs.py`` writes the same
table to ``firmware/regs.py`` and ``docs/regs.md``, and the functional chip
(``golden_model/chip.py``) implements the same registers. Nothing else lists an address.
"""

from dataclasses import dataclass
import enum as py_enum

from ..layouts import QUEUES, SEMAPHORES


__all__ = ["CSR_ERR_QUEUE", "Access", "Field", "Register", "register_map", "COUNTERS",
           "ID_VALUE", "VERSION",
           "QUEUE_BASE", "QUEUE_STRIDE", "SEM_BASE", "COUNTER_BASE", "DEFAULT_WAIT_TIMEOUT",
           "QueueState"]


#: Value of ``ID``: "M890" in ASCII.
ID_VALUE = 0x4D383930
#: Value of ``VERSION``: bumped whenever the map or a descriptor layout changes.
VERSION = 1
#: ``ERR_STATUS.queue`` of a refused CSR access (no queue has this number).
CSR_ERR_QUEUE = 15
#: Reset value of ``WAIT_TIMEOUT`` (cycles).
DEFAULT_WAIT_TIMEOUT = 1 << 24

QUEUE_BASE = 0x100
QUEUE_STRIDE = 0x40
SEM_BASE = 0x200
COUNTER_BASE = 0x400


class Access(py_enum.Enum):
    #: Read-only; a write is refused with ``CSR_READONLY``.
    RO = "ro"
    #: Read-write.
    RW = "rw"
    #: Read; writing 1 to a bit clears it.
    W1C = "w1c"
    #: Reads 0; writing 1 to a bit starts an action.
    W1S = "w1s"


@dataclass(frozen=True)
class Field:
    name: str
    lsb: int
    width: int
    doc: str


@dataclass(frozen=True)
class Register:
    name: str
    addr: int
    access: Access
    doc: str
    reset: int = 0
    fields: tuple = ()
    #: Queue number of a per-queue register, semaphore or counter index, else None.
    index: int | None = None


class QueueState(py_enum.IntEnum):
    """Values of ``Q<n>_STATE``."""
    IDLE      = 0   # nothing to do (or disabled)
    FETCH     = 1   # reading a descriptor
    DISPATCH  = 2   # waiting for its unit
    RUN       = 3   # the unit is executing it
    WAIT      = 4   # a WAIT is waiting for its semaphore
    COMPLETE  = 5   # writing its completion
    RESET     = 6   # a reset waits for the unit to finish


#: 64-bit performance counters, in order (``COUNTER_BASE + 8·i``: low word, then high word;
#: reading the low word latches the high word). Per-channel HBM counters follow them.
COUNTERS = (
    ("CYCLES",       "cycles since reset"),
    ("DESC_DONE",    "descriptors completed (any status)"),
    ("DESC_ERRORS",  "descriptors completed with an error status"),
    ("DMA_BUSY",     "cycles with a DMA command in the DMA engine"),
    ("DMA_RD_BYTES", "bytes the DMA engine read from HBM (page lists included)"),
    ("DMA_WR_BYTES", "bytes the DMA engine wrote to HBM"),
    ("MXU_BUSY",     "cycles with a command in the matrix engine"),
    ("MXU_MACS",     "multiply-accumulates issued by the matrix engine"),
    ("VPU_BUSY",     "cycles with a command in the vector unit"),
)
HBM_COUNTERS = (
    ("RD_BYTES", "bytes read from the channel"),
    ("WR_BYTES", "bytes written to the channel"),
    ("BUSY",     "cycles the channel served a word"),
    ("STALL",    "cycles a requester wanted the channel and another got it"),
)


def register_map(cfg):
    """Every CSR of a chip configured by ``cfg``, in address order."""
    R, F = Register, Field
    regs = [
        R("ID", 0x000, Access.RO, "Chip identity: \"M890\" in ASCII.", reset=ID_VALUE),
        R("VERSION", 0x004, Access.RO, "Register map and descriptor layout version.",
          reset=VERSION),
        R("CONFIG0", 0x008, Access.RO, "Array and memory geometry.",
          reset=cfg.mxu_rows | cfg.mxu_cols << 8 | cfg.vpu_lanes << 16
          | cfg.hbm_channels << 24,
          fields=(F("mxu_rows", 0, 8, "rows of the systolic array"),
                  F("mxu_cols", 8, 8, "columns of the systolic array"),
                  F("vpu_lanes", 16, 8, "vector lanes"),
                  F("hbm_channels", 24, 8, "HBM channels"))),
        R("CONFIG1", 0x00C, Access.RO, "Memory sizes.",
          reset=(cfg.spad_bytes >> 10) | (cfg.hbm_bytes >> 20) << 16,
          fields=(F("spad_kib", 0, 16, "scratchpad KiB"),
                  F("hbm_mib", 16, 16, "HBM MiB"))),
        R("CTRL", 0x010, Access.W1S, "Chip-wide actions.",
          fields=(F("soft_reset", 0, 1, "abort every queue; clear semaphores, errors, "
                                        "interrupts and flags"),
                  F("clear_counters", 1, 1, "zero the performance counters"))),
        R("STATUS", 0x014, Access.RO, "Activity.",
          fields=(F("queues", 0, QUEUES, "queue n has work or is resetting"),
                  F("dma", 8, 1, "the DMA engine is busy"),
                  F("mxu", 9, 1, "the matrix engine is busy"),
                  F("vpu", 10, 1, "the vector unit is busy"))),
        R("IRQ_STATUS", 0x018, Access.W1C, "Interrupt causes.",
          fields=(F("done", 0, 1, "a descriptor with the IRQ flag completed"),
                  F("error", 1, 1, "an error was reported"))),
        R("IRQ_ENABLE", 0x01C, Access.RW, "Interrupt causes that raise the interrupt line.",
          fields=(F("done", 0, 1, ""), F("error", 1, 1, ""))),
        R("ERR_STATUS", 0x020, Access.W1C, "The first error since it was cleared; write 1 "
          "to valid to clear it (and ERR_INDEX, ERR_ADDR).",
          fields=(F("code", 0, 8, "the Status code"),
                  F("queue", 8, 4, "its queue (15 for a CSR error)"),
                  F("csr", 12, 1, "a refused CSR access"),
                  F("overflow", 30, 1, "a later error was not latched"),
                  F("valid", 31, 1, "an error is latched"))),
        R("ERR_INDEX", 0x024, Access.RO, "Index of the descriptor in error."),
        R("ERR_ADDR_LO", 0x028, Access.RO, "Fault address: the descriptor's slot address, "
          "or the CSR address (low word)."),
        R("ERR_ADDR_HI", 0x02C, Access.RO, "Fault address, high word."),
        R("WAIT_TIMEOUT", 0x030, Access.RW, "Cycles a WAIT may wait before it completes with "
          "TIMEOUT.", reset=DEFAULT_WAIT_TIMEOUT),
        R("FLAGS", 0x034, Access.W1C, "Sticky OR of the FP flags of every completion.",
          fields=(F("invalid", 0, 1, ""), F("overflow", 1, 1, ""),
                  F("underflow", 2, 1, ""))),
    ]
    for q in range(QUEUES):
        b = QUEUE_BASE + q * QUEUE_STRIDE
        regs += [
            R(f"Q{q}_SQ_BASE_LO", b + 0x00, Access.RW, "Descriptor ring HBM address (low); "
              "refused while the queue is enabled.", index=q),
            R(f"Q{q}_SQ_BASE_HI", b + 0x04, Access.RW, "Descriptor ring HBM address (high).",
              index=q),
            R(f"Q{q}_CQ_BASE_LO", b + 0x08, Access.RW, "Completion ring HBM address (low).",
              index=q),
            R(f"Q{q}_CQ_BASE_HI", b + 0x0C, Access.RW, "Completion ring HBM address (high).",
              index=q),
            R(f"Q{q}_SIZE_LOG2", b + 0x10, Access.RW, "log2 of the ring slots (0 … 16).",
              index=q),
            R(f"Q{q}_CTRL", b + 0x14, Access.RW, "Queue control.", index=q,
              fields=(F("enable", 0, 1, "run the queue (checks the rings)"),
                      F("reset", 1, 1, "write 1: abort the queue, HEAD = TAIL = 0, disable"))),
            R(f"Q{q}_TAIL", b + 0x18, Access.RW, "Doorbell: descriptors written so far "
              "(free-running).", index=q),
            R(f"Q{q}_HEAD", b + 0x1C, Access.RO, "Descriptors completed so far "
              "(free-running).", index=q),
            R(f"Q{q}_STATE", b + 0x20, Access.RO, "What the queue is doing (QueueState).",
              index=q),
        ]
    for s in range(SEMAPHORES):
        regs.append(R(f"SEM{s}", SEM_BASE + 4 * s, Access.RW, f"Semaphore {s}.", index=s))
    counters = list(COUNTERS) + [(f"HBM{c}_{n}", f"channel {c}: {d}")
                                 for c in range(cfg.hbm_channels) for n, d in HBM_COUNTERS]
    for i, (name, doc) in enumerate(counters):
        a = COUNTER_BASE + 8 * i
        regs += [R(f"{name}_LO", a, Access.RO, f"Counter: {doc} (low word; latches the high "
                   "word).", index=i),
                 R(f"{name}_HI", a + 4, Access.RO, f"Counter: {doc} (high word, as latched).",
                   index=i)]
    return regs
