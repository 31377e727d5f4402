"""The vector unit's command model (golden_model.vpu.VpuModel) against the op functions.

The RTL regression compares the Verilated engine with VpuModel; these tests tie VpuModel's
reading of the operand layouts and its composition of steps to the op functions of
golden_model.vpu (themselves checked against float64 references and ml_dtypes).
"""

import numpy as np
import pytest

from golden_model import formats
from golden_model import vpu
from golden_model.vpu import VpuModel, check_vpu_command, encode_vpu_command, make_vpu_command
from rtl.config import TINY, ZW810E
from rtl.layouts import VPU_COMMAND, Format, Status, VpuCmd

F32 = np.float32


def _row_major(cfg, addr, length, rows, space=0):
    """Operand dict + helpers for rows stored one after another."""
    v = cfg.vpu_lanes
    nch = -(-length // v)
    if space:
        return {"space": 1, "addr": addr, "chunk": 1, "row": nch}
    return {"space": 0, "addr": addr, "chunk": 4 * v, "row": 4 * v * nch}


def _put(model, op, x):
    for r, row in enumerate(np.atleast_2d(x)):
        model.write(vpu._parse(make_vpu_command(VpuCmd.ADD, a=op)),
                    vpu._Operand("a", op["space"], 32, model.cfg.vpu_lanes, 0, 0,
                                 4 * model.cfg.vpu_lanes if op["space"] == 0 else 1),
                    r, np.asarray(row, F32).view(np.uint32))


def _get(model, op, rows, length):
    o = vpu._Operand("a", op["space"], 32, model.cfg.vpu_lanes, 0, 0,
                     4 * model.cfg.vpu_lanes if op["space"] == 0 else 1)
    f = vpu._parse(make_vpu_command(VpuCmd.ADD, a=op))
    return np.stack([model.read(f, o, r, length).view(F32) for r in range(rows)])


@pytest.mark.parametrize("cfg", [TINY, ZW810E], ids=lambda c: c.name)
@pytest.mark.parametrize("space", [0, 1])
def test_softmax_and_rmsnorm_commands_equal_the_functions(cfg, space):
    rng = np.random.default_rng(1)
    L, R = 3 * cfg.vpu_lanes + 1, 3
    x = rng.standard_normal((R, L)).astype(F32) * 3
    g = rng.standard_normal(L).astype(F32)
    m = VpuModel(cfg)
    a = _row_major(cfg, 0, L, R, space)
    gain = dict(_row_major(cfg, 2048, L, 1), row=0)
    dst = _row_major(cfg, 4096, L, R)
    _put(m, a, x)
    _put(m, gain, g)
    st, fl = m.execute(make_vpu_command(VpuCmd.SOFTMAX, length=L, rows=R, a=a, dst=dst,
                                        causal=1, query=2))
    assert st is Status.SUCCESS
    want = vpu.softmax(x, query_index=np.arange(R) + 2)
    assert np.array_equal(_get(m, dst, R, L).view(np.uint32), want.view(np.uint32))
    st, _ = m.execute(make_vpu_command(VpuCmd.RMSNORM, length=L, rows=R, a=a, b=gain, dst=dst,
                                       scalar=float(F32(1 / L)), scalar2=1e-6))
    want = vpu.rmsnorm(x, g, F32(1e-6))
    assert np.array_equal(_get(m, dst, R, L).view(np.uint32), want.view(np.uint32))


def test_rope_as_two_commands_equals_rope():
    cfg = TINY
    rng = np.random.default_rng(2)
    d, R = 2 * 3 * cfg.vpu_lanes, 2
    x = rng.standard_normal((R, d)).astype(F32)
    ang = rng.random((R, d // 2)) * 10
    cos, sin = np.cos(ang).astype(F32), np.sin(ang).astype(F32)
    m = VpuModel(cfg)
    h = d // 2
    ops = {k: _row_major(cfg, 1024 * i, h, R) for i, k in enumerate(("x1", "x2", "c", "s",
                                                                      "o1", "o2"))}
    _put(m, ops["x1"], x[:, :h])
    _put(m, ops["x2"], x[:, h:])
    _put(m, ops["c"], cos)
    _put(m, ops["s"], sin)
    for op, a, b, o in ((VpuCmd.ROPE_LO, "x1", "x2", "o1"), (VpuCmd.ROPE_HI, "x2", "x1", "o2")):
        st, _ = m.execute(make_vpu_command(op, length=h, rows=R, a=ops[a], b=ops[b],
                                           c=ops["c"], d=ops["s"], dst=ops[o]))
        assert st is Status.SUCCESS
    got = np.concatenate([_get(m, ops["o1"], R, h), _get(m, ops["o2"], R, h)], axis=1)
    assert np.array_equal(got.view(np.uint32), vpu.rope(x, cos, sin).view(np.uint32))


def test_mx_conversion_and_gather():
    cfg = TINY
    rng = np.random.default_rng(3)
    L = 64
    x = rng.standard_normal((2, L)).astype(F32)
    m = VpuModel(cfg)
    a = _row_major(cfg, 0, L, 2)
    _put(m, a, x)
    codes = {"addr": 2048, "chunk": cfg.vpu_lanes // 2, "row": L // 2}
    scales = {"addr": 3000, "chunk": 1, "row": 2}
    st, _ = m.execute(make_vpu_command(VpuCmd.CVT_TO, fmt=Format.MXFP4, length=L, rows=2,
                                       a=a, b=scales, dst=codes))
    assert st is Status.SUCCESS
    want_codes, want_scales = formats.mx_quantize(x, Format.MXFP4)
    packed = (want_codes[:, 0::2] | (want_codes[:, 1::2] << 4)).astype(np.uint8)
    assert np.array_equal(m.spad[2048:2048 + L].reshape(2, -1), packed)
    assert np.array_equal(m.spad[3000:3004].reshape(2, 2), want_scales)
    # Gather rows 1, 0, 1 of the table a; an index past the table writes nothing.
    idx = {"addr": 4096, "chunk": 0, "row": 4 * cfg.vpu_lanes}
    for r, i in enumerate((1, 0, 1)):
        m.spad[4096 + r * 16:4100 + r * 16] = np.array([i], np.uint32).view(np.uint8)
    dst = _row_major(cfg, 8192, L, 3)
    st, _ = m.execute(make_vpu_command(VpuCmd.GATHER, length=L, rows=3, query=2, a=a, b=idx,
                                       dst=dst))
    assert st is Status.SUCCESS
    assert np.array_equal(_get(m, dst, 3, L), x[[1, 0, 1]])
    m.spad[4096 + 32:4100 + 32] = np.array([2], np.uint32).view(np.uint8)
    before = m.spad.copy()
    st, fl = m.execute(make_vpu_command(VpuCmd.GATHER, length=L, rows=3, query=2, a=a, b=idx,
                                        dst=_row_major(cfg, 12288, L, 3)))
    assert (st, fl) == (Status.INDEX_RANGE, 0)
    assert np.array_equal(m.spad, before)


@pytest.mark.parametrize("change, status", [
    (dict(op=0x07), Status.BAD_OPCODE),
    (dict(reserved=2), Status.NONZERO_RESERVED),
    (dict(causal=1), Status.NONZERO_RESERVED),
    (dict(fmt=Format.BF16.value), Status.BAD_FORMAT),
    (dict(length=0), Status.SIZE_RANGE),
    (dict(rows=1 << 20), Status.SIZE_RANGE),
    (dict(a={"addr": 4}), Status.ADDR_ALIGN),
    (dict(dst={"addr": TINY.spad_bytes}), Status.ADDR_RANGE),
    (dict(b={"space": 1, "addr": TINY.acc_rows}), Status.ADDR_RANGE),
])
def test_checks(change, status):
    cmd = make_vpu_command(VpuCmd.ADD, length=5, rows=1, b={"addr": 64}, dst={"addr": 128})
    for k, v in change.items():
        if isinstance(v, dict):
            cmd[k].update(v)
        else:
            cmd[k] = v
    assert check_vpu_command(TINY, cmd)[0] is status
    m = VpuModel(TINY)
    m.spad[:] = 7
    assert m.execute(cmd) == (status, 0)
    assert (m.spad == 7).all()


def test_encoding_puts_fields_at_their_offsets():
    cmd = make_vpu_command(VpuCmd.SOFTMAX, length=300, rows=7, causal=1, query=9,
                           scalar=1.5, a={"addr": 0x40, "row": 0x80}, dst={"space": 1})
    bits = encode_vpu_command(cmd)
    fields = dict(VPU_COMMAND)
    assert (bits >> fields["op"].offset) & 0xFF == VpuCmd.SOFTMAX.value
    assert (bits >> fields["length"].offset) & 0xFFFFFFFF == 300
    assert (bits >> fields["scalar"].offset) & 0xFFFFFFFF == 0x3FC00000
    a = bits >> fields["a"].offset
    assert a & 0xFFFFFFFF == 0x40 and (a >> 64) & 0xFFFFFFFF == 0x80
    assert (bits >> (fields["dst"].offset + 96)) & 1 == 1
    with pytest.raises(ValueError):
        make_vpu_command(VpuCmd.ADD, bogus=1)


_ALL_ROWS_OPS = [VpuCmd.ADD, VpuCmd.MUL, VpuCmd.MAX, VpuCmd.LT, VpuCmd.SCALE, VpuCmd.BCAST,
                 VpuCmd.EXP, VpuCmd.SILU, VpuCmd.SWIGLU, VpuCmd.ROPE_LO, VpuCmd.ROPE_HI,
                 VpuCmd.SUM, VpuCmd.SUMSQ, VpuCmd.RMAX, VpuCmd.ARGMAX, VpuCmd.RMSNORM,
                 VpuCmd.SOFTMAX]


@pytest.mark.parametrize("seed", range(6))
def test_all_rows_at_once_equals_row_by_row(seed, monkeypatch):
    """The model runs independent rows in one vectorised pass; the result, memory and flags
    must be those of the row-by-row order, also when rows overlap (shifted destinations,
    shared vectors, in place) and the fast path must step aside."""
    cfg = TINY
    rng = np.random.default_rng(seed)
    V, vb = cfg.vpu_lanes, 4 * cfg.vpu_lanes
    independent = VpuModel._rows_independent
    paths = []

    def spy(self, *a):
        paths.append(independent(self, *a))
        return paths[-1]
    for op in _ALL_ROWS_OPS:
        rows, length = int(rng.integers(2, 6)), int(rng.integers(1, 3 * V + 2))
        nch = -(-length // V)

        def operand(kind, rows=rows, nch=nch):
            space = int(rng.integers(0, 2))
            if space == 1:
                chunk = rows if kind != "shared" else 1
                return {"addr": int(rng.integers(0, 8)), "chunk": chunk,
                        "row": 0 if kind == "shared" else int(rng.integers(1, 3)), "space": 1}
            row = 0 if kind == "shared" else int(rng.integers(nch - 1, nch + 2)) * vb
            return {"addr": int(rng.integers(0, 16)) * vb, "chunk": vb,
                    "row": max(row, 0), "space": 0}

        fields = {n: operand("shared" if n == "b" and rng.random() < 0.3 else "row")
                  for n in ("a", "b", "c", "d")}
        mode = rng.integers(0, 3)
        fields["dst"] = (dict(fields["a"]) if mode == 0 else operand("row"))
        if mode == 2:                              # a destination one row ahead of a source
            fields["dst"]["addr"] = fields["a"]["addr"] + fields["a"]["row"]
            fields["dst"]["space"] = fields["a"]["space"]
            fields["dst"]["chunk"], fields["dst"]["row"] = fields["a"]["chunk"], \
                max(fields["a"]["row"], 1 if fields["a"]["space"] else vb)
        cmd = make_vpu_command(op, rows=rows, length=length, scalar=float(rng.normal()),
                               scalar2=1e-6, causal=int(op is VpuCmd.SOFTMAX),
                               query=int(rng.integers(0, length)), **fields)
        if check_vpu_command(cfg, cmd)[0] is not Status.SUCCESS:
            continue
        spad = rng.integers(0, 256, cfg.spad_bytes, dtype=np.uint8)
        floats = rng.normal(0, 3, cfg.spad_bytes // 4).astype(np.float32)
        spad[:] = floats.view(np.uint8)
        acc = rng.normal(0, 3, (cfg.acc_rows, cfg.mxu_cols)).astype(np.float32).view(np.uint32)
        fast = VpuModel(cfg, spad.copy(), acc.copy())
        slow = VpuModel(cfg, spad.copy(), acc.copy())
        monkeypatch.setattr(VpuModel, "_rows_independent", spy)
        got = fast.execute(cmd)
        monkeypatch.setattr(VpuModel, "_rows_independent", lambda *a: False)
        want = slow.execute(cmd)
        monkeypatch.undo()
        assert got == want, op
        np.testing.assert_array_equal(fast.spad, slow.spad, err_msg=str(op))
        np.testing.assert_array_equal(fast.acc, slow.acc, err_msg=str(op))
    # The commands must exercise both paths, or the comparison above proves nothing.
    vectorised, row_order = paths.count(True), paths.count(False)
    assert vectorised >= 1, f"no command of seed {seed} took the vectorised path"
    assert row_order >= 1, f"no command of seed {seed} fell back to row order"
