"""The DMA op model (``golden_model.dma``) against ``docs/chip.md`` § DMA and § Checks.

- Copies: equal to a plain per-row numpy slicing loop (strided loads and stores, stride 0
  sources, gathering loads with a page list), on garbage-filled memories; every byte outside
  the destination rows is checked untouched.
- Checks: one directed command per check and per operand, with the expected status computed by
  hand, and neither memory changed; the check order where two checks fail at once; gather page
  entries checked in order before any copy; sums that would wrap a 64-bit register.

Set ``SEED`` to replay random data.
"""

import os

import numpy as np
import pytest

from golden_model.dma import check_dma, make_dma_command, run_dma
from rtl.config import TINY
from rtl.layouts import MAX_DIM, Status

SEED = int(os.environ.get("SEED", "20240613"))
S = Status
CFG = TINY.replace(name="DMA_TEST", hbm_bytes=1 << 20)   # 1 MiB HBM keeps the tests fast
HBM, SPAD = CFG.hbm_bytes, CFG.spad_bytes


@pytest.fixture
def rng():
    print(f"SEED={SEED} (set the SEED environment variable to replay)")
    return np.random.default_rng(SEED)


def _memories(rng):
    return (rng.integers(0, 256, HBM, dtype=np.uint8),
            rng.integers(0, 256, SPAD, dtype=np.uint8))


def _reference(cmd, hbm, spad):
    """Row by row, in order, with plain slicing."""
    hbm, spad = hbm.copy(), spad.copy()
    L = cmd["row_bytes"]
    for r in range(cmd["rows"]):
        s = cmd["spad_addr"] + r * cmd["spad_stride"]
        if cmd["gather"]:
            e = cmd["hbm_addr"] + 8 * r
            h = int.from_bytes(hbm[e:e + 8].tobytes(), "little") + cmd["hbm_stride"]
        else:
            h = cmd["hbm_addr"] + r * cmd["hbm_stride"]
        if cmd["store"]:
            hbm[h:h + L] = spad[s:s + L]
        else:
            spad[s:s + L] = hbm[h:h + L]
    return hbm, spad


def _run_and_compare(cmd, hbm, spad, protect=()):
    ref_hbm, ref_spad = _reference(cmd, hbm, spad)
    assert check_dma(CFG, cmd, hbm=hbm, protect=protect) is S.SUCCESS
    assert run_dma(CFG, cmd, hbm, spad, protect=protect) is S.SUCCESS
    np.testing.assert_array_equal(hbm, ref_hbm)
    np.testing.assert_array_equal(spad, ref_spad)


@pytest.mark.parametrize("store", [0, 1])
@pytest.mark.parametrize("rows, row_bytes, spad_stride, hbm_stride", [
    (1, 4, 0, 0),
    (1, SPAD, 0, 0),                 # one row filling the scratchpad
    (5, 12, 12, 12),                 # dense
    (7, 8, 20, 36),                  # gaps in both
    (3, 16, 16, 4096),               # HBM rows far apart
])
def test_strided_copies_equal_slicing(rng, store, rows, row_bytes, spad_stride, hbm_stride):
    hbm, spad = _memories(rng)
    spad_addr = 0 if row_bytes == SPAD else 64
    cmd = make_dma_command(store=store, rows=rows, row_bytes=row_bytes, spad_addr=spad_addr,
                           spad_stride=spad_stride, hbm_addr=0x1234 * 4,
                           hbm_stride=hbm_stride)
    _run_and_compare(cmd, hbm, spad)


@pytest.mark.parametrize("store", [0, 1])
def test_source_stride_zero_broadcasts(rng, store):
    # A stride-0 source repeats one row; only the destination stride must be ≥ row_bytes.
    hbm, spad = _memories(rng)
    cmd = make_dma_command(store=store, rows=6, row_bytes=8, spad_addr=256,
                           spad_stride=0 if store else 8, hbm_addr=4096,
                           hbm_stride=8 if store else 0)
    _run_and_compare(cmd, hbm, spad)
    dst = (hbm[4096:4096 + 48] if store else spad[256:256 + 48]).reshape(6, 8)
    assert (dst == dst[0]).all()


