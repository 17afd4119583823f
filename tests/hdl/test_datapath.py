"""The ternary datapath composed: packed weights → TritUnpacker → TernaryAccumulatorArray, fed
as the weight streamer will (only fired columns), equal to IntegerArithmetic.accumulate on a
real layer of the tiny model (amaranth.sim, with stalls)."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nsllm.hdl.accumulator import TernaryAccumulatorArray
from nsllm.hdl.trits import TritUnpacker
from nsllm.model import numerics as nx
from nsllm.model.integer import IntegerArithmetic
from nsllm.model.packing import TRITS_PER_BYTE, pack_trits
from nsllm.sim.streams import run_amaranth_stream


class UnpackAndAccumulate(wiring.Component):
    def __init__(self, packing, word_bytes, batch, fan_in, max_D):
        lanes = TRITS_PER_BYTE[packing] * word_bytes
        self.acc = TernaryAccumulatorArray(lanes, batch, fan_in, max_D)
        side = data.StructLayout({"counts": self.acc.in_layout["counts"].shape,
                                  "first": 1, "last": 1})
        self.unpack = TritUnpacker(packing, word_bytes, side=side)
        super().__init__({
            "i_stream": In(stream.Signature(self.unpack.in_layout)),
            "o_stream": Out(stream.Signature(self.acc.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.unpack, m.submodules.acc = self.unpack, self.acc
        u, a = self.unpack.o_stream, self.acc.i_stream
        m.d.comb += [
            a.payload.trits.eq(u.payload.trits),
            a.payload.counts.eq(u.payload.side.counts),
            a.payload.first.eq(u.payload.side.first),
            a.payload.last.eq(u.payload.side.last),
            a.valid.eq(u.valid),
            u.ready.eq(a.ready),
        ]
        wiring.connect(m, wiring.flipped(self.i_stream), self.unpack.i_stream)
        wiring.connect(m, self.acc.o_stream, wiring.flipped(self.o_stream))
        return m


@pytest.mark.parametrize("packing", ["2bit", "base3"])
def test_packed_layer_equals_integer_model(tiny_weights, packing):
    arith = IntegerArithmetic(tiny_weights)
    name = sorted(arith.params.linears)[0]
    lp = arith.params.linears[name]
    out_f, in_f = lp.trits.shape
    rng = np.random.default_rng(5)
    xn = nx.rmsnorm_q(rng.normal(0, 1, (2, in_f)) * (1 << nx.ACT_FRAC)).astype(np.int64)
    counts = arith.spikes(name, xn)  # (batch, in)

    word_bytes = 4
    dut = UnpackAndAccumulate(packing, word_bytes, batch=2, fan_in=in_f, max_D=lp.D)
    lanes = dut.acc.lanes
    tiles = -(-out_f // lanes)
    padded = np.zeros((tiles * lanes, in_f), dtype=np.int64)
    padded[:out_f] = lp.trits
    packed = pack_trits(padded, packing)  # (in, tiles * word_bytes)
    fired = np.nonzero(np.any(counts != 0, axis=0))[0]  # what SpikeIndexFilter passes
    assert 0 < len(fired) < in_f  # sparse: some columns are skipped

    beats = []
    for t in range(tiles):
        for k, j in enumerate(fired):
            word = packed[j, t * word_bytes:(t + 1) * word_bytes].tobytes()
            beats.append({"word": int.from_bytes(word, "little"),
                          "side": {"counts": counts[:, j].tolist(), "first": int(k == 0),
                                   "last": int(k == len(fired) - 1)}})
    got = run_amaranth_stream(dut, beats, tiles, seed=6)
    acc = np.concatenate([np.array(value["acc"]) for _, value in got], axis=1)[:, :out_f]

    assert np.array_equal(acc, nx.ternary_accumulate(lp.trits, counts))
    # and after the layer's output scale, exactly the golden model's accumulate()
    assert np.array_equal(nx.saturate(lp.out.apply(acc)), arith.accumulate(name, counts))
