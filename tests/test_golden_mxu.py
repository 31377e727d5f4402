"""Golden model of the matrix engine (``golden_model.mxu``) against ``docs/mxu.md``.

- Packers: an independent per-element reading of the scratchpad written from the layout table
  (and directed byte images), with the unused positions filled with garbage.
- ``MxuModel.execute``: equal to ``mac_reference`` on the caller's arrays, for every format
  class and shapes 1, < R, = R, not a multiple, ≥ 8R, on garbage-filled memories; C is read
  back word by word and every other word is checked untouched.
- ``accumulate = 1`` chaining, tiling invariance (``tiled_gemm`` and array sizes), every check
  of the command (directed, with the model left unchanged), INT8 wrap-around.

Set ``SEED`` to replay random data (printed with each failing test's output).
"""

import os

import numpy as np
import pytest

from golden_model.arith import mac_reference
from golden_model.mxu import (
    MxuError, MxuModel, check_command, gemm, make_command, operand_bytes, pack_a, pack_b,
    pack_scales_a, pack_scales_b, read_c, tiled_gemm, unpack_a, unpack_b, unpack_scales_a,
    unpack_scales_b, validate_command, write_c,
)
from rtl.config import FPGA_ECP5, M890, TINY, ZW810E
from rtl.layouts import (
    FLOAT_SPECS, MAX_DIM, MAX_K, Format, Specials, Status, code_width, element_format, is_mx,
)


SEED = int(os.environ.get("SEED", "20240612"))
F = Format
CONFIGS = (TINY, ZW810E, M890, FPGA_ECP5)
S = Status


@pytest.fixture
def rng():
    print(f"SEED={SEED} (set the SEED environment variable to replay)")
    return np.random.default_rng(SEED)


