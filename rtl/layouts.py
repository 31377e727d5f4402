"""Shared definitions: every enum, format description and payload layout used by more than one
of ``rtl``, ``golden_model``, ``verif`` and ``firmware``.

Nothing here is elaborated on its own; the hardware, the numpy golden model and the driver all
import these names, so a bit position or an encoding is written exactly once.
"""

from dataclasses import dataclass
import enum as py_enum

from amaranth.lib import data, enum


__all__ = [
    "Format", "Specials", "FloatSpec", "FLOAT_SPECS", "Flags", "MX_BLOCK", "E8M0_NAN",
    "E8M0_BIAS", "element_format", "code_width", "is_mx", "FP32_CANONICAL_NAN",
    "Status", "MAX_DIM", "MAX_K", "MXU_COMMAND", "MXU_STATUS", "VpuOp",
    "MAX_VLEN", "VpuCmd", "VPU_OPERAND", "VPU_COMMAND", "VPU_STATUS",
    "QUEUES", "SEMAPHORES", "MAX_RING_LOG2", "DESC_BYTES", "CPL_BYTES", "Opcode", "DescFlags",
    "DESC_HEADER", "DESCRIPTOR", "DMA_COMMAND", "SEM_COMMAND", "WRITE_COMMAND", "COMPLETION",
    "DMA_ALIGN", "PAGE_ENTRY_BYTES", "DESC_BODIES",
]


class Format(enum.Enum, shape=4):
    """Number formats of operands and results.

    The MX variants name a block format: elements of the underlying narrow format, and one
    E8M0 scale per :data:`MX_BLOCK` consecutive elements along the reduction (last) axis.
    """
    FP32       = 0
    FP16       = 1
    BF16       = 2
    FP8_E4M3   = 3
    FP8_E5M2   = 4
    FP4_E2M1   = 5
    INT8       = 6
    MXFP8_E4M3 = 7
    MXFP4      = 8


class Specials(py_enum.Enum):
    """How a floating-point format spends its top exponent code."""
    #: IEEE 754 style: all-ones exponent is ±inf (mantissa 0) or NaN (mantissa ≠ 0).
    IEEE = "ieee"
    #: OCP "fn" style (E4M3): no infinity; only S.1111.111 is NaN, the rest are finite.
    FN = "fn"
    #: No special codes at all (E2M1): every code is a finite number.
    NONE = "none"


@dataclass(frozen=True)
class FloatSpec:
    """Encoding of one floating-point format.

    Attributes
    ----------
    ebits, mbits : int
        Exponent and explicit mantissa (fraction) field widths; total width is 1+ebits+mbits.
    bias : int
        Exponent bias.
    specials : Specials
        Use of the top exponent code.
    saturate : bool
        Conversion from FP32 clamps overflow to ±max finite (True) or rounds it to ±inf (False).
    canonical_nan : int or None
        The code produced for a NaN result; ``None`` if the format has no NaN (NaN then becomes
        +0 and raises the invalid flag).
    """
    ebits: int
    mbits: int
    bias: int
    specials: Specials
    saturate: bool
    canonical_nan: "int | None"

    @property
    def width(self):
        return 1 + self.ebits + self.mbits

    @property
    def emax(self):
        """Unbiased exponent of the largest finite value."""
        top = (1 << self.ebits) - 1
        return (top - 1 if self.specials is Specials.IEEE else top) - self.bias

    @property
    def emin(self):
        """Unbiased exponent of the smallest normal value."""
        return 1 - self.bias

    @property
    def max_code(self):
        """Code (sign clear) of the largest finite value."""
        top = (1 << self.ebits) - 1
        mmax = (1 << self.mbits) - 1
        if self.specials is Specials.IEEE:
            return ((top - 1) << self.mbits) | mmax
        if self.specials is Specials.FN:
            return (top << self.mbits) | (mmax - 1)
        return (top << self.mbits) | mmax

    @property
    def max_value(self):
        """Largest finite value, as a Python float."""
        frac = self.max_code & ((1 << self.mbits) - 1)
        return (1 + frac / (1 << self.mbits)) * 2.0 ** self.emax


