"""The generated register map (firmware/regs.py, docs/regs.md) matches the RTL's table."""

from firmware import regs
from rtl.cmd.regs import COUNTERS, HBM_COUNTERS, Access, register_map
from rtl.config import PRESETS, TINY
from scripts import gen_regs


def test_generated_files_are_current():
    assert gen_regs.main(["--check"]) == 0, "run `python -m scripts.gen_regs`"


def test_addresses_are_unique_aligned_and_below_the_bus_limit():
    for cfg in PRESETS.values():
        addrs = [r.addr for r in register_map(cfg)]
        assert len(addrs) == len(set(addrs))
        assert all(a % 4 == 0 and a < 1 << 16 for a in addrs)


def test_firmware_constants_name_the_rtl_registers():
    by_name = {r.name: r for r in register_map(TINY)}
    assert regs.ERR_STATUS == by_name["ERR_STATUS"].addr
    assert regs.queue_reg(3, regs.Q_TAIL) == by_name["Q3_TAIL"].addr
    assert regs.sem_reg(5) == by_name["SEM5"].addr
    for name, _ in COUNTERS:
        assert regs.COUNTERS[name] == by_name[f"{name}_LO"].addr
    for c in range(TINY.hbm_channels):
        for name, _ in HBM_COUNTERS:
            assert regs.hbm_counter(c, name) == by_name[f"HBM{c}_{name}_LO"].addr
            assert by_name[f"HBM{c}_{name}_HI"].access is Access.RO