def cdiv(a, b):
    return -(-a // b)


# --------------------------------------------------------------------------------------------
# Random operands
# --------------------------------------------------------------------------------------------

def special_codes(fmt):
    """Zeros, infinities, NaNs, max and the smallest subnormal of an element format."""
    efmt = element_format(fmt)
    if efmt is F.INT8:
        return [0, 0x7F, 0x80, 0xFF]
    spec = FLOAT_SPECS[efmt]
    sign = 1 << (spec.width - 1)
    top = (1 << spec.ebits) - 1
    out = [0, sign, 1, sign | 1, spec.max_code, sign | spec.max_code]
    if spec.specials is Specials.IEEE:
        inf = top << spec.mbits
        out += [inf, sign | inf, inf | 1, sign | inf | ((1 << spec.mbits) - 1)]
    elif spec.specials is Specials.FN:
        out += [sign - 1, 2 * sign - 1]
    return out


def random_codes(fmt, shape, rng, special=0.02):
    """Codes of moderate magnitude, ~10 % subnormal or zero, a fraction ``special`` of them
    zeros, infinities, NaNs, max or min subnormal."""
    efmt = element_format(fmt)
    if efmt is F.INT8:
        return rng.integers(0, 256, shape)
    spec = FLOAT_SPECS[efmt]
    if spec.width == 4:
        codes = rng.integers(0, 16, shape)
    else:
        top = (1 << spec.ebits) - 1
        span = min(12, spec.bias - 1)
        field = rng.integers(max(1, spec.bias - span), min(top - 1, spec.bias + span) + 1, shape)
        field = np.where(rng.random(shape) < 0.1, 0, field)
        mant = rng.integers(0, 1 << spec.mbits, shape)
        sign = rng.integers(0, 2, shape)
        codes = (sign << (spec.width - 1)) | (field << spec.mbits) | mant
    pick = rng.random(shape) < special
    return np.where(pick, rng.choice(special_codes(fmt), shape), codes)


def random_scales(shape, rng, nan=0.02):
    """Realistic E8M0 scales 120 … 134, a few 0xFF (NaN)."""
    s = rng.integers(120, 135, shape)
    return np.where(rng.random(shape) < nan, 0xFF, s)


def operands(fa, fb, m, n, k, rng):
    """Random A, B and (MX only) scales; specials rare enough that most outputs stay finite."""
    p = min(0.02, 0.25 / k)
    a, b = random_codes(fa, (m, k), rng, p), random_codes(fb, (k, n), rng, p)
    kb = cdiv(k, 32)
    sa = random_scales((m, kb), rng, min(0.02, 0.25 / kb)) if is_mx(fa) else None
    sb = random_scales((kb, n), rng, min(0.02, 0.25 / kb)) if is_mx(fb) else None
    return a, b, sa, sb


# --------------------------------------------------------------------------------------------
# Independent layout reference (per element, straight from the table of docs/mxu.md)
# --------------------------------------------------------------------------------------------

def code_at(mem, vec_addr, i, w):
    """Code ``i`` of the little-endian vector at byte ``vec_addr`` (w bits per code)."""
    bit = i * w
    byte = vec_addr + bit // 8
    if w == 4:
        return (int(mem[byte]) >> (bit % 8)) & 0xF
    return int.from_bytes(bytes(mem[byte:byte + w // 8]), "little")


def ref_sizes(cfg, fa, fb, m, n, k):
    r, c = cfg.mxu_rows, cfg.mxu_cols
    va, vb = r * code_width(fa) // 8, c * code_width(fb) // 8
    kt, nt, kb = cdiv(k, r), cdiv(n, c), cdiv(k, 32)
    return dict(va=va, vb=vb, kt=kt, nt=nt, kb=kb, a=kt * m * va, b=nt * k * vb,
                sa=kb * m if is_mx(fa) else 0, sb=kb * nt * c if is_mx(fb) else 0,
                c_rows=nt * m)


def ref_read_a(cfg, mem, base, m, k, fmt, pad=False):
    """A [M, K] from the layout; with ``pad`` the unused codes instead (as a list)."""
    r, w = cfg.mxu_rows, code_width(fmt)
    va = r * w // 8
    out, unused = np.zeros((m, k), np.int64), []
    for kt in range(cdiv(k, r)):
        for mm in range(m):
            for i in range(r):
                code = code_at(mem, base + (kt * m + mm) * va, i, w)
                if kt * r + i < k:
                    out[mm, kt * r + i] = code
                else:
                    unused.append(code)
    return unused if pad else out


def ref_read_b(cfg, mem, base, k, n, fmt, pad=False):
    c, w = cfg.mxu_cols, code_width(fmt)
    vb = c * w // 8
    out, unused = np.zeros((k, n), np.int64), []
    for nt in range(cdiv(n, c)):
        for kk in range(k):
            for i in range(c):
                code = code_at(mem, base + (nt * k + kk) * vb, i, w)
                if nt * c + i < n:
                    out[kk, nt * c + i] = code
                else:
                    unused.append(code)
    return unused if pad else out


def ref_read_sa(mem, base, m, k):
    out = np.zeros((m, cdiv(k, 32)), np.int64)
    for kb in range(cdiv(k, 32)):
        for mm in range(m):
            out[mm, kb] = mem[base + kb * m + mm]
    return out


def ref_read_sb(cfg, mem, base, k, n, pad=False):
    c = cfg.mxu_cols
    nt_count = cdiv(n, c)
    out, unused = np.zeros((cdiv(k, 32), n), np.int64), []
    for kb in range(cdiv(k, 32)):
        for nt in range(nt_count):
            for i in range(c):
                byte = int(mem[base + (kb * nt_count + nt) * c + i])
                if nt * c + i < n:
                    out[kb, nt * c + i] = byte
                else:
                    unused.append(byte)
    return unused if pad else out


def ref_c_words(cfg, c_row, m, n):
    """``{(row, word): (m, n)}`` of C in the accumulator."""
    c = cfg.mxu_cols
    return {(c_row + nt * m + mm, cc): (mm, nt * c + cc)
            for nt in range(cdiv(n, c)) for mm in range(m) for cc in range(c)
            if nt * c + cc < n}


def ref_read_c(cfg, acc, c_row, m, n):
    out = np.zeros((m, n), np.uint32)
    for (row, word), (mm, nn) in ref_c_words(cfg, c_row, m, n).items():
        out[mm, nn] = acc[row, word]
    return out


# --------------------------------------------------------------------------------------------
# Packers
# --------------------------------------------------------------------------------------------

ALL_FORMATS = list(F)


def test_pack_directed_bytes():
    cfg = TINY                                                  # R = C = 4
    a = np.array([[0x1234, 0xABCD, 0x0001, 0x8000, 0x7C00]])
    assert pack_a(cfg, a, F.FP16).tolist() == [0x34, 0x12, 0xCD, 0xAB, 0x01, 0x00, 0x00, 0x80,
                                               0x00, 0x7C, 0, 0, 0, 0, 0, 0]
    # FP4: two codes per byte, lower index in the low nibble
    assert pack_b(cfg, np.array([[1, 2, 3, 4, 5]]), F.MXFP4).tolist() == [0x21, 0x43, 0x05, 0]
    assert pack_a(cfg, np.array([[0x3F800000]]), F.FP32).tolist() == [0, 0, 0x80, 0x3F] + [0] * 12
    # A vectors are ordered (kt, m): both rows' first K tile, then both rows' second
    a = np.arange(10).reshape(2, 5) + 1
    assert pack_a(cfg, a, F.FP8_E4M3).tolist() == [1, 2, 3, 4, 6, 7, 8, 9, 5, 0, 0, 0,
                                                   10, 0, 0, 0]
    # B vectors are ordered (nt, k)
    b = np.arange(10).reshape(2, 5) + 1                         # K = 2, N = 5
    assert pack_b(cfg, b, F.INT8).tolist() == [1, 2, 3, 4, 6, 7, 8, 9, 5, 0, 0, 0, 10, 0, 0, 0]
    assert pack_b(cfg, np.array([[-1, -128]]), F.INT8).tolist() == [0xFF, 0x80, 0, 0]
    assert pack_scales_a(cfg, np.array([[1, 2], [3, 4]])).tolist() == [1, 3, 2, 4]
    sb = np.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])          # KB = 2, N = 5
    assert pack_scales_b(cfg, sb).tolist() == [1, 2, 3, 4, 5, 0, 0, 0,
                                               6, 7, 8, 9, 10, 0, 0, 0]
    assert pack_scales_b(cfg, sb, fill=0xEE).tolist()[5:8] == [0xEE] * 3


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_pack_roundtrip(cfg, rng):
    r, c = cfg.mxu_rows, cfg.mxu_cols
    for fmt in ALL_FORMATS:
        for m, n, k in ((1, 1, 1), (2, c - 1, r - 1), (3, c, r), (2, c + 3, 2 * r + 1),
                        (1, 2 * c + 1, 37)):
            codes_a = random_codes(fmt, (m, k), rng, 0.1)
            codes_b = random_codes(fmt, (k, n), rng, 0.1)
            for fill in (None, rng):
                pa, pb = pack_a(cfg, codes_a, fmt, fill), pack_b(cfg, codes_b, fmt, fill)
                size = ref_sizes(cfg, fmt, fmt, m, n, k)
                assert pa.dtype == np.uint8 and pa.shape == (size["a"],)
                assert pb.dtype == np.uint8 and pb.shape == (size["b"],)
                # placed in a garbage scratchpad at an aligned base
                base_b = cdiv(size["a"] + 5, size["vb"]) * size["vb"]
                mem = rng.integers(0, 256, base_b + size["b"] + 7, dtype=np.uint8)
                mem[:size["a"]] = pa
                mem[base_b:base_b + size["b"]] = pb
                assert (ref_read_a(cfg, mem, 0, m, k, fmt) == codes_a).all()
                assert (ref_read_b(cfg, mem, base_b, k, n, fmt) == codes_b).all()
                if fill is None:
                    assert not any(ref_read_a(cfg, mem, 0, m, k, fmt, pad=True))
                    assert not any(ref_read_b(cfg, mem, base_b, k, n, fmt, pad=True))
                assert (unpack_a(cfg, pa, m, k, fmt) == codes_a).all()
                assert (unpack_b(cfg, pb, k, n, fmt) == codes_b).all()
            if is_mx(fmt):
                sa, sb = random_scales((m, cdiv(k, 32)), rng), random_scales((cdiv(k, 32), n), rng)
                psa, psb = pack_scales_a(cfg, sa), pack_scales_b(cfg, sb, fill=rng)
                assert psa.shape == (size["sa"],) and psb.shape == (size["sb"],)
                assert (ref_read_sa(psa, 0, m, k) == sa).all()
                assert (ref_read_sb(cfg, psb, 0, k, n) == sb).all()
                assert (unpack_scales_a(cfg, psa, m, k) == sa).all()
                assert (unpack_scales_b(cfg, psb, k, n) == sb).all()
                assert not any(ref_read_sb(cfg, pack_scales_b(cfg, sb), 0, k, n, pad=True))


def test_pack_garbage_fill_is_random(rng):
    # the padding really is garbage when asked (otherwise the "ignored" tests prove nothing)
    cfg = M890
    a = random_codes(F.BF16, (4, 17), rng)
    unused = ref_read_a(cfg, pack_a(cfg, a, F.BF16, rng), 0, 4, 17, F.BF16, pad=True)
    assert len(unused) == 4 * 15 and len(set(unused)) > 30


def test_operand_bytes():
    cmd = make_command(m=5, n=7, k=37, fmt_a=F.MXFP8_E4M3, fmt_b=F.MXFP4)
    assert operand_bytes(TINY, cmd) == dict(a=10 * 5 * 4, b=2 * 37 * 2, sa=2 * 5, sb=2 * 2 * 4,
                                            c_rows=10, a_align=4, b_align=2, sb_align=4)
    cmd = make_command(m=3, n=16, k=16, fmt_a=F.FP32, fmt_b=F.BF16)
    assert operand_bytes(M890, cmd) == dict(a=3 * 64, b=16 * 32, sa=0, sb=0, c_rows=3,
                                            a_align=64, b_align=32, sb_align=1)
    with pytest.raises(MxuError) as e:
        operand_bytes(M890, make_command(m=0, n=1, k=1))
    assert e.value.status is S.SIZE_RANGE


# --------------------------------------------------------------------------------------------
# Execute against mac_reference
# --------------------------------------------------------------------------------------------

PAIRS = [
    (F.FP32, F.FP32), (F.FP16, F.FP16), (F.BF16, F.BF16), (F.FP8_E4M3, F.FP8_E4M3),
    (F.FP8_E5M2, F.FP8_E5M2), (F.FP4_E2M1, F.FP4_E2M1), (F.INT8, F.INT8),
    (F.MXFP8_E4M3, F.MXFP8_E4M3), (F.MXFP4, F.MXFP4), (F.BF16, F.FP8_E4M3), (F.BF16, F.MXFP4),
    (F.MXFP8_E4M3, F.MXFP4), (F.INT8, F.FP8_E4M3), (F.MXFP4, F.FP16), (F.FP8_E5M2, F.FP32),
]


def dim(category, side, rng):
    """A dimension of one class: 1, < side, = side, not a multiple of side, ≥ 8·side."""
    if category == 0:
        return 1
    if category == 1:
        return int(rng.integers(1, side)) if side > 2 else 1
    if category == 2:
        return side
    if category == 3:
        return side * int(rng.integers(1, 3)) + int(rng.integers(1, side))
    return 8 * side + int(rng.integers(0, side))


def allocate(cfg, cmd, rng):
    """Place the regions of ``cmd`` at aligned addresses with random gaps, or return False."""
    size = operand_bytes(cfg, cmd)
    addr = 0
    for key, align, field in (("a", size["a_align"], "a_addr"), ("b", size["b_align"], "b_addr"),
                              ("sa", 1, "sa_addr"), ("sb", size["sb_align"], "sb_addr")):
        addr = cdiv(addr + int(rng.integers(0, 3)) * align, align) * align
        cmd[field] = addr
        addr += size[key]
    slack = cfg.acc_rows - size["c_rows"]
    if addr > cfg.spad_bytes or slack < 0:
        return False
    cmd["c_row"] = int(rng.integers(0, min(slack, 40) + 1))
    return True


def random_command(cfg, fa, fb, cats, rng, accumulate):
    """A command of the dimension classes ``cats`` (halving M, N, K until it fits)."""
    m, n, k = (dim(cat, side, rng) for cat, side in zip(cats, (cfg.mxu_rows, cfg.mxu_cols,
                                                                cfg.mxu_rows)))
    while True:
        cmd = make_command(m=m, n=n, k=k, fmt_a=fa, fmt_b=fb, accumulate=accumulate)
        if allocate(cfg, cmd, rng):
            return cmd
        if m > 1:
            m //= 2
        elif n > 1:
            n //= 2
        else:
            k //= 2


def garbage_model(cfg, rng):
    model = MxuModel(cfg)
    model.spad[:] = rng.integers(0, 256, cfg.spad_bytes, dtype=np.uint8)
    model.acc[:] = rng.integers(0, 1 << 32, model.acc.shape, dtype=np.uint64)
    return model


def run_and_check(model, cmd, a, b, sa, sb, rng, fill=True):
    """Load, execute and compare with mac_reference on the arrays; return the result."""
    cfg = model.cfg
    m, n, c_row = cmd["m"], cmd["n"], cmd["c_row"]
    fa, fb = F(cmd["fmt_a"]), F(cmd["fmt_b"])
    model.load(cmd, a, b, sa, sb, fill=rng if fill else None)
    integer = element_format(fa) is F.INT8 and element_format(fb) is F.INT8
    before_c = ref_read_c(cfg, model.acc, c_row, m, n)
    init = (before_c.view(np.int32) if integer else before_c) if cmd["accumulate"] else None
    spad, acc = model.spad.copy(), model.acc.copy()

    status, flags = model.execute(cmd)

    want = mac_reference(a, b, fa, fb, sa, sb, acc=init)
    assert status is S.SUCCESS
    assert flags == want.sticky
    got = ref_read_c(cfg, model.acc, c_row, m, n)
    bad = np.argwhere(got != want.values.view(np.uint32))
    assert bad.size == 0, f"{len(bad)} wrong words, first C{tuple(bad[0])}: {cmd}"
    touched = np.zeros(acc.shape, bool)
    for row, word in ref_c_words(cfg, c_row, m, n):
        touched[row, word] = True
    assert (model.acc[~touched] == acc[~touched]).all()
    assert (model.spad == spad).all()
    assert (read_c(cfg, model.acc, cmd).view(np.uint32) == got).all()
    return want


@pytest.mark.parametrize("fa,fb", PAIRS, ids=lambda f: f.name)
def test_execute_matches_mac_reference(fa, fb, rng):
    # every class of K, and M, N of rotated classes, on three array sizes
    configs = [(TINY, ZW810E), (ZW810E, M890), (TINY, M890), (FPGA_ECP5, M890), (TINY, M890)]
    for cat in range(5):
        for cfg in configs[cat]:
            cats = (cat + 1) % 5, (cat + 3) % 5, cat
            cmd = random_command(cfg, fa, fb, cats, rng, accumulate=int(rng.integers(0, 2)))
            a, b, sa, sb = operands(fa, fb, cmd["m"], cmd["n"], cmd["k"], rng)
            run_and_check(garbage_model(cfg, rng), cmd, a, b, sa, sb, rng)


def test_execute_specials_and_signed_int8(rng):
    # directed values: -0 products, inf, NaN scales; INT8 given as signed values
    cfg = TINY
    model = garbage_model(cfg, rng)
    cmd = make_command(m=2, n=3, k=33, fmt_a=F.MXFP8_E4M3, fmt_b=F.FP8_E5M2, b_addr=1024,
                       sa_addr=999, c_row=7)
    a = np.zeros((2, 33), np.int64)
    a[0, 32] = 0x80                                              # -0 in the partial block
    a[1] = 0x38                                                  # 1.0
    b = np.zeros((33, 3), np.int64)
    b[:, 1] = 0x7C                                               # +inf
    b[32, 2] = 0x3C                                              # 1.0
    sa = np.array([[127, 127], [127, 0xFF]])                     # row 1, block 1 NaN
    want = run_and_check(model, cmd, a, b, sa, None, rng)
    assert want.values[0].tolist() == [0, 0x7FC00000, 0]           # 0·inf invalid; +0 + -0
    assert want.values[1].tolist() == [0x7FC00000] * 3
    assert want.sticky == 1
    cmd = make_command(m=3, n=5, k=9, fmt_a=F.INT8, fmt_b=F.INT8, b_addr=4096)
    a, b = rng.integers(-128, 128, (3, 9)), rng.integers(-128, 128, (9, 5))
    run_and_check(model, cmd, a, b, None, None, rng)
    assert (read_c(cfg, model.acc, cmd) == a @ b).all()


def test_mx_partial_block_is_block_rule(rng):
    # the arith extension: ceil(K/32) blocks, the last partial, is the per-element MX rule
    for fa, fb in ((F.MXFP8_E4M3, F.MXFP4), (F.MXFP4, F.BF16), (F.FP16, F.MXFP8_E4M3)):
        m, n, k = 3, 4, 70
        a, b, sa, sb = operands(fa, fb, m, n, k, rng)
        got = mac_reference(a, b, fa, fb, sa, sb)
        ka = np.arange(k) // 32
        ea = sa[:, ka] if is_mx(fa) else None
        eb = sb[ka, :] if is_mx(fb) else None
        want = mac_reference(a, b, element_format(fa), element_format(fb), ea, eb)
        assert (got.values == want.values).all() and (got.flags == want.flags).all()
    with pytest.raises(ValueError, match=r"expected \(3, 3\).*last block is partial"):
        mac_reference(a, b, F.MXFP4, F.FP16, np.zeros((3, 2), np.uint8))


# --------------------------------------------------------------------------------------------
# Accumulate and tiling
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fa,fb", [(F.FP32, F.FP32), (F.BF16, F.FP8_E4M3), (F.INT8, F.INT8),
                                   (F.MXFP8_E4M3, F.MXFP4), (F.FP8_E5M2, F.FP16)],
                         ids=lambda f: f.name)
