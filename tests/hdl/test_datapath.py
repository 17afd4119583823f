"""The ternary datapath composed: packed weight words → TritUnpacker → AccumulatorBank, fed as
the weight streamer feeds it (only the fired columns, each column's words in order, the count
and word index beside each word), equal to IntegerArithmetic.accumulate on a real layer of the
tiny model (amaranth.sim, with random input gaps) — for each packing, and for the two-packing
unpacker with its ``base3`` select."""

import numpy as np
import pytest
from amaranth.hdl import Module, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from nsllm.hdl.accumulator import AccumulatorBank
from nsllm.hdl.shared_memory import read_signature
from nsllm.hdl.trits import TritUnpacker
from nsllm.model import numerics as nx
from nsllm.model.packing import TRITS_PER_BYTE, pack_trits
from nsllm.sim.streams import pack


class UnpackAndAccumulate(wiring.Component):
    def __init__(self, packings, word_bytes, words, fan_in, max_D):
        lanes = max(TRITS_PER_BYTE[p] for p in packings) * word_bytes
        self.bank = AccumulatorBank(lanes, words, fan_in, max_D)
        side = data.StructLayout({name: self.bank.in_layout[name].shape
                                  for name in ("count", "word", "first")})
        self.unpack = TritUnpacker(packings, word_bytes, side=side)
        self.dual = len(self.unpack.packings) > 1
        members = {
            "i_stream": In(stream.Signature(self.unpack.in_layout)),
            "rd": In(read_signature(self.bank.word_layout, words)),
            "busy": Out(1), "error": Out(2),
        }
        if self.dual:
            members["base3"] = In(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unpack, m.submodules.bank = self.unpack, self.bank
        u, a = self.unpack.o_stream, self.bank.i_stream
        m.d.comb += [
            a.payload.trits.eq(u.payload.trits),
            a.payload.count.eq(u.payload.side.count),
            a.payload.word.eq(u.payload.side.word),
            a.payload.first.eq(u.payload.side.first),
            a.valid.eq(u.valid), u.ready.eq(a.ready),
            self.busy.eq(u.valid | self.bank.busy),
            self.error.eq(self.unpack.error | (self.bank.error << 1)),
        ]
        if self.dual:
            m.d.comb += self.unpack.base3.eq(self.base3)
        wiring.connect(m, wiring.flipped(self.i_stream), self.unpack.i_stream)
        wiring.connect(m, wiring.flipped(self.rd), self.bank.rd)
        return m


def run(dut, beats, base3, gap, seed):
    rng = np.random.default_rng(seed)
    shape = dut.i_stream.payload.shape()
    raw = Value.cast(dut.i_stream.payload)
    out = {}

    async def tb(ctx):
        if dut.dual:
            ctx.set(dut.base3, base3)
        for beat in beats:
            ctx.set(dut.i_stream.valid, 0)
            while rng.random() < gap:
                await ctx.tick()
            ctx.set(raw, pack(shape, beat))
            ctx.set(dut.i_stream.valid, 1)
            await ctx.tick().until(dut.i_stream.ready)
        ctx.set(dut.i_stream.valid, 0)
        while ctx.get(dut.busy):
            await ctx.tick()
        words = []
        for w in range(dut.bank.words):
            ctx.set(dut.rd.addr, w)
            ctx.set(dut.rd.en, 1)
            await ctx.tick()
            words.append([ctx.get(dut.rd.data[i]) for i in range(dut.bank.lanes)])
        out.update(words=words, error=ctx.get(dut.error))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return out["words"], out["error"]


# one line per case: the unpacker's packings, the layer's packing
CASES = [(("2bit",), "2bit"), (("base3",), "base3"), (("2bit", "base3"), "2bit"),
         (("2bit", "base3"), "base3")]


@pytest.mark.parametrize("packings,packing", CASES)
def test_packed_layer_equals_integer_model(tiny_arith, packings, packing):
    arith = tiny_arith
    name = sorted(arith.params.linears)[0]
    lp = arith.params.linears[name]
    out_f, in_f = lp.trits.shape
    rng = np.random.default_rng(5)
    xn = nx.rmsnorm_q(rng.normal(0, 1, (1, in_f)) * (1 << nx.ACT_FRAC)).astype(np.int64)
    counts = arith.spikes(name, xn)[0]  # (in,)

    word_bytes = 4
    rows = TRITS_PER_BYTE[packing] * word_bytes  # rows per word of this packing
    tiles = -(-out_f // rows)
    dut = UnpackAndAccumulate(packings, word_bytes, tiles, fan_in=in_f, max_D=lp.D)
    padded = np.zeros((tiles * rows, in_f), dtype=np.int64)
    padded[:out_f] = lp.trits
    packed = pack_trits(padded, packing)  # (in, tiles * word_bytes)
    fired = np.flatnonzero(counts)  # what SpikeIndexFilter passes
    assert 0 < len(fired) < in_f  # sparse: some columns are skipped

    beats = [{"word": int.from_bytes(packed[j, t * word_bytes:(t + 1) * word_bytes].tobytes(),
                                     "little"),
              "side": {"count": int(counts[j]), "word": t, "first": int(k == 0)}}
             for k, j in enumerate(fired) for t in range(tiles)]
    words, error = run(dut, beats, base3=int(packing == "base3"), gap=0.3, seed=6)
    acc = np.concatenate([np.array(w[:rows]) for w in words])[:out_f]
    assert error == 0
    assert np.array_equal(acc, nx.ternary_accumulate(lp.trits, counts))
    # and after the layer's output scale, exactly the golden model's accumulate()
    assert np.array_equal(nx.saturate(lp.out.apply(acc[None])), arith.accumulate(name,
                                                                                 counts[None]))
    if dut.dual and packing == "2bit":  # the base3-only lanes of a 2bit word stay zero
        assert all(v == 0 for w in words for v in w[rows:])
