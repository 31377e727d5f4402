"""Chip benchmark on Verilator: DMA streaming efficiency and DMA/compute overlap.

Every case runs as descriptors through the command processor of the ``chip`` top, and its
figures come from the chip's own counters, read over the CSR bus (``CTRL.clear_counters``
before the case):

* **DMA streaming**: one DMA descriptor per case (aligned, 4-byte-misaligned, 2-D strided,
  page-gathering; loads and stores). Efficiency = bytes moved ÷ ``DMA_BUSY`` cycles ÷ the
  modelled peak (one HBM stripe, ``hbm_channels × hbm_bytes_per_cycle`` bytes, per cycle).
* **Overlap**: a GEMM whose operands are several times the scratchpad, split along K into
  tiles that a DMA queue loads into two alternating buffers while the GEMM queue computes on
  the other one (semaphores between the queues). MXU utilization = ``MXU_MACS`` ÷ (cycles ×
  R × C) over the whole run, doorbell to idle.

Every response is also checked against the functional chip (``golden_model.chip``), and the
GEMM's result is read back (accumulator → scratchpad → HBM) and compared bit for bit. The
figures go to ``$BENCH_OUT`` (JSON); ``scripts/bench.py`` prints them.
"""

import json
import os

import cocotb
import numpy as np

from firmware import isa
from firmware import regs as R
from golden_model.chip import ChipModel
from golden_model.mxu import make_command, operand_bytes, pack_a, pack_b
from golden_model.vpu import make_vpu_command
from rtl.chip import chip_host_request_layout, chip_host_response_layout
from rtl.layouts import DESC_BYTES, CPL_BYTES, Format, Status, VpuCmd
from verif.chip.programs import HostState, Program, replay, stripe_bytes
from verif.common.harness import StreamHarness
from verif.common.tb import TB


RING_LOG2 = 6
DATA = 1 << 20          # HBM byte address of the benchmark data


class Bench:
    def __init__(self, dut):
        self.tb = TB(dut)
        self.cfg = cfg = self.tb.cfg
        self.harness = StreamHarness(dut, chip_host_request_layout(cfg),
                                     chip_host_response_layout(cfg))
        self.state = HostState(cfg)
        self.model = ChipModel(cfg)
        self.rng = self.tb.rng
        self.stripe = stripe_bytes(cfg)
        self.log = self.tb.log

    async def start(self):
        self.harness.idle()
        await self.tb.reset()
        prog = self.program("setup")
        for q in range(2):
            sq = q * 0x4000
            prog.setup_queue(q, sq, sq + (DESC_BYTES << RING_LOG2), RING_LOG2)
        await self.run(prog)

    def program(self, name):
        return Program(self.cfg, self.state, name)

    async def run(self, prog):
        """Run ``prog`` on the chip and on the model; check every comparable response."""
        fields = dict(op=prog.op, addr=prog.addr, data=prog.data, mask=prog.mask)
        # A program may be a few requests that keep the chip busy for a long time (the
        # overlap GEMM); the harness's own watchdog still catches a chip that stops.
        got = await self.harness.run(timeout_cycles=1 << 40, **fields)
        exp_status, exp_data = replay(self.model, prog)
        for i, (es, ed) in enumerate(zip(exp_status, exp_data)):
            gs, gd = int(got["status"][i]), int(got["data"][i])
            if gs != int(es) or (ed is not None and gd != int(ed)):
                raise AssertionError(
                    f"{prog.name}: request {i} ({prog.labels[i]}): expected status {es!r} "
                    f"data {ed if ed is None else hex(ed)}, got status {gs:#x} data {gd:#x}")
        return got

    def counters(self, prog):
        """Read the counters the figures need; return {name: (lo request, hi request)}."""
        out = {}
        for name in ("CYCLES", "DMA_BUSY", "DMA_RD_BYTES", "DMA_WR_BYTES", "MXU_BUSY",
                     "MXU_MACS", "VPU_BUSY"):
            a = R.COUNTERS[name]
            out[name] = (prog.csr_read(a), prog.csr_read(a + 4))
        return out

    @staticmethod
    def values(got, reqs):
        return {n: int(got["data"][lo]) | int(got["data"][hi]) << 32
                for n, (lo, hi) in reqs.items()}

    async def case(self, queue, descs, name, extra=None):
        """Clear the counters, run ``descs`` on ``queue`` (or {queue: descs}), wait, read the
        counters and the completions."""
        prog = self.program(name)
        if extra:
            extra(prog)
        prog.csr_write(R.CTRL, 2)
        work = descs if isinstance(descs, dict) else {queue: descs}
        for q, ds in work.items():
            prog.submit(q, ds)
        prog.wait_idle()
        reqs = self.counters(prog)
        prog.read_completions()
        prog.read_errors()
        got = await self.run(prog)
        for d in prog.descs:
            i, off = d.cpl
            word = int(got["data"][i]).to_bytes(self.stripe, "little")[off:off + CPL_BYTES]
            c = isa.decode_completion(word)
            if c["status"] != Status.SUCCESS:
                raise AssertionError(f"{name}: descriptor {d.index} completed {c['status']!r}")
        return self.values(got, reqs)


