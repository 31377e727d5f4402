"""The scratchpad (banked line SRAM) and the accumulator (banked rows of FP32 words).

Both interleave consecutive lines/rows across banks, so that streams walking consecutive
addresses spread over the banks; every bank is a simple dual-port RAM (one write port, one
read port), the shape FPGA block RAMs and ASIC SRAM compilers provide.
"""

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out


__all__ = ["SpadReadSignature", "AccReadSignature", "SPAD_WRITE", "ACC_WRITE", "Scratchpad",
           "Accumulator"]


def _log2(x):
    return x.bit_length() - 1


def _interleave(banks):
    """``(bank_of, word_of)``: split an address over ``banks`` interleaved banks."""
    bits = _log2(banks)

    def bank_of(addr):
        return addr[:bits] if bits else 0

    def word_of(addr):
        return addr[bits:]

    return bank_of, word_of


class SpadReadSignature(wiring.Signature):
    """A scratchpad read port, seen from the requester.

    The requester holds ``valid`` and ``addr`` (a line address) until ``ready``; the line
    arrives on ``data`` with ``resp`` high in the next cycle and must be taken then (a
    requester only asks when it has room for the answer).
    """

    def __init__(self, *, line_bits, addr_width):
        super().__init__({
            "valid": Out(1),
            "addr":  Out(addr_width),
            "ready": In(1),
            "resp":  In(1),
            "data":  In(line_bits),
        })


class AccReadSignature(wiring.Signature):
    """The matrix engine's accumulator read port, seen from the engine.

    ``data`` shows row ``addr`` one cycle after a cycle with ``en`` high, and holds while
    ``en`` is low (so a stalled pipeline keeps its operand).
    """

    def __init__(self, *, cols, addr_width):
        super().__init__({
            "en":   Out(1),
            "addr": Out(addr_width),
            "data": In(data.ArrayLayout(32, cols)),
        })


def ACC_WRITE(cols, addr_width):
    """Payload of an accumulator write: a row, its words, and which words to write."""
    return data.StructLayout({
        "row":  addr_width,
        "data": data.ArrayLayout(32, cols),
        "mask": cols,
    })


def SPAD_WRITE(line_bytes, addr_width):
    """Payload of a scratchpad write: a line address, the line, and which bytes to write."""
    return data.StructLayout({
        "addr": addr_width,
        "data": 8 * line_bytes,
        "mask": line_bytes,
    })


class Scratchpad(wiring.Component):
    """Banked line SRAM with ``write_ports`` and ``read_ports`` prioritised ports.

    Line ``l`` is word ``l // banks`` of bank ``l % banks``. Each cycle every bank serves the
    lowest-numbered read port that asks for one of its lines, and the lowest-numbered write
    port that asks for one; the others wait (their ``ready`` stays low). Write port 0 never
    waits.

    Parameters
    ----------
    line_bytes, lines, banks : int
        Geometry (powers of two; ``lines`` a multiple of ``banks``).
    read_ports, write_ports : int
        Number of read and write ports; port 0 has the highest priority.

    Members
    -------
    write : ``In(stream.Signature(SPAD_WRITE(...))).array(write_ports)``
        ``{addr, data, mask}``: write the bytes of line ``addr`` whose ``mask`` bit is set.
    read : ``In(SpadReadSignature).array(read_ports)``
        The read ports.
    """

    def __init__(self, *, line_bytes, lines, banks, read_ports, write_ports=1):
        if lines % banks:
            raise ValueError(f"lines ({lines}) must be a multiple of banks ({banks})")
        self._line_bytes, self._lines, self._banks = line_bytes, lines, banks
        self._read_ports, self._write_ports = read_ports, write_ports
        self.addr_width = max(1, _log2(lines))
        line_bits = 8 * line_bytes
        super().__init__({
            "write": In(stream.Signature(SPAD_WRITE(line_bytes, self.addr_width)))
                     .array(write_ports),
            "read":  In(SpadReadSignature(line_bits=line_bits,
                                          addr_width=self.addr_width)).array(read_ports),
        })

    def elaborate(self, platform):
        m = Module()
        banks = self._banks
        depth = self._lines // banks
        bank_of, word_of = _interleave(banks)

        read_data = []
        write_grants = [Signal(banks, name=f"write_grant{p}") for p in range(self._write_ports)]
        grants = [Signal(banks, name=f"grant{p}") for p in range(self._read_ports)]
        for b in range(banks):
            m.submodules[f"bank{b}"] = mem = Memory(shape=8 * self._line_bytes, depth=depth,
                                                    init=[])
            wp = mem.write_port(granularity=8)
            rp = mem.read_port()
            taken = Const(0)
            for p, port in enumerate(self.write):
                asks = port.valid & (bank_of(port.payload.addr) == b)
                m.d.comb += write_grants[p][b].eq(asks & ~taken)
                with m.If(asks & ~taken):
                    m.d.comb += [
                        wp.addr.eq(word_of(port.payload.addr)),
                        wp.data.eq(port.payload.data),
                        wp.en  .eq(port.payload.mask),
                    ]
                taken = taken | asks
            taken = Const(0)
            for p, port in enumerate(self.read):
                asks = port.valid & (bank_of(port.addr) == b)
                m.d.comb += grants[p][b].eq(asks & ~taken)
                with m.If(asks & ~taken):
                    m.d.comb += rp.addr.eq(word_of(port.addr))
                taken = taken | asks
            read_data.append(rp.data)

        for p, port in enumerate(self.write):
            m.d.comb += port.ready.eq(write_grants[p].any())
        for p, port in enumerate(self.read):
            resp_bank = Signal(range(banks), name=f"resp_bank{p}")
            m.d.comb += port.ready.eq(grants[p].any())
            m.d.sync += [
                port.resp.eq(grants[p].any()),
                resp_bank.eq(bank_of(port.addr)),
            ]
            with m.Switch(resp_bank):
                for b in range(banks):
                    with m.Case(b):
                        m.d.comb += port.data.eq(read_data[b])
        return m


