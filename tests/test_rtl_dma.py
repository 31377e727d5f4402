"""Amaranth-pysim tests of the DMA engine (``rtl/dma/engine.py``) against
``golden_model/dma.py``, on an :class:`~rtl.memory.hbm.Hbm` (``storage="memory"``) and a
:class:`~rtl.memory.Scratchpad`.

Every test runs a sequence of commands on the RTL and on the golden model from the same
memory images and compares every status and, at the end, the whole HBM. The scratchpad is
filled by a first load of all of it and dumped to HBM by a last store, so both memories are
compared.
"""

import os

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from golden_model.dma import make_dma_command, run_dma
from rtl.config import TINY
from rtl.dma import DmaEngine, dma_spad_ports
from rtl.layouts import DMA_COMMAND, MAX_DIM, Status
from rtl.memory import Scratchpad
from rtl.memory.hbm import Hbm


def _rng(offset):
    seed = int(os.environ.get("SEED", "20241124")) + offset
    print(f"seed {seed} (SEED={seed - offset} replays)")
    return np.random.default_rng(seed)


CONFIGS = {
    # 2 channels × 16 B (stripe 32 B), 16-byte lines: 2 scratchpad ports.
    "tiny": TINY.replace(hbm_bytes=64 * 1024),
    # 4 channels × 8 B, 4 banks: 2 ports, a shorter latency.
    "4x8":  TINY.replace(hbm_bytes=64 * 1024, hbm_channels=4, hbm_bytes_per_cycle=8,
                         hbm_latency=7, spad_banks=4),
    # A line (16 B) wider than a stripe (8 B), as on FPGA_ECP5: 1 port, pieces of lines.
    "wide": TINY.replace(hbm_bytes=64 * 1024, hbm_channels=1, hbm_bytes_per_cycle=8,
                         hbm_latency=9),
}

#: Where the test puts the scratchpad dump, the page lists and the protected rings.
DUMP = 48 * 1024


class _Top(wiring.Component):
    def __init__(self, cfg, image):
        self.cfg = cfg
        k = dma_spad_ports(cfg)
        self.spad = Scratchpad(line_bytes=cfg.spad_line_bytes, lines=cfg.spad_lines,
                               banks=cfg.spad_banks, read_ports=k, write_ports=k)
        self.hbm = Hbm(cfg, ports=1, storage="memory", init=image.tobytes())
        self.dma = DmaEngine(cfg, spad_addr_width=self.spad.addr_width)
        self.cycles = Signal(32)
        self.deadline = Signal(32)
        self.late = Signal()
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.spad = self.spad
        m.submodules.hbm = self.hbm
        m.submodules.dma = self.dma
        m.d.sync += self.cycles.eq(self.cycles + 1)
        m.d.comb += self.late.eq(self.cycles >= self.deadline)
        wiring.connect(m, self.dma.hbm, self.hbm.port[0])
        for j in range(len(self.dma.spad_read)):
            wiring.connect(m, self.dma.spad_read[j], self.spad.read[j])
            wiring.connect(m, self.dma.spad_write[j], self.spad.write[j])
        return m