def _dma_cases(cfg, stripe):
    s = cfg.spad_bytes
    big = s // 2
    cases = [
        # (label, class, fields)
        ("load, aligned", "aligned", dict(rows=1, row_bytes=big, hbm_addr=DATA, spad_addr=0)),
        ("store, aligned", "aligned",
         dict(store=1, rows=1, row_bytes=big, hbm_addr=DATA + 4 * big, spad_addr=0)),
        ("load, +4 B in HBM, +8 B in SRAM", "misaligned",
         dict(rows=1, row_bytes=big - 16, hbm_addr=DATA + 4, spad_addr=8)),
        ("store, +8 B in SRAM, +4 B in HBM", "misaligned",
         dict(store=1, rows=1, row_bytes=big - 16, hbm_addr=DATA + 4 * big + 4, spad_addr=8)),
        ("load, 2-D, rows of 512 B every 1 KiB", "strided",
         dict(rows=big // 512, row_bytes=512, hbm_addr=DATA, hbm_stride=1024, spad_addr=0,
              spad_stride=512)),
        ("load, 2-D, rows of 508 B every 1 KiB, +4 B", "strided",
         dict(rows=big // 512, row_bytes=508, hbm_addr=DATA + 4, hbm_stride=1024,
              spad_addr=12, spad_stride=508)),
        ("store, 2-D, rows of 508 B every 1 KiB, +4 B", "strided",
         dict(store=1, rows=big // 512, row_bytes=508, hbm_addr=DATA + 4 * big + 4,
              hbm_stride=1024, spad_addr=12, spad_stride=508)),
        ("load, 2-D, rows of 64 B every 256 B", "short rows",
         dict(rows=big // 64, row_bytes=64, hbm_addr=DATA, hbm_stride=256, spad_addr=0,
              spad_stride=64)),
    ]
    return cases


