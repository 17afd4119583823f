import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsllm.model.packing import PACKINGS, PackingError, bytes_per_column, pack_trits, unpack_trits


@settings(max_examples=80, deadline=None)
@given(out_f=st.integers(1, 50), in_f=st.integers(1, 20), packing=st.sampled_from(PACKINGS),
       seed=st.integers(0, 2**31))
def test_round_trip(out_f, in_f, packing, seed):
    w = np.random.default_rng(seed).integers(-1, 2, size=(out_f, in_f)).astype(np.int8)
    packed = pack_trits(w, packing)
    assert packed.shape == (in_f, bytes_per_column(out_f, packing))
    assert np.array_equal(unpack_trits(packed, out_f, packing), w)


def test_known_bit_layouts():
    w = np.array([[1], [-1], [0], [1], [-1]], dtype=np.int8)  # one column of five trits
    # 2bit: codes 1, 2, 0, 1 | 2 -> 0b01_00_10_01, then 0b10
    assert pack_trits(w, "2bit").tolist() == [[0b01001001, 0b10]]
    # base3: digits 2, 0, 1, 2, 0 -> 2 + 0*3 + 1*9 + 2*27 + 0*81 = 65
    assert pack_trits(w, "base3").tolist() == [[65]]


@pytest.mark.parametrize("packing, byte, where", [("2bit", 0b11, "byte 0 is 3"),
                                                 ("base3", 243, "byte 0 is 243")])
def test_invalid_codes_are_named(packing, byte, where):
    packed = pack_trits(np.zeros((8, 3), dtype=np.int8), packing)
    packed[2, 0] = byte
    message = f"trit code out of range in {packing} data: column 2, {where}"
    with pytest.raises(PackingError, match=message):
        unpack_trits(packed, 8, packing)


def test_nonzero_padding_is_rejected():
    packed = pack_trits(np.zeros((3, 1), dtype=np.int8), "2bit")
    packed[0, 0] |= 1 << 6  # the fourth trit of a 3-row column is padding
    with pytest.raises(PackingError, match="padding"):
        unpack_trits(packed, 3, "2bit")
