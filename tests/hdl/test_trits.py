"""Trit unpacker in amaranth.sim against the golden packing (nsllm.model.packing): each packing
alone, and both in one build with the ``base3`` select."""

import numpy as np
import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

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


class SelectPerWord(wiring.Component):
    """The two-packing unpacker with its ``base3`` select carried in the input payload, so the
    stream driver sets it with each word (as the streamer holds it with the word)."""

    def __init__(self, word_bytes, side=None):
        self.unpack = TritUnpacker(("2bit", "base3"), word_bytes, side=side)
        fields = dict(self.unpack.in_layout.members)
        fields["base3"] = 1
        super().__init__({"i_stream": In(stream.Signature(data.StructLayout(fields))),
                          "o_stream": Out(stream.Signature(self.unpack.out_layout)),
                          "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.unpack = u = self.unpack
        m.d.comb += [u.i_stream.valid.eq(self.i_stream.valid),
                     u.i_stream.p.word.eq(self.i_stream.p.word), u.base3.eq(self.i_stream.p.base3),
                     self.i_stream.ready.eq(u.i_stream.ready), self.error.eq(u.error)]
        if "side" in u.in_layout.members:
            m.d.comb += u.i_stream.p.side.eq(self.i_stream.p.side)
        wiring.connect(m, u.o_stream, wiring.flipped(self.o_stream))
        return m


@pytest.mark.parametrize("word_bytes,gap,stall", [(4, 0.3, 0.3), (1, 0.0, 0.0), (8, 0.5, 0.2)])
def test_both_packings_with_the_base3_select_per_word(word_bytes, gap, stall):
    """Words of both packings interleaved at random: each decodes by its own select; a 2bit word
    fills the first 4·word_bytes lanes and leaves the base3-only lanes at zero."""
    dut = SelectPerWord(word_bytes, side=unsigned(4))
    rng = np.random.default_rng(word_bytes)
    lanes = 5 * word_bytes
    beats, expected = [], []
    for k in range(120):
        packing = "base3" if rng.random() < 0.5 else "2bit"
        words, trits = words_and_trits(packing, word_bytes, 1, seed=1000 * word_bytes + k)
        beats.append({"word": words[0], "base3": int(packing == "base3"), "side": k % 16})
        expected.append({"trits": trits[0] + [0] * (lanes - len(trits[0])), "side": k % 16})
    got = run_amaranth_stream(dut, beats, len(beats), seed=word_bytes,
                              valid_probability=1 - gap, ready_probability=1 - stall)
    check_beats("TritUnpacker", got, expected)


@pytest.mark.parametrize("base3,byte,error", [(0, 0b11, 1), (1, 0b11, 0), (1, 243, 1),
                                              (0, 0b10_01_00_10, 0), (1, 242, 0), (0, 255, 1)])
def test_both_packings_check_the_selected_code(base3, byte, error):
    """2bit code 3 is invalid only as 2bit (byte 3 is a valid base3 byte); base3 bytes above 242
    only as base3."""
    from amaranth.sim import Simulator

    dut = TritUnpacker(("2bit", "base3"), 2)
    seen = []

    async def tb(ctx):
        ctx.set(dut.o_stream.ready, 1)
        ctx.set(dut.base3, base3)
        ctx.set(dut.i_stream.payload.word, byte << 8)
        ctx.set(dut.i_stream.valid, 1)
        await ctx.tick()
        ctx.set(dut.i_stream.valid, 0)
        await ctx.tick()
        seen.append(ctx.get(dut.error))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert seen == [error]


@pytest.mark.parametrize("args,message", [
    (("3bit", 4), r"^packing must be one of \('2bit', 'base3'\) or a tuple of them, not '3bit'$"),
    ((("2bit", "2bit"), 4), r"^packing must be one of \('2bit', 'base3'\) or a tuple of them, "
                            r"not \('2bit', '2bit'\)$"),
    (((), 4), r"^packing must be one of \('2bit', 'base3'\) or a tuple of them, not \(\)$"),
    (("base3", 0), r"^word_bytes must be a positive integer, not 0$"),
])
def test_init_wrong_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        TritUnpacker(*args)


def test_lane_count_follows_packing_and_word():
    assert TritUnpacker("2bit", 64).lanes == 256
    assert TritUnpacker("base3", 64).lanes == 320
    both = TritUnpacker(("base3", "2bit"), 64)
    assert (both.lanes, both.packings, both.packing) == (320, ("2bit", "base3"), None)
    assert "base3" in both.signature.members
    assert "base3" not in TritUnpacker("2bit").signature.members
