"""One configuration object for the whole chip.

A :class:`ChipConfig` parametrizes the RTL, the golden model, Verilog generation, the tests and
the firmware constants. Presets model the chips at simulation scale: capacities are scaled down
by 10^3 (GB → MB) but every ratio the public figures give is kept, so the comparisons between
presets (capacity, link bandwidth, links per chip) mean what they say. Addresses are always
64 bits wide; nothing assumes the small capacity.
"""

from dataclasses import dataclass, field, fields, replace, asdict
import json

from .layouts import Format


__all__ = ["ChipConfig", "TINY", "M890", "ZW810E", "FPGA_ECP5", "PRESETS", "preset"]


_ALL_FORMATS = frozenset(Format)


def _is_pow2(x):
    return isinstance(x, int) and not isinstance(x, bool) and x > 0 and (x & (x - 1)) == 0


@dataclass(frozen=True, kw_only=True)
class ChipConfig:
    """Parameters of one chip.

    Attributes
    ----------
    name : str
        Preset name, used in file names and reports.
    mxu_rows, mxu_cols : int
        Systolic array size: rows of processing elements (the K direction of a weight tile)
        and columns (the N direction). Powers of two.
    mxu_weight_buffers : int
        Weight tiles each processing element holds (power of two, 2 … 64): one in use and
        the others loading ahead. More buffers let small-M GEMMs (decode) issue tiles closer
        together; see ``docs/mxu.md`` § Schedule.
    vpu_lanes : int
        FP32 lanes of the vector unit: equal to ``mxu_cols`` (a vector is an accumulator row)
        and at most 32.
    spad_bytes : int
        Scratchpad capacity in bytes.
    spad_banks : int
        Scratchpad banks (power of two); each bank is ``spad_bytes // spad_banks`` bytes.
    acc_rows : int
        Accumulator SRAM rows; each row holds ``mxu_cols`` FP32 values.
    acc_banks : int
        Accumulator banks (power of two).
    hbm_channels : int
        HBM channels (power of two); addresses interleave across them.
    hbm_bytes_per_cycle : int
        Peak bytes per cycle of one channel (power of two, ≥ 4).
    hbm_latency : int
        Read latency of a channel in cycles, from request to first data.
    hbm_bytes : int
        HBM capacity in bytes (a multiple of ``hbm_channels * hbm_bytes_per_cycle``).
    addr_width : int
        Width of every device address, in bits. Always 64.
    queue_depth : int
        Entries of each command-processor unit queue (power of two).
    link_ports : int
        Interchip link ports, 0 … 7 (seven make an 8-chip full mesh).
    link_lanes : int
        Lanes per link port: 1, 2, 4 or 8.
    link_lane_gbps : int
        Modelled signalling rate of one lane, in Gbit/s after 64b/66b coding.
    link_vcs : int
        Virtual channels per link port, each with its own credits.
    clock_mhz : int
        Modelled core clock, used only to turn cycle counts into seconds in reports.
    fp_pipeline : bool
        Insert pipeline registers inside the FP32 adder, multiplier and format converters
        (True for timing closure; False gives combinational units with one output register).
    formats : frozenset of Format
        Operand formats the matrix engine and converters implement.
    """

    name:                str
    mxu_rows:            int
    mxu_cols:            int
    vpu_lanes:           int
    spad_bytes:          int
    spad_banks:          int
    acc_rows:            int
    acc_banks:           int
    hbm_channels:        int
    hbm_bytes_per_cycle: int
    hbm_latency:         int
    hbm_bytes:           int
    addr_width:          int = 64
    mxu_weight_buffers:  int = 4
    queue_depth:         int = 16
    link_ports:          int = 0
    link_lanes:          int = 1
    link_lane_gbps:      int = 64
    link_vcs:            int = 4
    clock_mhz:           int = 1000
    fp_pipeline:         bool = True
    formats:             frozenset = field(default=_ALL_FORMATS)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"name must be an identifier, not {self.name!r}")
        for f in ("mxu_rows", "mxu_cols", "mxu_weight_buffers", "vpu_lanes", "spad_banks",
                  "acc_banks", "hbm_channels", "hbm_bytes_per_cycle", "queue_depth"):
            v = getattr(self, f)
            if not _is_pow2(v):
                raise ValueError(f"{f} must be a positive power of two, not {v!r}")
        for f in ("spad_bytes", "acc_rows", "hbm_latency", "hbm_bytes", "clock_mhz",
                  "link_lane_gbps", "link_vcs"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{f} must be a positive integer, not {v!r}")
        if self.addr_width != 64:
            raise ValueError(f"addr_width must be 64, not {self.addr_width!r}")
        if self.hbm_bytes_per_cycle < 4:
            raise ValueError(f"hbm_bytes_per_cycle must be at least 4, "
                             f"not {self.hbm_bytes_per_cycle!r}")
        if self.mxu_rows < 2 or self.mxu_cols < 2:
            # An FP4 vector of one element would be half a byte.
            raise ValueError(f"mxu_rows and mxu_cols must be at least 2, not "
                             f"{self.mxu_rows!r} and {self.mxu_cols!r}")
        if not 2 <= self.mxu_weight_buffers <= 64:
            raise ValueError(f"mxu_weight_buffers must be 2 … 64, not {self.mxu_weight_buffers!r}")
        if self.mxu_rows > 32:
            # A K tile must lie inside one MX block, so that one scale serves a row of it.
            raise ValueError(f"mxu_rows must be at most 32 (the MX block), not {self.mxu_rows!r}")
        if self.vpu_lanes != self.mxu_cols:
            # A vector of the vector unit is one accumulator row, so it reads the matrix
            # engine's results in place.
            raise ValueError(f"vpu_lanes must equal mxu_cols ({self.mxu_cols}), "
                             f"not {self.vpu_lanes!r}")
        if self.vpu_lanes > 32:
            # An MX block (32 elements) must span whole vectors.
            raise ValueError(f"vpu_lanes must be at most 32 (the MX block), "
                             f"not {self.vpu_lanes!r}")
        if self.spad_bytes % (self.spad_banks * self.spad_line_bytes):
            raise ValueError(f"spad_bytes must be a multiple of spad_banks * spad_line_bytes = "
                             f"{self.spad_banks * self.spad_line_bytes}, not {self.spad_bytes!r}")
        if self.acc_rows % self.acc_banks:
            raise ValueError(f"acc_rows must be a multiple of acc_banks ({self.acc_banks}), "
                             f"not {self.acc_rows!r}")
        stripe = self.hbm_channels * self.hbm_bytes_per_cycle
        if self.hbm_bytes % stripe:
            raise ValueError(f"hbm_bytes must be a multiple of hbm_channels * "
                             f"hbm_bytes_per_cycle = {stripe}, not {self.hbm_bytes!r}")
        if self.hbm_bytes >= 1 << self.addr_width:
            raise ValueError(f"hbm_bytes must be below 2**{self.addr_width}")
        if not (isinstance(self.link_ports, int) and 0 <= self.link_ports <= 7):
            raise ValueError(f"link_ports must be an integer from 0 to 7, not {self.link_ports!r}")
        if self.link_lanes not in (1, 2, 4, 8):
            raise ValueError(f"link_lanes must be 1, 2, 4 or 8, not {self.link_lanes!r}")
        if not isinstance(self.fp_pipeline, bool):
            raise ValueError(f"fp_pipeline must be a bool, not {self.fp_pipeline!r}")
        try:
            formats = frozenset(Format(f) for f in self.formats)
        except (TypeError, ValueError) as e:
            raise ValueError(f"formats must be a set of Format members, "
                             f"not {self.formats!r}") from e
        if Format.FP32 not in formats:
            raise ValueError("formats must include Format.FP32")
        object.__setattr__(self, "formats", formats)

    # Derived figures. Widths come from here, never from a second literal elsewhere.

    @property
    def spad_bank_bytes(self):
        return self.spad_bytes // self.spad_banks

    @property
    def spad_line_bytes(self):
        """Bytes of one scratchpad line: an FP32 vector as long as the wider array side."""
        return 4 * max(self.mxu_rows, self.mxu_cols)

    @property
    def spad_lines(self):
        return self.spad_bytes // self.spad_line_bytes

    @property
    def hbm_peak_bytes_per_cycle(self):
        """Modelled peak HBM bandwidth of the whole chip, in bytes per cycle."""
        return self.hbm_channels * self.hbm_bytes_per_cycle

    @property
    def hbm_gbps(self):
        """Modelled peak HBM bandwidth in GB/s at ``clock_mhz``."""
        return self.hbm_peak_bytes_per_cycle * self.clock_mhz / 1000

    @property
    def link_gbytes_per_s(self):
        """Modelled interchip bandwidth of all ports, one direction, in GB/s."""
        return self.link_ports * self.link_lanes * self.link_lane_gbps / 8

    @property
    def macs_per_cycle(self):
        return self.mxu_rows * self.mxu_cols

    def replace(self, **changes):
        """Return a copy with ``changes`` applied (and validated)."""
        return replace(self, **changes)

    def to_dict(self):
        d = asdict(self)
        d["formats"] = sorted(f.name for f in self.formats)
        return d

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        if "formats" in d:
            d["formats"] = frozenset(Format[n] for n in d["formats"])
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ChipConfig fields: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, s):
        return cls.from_dict(json.loads(s))


