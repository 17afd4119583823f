"""Spike path in amaranth.sim: MembraneScale → SpikeEncoder against IntegerArithmetic.spikes,
the spike-train emitter against numerics.spike_train, and the fired-input index filter."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from nsllm.hdl.spike import (
    ENC_SHIFT_MAX,
    MembraneScale,
    SpikeEncoder,
    SpikeIndexFilter,
    SpikeTrainEmitter,
)
from nsllm.model import numerics as nx
from nsllm.model.integer import IntegerArithmetic
from nsllm.sim.streams import check_beats, run_amaranth_stream


def test_membrane_scale_is_the_exact_product():
    rng = np.random.default_rng(0)
    n = 300
    x = rng.integers(nx.ACT_MIN, nx.ACT_MAX + 1, n)
    mant = rng.integers(-(1 << (nx.MULT_BITS - 1)), 1 << (nx.MULT_BITS - 1), n)
    x[:4] = [nx.ACT_MIN, nx.ACT_MIN, nx.ACT_MAX, 0]
    mant[:4] = [-(1 << (nx.MULT_BITS - 1)), (1 << (nx.MULT_BITS - 1)) - 1, -(1 << 15), 5]
    beats = [{"x": int(a), "mant": int(b), "index": k % 256, "last": int(k % 7 == 6)}
             for k, (a, b) in enumerate(zip(x, mant, strict=True))]
    got = run_amaranth_stream(MembraneScale(index_bits=8), beats, n, seed=1)
    check_beats("MembraneScale", got, [{"potential": int(a) * int(b), "index": k % 256,
                                        "last": int(k % 7 == 6)}
                                       for k, (a, b) in enumerate(zip(x, mant, strict=True))])


def encoder_expected(potentials, shift, D, delta_q):
    u = nx.shift_round(np.asarray(potentials, dtype=np.int64), shift)
    return nx.spike_count(u, D, delta_q).tolist()


def run_encoder(potentials, shift, D, delta_q, **kwargs):
    dut = SpikeEncoder(15, index_bits=8, **kwargs)

    def setup(ctx):
        ctx.set(dut.D, D)
        ctx.set(dut.delta_q, delta_q)
        ctx.set(dut.shift, shift)

    beats = [{"potential": int(p), "index": k % 256, "last": 0}
             for k, p in enumerate(potentials)]
    got = run_amaranth_stream(dut, beats, len(beats), setup=setup, seed=shift + 100)
    return [value["count"] for _, value in got]


# one line per case: shift, D, delta_q — including shift 0, negative (exact left) shifts, the
# largest shift quantize_multipliers can produce, D = 1 and δ larger than the potential
CASES = [
    (2, 15, 0), (2, 15, 77), (9, 7, 128), (0, 3, 0), (0, 15, 300), (-1, 15, 5), (-8, 7, 0),
    (1, 1, 0), (20, 15, 40), (ENC_SHIFT_MAX, 15, 0), (17, 15, 1 << 12),
]


@pytest.mark.parametrize("shift,D,delta_q", CASES)
def test_encoder_matches_spike_count(shift, D, delta_q):
    rng = np.random.default_rng(shift + 64)
    limit = 1 << (nx.ACT_BITS + nx.MULT_BITS - 1)
    # potentials near the count boundaries of this shift, plus extremes
    scale = 1 << max(shift + nx.U_FRAC, 0)
    near = rng.integers(-(D + 2) * scale, (D + 2) * scale + 1, 150)
    edges = [(k * (1 << nx.U_FRAC) + (1 << (nx.U_FRAC - 1)) + delta_q) << max(shift, 0)
             for k in range(D + 1)]
    edges = [e + d for e in edges for d in (-1, 0, 1)] + [-e for e in edges]
    wide = rng.integers(-limit, limit, 40)
    potentials = np.clip(np.concatenate([near, edges, wide, [-limit, limit - 1, 0, -1, 1]]),
                         -limit, limit - 1)
    assert run_encoder(potentials, shift, D, delta_q) == encoder_expected(potentials, shift,
                                                                          D, delta_q)


class ScaleAndEncode(wiring.Component):
    """MembraneScale → SpikeEncoder, the composition the golden model's ``spikes`` defines."""

    def __init__(self):
        self.scale = MembraneScale(index_bits=8)
        self.encode = SpikeEncoder(15, index_bits=8)
        super().__init__({
            "i_stream": In(stream.Signature(self.scale.in_layout)),
            "o_stream": Out(self.encode.o_stream.signature),
            **{name: In(self.encode.signature.members[name].shape)
               for name in ("D", "delta_q", "shift")},
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.scale, m.submodules.encode = self.scale, self.encode
        wiring.connect(m, self.scale.o_stream, self.encode.i_stream)
        wiring.connect(m, wiring.flipped(self.i_stream), self.scale.i_stream)
        wiring.connect(m, self.encode.o_stream, wiring.flipped(self.o_stream))
        m.d.comb += [self.encode.D.eq(self.D), self.encode.delta_q.eq(self.delta_q),
                     self.encode.shift.eq(self.shift)]
        return m


def test_scale_and_encode_equal_integer_model_spikes(tiny_weights):
    """xn · mant, then the encoder, bit-exact to IntegerArithmetic.spikes on a real layer."""
    arith = IntegerArithmetic(tiny_weights)
    name = next(iter(arith.params.linears))
    lp = arith.params.linears[name]
    d = lp.trits.shape[1]
    rng = np.random.default_rng(3)
    xn = nx.rmsnorm_q(rng.normal(0, 2, (3, d)) * (1 << nx.ACT_FRAC)).astype(np.int64)
    golden = arith.spikes(name, xn)
    assert np.count_nonzero(golden) > 0
    dut = ScaleAndEncode()

    def setup(ctx):
        ctx.set(dut.D, lp.D)
        ctx.set(dut.delta_q, lp.delta_q)
        ctx.set(dut.shift, lp.enc_shift)

    beats = [{"x": int(xn[b, j]), "mant": int(lp.enc.mant[j]), "index": j % 256,
              "last": int(j == d - 1)} for b in range(xn.shape[0]) for j in range(d)]
    got = run_amaranth_stream(dut, beats, len(beats), setup=setup, seed=4)
    check_beats("MembraneScale→SpikeEncoder", got,
                [{"count": int(golden[b, j]), "index": j % 256, "last": int(j == d - 1)}
                 for b in range(xn.shape[0]) for j in range(d)])


def test_encoder_flags_configuration_outside_its_range():
    from amaranth.sim import Simulator

    dut = SpikeEncoder(7, shift_min=-2, shift_max=10, index_bits=4)
    flags = []

    async def tb(ctx):
        ctx.set(dut.o_stream.ready, 1)
        for D, shift in ((7, 10), (7, -2), (7, 11), (7, 0)):
            ctx.set(dut.D, D)
            ctx.set(dut.shift, shift)
            ctx.set(dut.i_stream.valid, 1)
            await ctx.tick()
            flags.append(ctx.get(dut.error))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert flags == [0, 0, 1, 1]


@pytest.mark.parametrize("D", [1, 3, 7, 15, 0])
def test_spike_train_emitter_matches_spike_train(D):
    dut = SpikeTrainEmitter(lanes=5, max_D=15)
    rng = np.random.default_rng(D)
    counts = rng.integers(-D, D + 1, size=(12, 5))
    counts[0] = [D, -D, 0, 1 if D else 0, -1 if D else 0]
    expected = []
    for vec in counts:
        train = nx.spike_train(vec, D)  # (D, lanes)
        expected += [{"spikes": train[t].tolist(), "t": t, "last": int(t == D - 1)}
                     for t in range(D)]

    def setup(ctx):
        ctx.set(dut.D, D)

    got = run_amaranth_stream(dut, [{"counts": v.tolist()} for v in counts], len(expected),
                              setup=setup, seed=D)
    check_beats("SpikeTrainEmitter", got, expected)


def test_spike_train_emitter_full_rate():
    dut = SpikeTrainEmitter(lanes=2, max_D=7)
    counts = [[3, -1], [7, 0], [-7, 2]]
    got = run_amaranth_stream(dut, [{"counts": c} for c in counts], 3 * 7,
                              setup=lambda ctx: ctx.set(dut.D, 7),
                              valid_probability=1.0, ready_probability=1.0)
    cycles = [c for c, _ in got]
    assert cycles == list(range(cycles[0], cycles[0] + 21))


def test_index_filter_keeps_fired_inputs_and_group_ends():
    dut = SpikeIndexFilter(15, index_bits=8)
    rng = np.random.default_rng(7)
    counts = rng.integers(-15, 16, 400)
    counts[rng.random(400) < 0.7] = 0  # sparse, as spikes are
    last = (np.arange(400) % 50) == 49
    counts[49] = 0  # a group whose last input did not fire
    beats = [{"index": k % 256, "count": int(c), "last": int(e)}
             for k, (c, e) in enumerate(zip(counts, last, strict=True))]
    expected = [b for b in beats if b["count"] != 0 or b["last"]]
    got = run_amaranth_stream(dut, beats, len(expected), seed=8)
    check_beats("SpikeIndexFilter", got, expected)
    assert [i for i, b in enumerate(beats) if b["count"]] == \
        [i for i in np.nonzero(counts)[0].tolist()]


@pytest.mark.parametrize("factory,message", [
    (lambda: SpikeEncoder(0), "max_D must be an integer"),
    (lambda: SpikeEncoder(15, shift_min=1), "shift_min <= 0 < shift_max"),
    (lambda: SpikeTrainEmitter(0), "lanes must be a positive integer"),
    (lambda: SpikeIndexFilter(15, index_bits=0), "index_bits must be a positive integer"),
    (lambda: MembraneScale(index_bits=-1), "index_bits must be a positive integer"),
])
def test_init_wrong_arguments(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()
