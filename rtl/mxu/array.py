"""The weight-stationary systolic array and its processing element.

Activations flow left to right along the rows, partial sums flow top to bottom along the
columns, and each processing element (PE) holds one weight of each tile in flight. Row ``r`` of
the array is the reduction index ``k0 + r`` of a K tile, so a partial sum entering the top of a
column with the accumulator's value meets the products in increasing ``k``: the array computes the
matrix-engine rule of ``docs/numerics.md`` (one rounding per product, one per sum, in order of
``k``) with no reassociation, whatever the tile sizes.

Timing. Everything but the weight buffers advances on one enable, ``advance``, so a stall
freezes the whole array and every skew line with it; all latencies below count advancing
cycles. A PE's product takes
:attr:`ProcessingElement.product_latency` (``P``) cycles and its sum
:attr:`ProcessingElement.add_latency` (``A``). Row ``r`` therefore receives its activations
``r·A`` cycles after row 0, and column ``c`` one cycle after column ``c−1``; the array skews its
inputs and de-skews its output itself, so the controller presents unskewed row vectors and
receives unskewed result vectors :attr:`SystolicArray.latency` cycles later.

Weight buffers. Each PE holds ``NB`` weights (``buffers``), one per tile in flight; every
activation carries ``sel``, the buffer it multiplies with. A row's buffers are written
row-wide, by the engine, through ``w_we``/``w_buf``/``w_data``, at any cycle: the engine
writes a buffer only once the tile that used it before has left that row. It learns this from
``freed``: a *release* bit issued with the last row vector of a tile (one bit per row, for
the rows the tile uses) leaves row ``r``'s delay line ``r·A + C`` advancing cycles later,
after that row vector has passed the row's last column.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..numerics import Pipe, add_f32, product_f32
from ..numerics.fpcore import check_formats
from ..shared import module_name, shared_instance


__all__ = ["a_lane", "W_LANE", "PSUM", "ProcessingElement", "SystolicArray", "pe_module_name"]


def a_lane(buffers):
    """One activation as it travels along a row of PEs holding ``buffers`` weights each."""
    return data.StructLayout({
        "code":  32,   # in the low bits
        "scale": 8,    # E8M0 (127 for formats without scales)
        "sel":   max(1, (buffers - 1).bit_length()),   # weight buffer to multiply with
        "en":    1,    # a real element (a valid row and k < K); otherwise the sum passes on
    })

#: One weight, as staged and as held in a PE.
W_LANE = data.StructLayout({
    "code":  32,
    "scale": 8,
})

#: A partial sum: FP32 bits (int32 in integer mode) and the flags raised so far.
PSUM = data.StructLayout({
    "value": 32,
    "flags": 3,
})




def pe_module_name(formats, pipelined, buffers=2):
    """Verilog module name of the PE for these parameters (one module per variant)."""
    key = ",".join(sorted(f.name for f in formats)) + f";pipelined={pipelined}"
    if buffers != 2:
        key += f";buffers={buffers}"
    return module_name("m890_pe_", key)


def _delay(m, value, cycles, enable, name):
    """``value`` delayed by ``cycles`` registers loaded on ``enable``."""
    for n in range(cycles):
        reg = Signal(value.shape(), name=f"{name}_d{n}", reset_less=True)
        with m.If(enable):
            m.d.sync += reg.eq(value)
        value = reg
    return value


class ProcessingElement(wiring.Component):
    """One multiply-accumulate cell: ``psum_out = RNE_f32(psum_in + RNE_f32(a · w[sel]))``.

    In integer mode (both operands INT8) the sum is the wrapping int32 ``psum_in + a · w``.
    An activation with ``en`` low passes ``psum_in`` through unchanged, flags included.

    Parameters
    ----------
    formats : set of Format
        Operand formats implemented.
    pipelined : bool
        Pipeline the product (one register inside) and the sum (two inside).
    buffers : int
        Weight buffers (``NB``).

    Members
    -------
    advance : ``In(1)``
        Enable of every register but the weight buffers.
    fmt_a, fmt_b : ``In(4)``
        Formats of activations and weights (held for a whole command).
    int_mode : ``In(1)``
        Both formats are INT8: accumulate integers.
    a_in, a_out : ``In(a_lane(NB))``, ``Out(a_lane(NB))``
        Activation from the left, and registered to the right.
    psum_in, psum_out : ``In(PSUM)``, ``Out(PSUM)``
        Partial sum from above, and the new one (registered) below.
    w_we, w_buf, w_data : ``In(1)``, ``In(range(NB))``, ``In(W_LANE)``
        Write ``w_data`` into weight buffer ``w_buf`` (whether or not ``advance``).
    """

    @staticmethod
    def ports(buffers=2):
        """The ports: name → (direction, shape)."""
        lane = a_lane(buffers)
        return {
            "advance":  (In, 1),
            "fmt_a":    (In, 4),
            "fmt_b":    (In, 4),
            "int_mode": (In, 1),
            "a_in":     (In, lane),
            "a_out":    (Out, lane),
            "psum_in":  (In, PSUM),
            "psum_out": (Out, PSUM),
            "w_we":     (In, 1),
            "w_buf":    (In, lane["sel"].shape),
            "w_data":   (In, W_LANE),
        }

    def __init__(self, *, formats, pipelined, buffers=2):
        if not isinstance(buffers, int) or buffers < 2:
            raise ValueError(f"buffers must be an integer of at least 2, not {buffers!r}")
        self._formats   = check_formats(formats)
        self._pipelined = pipelined
        self._buffers   = buffers
        super().__init__({name: flow(shape)
                          for name, (flow, shape) in self.ports(buffers).items()})

    @staticmethod
    def latencies(pipelined):
        """``{"product": P, "add": A}``: cycles from an activation arriving to its product
        being registered, and from a partial sum arriving to the new sum being registered."""
        return {"product": 2, "add": 3} if pipelined else {"product": 1, "add": 1}

    @property
    def product_latency(self):
        return self.latencies(self._pipelined)["product"]

    @property
    def add_latency(self):
        return self.latencies(self._pipelined)["add"]

    def elaborate(self, platform):
        m = Module()
        advance = self.advance

        weights = [Signal(W_LANE, name=f"w{n}") for n in range(self._buffers)]
        w = Signal(W_LANE)
        with m.If(self.w_we):
            with m.Switch(self.w_buf):
                for n, reg in enumerate(weights):
                    with m.Case(n):
                        m.d.sync += reg.eq(self.w_data)
        with m.Switch(self.a_in.sel):
            for n, reg in enumerate(weights):
                with m.Case(n):
                    m.d.comb += w.eq(reg)

        with m.If(advance):
            m.d.sync += self.a_out.eq(self.a_in)

        # Product: P cycles. The `en` bit travels with it.
        product_pipe = Pipe(enable=advance, pipelined=self._pipelined)
        prod = product_f32(m, self.a_in.code, w.code, self.fmt_a, self.fmt_b, self.a_in.scale,
                           w.scale, formats=self._formats, pipe=product_pipe)
        en_pipe = _delay(m, self.a_in.en, product_pipe.depth, advance, "en")
        p_value = Signal(32)
        p_int   = Signal(32)
        p_flags = Signal(3)
        p_en    = Signal()
        with m.If(advance):
            m.d.sync += [
                p_value.eq(prod.result),
                p_int  .eq(prod.int_result.as_signed()),
                p_flags.eq(prod.flags),
                p_en   .eq(en_pipe),
            ]

        # Sum: A cycles. The integer sum and the pass-through operands ride in the adder's
        # pipeline registers so they stay aligned with the FP32 sum.
        add_pipe = Pipe(enable=advance, pipelined=self._pipelined)
        s = add_f32(m, self.psum_in.value, p_value, pipe=add_pipe, carry={
            "int_sum":  (self.psum_in.value + p_int)[:32],
            "en":       p_en,
            "p_flags":  p_flags,
            "in_value": self.psum_in.value,
            "in_flags": self.psum_in.flags,
        })
        c = s.carry
        out = self.psum_out
        with m.If(advance):
            with m.If(~c.en):
                m.d.sync += [out.value.eq(c.in_value), out.flags.eq(c.in_flags)]
            with m.Elif(self.int_mode):
                m.d.sync += [out.value.eq(c.int_sum), out.flags.eq(c.in_flags | c.p_flags)]
            with m.Else():
                m.d.sync += [out.value.eq(s.result),
                             out.flags.eq(c.in_flags | c.p_flags | s.flags)]
        return m


class SystolicArray(wiring.Component):
    """R×C weight-stationary array of :class:`ProcessingElement`, with its skew lines.

    Parameters
    ----------
    rows, cols : int
        R (the K extent of a weight tile) and C (its N extent).
    formats : set of Format
        Operand formats implemented.
    pipelined : bool
        Pipeline the PEs' arithmetic.
    buffers : int
        Weight buffers per PE (``NB``, at least 2).
    shared_pe : bool
        Instantiate the PEs as one shared Verilog module (:func:`pe_module_name`, emitted once
        by the Verilog generator) instead of elaborating R×C copies. Verilator then compiles
        the PE once, which keeps build times of large arrays in minutes; Amaranth's simulator
        cannot run it, so pysim tests use the default.

    Members
    -------
    advance : ``In(1)``
        Enable of every register but the weight buffers; low freezes the array.
    fmt_a, fmt_b, int_mode : ``In(4)``, ``In(4)``, ``In(1)``
        Operand formats and integer mode, held for a whole command.
    a : ``In(data.ArrayLayout(a_lane(NB), rows))``
        The activation row vector issued this cycle: lane ``r`` meets weight row ``r``.
    seed : ``In(data.ArrayLayout(32, cols))``
        The partial sums it starts from (accumulator contents, or +0).
    result : ``Out(data.ArrayLayout(PSUM, cols))``
        The sums of the row vector issued :attr:`latency` advancing cycles earlier.
    w_we : ``In(rows)``, w_buf : ``In(range(NB))``
        Write weight buffer ``w_buf`` of every PE of each row ``r`` with bit ``r`` set.
    w_data : ``In(data.ArrayLayout(data.ArrayLayout(W_LANE, cols), rows))``
        The weight rows written.
    release : ``In(rows)``
        Issued with a row vector that is the last of its tile: bit ``r`` for each row the tile
        uses.
    freed : ``Out(rows)``
        Bit ``r``: a release bit leaves row ``r``'s delay line (:meth:`release_delay`); the
        buffer of that tile is free in row ``r`` from the next cycle on (count it only on an
        advancing cycle).
    """

    def __init__(self, *, rows, cols, formats, pipelined, buffers=2, shared_pe=False):
        self._shared_pe = shared_pe
        for name, v in (("rows", rows), ("cols", cols)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if not isinstance(buffers, int) or buffers < 2:
            raise ValueError(f"buffers must be an integer of at least 2, not {buffers!r}")
        self._rows, self._cols, self._buffers = rows, cols, buffers
        self._formats   = check_formats(formats)
        self._pipelined = pipelined
        self._p = ProcessingElement.latencies(pipelined)["product"]
        self._a = ProcessingElement.latencies(pipelined)["add"]
        lane = a_lane(buffers)
        super().__init__({
            "advance":  In(1),
            "fmt_a":    In(4),
            "fmt_b":    In(4),
            "int_mode": In(1),
            "a":        In(data.ArrayLayout(lane, rows)),
            "seed":     In(data.ArrayLayout(32, cols)),
            "result":   Out(data.ArrayLayout(PSUM, cols)),
            "w_we":     In(rows),
            "w_buf":    In(lane["sel"].shape),
            "w_data":   In(data.ArrayLayout(data.ArrayLayout(W_LANE, cols), rows)),
            "release":  In(rows),
            "freed":    Out(rows),
        })

    @property
    def latency(self):
        """Advancing cycles from issuing a row vector to its result on :attr:`result`."""
        return self._rows * self._a + self._p + self._cols - 1

    @property
    def row_delay(self):
        """Advancing cycles between a row vector entering row ``r`` and row ``r + 1``."""
        return self._a

    def release_delay(self, r):
        """Advancing cycles from a release bit's issue to :attr:`freed` for row ``r``: the
        row vector issued with it has then left the row's last column."""
        return r * self._a + self._cols

    def elaborate(self, platform):
        m = Module()
        rows, cols = self._rows, self._cols
        advance = self.advance

        pes = [[self._pe(m, r, c) for c in range(cols)] for r in range(rows)]
        for r in range(rows):
            for c in range(cols):
                pe = pes[r][c]
                m.d.comb += [
                    pe.advance .eq(advance),
                    pe.fmt_a   .eq(self.fmt_a),
                    pe.fmt_b   .eq(self.fmt_b),
                    pe.int_mode.eq(self.int_mode),
                ]

        for r in range(rows):
            a_r = _delay(m, self.a[r], r * self._a, advance, f"skew_a{r}")
            m.d.comb += pes[r][0].a_in.eq(a_r)
            for c in range(1, cols):
                m.d.comb += pes[r][c].a_in.eq(pes[r][c - 1].a_out)

            freed = _delay(m, self.release[r], self.release_delay(r), advance, f"release{r}")
            m.d.comb += self.freed[r].eq(freed)
            for c in range(cols):
                m.d.comb += [
                    pes[r][c].w_we  .eq(self.w_we[r]),
                    pes[r][c].w_buf .eq(self.w_buf),
                    pes[r][c].w_data.eq(self.w_data[r][c]),
                ]

        for c in range(cols):
            seed = _delay(m, self.seed[c], c + self._p, advance, f"skew_seed{c}")
            m.d.comb += [
                pes[0][c].psum_in.value.eq(seed),
                pes[0][c].psum_in.flags.eq(0),
            ]
            for r in range(1, rows):
                m.d.comb += pes[r][c].psum_in.eq(pes[r - 1][c].psum_out)
            out = _delay(m, pes[rows - 1][c].psum_out, cols - 1 - c, advance, f"deskew{c}")
            m.d.comb += self.result[c].eq(out)
        return m

    def _pe(self, m, r, c):
        formats, pipelined, buffers = self._formats, self._pipelined, self._buffers
        if not self._shared_pe:
            pe = ProcessingElement(formats=formats, pipelined=pipelined, buffers=buffers)
            m.submodules[f"pe_{r}_{c}"] = pe
            return pe
        return shared_instance(
            m, module=pe_module_name(formats, pipelined, buffers),
            ports=ProcessingElement.ports(buffers),
            factory=lambda: ProcessingElement(formats=formats, pipelined=pipelined,
                                              buffers=buffers),
            instance=f"pe_{r}_{c}")