def test_accumulate_chains_k_halves(fa, fb, rng):
    for cfg, m_max, n_max in ((TINY, 10, 17), (M890, 20, 40)):
        m, n, k = int(rng.integers(1, m_max)), int(rng.integers(1, n_max)), \
            int(rng.integers(66, 130))
        a, b, sa, sb = operands(fa, fb, m, n, k, rng)
        k1 = 32 * int(rng.integers(1, k // 32)) if is_mx(fa) or is_mx(fb) else \
            int(rng.integers(1, k))
        kb1 = k1 // 32
        whole = garbage_model(cfg, rng)
        cmd = make_command(m=m, n=n, k=k, fmt_a=fa, fmt_b=fb)
        assert allocate(cfg, cmd, rng)
        whole.load(cmd, a, b, sa, sb, fill=rng)
        status, flags = whole.execute(cmd)
        assert status is S.SUCCESS
        split = garbage_model(cfg, rng)
        split.acc[:] = whole.acc                              # same words outside C
        c_before = rng.integers(0, 1 << 32, (m, n), dtype=np.uint64).astype(np.uint32)
        write_c(cfg, split.acc, cmd, c_before)                # garbage C, overwritten first
        total_flags = 0
        for part, (k0, k_end) in enumerate(((0, k1), (k1, k))):
            sub = make_command(m=m, n=n, k=k_end - k0, fmt_a=fa, fmt_b=fb, accumulate=part,
                               c_row=cmd["c_row"])
            assert allocate(cfg, sub, rng)
            sub["c_row"] = cmd["c_row"]
            b0, b1 = (0, kb1) if part == 0 else (kb1, None)
            split.load(sub, a[:, k0:k_end], b[k0:k_end],
                       None if sa is None else sa[:, b0:b1], None if sb is None else sb[b0:b1],
                       fill=rng)
            status, part_flags = split.execute(sub)
            assert status is S.SUCCESS
            total_flags |= part_flags
        assert (split.acc == whole.acc).all()
        assert total_flags == flags


@pytest.mark.parametrize("fa,fb", [(F.FP32, F.FP32), (F.BF16, F.FP8_E4M3), (F.INT8, F.INT8),
                                   (F.MXFP8_E4M3, F.MXFP4), (F.BF16, F.MXFP4), (F.FP16, F.FP16),
                                   (F.FP4_E2M1, F.INT8)],
                         ids=lambda f: f.name)
def test_tiling_invariance(fa, fb, rng):
    m, n, k = 13, 11, 101
    a, b, sa, sb = operands(fa, fb, m, n, k, rng)
    integer = fa is F.INT8 and fb is F.INT8
    acc = (rng.integers(-2**31, 2**31, (m, n)) if integer
           else rng.standard_normal((m, n)).astype(np.float32).view(np.uint32))
    for initial in (None, acc):
        whole = gemm(a, b, fa, fb, sa, sb, acc=initial)
        assert (whole.values == mac_reference(a, b, fa, fb, sa, sb, acc=initial).values).all()
        tiles = [(m, n, k), (1, 1, k), (m, n, 1), (4, 4, 4), (16, 8, 32), (3, 5, 7)]
        while len(tiles) < 10:                  # random sizes, at most ~200 mac_reference calls
            tile = tuple(int(x) for x in rng.integers(1, (m + 1, n + 1, k + 1)))
            if cdiv(m, tile[0]) * cdiv(n, tile[1]) * cdiv(k, tile[2]) <= 200:
                tiles.append(tile)
        for tm, tn, tk in tiles:
            got = tiled_gemm(a, b, fa, fb, sa, sb, acc=initial, tile_m=tm, tile_n=tn, tile_k=tk)
            assert got.values.dtype == whole.values.dtype
            assert (got.values == whole.values).all(), (tm, tn, tk)
            assert (got.flags == whole.flags).all(), (tm, tn, tk)


def test_array_size_invariance(rng):
    # the same command on every preset (R = 4, 8, 16) gives the same bits
    for fa, fb in ((F.BF16, F.MXFP4), (F.FP32, F.FP8_E5M2), (F.INT8, F.INT8)):
        m, n, k = 9, 37, 75
        a, b, sa, sb = operands(fa, fb, m, n, k, rng)
        results = []
        for cfg in CONFIGS:
            cmd = make_command(m=m, n=n, k=k, fmt_a=fa, fmt_b=fb)
            assert allocate(cfg, cmd, rng)
            model = garbage_model(cfg, rng)
            run_and_check(model, cmd, a, b, sa, sb, rng)
            results.append(read_c(cfg, model.acc, cmd))
        assert all((r == results[0]).all() for r in results)


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------

def base_command(**changes):
    """A valid M890 command (FP8_E4M3 × MXFP4, M = 3, N = 20, K = 40) with ``changes``."""
    cmd = make_command(m=3, n=20, k=40, fmt_a=F.FP8_E4M3, fmt_b=F.MXFP4, a_addr=0x1000,
                       b_addr=0x2000, sa_addr=0x3000, sb_addr=0x3100, c_row=10)
    cmd.update({k: (v.value if isinstance(v, F) else v) for k, v in changes.items()})
    return cmd


# M890: R = C = 16; VA = 16 (FP8 A), VB = 8 (FP4 B); KT = 3, NT = 2, KB = 2.
SPAD, ROWS = M890.spad_bytes, M890.acc_rows
A_SIZE, B_SIZE, SB_SIZE = 3 * 3 * 16, 2 * 40 * 8, 2 * 2 * 16

CHECK_CASES = [
    # 1. reserved, before everything else
    (dict(reserved=1), S.NONZERO_RESERVED),
    (dict(reserved=0x7F, fmt_a=15, m=0, a_addr=1), S.NONZERO_RESERVED),
    # 2. formats: not a Format, or one the chip does not implement (see test_check_formats)
    (dict(fmt_a=9), S.BAD_FORMAT),
    (dict(fmt_b=15), S.BAD_FORMAT),
    (dict(fmt_a=12, m=0, a_addr=3), S.BAD_FORMAT),
    # 3. sizes
    (dict(m=0), S.SIZE_RANGE), (dict(n=0), S.SIZE_RANGE), (dict(k=0), S.SIZE_RANGE),
    (dict(m=MAX_DIM + 1), S.SIZE_RANGE), (dict(n=MAX_DIM + 1), S.SIZE_RANGE),
    (dict(k=MAX_K + 1), S.SIZE_RANGE), (dict(m=2**32 - 1), S.SIZE_RANGE),
    (dict(k=0, a_addr=1, c_row=ROWS), S.SIZE_RANGE),
    (dict(m=MAX_DIM), S.ADDR_RANGE),                       # the size is fine, C is not
    # 4. alignment
    (dict(a_addr=0x1001), S.ADDR_ALIGN), (dict(a_addr=0x1000 + 8), S.ADDR_ALIGN),
    (dict(b_addr=0x2004), S.ADDR_ALIGN), (dict(sb_addr=0x3108), S.ADDR_ALIGN),
    (dict(a_addr=SPAD + 1), S.ADDR_ALIGN),                 # alignment is checked before range
    (dict(sa_addr=0x3001), S.SUCCESS),                     # A scales are bytes
    (dict(fmt_b=F.FP4_E2M1, sb_addr=0x3101), S.SUCCESS),   # non-MX B: sb_addr not used
    (dict(fmt_a=F.FP16, a_addr=0x1020), S.SUCCESS),        # VA = 32
    (dict(fmt_a=F.FP16, a_addr=0x1010), S.ADDR_ALIGN),
    # 5. ranges (the last byte of each region at spad_bytes - 1 is fine)
    (dict(a_addr=SPAD - A_SIZE), S.SUCCESS), (dict(a_addr=SPAD - A_SIZE + 16), S.ADDR_RANGE),
    (dict(b_addr=SPAD - B_SIZE), S.SUCCESS), (dict(b_addr=SPAD - B_SIZE + 8), S.ADDR_RANGE),
    (dict(fmt_a=F.MXFP8_E4M3, sa_addr=SPAD - 6), S.SUCCESS),
    (dict(fmt_a=F.MXFP8_E4M3, sa_addr=SPAD - 5), S.ADDR_RANGE),
    (dict(sa_addr=2**32 - 1), S.SUCCESS),                  # non-MX A: sa_addr not used
    (dict(sb_addr=SPAD - SB_SIZE), S.SUCCESS),
    (dict(sb_addr=SPAD - SB_SIZE + 16), S.ADDR_RANGE),
    (dict(fmt_b=F.FP4_E2M1, sb_addr=2**32 - 16), S.SUCCESS),
    (dict(a_addr=2**32 - 16), S.ADDR_RANGE),               # no 32-bit wrap-around
    (dict(b_addr=2**32 - 8), S.ADDR_RANGE),
    (dict(c_row=ROWS - 6), S.SUCCESS), (dict(c_row=ROWS - 5), S.ADDR_RANGE),
    (dict(c_row=2**32 - 1), S.ADDR_RANGE),
    (dict(n=16, c_row=ROWS - 3), S.SUCCESS), (dict(n=17, c_row=ROWS - 3), S.ADDR_RANGE),
    # the largest K: B (K = 65536 FP4 of one N tile) fills the whole scratchpad exactly
    (dict(m=1, n=1, k=MAX_K, fmt_b=F.FP4_E2M1, a_addr=0, b_addr=0), S.SUCCESS),
    (dict(m=1, n=1, k=MAX_K, fmt_b=F.FP4_E2M1, a_addr=0, b_addr=8), S.ADDR_RANGE),
]


@pytest.mark.parametrize("changes,want", CHECK_CASES, ids=lambda x: str(x))
def test_check_command(changes, want, rng):
    cmd = base_command(**changes)
    assert check_command(M890, cmd) is want
    if want is S.SUCCESS:
        validate_command(M890, cmd)
        return
    with pytest.raises(MxuError) as e:
        validate_command(M890, cmd)
    assert e.value.status is want and isinstance(e.value, ValueError)
    model = garbage_model(M890, rng)
    spad, acc = model.spad.copy(), model.acc.copy()
    assert model.execute(cmd) == (want, 0)
    assert (model.spad == spad).all() and (model.acc == acc).all()


def test_check_formats(rng):
    cfg = TINY.replace(formats=frozenset(F) - {F.FP4_E2M1, F.MXFP8_E4M3})
    cmd = make_command(m=1, n=1, k=1, b_addr=64, fmt_a=F.FP32, fmt_b=F.FP32)
    assert check_command(cfg, cmd) is S.SUCCESS
    for code in range(16):
        for side in ("fmt_a", "fmt_b"):
            want = S.SUCCESS if code in {f.value for f in cfg.formats} else S.BAD_FORMAT
            assert check_command(cfg, {**cmd, side: code}) is want, (side, code)
    model = garbage_model(cfg, rng)
    spad, acc = model.spad.copy(), model.acc.copy()
    assert model.execute({**cmd, "fmt_b": F.MXFP8_E4M3.value}) == (S.BAD_FORMAT, 0)
    assert (model.spad == spad).all() and (model.acc == acc).all()


def test_command_field_errors():
    cmd = base_command()
    for bad in (dict(fmt_a=16), dict(m=2**32), dict(reserved=128), dict(c_row=-1),
                dict(accumulate=2), dict(k=1.5)):
        with pytest.raises(ValueError, match="not a"):
            check_command(M890, {**cmd, **bad})
    with pytest.raises(ValueError, match="missing"):
        check_command(M890, {k: v for k, v in cmd.items() if k != "sb_addr"})
    with pytest.raises(ValueError, match="unknown"):
        make_command(opcode=1)
    assert check_command(M890, {**cmd, "accumulate": True}) is S.SUCCESS


def test_read_write_c(rng):
    cfg = TINY
    acc = rng.integers(0, 1 << 32, (cfg.acc_rows, cfg.mxu_cols), dtype=np.uint64)
    acc = acc.astype(np.uint32)
    cmd = make_command(m=3, n=6, k=1, c_row=5)
    before = acc.copy()
    values = rng.integers(0, 1 << 32, (3, 6), dtype=np.uint64).astype(np.uint32)
    write_c(cfg, acc, cmd, values)
    assert (ref_read_c(cfg, acc, 5, 3, 6) == values).all()
    assert (read_c(cfg, acc, cmd) == values).all()
    words = ref_c_words(cfg, 5, 3, 6)
    assert len(words) == 18 and (5, 0) in words and (8, 1) in words and (8, 2) not in words
    changed = {tuple(x) for x in np.argwhere(acc != before)}
    assert changed <= set(words)
    icmd = {**cmd, "fmt_a": F.INT8.value, "fmt_b": F.INT8.value}
    assert read_c(cfg, acc, icmd).dtype == np.int32
    assert (read_c(cfg, acc, icmd) == values.view(np.int32)).all()
    with pytest.raises(MxuError) as e:
        read_c(cfg, acc, {**cmd, "c_row": cfg.acc_rows - 5})
    assert e.value.status is S.ADDR_RANGE


# --------------------------------------------------------------------------------------------
# INT8
# --------------------------------------------------------------------------------------------

def test_int8_accumulator_wraps(rng):
    cfg = TINY
    model = garbage_model(cfg, rng)
    cmd = make_command(m=2, n=2, k=3, fmt_a=F.INT8, fmt_b=F.INT8, b_addr=64, c_row=4,
                       accumulate=1)
    write_c(cfg, model.acc, cmd, np.array([[2**31 - 1, -2**31], [5, -1]]))
    a = np.array([[-128, -128, -128], [0, 0, 1]])
    b = np.array([[-128, 127], [-128, 127], [-128, 127]])
    model.load(cmd, a, b)
    assert model.execute(cmd) == (S.SUCCESS, 0)
    want = np.array([[2**31 - 1 + 3 * 16384 - 2**32, -2**31 - 3 * 16256 + 2**32],
                     [5 - 128, -1 + 127]])
    got = read_c(cfg, model.acc, cmd)
    assert got.dtype == np.int32 and (got == want).all()
    assert model.acc[4, 0] == (2**31 - 1 + 3 * 16384) & 0xFFFFFFFF     # raw word bits
    # INT8 × FP8 is the float path: FP32 bits, 2 · (-128) · 1.5 = -384
    fcmd = make_command(m=1, n=1, k=2, fmt_a=F.INT8, fmt_b=F.FP8_E4M3, b_addr=64)
    model.load(fcmd, np.array([[-128, -128]]), np.array([[0x3C], [0x3C]]))
    assert model.execute(fcmd) == (S.SUCCESS, 0)
    assert model.acc[0, 0] == np.float32(-384).view(np.uint32)


def test_tiling_invariance_channel_scales(rng):
    # per-row (A) and per-column (B) scales of non-MX operands are sliced with their tiles
    m, n, k = 7, 9, 40
    a, b, _, _ = operands(F.FP8_E4M3, F.FP8_E5M2, m, n, k, rng)
    sa, sb = random_scales((m, 1), rng), random_scales((1, n), rng)
    whole = gemm(a, b, F.FP8_E4M3, F.FP8_E5M2, sa, sb)
    for tm, tn, tk in ((2, 3, 5), (7, 1, 13), (1, 9, 40)):
        got = tiled_gemm(a, b, F.FP8_E4M3, F.FP8_E5M2, sa, sb, tile_m=tm, tile_n=tn, tile_k=tk)
        assert (got.values == whole.values).all() and (got.flags == whole.flags).all()