#: The floating-point formats, by :class:`Format`. MX variants map to their element format.
FLOAT_SPECS = {
    Format.FP32:     FloatSpec(8, 23, 127, Specials.IEEE, saturate=False, canonical_nan=0x7FC00000),
    Format.FP16:     FloatSpec(5, 10, 15,  Specials.IEEE, saturate=False, canonical_nan=0x7E00),
    Format.BF16:     FloatSpec(8, 7,  127, Specials.IEEE, saturate=False, canonical_nan=0x7FC0),
    Format.FP8_E4M3: FloatSpec(4, 3,  7,   Specials.FN,   saturate=True,  canonical_nan=0x7F),
    Format.FP8_E5M2: FloatSpec(5, 2,  15,  Specials.IEEE, saturate=True,  canonical_nan=0x7E),
    Format.FP4_E2M1: FloatSpec(2, 1,  1,   Specials.NONE, saturate=True,  canonical_nan=None),
}

FP32_CANONICAL_NAN = 0x7FC00000

#: Elements per MX block (OCP MX v1.0), along the reduction axis.
MX_BLOCK = 32
#: E8M0 scale code meaning NaN; the scale of a code ``s`` is 2**(s - E8M0_BIAS).
E8M0_NAN = 0xFF
E8M0_BIAS = 127


def is_mx(fmt):
    """Return whether ``fmt`` is a block-scaled (MX) format."""
    return Format(fmt) in (Format.MXFP8_E4M3, Format.MXFP4)


def element_format(fmt):
    """Return the per-element format of ``fmt`` (itself, unless ``fmt`` is an MX format)."""
    fmt = Format(fmt)
    return {Format.MXFP8_E4M3: Format.FP8_E4M3, Format.MXFP4: Format.FP4_E2M1}.get(fmt, fmt)


def code_width(fmt):
    """Return the width in bits of one element code of ``fmt``."""
    fmt = element_format(fmt)
    if fmt is Format.INT8:
        return 8
    return FLOAT_SPECS[fmt].width


class Flags(enum.Flag, shape=3):
    """Sticky floating-point exception flags.

    ``INVALID``: a NaN produced from operands that are not NaN (inf − inf, 0 × inf), a NaN
    converted to a format that cannot encode NaN (FP4, INT8), or an unknown format code. All NaN
    inputs are treated as quiet.
    ``OVERFLOW``: a finite result too large for the destination format, which was then rounded
    to infinity or clamped to the largest finite value; also an infinity clamped by a
    saturating conversion into a format without infinities.
    ``UNDERFLOW``: a nonzero result below the smallest normal magnitude *before* rounding
    (tininess before rounding) that is also inexact.

    The full rules are in ``docs/numerics.md``.
    """
    INVALID   = 0b001
    OVERFLOW  = 0b010
    UNDERFLOW = 0b100


class Status(enum.Enum, shape=8):
    """Completion status of a command (one per descriptor; the classes of research C.2).

    ``SUCCESS`` is 0; every error is non-zero and leaves memory untouched.
    """
    SUCCESS          = 0x00
    #: Unknown or reserved opcode.
    BAD_OPCODE       = 0x10
    #: A reserved field or flag bit is non-zero.
    NONZERO_RESERVED = 0x11
    #: A format code that is not a :class:`Format` or that this chip does not implement.
    BAD_FORMAT       = 0x12
    #: A zero dimension, or one above its maximum.
    SIZE_RANGE       = 0x13
    #: An operand or result that does not lie wholly inside its memory.
    ADDR_RANGE       = 0x14
    #: An address that is not a multiple of what its operand requires.
    ADDR_ALIGN       = 0x15
    #: A data-dependent index (e.g. a gather index) outside its table.
    INDEX_RANGE      = 0x16
    #: A doorbell that would put more descriptors in a ring than it holds, or move it back.
    QUEUE_OVERFLOW   = 0x17
    #: Regions that must not overlap do (a store over a live ring; overlapping destination rows).
    OVERLAP          = 0x18
    #: A WAIT whose semaphore did not reach its value within ``WAIT_TIMEOUT`` cycles.
    TIMEOUT          = 0x19
    #: A CSR access to an address with no register.
    CSR_ADDR         = 0x1A
    #: A CSR write to a read-only register.
    CSR_READONLY     = 0x1B
    #: A CSR write that the register refuses in the current state (e.g. a ring base while the
    #: queue is enabled).
    CSR_BUSY         = 0x1C


#: Largest M and N of one matrix-engine command.
MAX_DIM = 1 << 16
#: Largest K of one matrix-engine command (the INT8 int32-accumulation bound of §3).
MAX_K = 1 << 16