class Accumulator(wiring.Component):
    """Banked SRAM of rows of ``cols`` 32-bit words.

    Row ``r`` is word ``r // banks`` of bank ``r % banks``. Every engine read port has its own
    read port on every bank. The host port and the engines' write ports share each bank's
    write port, the host first, then the engine ports in order; a write waits while a port
    before it writes the same bank.

    Parameters
    ----------
    cols, rows, banks : int
        Geometry (``rows`` a multiple of ``banks``, ``banks`` a power of two).
    read_ports, write_ports : int
        Engine ports (the matrix engine's are number 0).

    Members
    -------
    read : ``In(AccReadSignature).array(read_ports)``
        Engine read ports.
    write : ``In(stream.Signature(ACC_WRITE)).array(write_ports)``
        Engine writes (masked per word).
    host : ``In(stream.Signature({write, row, data, mask}))``
        Host accesses: a write (always accepted) or a read request.
    host_read : ``Out(data.ArrayLayout(32, cols))``, ``host_read_valid`` : ``Out(1)``
        The row read by the host request accepted in the previous cycle.
    """

    def __init__(self, *, cols, rows, banks, read_ports=1, write_ports=1):
        if rows % banks:
            raise ValueError(f"rows ({rows}) must be a multiple of banks ({banks})")
        self._cols, self._rows, self._banks = cols, rows, banks
        self.addr_width = max(1, (rows - 1).bit_length())
        layout = ACC_WRITE(cols, self.addr_width)
        super().__init__({
            "read":            In(AccReadSignature(cols=cols, addr_width=self.addr_width))
                               .array(read_ports),
            "write":           In(stream.Signature(layout)).array(write_ports),
            "host":            In(stream.Signature(data.StructLayout({
                "write": 1, "row": self.addr_width,
                "data": data.ArrayLayout(32, cols), "mask": cols}))),
            "host_read":       Out(data.ArrayLayout(32, cols)),
            "host_read_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        banks = self._banks
        depth = self._rows // banks
        bank_of, word_of = _interleave(banks)

        host = self.host.payload
        host_writes = self.host.valid & host.write
        m.d.comb += self.host.ready.eq(1)
        m.d.sync += self.host_read_valid.eq(self.host.valid & ~host.write)

        read_banks = []
        for p, port in enumerate(self.read):
            bank = Signal(range(banks), name=f"read_bank{p}")
            with m.If(port.en):
                m.d.sync += bank.eq(bank_of(port.addr))
            read_banks.append(bank)
        host_bank = Signal(range(banks))
        m.d.sync += host_bank.eq(bank_of(host.row))

        read_data = [[] for _ in self.read]
        host_data = []
        write_grants = [Signal(banks, name=f"write_grant{p}") for p in range(len(self.write))]
        for b in range(banks):
            m.submodules[f"bank{b}"] = mem = Memory(
                shape=data.ArrayLayout(32, self._cols), depth=depth, init=[])
            wp = mem.write_port(granularity=1)   # one word
            host_rp = mem.read_port()
            host_here = host_writes & (bank_of(host.row) == b)
            taken = host_here
            with m.If(host_here):
                m.d.comb += [
                    wp.addr.eq(word_of(host.row)),
                    wp.data.eq(host.data),
                    wp.en  .eq(host.mask),
                ]
            for p, port in enumerate(self.write):
                asks = port.valid & (bank_of(port.payload.row) == b)
                m.d.comb += write_grants[p][b].eq(asks & ~taken)
                with m.If(asks & ~taken):
                    m.d.comb += [
                        wp.addr.eq(word_of(port.payload.row)),
                        wp.data.eq(port.payload.data),
                        wp.en  .eq(port.payload.mask),
                    ]
                taken = taken | asks
            for p, port in enumerate(self.read):
                rp = mem.read_port()
                m.d.comb += [rp.addr.eq(word_of(port.addr)), rp.en.eq(port.en)]
                read_data[p].append(rp.data)
            m.d.comb += host_rp.addr.eq(word_of(host.row))
            host_data.append(host_rp.data)
        for p, port in enumerate(self.write):
            m.d.comb += port.ready.eq(write_grants[p].any())

        for port, bank, words in zip(self.read, read_banks, read_data):
            with m.Switch(bank):
                for b in range(banks):
                    with m.Case(b):
                        m.d.comb += port.data.eq(words[b])
        with m.Switch(host_bank):
            for b in range(banks):
                with m.Case(b):
                    m.d.comb += self.host_read.eq(host_data[b])
        return m