def test_rows_at_the_end_of_both_memories(rng):
    hbm, spad = _memories(rng)
    cmd = make_dma_command(rows=4, row_bytes=16, spad_addr=SPAD - 64, spad_stride=16,
                           hbm_addr=HBM - 4 * 32 + 16, hbm_stride=32)
    _run_and_compare(cmd, hbm, spad)


def _page_list(hbm, at, pages):
    hbm[at:at + 8 * len(pages)] = np.array(pages, "<u8").view(np.uint8)


def test_gather_equals_slicing(rng):
    hbm, spad = _memories(rng)
    pages = [0x8000, 0x1000, 0x8000, HBM - 0x100, 0x20004]   # repeats and unordered
    _page_list(hbm, 0x400, pages)
    cmd = make_dma_command(gather=1, rows=len(pages), row_bytes=32, spad_addr=128,
                           spad_stride=48, hbm_addr=0x400, hbm_stride=0xC0)
    _run_and_compare(cmd, hbm, spad)
    for r, p in enumerate(pages):
        np.testing.assert_array_equal(spad[128 + 48 * r:128 + 48 * r + 32],
                                      hbm[p + 0xC0:p + 0xC0 + 32])


def test_random_commands_equal_slicing(rng):
    for _ in range(40):
        hbm, spad = _memories(rng)
        rows = int(rng.integers(1, 9))
        L = 4 * int(rng.integers(1, 17))
        sstride = 4 * int(rng.integers(L // 4, L // 4 + 8))
        hstride = 4 * int(rng.integers(L // 4, 300))
        gather = int(rng.integers(0, 2))
        store = 0 if gather else int(rng.integers(0, 2))
        haddr = 8 * int(rng.integers(0, 1000))
        if gather:
            _page_list(hbm, haddr, [4 * int(x) for x in rng.integers(0, (HBM - 4096) // 4,
                                                                        rows)])
            hstride = 4 * int(rng.integers(0, 256))
        cmd = make_dma_command(store=store, gather=gather, rows=rows, row_bytes=L,
                               spad_addr=4 * int(rng.integers(0, 512)), spad_stride=sstride,
                               hbm_addr=haddr, hbm_stride=hstride)
        _run_and_compare(cmd, hbm, spad)


# -- checks ---------------------------------------------------------------------------------

_GOOD = dict(rows=4, row_bytes=16, spad_addr=64, spad_stride=16, hbm_addr=4096, hbm_stride=32)

_CASES = [
    # NONZERO_RESERVED
    (dict(reserved=1), S.NONZERO_RESERVED),
    (dict(reserved=1 << 29), S.NONZERO_RESERVED),
    (dict(gather=1, store=1, hbm_addr=4096), S.NONZERO_RESERVED),
    # SIZE_RANGE
    (dict(rows=0), S.SIZE_RANGE),
    (dict(rows=MAX_DIM + 1), S.SIZE_RANGE),
    (dict(rows=(1 << 32) - 1), S.SIZE_RANGE),
    (dict(row_bytes=0), S.SIZE_RANGE),
    (dict(rows=1, row_bytes=SPAD + 4, spad_addr=0), S.SIZE_RANGE),
    # ADDR_ALIGN (each address, stride, row length)
    (dict(spad_addr=66), S.ADDR_ALIGN),
    (dict(spad_stride=18), S.ADDR_ALIGN),
    (dict(hbm_addr=4097), S.ADDR_ALIGN),
    (dict(hbm_stride=34), S.ADDR_ALIGN),
    (dict(row_bytes=14, spad_stride=16), S.ADDR_ALIGN),
    (dict(gather=1, hbm_addr=4100), S.ADDR_ALIGN),      # page list: 8-byte aligned
    (dict(gather=1, hbm_addr=4096, hbm_stride=2), S.ADDR_ALIGN),
    # ADDR_RANGE
    (dict(spad_addr=SPAD - 48), S.ADDR_RANGE),          # last row ends at SPAD + 16
    (dict(spad_addr=SPAD - 64), S.SUCCESS),             # … exactly at the end
    (dict(hbm_addr=HBM - 96 - 12), S.ADDR_RANGE),
    (dict(hbm_addr=HBM - 96 - 16), S.SUCCESS),
    (dict(hbm_addr=(1 << 64) - 4, rows=1), S.ADDR_RANGE),          # would wrap 64 bits
    (dict(hbm_stride=(1 << 64) - 4), S.ADDR_RANGE),                # ditto, through rows
    (dict(spad_stride=(1 << 32) - 4), S.ADDR_RANGE),               # would wrap 32 bits
    (dict(gather=1, hbm_addr=HBM - 24), S.ADDR_RANGE),             # page list of 4 entries
    # OVERLAP (destination rows)
    (dict(spad_stride=12), S.OVERLAP),                  # load: destination is the scratchpad
    (dict(rows=2, spad_stride=12), S.OVERLAP),
    (dict(spad_stride=0), S.OVERLAP),
    (dict(store=1, hbm_stride=12), S.OVERLAP),          # store: destination is HBM
    (dict(store=1, spad_stride=0), S.SUCCESS),          # a store's source may overlap
    (dict(hbm_stride=0), S.SUCCESS),                    # … and a load's
    (dict(rows=1, spad_stride=0, hbm_stride=0), S.SUCCESS),
    # order: the first failing check wins
    (dict(reserved=1, rows=0, spad_addr=1), S.NONZERO_RESERVED),
    (dict(rows=0, spad_addr=1), S.SIZE_RANGE),
    (dict(spad_addr=SPAD + 2), S.ADDR_ALIGN),
    (dict(spad_addr=SPAD, spad_stride=4), S.ADDR_RANGE),          # range before overlap
]


@pytest.mark.parametrize("change, status", _CASES)
def test_checks(rng, change, status):
    hbm, spad = _memories(rng)
    if change.get("gather"):
        _page_list(hbm, 4096, [0x100, 0x200, 0x300, 0x400])
    cmd = make_dma_command(**{**_GOOD, **change})
    assert check_dma(CFG, cmd, hbm=hbm) is status
    if status is S.SUCCESS:
        _run_and_compare(cmd, hbm, spad)
        return
    h0, s0 = hbm.copy(), spad.copy()
    assert run_dma(CFG, cmd, hbm, spad) is status
    np.testing.assert_array_equal(hbm, h0)
    np.testing.assert_array_equal(spad, s0)


@pytest.mark.parametrize("lo, hi, status", [
    (4096 + 16, 4096 + 32, S.SUCCESS),       # in the gap after row 0
    (4096 + 15, 4096 + 32, S.OVERLAP),       # last byte of row 0
    (4096 + 3 * 32 + 15, 1 << 40, S.OVERLAP),  # last byte of row 3
    (4096 + 3 * 32 + 16, 1 << 40, S.SUCCESS),
    (0, 4096, S.SUCCESS),                     # ends where row 0 starts
    (0, 4097, S.OVERLAP),
    (5000, 5000, S.SUCCESS),                  # empty
])
def test_store_over_a_protected_range(rng, lo, hi, status):
    hbm, spad = _memories(rng)
    store = make_dma_command(**{**_GOOD, "store": 1})
    h0 = hbm.copy()
    protect = [(1 << 19, (1 << 19) + 128), (lo, hi)]
    assert check_dma(CFG, store, hbm=hbm, protect=protect) is status
    assert run_dma(CFG, store, hbm, spad, protect=protect) is status
    if status is not S.SUCCESS:
        np.testing.assert_array_equal(hbm, h0)
    # A load writes only the scratchpad: rings in HBM do not matter.
    load = make_dma_command(**_GOOD)
    assert check_dma(CFG, load, hbm=hbm, protect=protect) is S.SUCCESS


@pytest.mark.parametrize("pages, status", [
    ([0x100, 0x200, 0x300, 0x400], S.SUCCESS),
    ([0x100, 0x202, 0x300, 0x400], S.ADDR_ALIGN),
    ([0x100, HBM - 16, 0x300, 0x400], S.ADDR_RANGE),     # + offset 4 + 16 bytes > HBM
    ([0x100, HBM - 20, 0x300, 0x400], S.SUCCESS),        # ends exactly at the end
    ([0x100, 1 << 63, 0x302, 0x400], S.ADDR_RANGE),      # the first bad entry decides …
    ([0x100, 0x102, HBM, 0x400], S.ADDR_ALIGN),
    ([0x100, 0x200, 0x300, (1 << 64) - 4], S.ADDR_RANGE),  # entry + offset wraps 64 bits
    ([(1 << 64) - 2, 0x200, 0x300, 0x400], S.ADDR_ALIGN),  # … align before range, per entry
])
def test_gather_page_entries(rng, pages, status):
    hbm, spad = _memories(rng)
    _page_list(hbm, 4096, pages)
    cmd = make_dma_command(**{**_GOOD, "gather": 1, "hbm_stride": 4})
    assert check_dma(CFG, cmd, hbm=hbm) is status
    if status is S.SUCCESS:
        _run_and_compare(cmd, hbm, spad)
        return
    h0, s0 = hbm.copy(), spad.copy()
    assert run_dma(CFG, cmd, hbm, spad) is status
    # Every entry is checked before any row is copied: the good rows 0 … were not copied.
    np.testing.assert_array_equal(spad, s0)
    np.testing.assert_array_equal(hbm, h0)


@pytest.mark.parametrize("at, status", [(HBM - 32, S.SUCCESS), (HBM - 24, S.ADDR_RANGE)])
def test_gather_page_list_at_the_end_of_hbm(at, status):
    hbm, spad = np.zeros(HBM, np.uint8), np.zeros(SPAD, np.uint8)   # entries: page 0
    cmd = make_dma_command(gather=1, rows=4, row_bytes=16, spad_stride=16, hbm_addr=at)
    assert check_dma(CFG, cmd, hbm=hbm) is status
    assert run_dma(CFG, cmd, hbm, spad) is status


def test_gather_with_an_offset_past_the_memory():
    hbm = np.zeros(HBM, np.uint8)
    _page_list(hbm, 0, [0])
    cmd = make_dma_command(gather=1, rows=1, row_bytes=16, hbm_addr=0, hbm_stride=HBM)
    assert check_dma(CFG, cmd, hbm=hbm) is S.ADDR_RANGE


def test_bad_command_dicts():
    hbm, spad = np.zeros(HBM, np.uint8), np.zeros(SPAD, np.uint8)
    with pytest.raises(ValueError):
        make_dma_command(bogus=1)
    with pytest.raises(ValueError):
        check_dma(CFG, make_dma_command(rows=1 << 32), hbm=hbm)
    with pytest.raises(ValueError):
        check_dma(CFG, {"rows": 1}, hbm=hbm)
    with pytest.raises(ValueError):
        run_dma(CFG, make_dma_command(rows=1, row_bytes=4), hbm, spad[:-4])


def test_single_row_ignores_a_huge_stride():
    """With one row the strides are never used, whatever their value (even ≥ 2**63)."""
    cfg = TINY.replace(name="TINY_1M", hbm_bytes=1 << 20)
    hbm = np.arange(cfg.hbm_bytes, dtype=np.uint64).astype(np.uint8)
    spad = np.zeros(cfg.spad_bytes, np.uint8)
    cmd = make_dma_command(rows=1, row_bytes=8, hbm_addr=64, hbm_stride=(1 << 64) - 4,
                           spad_stride=(1 << 32) - 4)
    assert run_dma(cfg, cmd, hbm, spad) is Status.SUCCESS
    assert (spad[:8] == hbm[64:72]).all() and not spad[8:].any()


def test_single_row_store_near_a_ring_ignores_a_huge_stride():
    cfg = TINY.replace(name="TINY_1M", hbm_bytes=1 << 20)
    hbm = np.zeros(cfg.hbm_bytes, np.uint8)
    spad = np.full(cfg.spad_bytes, 7, np.uint8)
    cmd = make_dma_command(store=1, rows=1, row_bytes=8, hbm_addr=4096,
                           hbm_stride=(1 << 64) - 4)
    assert run_dma(cfg, cmd, hbm, spad, protect=[(0, 4096)]) is Status.SUCCESS
    assert (hbm[4096:4104] == 7).all()
    assert run_dma(cfg, cmd, hbm, spad, protect=[(4100, 4200)]) is Status.OVERLAP
