"""The weight-stationary systolic array and its processing element.

Activations flow left to right along the rows, partial sums flow top to bottom along the
columns, and each processing element (PE) holds one weight of the tile. Row ``r`` of the array
is the reduction index ``k0 + r`` of a K tile, so a partial sum entering the top of a column
with the accumulator's value meets the products in increasing ``k``: the array computes the
matrix-engine rule of ``docs/numerics.md`` (one rounding per product, one per sum, in order of
``k``) with no reassociation, whatever the tile sizes.

Timing. Everything advances on one enable, ``advance``, so a stall freezes the whole array and
every skew line with it; all latencies below count advancing cycles. A PE's product takes
:attr:`ProcessingElement.product_latency` (``P``) cycles and its sum
:attr:`ProcessingElement.add_latency` (``A``). Row ``r`` therefore receives its activations
``r·A`` cycles after row 0, and column ``c`` one cycle after column ``c−1``; the array skews its
inputs and de-skews its output itself, so the controller presents unskewed row vectors and
receives unskewed result vectors :attr:`SystolicArray.latency` cycles later.

Double-buffered weights. Each PE has two weight registers; every activation carries ``sel``,
the one it multiplies with. A *weight token* entering with a row vector travels down a 1-bit
delay line of ``r·A + C`` cycles for row ``r`` and, when it leaves it, writes the staged
weight row into buffer ``buf`` of every PE of row ``r``. It leaves after the last activation
issued before it has passed the whole row, so the buffer it overwrites is free; a tile using
that buffer may be issued ``C + 1`` cycles after the token.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..numerics import Pipe, add_f32, product_f32
from ..numerics.fpcore import check_formats
from ..shared import module_name, shared_instance


__all__ = ["A_LANE", "W_LANE", "PSUM", "ProcessingElement", "SystolicArray", "pe_module_name"]


#: One activation as it travels along a row.
A_LANE = data.StructLayout({
    "code":  32,   # in the low bits
    "scale": 8,    # E8M0 (127 for formats without scales)
    "sel":   1,    # weight buffer to multiply with
    "en":    1,    # a real element (a valid row and k < K); otherwise the PE passes the sum on
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




def pe_module_name(formats, pipelined):
    """Verilog module name of the PE for these parameters (one module per variant)."""
    key = ",".join(sorted(f.name for f in formats)) + f";pipelined={pipelined}"
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

    Members
    -------
    advance : ``In(1)``
        Enable of every register.
    fmt_a, fmt_b : ``In(4)``
        Formats of activations and weights (held for a whole command).
    int_mode : ``In(1)``
        Both formats are INT8: accumulate integers.
    a_in, a_out : ``In(A_LANE)``, ``Out(A_LANE)``
        Activation from the left, and registered to the right.
    psum_in, psum_out : ``In(PSUM)``, ``Out(PSUM)``
        Partial sum from above, and the new one (registered) below.
    w_we, w_buf, w_data : ``In(1)``, ``In(1)``, ``In(W_LANE)``
        Write ``w_data`` into weight buffer ``w_buf``.
    """

    #: The ports: name → (direction, shape).
    PORTS = {
        "advance":  (In, 1),
        "fmt_a":    (In, 4),
        "fmt_b":    (In, 4),
        "int_mode": (In, 1),
        "a_in":     (In, A_LANE),
        "a_out":    (Out, A_LANE),
        "psum_in":  (In, PSUM),
        "psum_out": (Out, PSUM),
        "w_we":     (In, 1),
        "w_buf":    (In, 1),
        "w_data":   (In, W_LANE),
    }

    def __init__(self, *, formats, pipelined):
        self._formats   = check_formats(formats)
        self._pipelined = pipelined
        super().__init__({name: flow(shape) for name, (flow, shape) in self.PORTS.items()})

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

        weights = [Signal(W_LANE, name=f"w{n}") for n in range(2)]
        with m.If(advance & self.w_we):
            with m.If(self.w_buf):
                m.d.sync += weights[1].eq(self.w_data)
            with m.Else():
                m.d.sync += weights[0].eq(self.w_data)
        w = Signal(W_LANE)
        m.d.comb += w.eq(Mux(self.a_in.sel, weights[1], weights[0]))

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
    shared_pe : bool
        Instantiate the PEs as one shared Verilog module (:func:`pe_module_name`, emitted once
        by the Verilog generator) instead of elaborating R×C copies. Verilator then compiles
        the PE once, which keeps build times of large arrays in minutes; Amaranth's simulator
        cannot run it, so pysim tests use the default.

    Members
    -------
    advance : ``In(1)``
        Enable of every register; low freezes the array.
    fmt_a, fmt_b, int_mode : ``In(4)``, ``In(4)``, ``In(1)``
        Operand formats and integer mode, held for a whole command.
    a : ``In(data.ArrayLayout(A_LANE, rows))``
        The activation row vector issued this cycle: lane ``r`` meets weight row ``r``.
    seed : ``In(data.ArrayLayout(32, cols))``
        The partial sums it starts from (accumulator contents, or +0).
    result : ``Out(data.ArrayLayout(PSUM, cols))``
        The sums of the row vector issued :attr:`latency` advancing cycles earlier.
    w_token, w_token_buf : ``In(1)``, ``In(1)``
        Issue a weight token for buffer ``w_token_buf`` with this cycle's row vector.
    w_stage : ``In(data.ArrayLayout(data.ArrayLayout(W_LANE, cols), rows))``
        Staged weight rows, written into the PEs of row ``r`` when its token leaves the delay.
    w_pop : ``Out(rows)``
        Bit ``r``: row ``r``'s token leaves this cycle (its row is written if ``advance``).
    """

    def __init__(self, *, rows, cols, formats, pipelined, shared_pe=False):
        self._shared_pe = shared_pe
        for name, v in (("rows", rows), ("cols", cols)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self._rows, self._cols = rows, cols
        self._formats   = check_formats(formats)
        self._pipelined = pipelined
        self._p = ProcessingElement.latencies(pipelined)["product"]
        self._a = ProcessingElement.latencies(pipelined)["add"]
        super().__init__({
            "advance":     In(1),
            "fmt_a":       In(4),
            "fmt_b":       In(4),
            "int_mode":    In(1),
            "a":           In(data.ArrayLayout(A_LANE, rows)),
            "seed":        In(data.ArrayLayout(32, cols)),
            "result":      Out(data.ArrayLayout(PSUM, cols)),
            "w_token":     In(1),
            "w_token_buf": In(1),
            "w_stage":     In(data.ArrayLayout(data.ArrayLayout(W_LANE, cols), rows)),
            "w_pop":       Out(rows),
        })

    @property
    def latency(self):
        """Advancing cycles from issuing a row vector to its result on :attr:`result`."""
        return self._rows * self._a + self._p + self._cols - 1

    @property
    def row_delay(self):
        """Advancing cycles between a row vector entering row ``r`` and row ``r + 1``."""
        return self._a

    @property
    def token_spacing(self):
        """Advancing cycles a tile must wait after its weight token before being issued."""
        return self._cols + 1

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

            token = Signal(2, name=f"token{r}_in")
            m.d.comb += token.eq(Mux(self.w_token, 0b01 | (self.w_token_buf << 1), 0))
            token = _delay(m, token, r * self._a + cols, advance, f"token{r}")
            m.d.comb += self.w_pop[r].eq(token[0])
            for c in range(cols):
                m.d.comb += [
                    pes[r][c].w_we  .eq(token[0]),
                    pes[r][c].w_buf .eq(token[1]),
                    pes[r][c].w_data.eq(self.w_stage[r][c]),
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
        if not self._shared_pe:
            pe = ProcessingElement(formats=self._formats, pipelined=self._pipelined)
            m.submodules[f"pe_{r}_{c}"] = pe
            return pe
        formats, pipelined = self._formats, self._pipelined
        return shared_instance(
            m, module=pe_module_name(formats, pipelined), ports=ProcessingElement.PORTS,
            factory=lambda: ProcessingElement(formats=formats, pipelined=pipelined),
            instance=f"pe_{r}_{c}")