#: One matrix-engine command: ``C[M,N] (+)= A[M,K] · B[K,N]``. Addresses are scratchpad byte
#: addresses, except ``c_row`` (an accumulator row); the operand layouts are in ``docs/mxu.md``.
MXU_COMMAND = data.StructLayout({
    "m":          32,
    "n":          32,
    "k":          32,
    "fmt_a":      4,   # a Format code; not typed, so that any bit pattern can be checked
    "fmt_b":      4,
    "accumulate": 1,   # add to the accumulator's contents instead of overwriting them
    "reserved":   7,
    "a_addr":     32,
    "b_addr":     32,
    "sa_addr":    32,  # MX A scales (ignored for other formats)
    "sb_addr":    32,  # MX B scales (ignored for other formats)
    "c_row":      32,
})


#: Completion of one matrix-engine command.
MXU_STATUS = data.StructLayout({
    "status": Status,
    "flags":  Flags,   # OR of the flags of every product and sum of the command
})


class VpuOp(enum.Enum, shape=4):
    """Elementwise operations of the vector unit's ALU (``golden_model/vpu.py`` defines them)."""
    ADD = 0
    SUB = 1
    MUL = 2
    MAX = 3   # IEEE 754-2019 maximum: NaN if either operand is NaN, −0 < +0
    LT  = 4   # quiet compares: 1.0 or 0.0; NaN gives 0.0; −0 = +0
    LE  = 5
    EQ  = 6


#: Largest row length of one vector-unit command (elements).
MAX_VLEN = 1 << 16


class VpuCmd(enum.Enum, shape=8):
    """Opcodes of a vector-unit command (``docs/vpu.md`` lists operands and semantics).

    The codes 0–6 are the elementwise :class:`VpuOp` codes.
    """
    ADD        = 0x00
    SUB        = 0x01
    MUL        = 0x02
    MAX        = 0x03
    LT         = 0x04
    LE         = 0x05
    EQ         = 0x06
    SCALE      = 0x08   # a · scalar
    BCAST      = 0x09   # scalar
    EXP        = 0x10
    RECIP      = 0x11
    RSQRT      = 0x12
    SIGMOID    = 0x13
    SILU       = 0x14
    SWIGLU     = 0x15   # silu(a) · b
    ROPE_LO    = 0x18   # a·c − b·d
    ROPE_HI    = 0x19   # a·c + b·d
    SUM        = 0x20
    SUMSQ      = 0x21
    RMAX       = 0x22
    ARGMAX     = 0x23
    RMSNORM    = 0x28   # rsqrt(sumsq(a)·scalar + scalar2) · a · b
    SOFTMAX    = 0x29
    CVT_TO     = 0x30   # FP32 a → fmt dst (MX: scales to b)
    CVT_FROM   = 0x31   # fmt a (MX: scales from b) → FP32 dst
    GATHER     = 0x38   # dst row r = row b[r] of a (b[r] < query)


#: One operand of a vector-unit command: chunk ``j`` (elements ``j·V … j·V+V−1``) of row ``r``
#: is at ``addr + r·row + j·chunk``, in bytes of the scratchpad (``space = 0``) or rows of the
#: accumulator (``space = 1``).
VPU_OPERAND = data.StructLayout({
    "addr":     32,
    "chunk":    32,
    "row":      32,
    "space":    1,
    "reserved": 31,
})


#: One vector-unit command (``docs/vpu.md``).
VPU_COMMAND = data.StructLayout({
    "op":       8,    # a VpuCmd code; not typed, so that any bit pattern can be checked
    "fmt":      4,    # conversions: the narrow format; every other op: FP32 (0)
    "causal":   1,    # SOFTMAX: element j of row r is −inf when j > query + r
    "reserved": 19,
    "length":   32,   # elements per row, 1 … MAX_VLEN
    "rows":     32,   # 1 … MAX_DIM
    "scalar":   32,   # FP32 bits: SCALE/BCAST value, RMSNORM 1/H
    "scalar2":  32,   # FP32 bits: RMSNORM eps
    "query":    32,   # SOFTMAX causal base position; GATHER rows of the table
    "a":        VPU_OPERAND,
    "b":        VPU_OPERAND,
    "c":        VPU_OPERAND,
    "d":        VPU_OPERAND,
    "dst":      VPU_OPERAND,
})


#: Completion of one vector-unit command.
VPU_STATUS = data.StructLayout({
    "status": Status,
    "flags":  Flags,   # OR of the flags of every step of the command
})


# -- The command processor (docs/chip.md) --------------------------------------------------------