def _run(cfg, image, commands):
    """Run ``[(cmd dict, protect)]`` on the RTL; return the statuses, the cycles of each
    command (acceptance to status) and the final HBM image."""
    top = _Top(cfg, image)
    dma, hbm = top.dma, top.hbm
    S = hbm.stripe
    results = []

    async def bench(ctx):
        for cmd, protect in commands:
            regions = [{"lo": lo, "hi": hi, "valid": 1} for lo, hi in protect]
            regions += [{"lo": 0, "hi": 0, "valid": 0}] * (len(dma.protect) - len(regions))
            ctx.set(dma.protect, regions)
            ctx.set(dma.cmd.payload.as_value(), DMA_COMMAND.const(cmd).as_value().value)
            ctx.set(dma.cmd.valid, 1)
            await ctx.tick().until(dma.cmd.ready)
            ctx.set(dma.cmd.valid, 0)
            start = ctx.get(dma.counters.busy)
            ctx.set(dma.status.ready, 1)
            # A watchdog instead of a hang: no command needs more cycles than this.
            limit = 200 * cfg.hbm_latency + 64 + cmd["rows"] * (cmd["row_bytes"] // 4 + 4)
            ctx.set(top.deadline, ctx.get(top.cycles) + limit)
            status, late = await ctx.tick().sample(dma.status.payload, top.late).until(
                dma.status.valid | top.late)
            assert not late, f"command {len(results)} took more than {limit} cycles"
            ctx.set(dma.status.ready, 0)
            cycles = ctx.get(dma.counters.busy) - start
            results.append((Status(status.status), cycles))
        words = [[ctx.get(d[w]) for w in range(hbm.words)] for d in hbm.channel_data]
        out = np.zeros(cfg.hbm_bytes, np.uint8)
        B = cfg.hbm_bytes_per_cycle
        for c, ws in enumerate(words):
            chan = np.frombuffer(b"".join(w.to_bytes(B, "little") for w in ws), np.uint8)
            out.reshape(-1, S)[:, c * B:(c + 1) * B] = chan.reshape(-1, B)
        results.append(out)

    sim = Simulator(top)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    final = results.pop()
    return results, final


def _check_against_golden(cfg, image, commands, expect_status=None):
    """Run on both; compare statuses and the final HBM. Returns the RTL results."""
    results, final = _run(cfg, image, commands)
    hbm = image.copy()
    spad = np.zeros(cfg.spad_bytes, np.uint8)
    for i, ((cmd, protect), (status, _)) in enumerate(zip(commands, results)):
        want = run_dma(cfg, cmd, hbm, spad, protect=protect)
        assert status == want, (i, cmd, status, want)
        if expect_status is not None and expect_status[i] is not None:
            assert status == expect_status[i], (i, cmd, status)
    diff = np.flatnonzero(final != hbm)
    assert diff.size == 0, f"HBM differs at {diff[:16]} (of {diff.size})"
    return results


def _fill(cfg):
    return make_dma_command(rows=1, row_bytes=cfg.spad_bytes, hbm_addr=0)


def _dump(cfg):
    return make_dma_command(store=1, rows=1, row_bytes=cfg.spad_bytes, hbm_addr=DUMP)


def _random_command(cfg, rng, pages):
    """A random in-range load, store or gather with any 4-byte alignment."""
    kind = rng.choice(["load", "store", "gather"], p=[0.45, 0.35, 0.2])
    S = cfg.hbm_channels * cfg.hbm_bytes_per_cycle
    row_bytes = 4 * int(rng.integers(1, 3 * S // 4 + 1 if rng.random() < 0.7 else 24))
    rows = int(rng.integers(1, 9))
    spad_stride = row_bytes + 4 * int(rng.integers(0, 8))
    span = (rows - 1) * spad_stride + row_bytes
    spad_addr = 4 * int(rng.integers(0, (cfg.spad_bytes - span) // 4 + 1))
    hbm_stride = row_bytes + 4 * int(rng.integers(0, 16))
    limit = 40 * 1024 if kind == "store" else DUMP
    hbm_span = (rows - 1) * hbm_stride + row_bytes
    hbm_lo = 16 * 1024 if kind == "store" else 0     # stores keep clear of the fill source
    hbm_addr = 4 * int(rng.integers(hbm_lo // 4, (limit - hbm_span) // 4 + 1))
    if kind == "gather":
        # A page list at an 8-aligned address in the list area, pages anywhere below.
        list_addr = DUMP - 4096 + 8 * int(rng.integers(0, 256 - rows))
        offset = 4 * int(rng.integers(0, 8))
        pages[list_addr] = [4 * int(rng.integers(0, (DUMP - 4096 - row_bytes - offset) // 4))
                            for _ in range(rows)]
        return make_dma_command(gather=1, rows=rows, row_bytes=row_bytes, spad_addr=spad_addr,
                                spad_stride=spad_stride, hbm_addr=list_addr,
                                hbm_stride=offset)
    return make_dma_command(store=int(kind == "store"), rows=rows, row_bytes=row_bytes,
                            spad_addr=spad_addr, spad_stride=spad_stride, hbm_addr=hbm_addr,
                            hbm_stride=hbm_stride)


def _image(cfg, rng, pages=()):
    image = rng.integers(0, 256, cfg.hbm_bytes, dtype=np.uint8)
    for addr, entries in dict(pages).items():
        image[addr:addr + 8 * len(entries)] = np.frombuffer(
            np.array(entries, "<u8").tobytes(), np.uint8)
    return image


@pytest.mark.parametrize("name", list(CONFIGS))
def test_dma_random(name):
    """Random 2-D loads, stores and gathers of any alignment, and the dump, against golden."""
    cfg = CONFIGS[name]
    rng = _rng(20 + list(CONFIGS).index(name))
    pages = {}
    commands = [(_fill(cfg), ())]
    commands += [(_random_command(cfg, rng, pages), ()) for _ in range(40)]
    # Page lists must not be overwritten by the stores before they are used: stores stay below
    # 40 KiB, the lists are at 44–48 KiB.
    commands.append((_dump(cfg), ()))
    image = _image(cfg, rng, pages)
    results = _check_against_golden(cfg, image, commands)
    assert all(status is Status.SUCCESS for status, _ in results)


def test_dma_errors():
    """Every error class, directed; a refused command writes nothing."""
    cfg = CONFIGS["tiny"]
    rng = _rng(30)
    hb, sb = cfg.hbm_bytes, cfg.spad_bytes
    good = dict(rows=2, row_bytes=64, spad_addr=128, spad_stride=64, hbm_addr=20000,
                hbm_stride=96)
    list_ok = DUMP - 512
    list_bad_align = DUMP - 256
    list_bad_range = DUMP - 128
    pages = {list_ok: [4096, 8192, 100],
             list_bad_align: [4096, 8194, 4],           # entry 1 misaligned
             list_bad_range: [4096, hb - 60, 2]}        # entry 1 beyond, entry 2 misaligned

    def c(**kw):
        return make_dma_command(**{**good, **kw})

    ring = (20000 + 96 + 32, 20000 + 96 + 40)           # inside row 1 of the good store
    gap = (20000 + 64, 20000 + 96)                      # between its rows
    cases = [
        (c(reserved=1), (), Status.NONZERO_RESERVED),
        (c(gather=1, store=1), (), Status.NONZERO_RESERVED),
        (c(rows=0), (), Status.SIZE_RANGE),
        (c(rows=MAX_DIM + 1), (), Status.SIZE_RANGE),
        (c(row_bytes=0), (), Status.SIZE_RANGE),
        (c(row_bytes=sb + 4), (), Status.SIZE_RANGE),
        (c(spad_addr=130), (), Status.ADDR_ALIGN),
        (c(spad_stride=66), (), Status.ADDR_ALIGN),
        (c(hbm_addr=20002), (), Status.ADDR_ALIGN),
        (c(hbm_stride=97), (), Status.ADDR_ALIGN),
        (c(row_bytes=62), (), Status.ADDR_ALIGN),
        (c(gather=1, hbm_addr=list_ok + 4, hbm_stride=0), (), Status.ADDR_ALIGN),
        (c(spad_addr=sb - 64), (), Status.ADDR_RANGE),
        (c(rows=MAX_DIM, spad_stride=64), (), Status.ADDR_RANGE),
        (c(hbm_addr=hb - 64), (), Status.ADDR_RANGE),
        (c(store=1, hbm_stride=(1 << 64) - 4), (), Status.ADDR_RANGE),   # 64-bit wrap
        (c(hbm_addr=(1 << 64) - 64, rows=1), (), Status.ADDR_RANGE),
        (c(spad_addr=(1 << 32) - 64, rows=1), (), Status.ADDR_RANGE),
        (c(rows=3, spad_stride=(1 << 32) - 4), (), Status.ADDR_RANGE),
        (c(gather=1, rows=8, hbm_addr=hb - 32), (), Status.ADDR_RANGE),
        (c(spad_stride=60), (), Status.OVERLAP),
        (c(store=1, hbm_stride=32), (), Status.OVERLAP),
        (c(store=1), (ring,), Status.OVERLAP),
        (c(store=1), ((0, 8), ring), Status.OVERLAP),
        (c(store=1), (gap,), Status.SUCCESS),           # a ring between the rows
        (c(store=1, hbm_addr=30000), (ring,), Status.SUCCESS),
        (c(gather=1, rows=3, hbm_addr=list_ok, hbm_stride=8), (), Status.SUCCESS),
        (c(gather=1, rows=3, hbm_addr=list_bad_align, hbm_stride=8), (), Status.ADDR_ALIGN),
        (c(gather=1, rows=3, hbm_addr=list_bad_range, hbm_stride=8), (), Status.ADDR_RANGE),
        (c(gather=1, rows=1, hbm_addr=list_bad_range, hbm_stride=8), (), Status.SUCCESS),
        (c(gather=1, rows=3, hbm_addr=list_ok, hbm_stride=hb), (), Status.ADDR_RANGE),
    ]
    commands = [(_fill(cfg), ())] + [(cmd, prot) for cmd, prot, _ in cases] + [(_dump(cfg), ())]
    expect = [Status.SUCCESS] + [s for _, _, s in cases] + [Status.SUCCESS]
    _check_against_golden(cfg, _image(cfg, rng, pages), commands, expect)


def test_dma_gather_long():
    """A gather of many one-stripe rows (entries prefetched a stripe at a time), on every
    configuration's geometry."""
    for name in ("tiny", "wide"):
        cfg = CONFIGS[name]
        rng = _rng(40)
        rows = 96
        list_addr = DUMP - 2048
        pages = {list_addr: [4 * int(x) for x in rng.integers(0, 8000, rows)]}
        cmd = make_dma_command(gather=1, rows=rows, row_bytes=32, spad_addr=0, spad_stride=32,
                               hbm_addr=list_addr, hbm_stride=12)
        results = _check_against_golden(cfg, _image(cfg, rng, pages),
                                         [(cmd, ()), (_dump(cfg), ())])
        print(f"{name}: gather of {rows} rows × 32 B: {results[0][1]} cycles")


def test_dma_throughput():
    """Cycles of large transfers (printed; only a loose floor is asserted)."""
    report = []
    for name, cfg in CONFIGS.items():
        S = cfg.hbm_channels * cfg.hbm_bytes_per_cycle
        rate = min(S, dma_spad_ports(cfg) * cfg.spad_line_bytes)
        n = 8192
        cases = {
            "load aligned": make_dma_command(rows=1, row_bytes=n, hbm_addr=0),
            "load misaligned": make_dma_command(rows=1, row_bytes=n, hbm_addr=4, spad_addr=8),
            "store aligned": make_dma_command(store=1, rows=1, row_bytes=n, hbm_addr=16384),
            "store misaligned": make_dma_command(store=1, rows=1, row_bytes=n,
                                                 hbm_addr=16384 + 12, spad_addr=4),
            "load 64 rows × 64 B": make_dma_command(rows=64, row_bytes=64, hbm_addr=4,
                                                    hbm_stride=256, spad_stride=64),
        }
        commands = [(c, ()) for c in cases.values()]
        results, _ = _run(cfg, _image(cfg, _rng(50)), commands)
        for (label, cmd), (status, cycles) in zip(cases.items(), results):
            assert status is Status.SUCCESS
            moved = cmd["rows"] * cmd["row_bytes"]
            eff = moved / cycles / rate
            report.append(f"{name:5} {label:22} {cycles:6} cycles  {moved / cycles:6.2f} B/cycle"
                          f"  {100 * eff:5.1f} % of {rate} B/cycle")
            assert eff > 0.3, report[-1]
    print("\n" + "\n".join(report))
