"""Trit unpacker in amaranth.sim against the golden packing (nsllm.model.packing)."""

import numpy as np
import pytest
from amaranth.hdl import unsigned

from nsllm.hdl.trits import TritUnpacker, decode_table
from nsllm.model.packing import TRITS_PER_BYTE, PackingError, pack_trits, unpack_trits
from nsllm.sim.streams import check_beats, run_amaranth_stream


def words_and_trits(packing, word_bytes, n, seed):
    lanes = TRITS_PER_BYTE[packing] * word_bytes
    trits = np.random.default_rng(seed).integers(-1, 2, size=(lanes, n))
    packed = pack_trits(trits, packing)
    return [int.from_bytes(col.tobytes(), "little") for col in packed], trits.T.tolist()


@pytest.mark.parametrize("packing", ["2bit", "base3"])
def test_decode_table_is_the_golden_decoder(packing):
    table, per_group = decode_table(packing)
    per_byte = TRITS_PER_BYTE[packing]
    for byte in range(256):
        groups = [byte >> (2 * k) & 3 for k in range(4)] if packing == "2bit" else [byte]
        hw = [table[g] for g in groups]
        try:
            golden = unpack_trits(np.array([[byte]], np.uint8), per_byte, packing)[:, 0].tolist()
        except PackingError:
            assert any(t is None for t in hw), f"{packing} byte {byte} must be invalid"
        else:
            assert [t for g in hw for t in g] == golden, f"{packing} byte {byte}"
    assert per_group == (1 if packing == "2bit" else 5)


@pytest.mark.parametrize("packing,word_bytes", [("2bit", 2), ("base3", 3), ("base3", 1)])
def test_random_words_with_stalls(packing, word_bytes):
    dut = TritUnpacker(packing, word_bytes)
    words, trits = words_and_trits(packing, word_bytes, 300, seed=word_bytes)
    got = run_amaranth_stream(dut, [{"word": w} for w in words], len(words), seed=5)
    check_beats("TritUnpacker", got, [{"trits": t} for t in trits])


def test_full_rate():
    dut = TritUnpacker("base3", 2)
    words, trits = words_and_trits("base3", 2, 50, seed=1)
    got = run_amaranth_stream(dut, [{"word": w} for w in words], len(words),
                              valid_probability=1.0, ready_probability=1.0)
    cycles = [c for c, _ in got]
    assert cycles == list(range(cycles[0], cycles[0] + len(words)))


def test_side_band_travels_with_the_word():
    dut = TritUnpacker("2bit", 1, side=unsigned(5))
    words, trits = words_and_trits("2bit", 1, 40, seed=2)
    got = run_amaranth_stream(dut, [{"word": w, "side": k % 32} for k, w in enumerate(words)],
                              len(words), seed=3)
    check_beats("TritUnpacker", got, [{"trits": t, "side": k % 32} for k, t in enumerate(trits)])


@pytest.mark.parametrize("packing,bad", [("2bit", 0b11 << 2), ("base3", 243), ("base3", 255)])
def test_invalid_code_sets_sticky_error(packing, bad):
    from amaranth.sim import Simulator

    dut = TritUnpacker(packing, 2)
    seen = []

    async def tb(ctx):
        ctx.set(dut.o_stream.ready, 1)
        for word in (0, bad << 8, 0):
            ctx.set(dut.i_stream.payload.word, word)
            ctx.set(dut.i_stream.valid, 1)
            await ctx.tick()
            seen.append(ctx.get(dut.error))
        ctx.set(dut.i_stream.valid, 0)
        for _ in range(3):
            await ctx.tick()
            seen.append(ctx.get(dut.error))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert seen == [0, 1, 1, 1, 1, 1]


@pytest.mark.parametrize("args,message", [
    (("3bit", 4), "packing must be one of"),
    (("base3", 0), "word_bytes must be a positive integer"),
])
def test_init_wrong_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        TritUnpacker(*args)


def test_lane_count_follows_packing_and_word():
    assert TritUnpacker("2bit", 64).lanes == 256
    assert TritUnpacker("base3", 64).lanes == 320
