"""The register host of the link test tops (rtl/link/host.py), in Amaranth's simulator."""

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from rtl.link.host import (STATUS_DONE, STATUS_TIMEOUT, STATUS_UNMAPPED, Field, HostOp,
                           HostRegisters, register_map)


FIELDS = [Field("ctrl", 3, True), Field("wide", 130, True), Field("count", 40, False)]


def test_register_map_is_consecutive_and_checked():
    rmap = register_map(FIELDS)
    assert [rmap[n][0] for n in ("ctrl", "wide", "count")] == [0, 1, 4]
    with pytest.raises(ValueError, match="duplicate"):
        register_map([Field("a", 1, True), Field("a", 2, False)])
    with pytest.raises(ValueError, match="identifier"):
        Field("no good", 1, True)
    with pytest.raises(ValueError, match="positive"):
        Field("w", 0, True)


def test_read_write_run():
    dut = HostRegisters(FIELDS)
    m = Module()
    m.submodules.dut = dut
    ticks = Signal(8)
    m.d.sync += ticks.eq(ticks + 1)
    m.d.comb += dut.done.eq(ticks == 200)
    log = []

    async def request(ctx, op, addr=0, value=0):
        ctx.set(dut.i.payload, {"op": op, "addr": addr, "data": value})
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.o.ready, 1)
        while not ctx.get(dut.i.ready):
            await ctx.tick()
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        while not ctx.get(dut.o.valid):
            await ctx.tick()
        rsp = ctx.get(dut.o.payload)
        await ctx.tick()
        return int(rsp.data), int(rsp.status)

    async def tb(ctx):
        ctx.set(dut.count, 0x12_3456_789A)
        assert await request(ctx, HostOp.WRITE, 0, 0xFF) == (0, 0)
        log.append(ctx.get(dut.ctrl))
        for w, v in enumerate((0x1111, 0x2222, 0x7)):
            await request(ctx, HostOp.WRITE, 1 + w, v)
        assert ctx.get(dut.wide) == 0x1111 | 0x2222 << 64 | 0x3 << 128
        assert (await request(ctx, HostOp.READ, 0))[0] == 7
        assert (await request(ctx, HostOp.READ, 2))[0] == 0x2222
        assert await request(ctx, HostOp.READ, 4) == (0x12_3456_789A, 0)
        assert (await request(ctx, HostOp.READ, 99))[1] == STATUS_UNMAPPED
        assert (await request(ctx, HostOp.WRITE, 4, 5))[1] == STATUS_UNMAPPED  # read-only
        cycles, status = await request(ctx, HostOp.RUN, 0, 10)
        assert (cycles, status) == (10, STATUS_TIMEOUT)
        cycles, status = await request(ctx, HostOp.RUN, 0, 1000)
        assert status == STATUS_DONE and cycles < 256

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert log == [7]
