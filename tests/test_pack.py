"""verif/common/pack.py: bulk packing of stream payloads."""

from amaranth.lib import data

from verif.common.pack import pack, unpack

LAYOUT = data.StructLayout({"op": 2, "data": 64})


def test_lists_mixing_small_and_above_2_63_keep_every_bit():
    values = [170 << 4, (1 << 63) + 5, (1 << 64) - 1, 0]
    words = pack(LAYOUT, op=[1, 2, 3, 0], data=values)
    assert [w >> 2 for w in words] == values
    assert [int(x) for x in unpack(LAYOUT, words)["data"]] == values