_MiB = 1 << 20

#: Small and fast: the configuration unit tests build.
TINY = ChipConfig(
    name="TINY", mxu_rows=4, mxu_cols=4, vpu_lanes=4,
    spad_bytes=16 * 1024, spad_banks=2, acc_rows=256, acc_banks=2,
    hbm_channels=2, hbm_bytes_per_cycle=16, hbm_latency=16, hbm_bytes=16 * _MiB,
    queue_depth=8, link_ports=1, link_lanes=1, link_lane_gbps=64,
)

#: The demo chip. 144 GB HBM3 → 144 MiB; 800 GB/s of interchip bandwidth kept as 8/7 of the
#: ZW810E's 700 GB/s through faster lanes on the same seven links per chip.
M890 = ChipConfig(
    name="M890", mxu_rows=16, mxu_cols=16, mxu_weight_buffers=16, vpu_lanes=16,
    spad_bytes=512 * 1024, spad_banks=8, acc_rows=2048, acc_banks=4,
    hbm_channels=8, hbm_bytes_per_cycle=32, hbm_latency=100, hbm_bytes=144 * _MiB,
    queue_depth=32, link_ports=7, link_lanes=8, link_lane_gbps=64,
)

#: The predecessor: same ISA, 96 GB HBM2e → 96 MiB (M890 has 1.5×), seven 700 GB/s-in-total
#: links, smaller compute. Whether the M890 really is 3× faster is measured, not assumed.
ZW810E = ChipConfig(
    name="ZW810E", mxu_rows=8, mxu_cols=8, mxu_weight_buffers=16, vpu_lanes=8,
    spad_bytes=256 * 1024, spad_banks=4, acc_rows=1024, acc_banks=2,
    hbm_channels=4, hbm_bytes_per_cycle=32, hbm_latency=120, hbm_bytes=96 * _MiB,
    queue_depth=32, link_ports=7, link_lanes=8, link_lane_gbps=56,
)

#: Fits a Lattice LFE5U-85F: 4×4 array, on-chip RAM for the scratchpad, one narrow memory
#: channel standing in for external SDRAM.
FPGA_ECP5 = ChipConfig(
    name="FPGA_ECP5", mxu_rows=4, mxu_cols=4, mxu_weight_buffers=2, vpu_lanes=4,
    spad_bytes=64 * 1024, spad_banks=4, acc_rows=256, acc_banks=2,
    hbm_channels=1, hbm_bytes_per_cycle=8, hbm_latency=24, hbm_bytes=32 * _MiB,
    queue_depth=8, link_ports=1, link_lanes=1, link_lane_gbps=5, clock_mhz=100,
)

PRESETS = {c.name: c for c in (TINY, M890, ZW810E, FPGA_ECP5)}


def preset(name):
    """Return the preset called ``name`` (case-insensitive)."""
    try:
        return PRESETS[name.upper()]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None