#: Unit queues of the command processor. Each is a descriptor ring in HBM with its own
#: completion ring; the queues run concurrently and share the units.
QUEUES = 4
#: Counting semaphores shared by the queues (SIGNAL adds, WAIT waits).
SEMAPHORES = 16
#: Largest ring: ``2**MAX_RING_LOG2`` descriptors.
MAX_RING_LOG2 = 16
#: Bytes of one descriptor slot.
DESC_BYTES = 128
#: Bytes of one completion entry.
CPL_BYTES = 16
#: Every DMA address, stride and row length is a multiple of this many bytes.
DMA_ALIGN = 4
#: Bytes of one page-list entry of a gathering DMA (a 64-bit HBM byte address).
PAGE_ENTRY_BYTES = 8


class Opcode(enum.Enum, shape=8):
    """Descriptor opcodes (``docs/chip.md`` § Descriptors)."""
    NOP    = 0x00
    #: Copy between HBM and the scratchpad (``DMA_COMMAND``).
    DMA    = 0x01
    #: A matrix-engine command (``MXU_COMMAND``).
    GEMM   = 0x02
    #: A vector-unit command (``VPU_COMMAND``).
    VPU    = 0x03
    #: Add ``value`` to semaphore ``sem`` (``SEM_COMMAND``).
    SIGNAL = 0x04
    #: Wait until semaphore ``sem`` ≥ ``value`` (``SEM_COMMAND``).
    WAIT   = 0x05
    #: Write a 64-bit value to HBM (``WRITE_COMMAND``): a completion marker a host can poll.
    WRITE  = 0x06
    # 0x10 … 0x1F are reserved for the interchip link (LINK_SEND, LINK_RECV, ALL_REDUCE,
    # ALL_GATHER); until a chip implements them they are BAD_OPCODE.


class DescFlags(enum.Flag, shape=8):
    """Flags of a descriptor header."""
    #: Raise the DONE interrupt when this descriptor completes.
    IRQ = 0x01


#: The first 64 bits of every descriptor.
DESC_HEADER = data.StructLayout({
    "op":       8,    # an Opcode; not typed, so that any bit pattern can be checked
    "flags":    8,    # DescFlags; undefined bits must be zero
    "reserved": 16,
    "cookie":   32,   # copied into the completion
})

#: One DMA: ``rows`` rows of ``row_bytes`` bytes. Row ``r`` is at ``hbm_addr + r·hbm_stride``
#: in HBM (gathering: at ``page_list[r] + hbm_stride``, the list at ``hbm_addr``) and at
#: ``spad_addr + r·spad_stride`` in the scratchpad.
DMA_COMMAND = data.StructLayout({
    "store":       1,    # 0: HBM → scratchpad; 1: scratchpad → HBM
    "gather":      1,    # rows' HBM addresses come from a page list (loads only)
    "reserved":    30,
    "rows":        32,   # 1 … MAX_DIM
    "row_bytes":   32,   # 1 … spad_bytes, a multiple of DMA_ALIGN
    "spad_addr":   32,
    "spad_stride": 32,
    "hbm_addr":    64,
    "hbm_stride":  64,   # gathering: the byte offset inside every page
})

#: SIGNAL and WAIT.
SEM_COMMAND = data.StructLayout({
    "sem":      8,    # 0 … SEMAPHORES−1
    "reserved": 24,
    "value":    32,
})

#: WRITE: ``value`` to the 8-byte-aligned HBM address ``addr``.
WRITE_COMMAND = data.StructLayout({
    "addr":  64,
    "value": 64,
})

#: The opcode of each body layout (the rest of the body must be zero).
DESC_BODIES = {
    Opcode.DMA:    DMA_COMMAND,
    Opcode.GEMM:   MXU_COMMAND,
    Opcode.VPU:    VPU_COMMAND,
    Opcode.SIGNAL: SEM_COMMAND,
    Opcode.WAIT:   SEM_COMMAND,
    Opcode.WRITE:  WRITE_COMMAND,
}

#: One descriptor slot: the header, then the body of its opcode, zero-padded.
DESCRIPTOR = data.StructLayout({
    "header": DESC_HEADER,
    "body":   8 * DESC_BYTES - DESC_HEADER.size,
})

#: One completion entry, written to slot ``index mod size`` of the queue's completion ring.
COMPLETION = data.StructLayout({
    "index":    32,   # the descriptor's index (free-running count of the queue)
    "cookie":   32,   # the descriptor's cookie
    "status":   Status,
    "flags":    Flags,
    "reserved": 4,
    "phase":    1,    # (index >> size_log2) & 1, inverted: 1 on the first pass of the ring
    "queue":    8,
    "reserved2": 40,
})

assert DESCRIPTOR.size == 8 * DESC_BYTES and COMPLETION.size == 8 * CPL_BYTES
assert all(layout.size <= DESCRIPTOR.size - DESC_HEADER.size for layout in DESC_BODIES.values())