async def dma_streaming(b, results):
    cfg, stripe = b.cfg, b.stripe
    s = cfg.spad_bytes
    # Source data: 4× the scratchpad of random bytes.
    prog = b.program("data")
    prog.mem_write(DATA, b.rng.integers(0, 256, 4 * s, dtype=np.uint8).tobytes())
    await b.run(prog)
    for label, klass, fields in _dma_cases(cfg, stripe):
        v = await b.case(0, [isa.dma(**fields)], label)
        moved = fields["rows"] * fields["row_bytes"]
        eff = moved / max(1, v["DMA_BUSY"]) / stripe
        results.append({"case": label, "class": klass, "bytes": moved,
                        "busy": v["DMA_BUSY"], "cycles": v["CYCLES"],
                        "hbm_bytes": v["DMA_RD_BYTES"] + v["DMA_WR_BYTES"],
                        "bytes_per_cycle": moved / max(1, v["DMA_BUSY"]),
                        "efficiency": eff})
        b.log.info("%-45s %8d B %8d cycles  %.1f%% of peak", label, moved, v["DMA_BUSY"],
                   100 * eff)
    # Page gather: pages of 1 KiB scattered over the data, in a shuffled order.
    page = 1024
    rows = s // 2 // page
    pages = b.rng.permutation(4 * s // page)[:rows] * page + DATA
    plist = DATA + 8 * s
    label = "gather, pages of 1 KiB"

    def put_list(prog):
        prog.mem_write(plist, np.asarray(pages, "<u8").tobytes())

    v = await b.case(0, [isa.dma(rows=rows, row_bytes=page, gather=1, hbm_addr=plist,
                                 spad_addr=0, spad_stride=page)], label, extra=put_list)
    moved = rows * page
    results.append({"case": label, "class": "gather", "bytes": moved, "busy": v["DMA_BUSY"],
                    "cycles": v["CYCLES"], "hbm_bytes": v["DMA_RD_BYTES"],
                    "bytes_per_cycle": moved / max(1, v["DMA_BUSY"]),
                    "efficiency": moved / max(1, v["DMA_BUSY"]) / stripe})


def _overlap_plan(cfg):
    """GEMM shape and K tile: two buffers of (A tile + B tile) fill ¾ of the scratchpad, the
    whole of A and B is at least 1.25 times the scratchpad (in at least 3 tiles, so that each
    buffer is refilled while the other is computed on), C fits the accumulator."""
    fmt = Format.FP8_E4M3
    n = min(16 * cfg.mxu_cols, 256)
    m = min(128, cfg.acc_rows * cfg.mxu_cols // n)
    kt = cfg.mxu_rows
    while 2 * (m + n) * (2 * kt) <= 3 * cfg.spad_bytes // 4:
        kt *= 2
    tiles = -(-5 * cfg.spad_bytes // (4 * (m + n) * kt))
    return fmt, m, n, kt, max(tiles, 3)


async def overlap(b, results):
    cfg = b.cfg
    fmt, m, n, kt, tiles = _overlap_plan(cfg)
    k = kt * tiles
    a = b.rng.integers(0, 256, (m, k), dtype=np.uint8)
    bm = b.rng.integers(0, 256, (k, n), dtype=np.uint8)
    # Keep the operands finite (E4M3: 0x7F/0xFF are NaN).
    a[(a & 0x7F) == 0x7F] ^= 1
    bm[(bm & 0x7F) == 0x7F] ^= 1
    cmd0 = make_command(m=m, n=n, k=kt, fmt_a=fmt, fmt_b=fmt)
    sizes = operand_bytes(cfg, cmd0)
    align = max(sizes["a_align"], sizes["b_align"], 64)
    a_sz = -(-sizes["a"] // align) * align
    b_sz = -(-sizes["b"] // align) * align
    bufs = [(i * (a_sz + b_sz), i * (a_sz + b_sz) + a_sz) for i in range(2)]
    # The packed tiles, contiguous in HBM.
    prog = b.program("gemm operands")
    hbm_tiles = []
    base = DATA
    for t in range(tiles):
        pa = pack_a(cfg, a[:, t * kt:(t + 1) * kt], fmt)
        pb = pack_b(cfg, bm[t * kt:(t + 1) * kt, :], fmt)
        prog.mem_write(base, pa)
        prog.mem_write(base + a_sz, pb)
        hbm_tiles.append((base, len(pa), base + a_sz, len(pb)))
        base += a_sz + b_sz
    await b.run(prog)

    dma_q, gemm_q = [], []
    for t in range(tiles):
        (ha, la, hb, lb) = hbm_tiles[t]
        sa, sb = bufs[t % 2]
        if t >= 2:
            dma_q.append(isa.wait(1, t - 1))          # the GEMM that used this buffer is done
        dma_q += [isa.dma(rows=1, row_bytes=-(-la // 4) * 4, hbm_addr=ha, spad_addr=sa),
                  isa.dma(rows=1, row_bytes=-(-lb // 4) * 4, hbm_addr=hb, spad_addr=sb),
                  isa.signal(0, 1)]
        gemm_q += [isa.wait(0, t + 1),
                   isa.gemm(make_command(m=m, n=n, k=kt, fmt_a=fmt, fmt_b=fmt, a_addr=sa,
                                         b_addr=sb, c_row=0, accumulate=int(t > 0))),
                   isa.signal(1, 1)]
    ring = 1 << RING_LOG2
    assert len(dma_q) <= ring and len(gemm_q) <= ring, "overlap plan exceeds the rings"

    def reset_sems(prog):
        prog.csr_write(R.sem_reg(0), 0)
        prog.csr_write(R.sem_reg(1), 0)

    v = await b.case(None, {0: dma_q, 1: gemm_q}, "overlap", extra=reset_sems)
    macs = m * n * k
    peak = cfg.mxu_rows * cfg.mxu_cols
    # The result: accumulator → scratchpad (VPU copy, SCALE by 1) → HBM, compared with the
    # model's (the replay already compared every read).
    out = DATA + 16 * cfg.spad_bytes
    rows_c = sizes["c_rows"]
    prog_c = [isa.vpu(make_vpu_command(
        op=VpuCmd.SCALE, length=cfg.mxu_cols, rows=rows_c, scalar=0x3F800000,
        a={"addr": 0, "chunk": 1, "row": 1, "space": 1},
        dst={"addr": 0, "chunk": 4 * cfg.mxu_cols, "row": 4 * cfg.mxu_cols, "space": 0})),
        isa.dma(store=1, rows=1, row_bytes=rows_c * 4 * cfg.mxu_cols, hbm_addr=out,
                spad_addr=0)]
    prog = b.program("result")
    prog.submit(1, prog_c)
    prog.wait_idle()
    prog.mem_read(out, rows_c * 4 * cfg.mxu_cols)
    await b.run(prog)
    results.append({
        "m": m, "n": n, "k": k, "k_tile": kt, "tiles": tiles, "format": fmt.name,
        "operand_bytes": m * k + k * n, "spad_bytes": cfg.spad_bytes,
        "cycles": v["CYCLES"], "mxu_busy": v["MXU_BUSY"], "dma_busy": v["DMA_BUSY"],
        "macs": v["MXU_MACS"], "utilization": v["MXU_MACS"] / (v["CYCLES"] * peak),
        "ideal_cycles": macs / peak,
    })
    b.log.info("overlap: %d×%d×%d in %d tiles, %d cycles, MXU utilization %.1f%%", m, n, k,
               tiles, v["CYCLES"], 100 * results[-1]["utilization"])


@cocotb.test()
async def chip_bench(dut):
    b = Bench(dut)
    await b.start()
    dma, ov = [], []
    await dma_streaming(b, dma)
    await overlap(b, ov)
    out = os.environ.get("BENCH_OUT")
    if out:
        with open(out, "w") as f:
            json.dump({"preset": b.cfg.name, "stripe": b.stripe, "dma": dma, "overlap": ov},
                      f, indent=1)
