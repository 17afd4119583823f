"""Spike path in amaranth.sim: MembraneScale → SpikeEncoder against IntegerArithmetic.spikes,
the spike-train emitter against numerics.spike_train, and the fired-input index filter."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from nsllm.hdl.spike import (
    ENC_SHIFT_MAX,
    EncoderArray,
    MembraneScale,
    SpikeEncoder,
    SpikeIndexFilter,
    SpikeTrainEmitter,
)
from nsllm.model import numerics as nx
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


def encoder_expected(potentials, shift, D, delta_q, unsigned=False):
    u = nx.shift_round(np.asarray(potentials, dtype=np.int64), shift)
    count = nx.spike_count_unsigned if unsigned else nx.spike_count
    return count(u, D, delta_q).tolist()


def run_encoder(potentials, shift, D, delta_q, unsigned=False, **kwargs):
    dut = SpikeEncoder(15, index_bits=8, **kwargs)

    def setup(ctx):
        ctx.set(dut.D, D)
        ctx.set(dut.delta_q, delta_q)
        ctx.set(dut.shift, shift)
        ctx.set(dut.unsigned_counts, unsigned)

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


@pytest.mark.parametrize("unsigned", [False, True], ids=["signed", "unsigned"])
@pytest.mark.parametrize("shift,D,delta_q", CASES)
def test_encoder_matches_spike_count(shift, D, delta_q, unsigned):
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
    assert run_encoder(potentials, shift, D, delta_q, unsigned) == encoder_expected(
        potentials, shift, D, delta_q, unsigned)


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


def test_scale_and_encode_equal_integer_model_spikes(tiny_arith):
    """xn · mant, then the encoder, bit-exact to IntegerArithmetic.spikes on a real layer."""
    arith = tiny_arith
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


def filter_items(beats):
    """What SpikeIndexFilter(lanes) must emit for ``beats``: the non-zero lanes, lowest first,
    ``last`` on the last item of a ``last`` beat, a zero-count closing item when that beat has
    no spikes; ``side`` from the beat."""
    items = []
    for beat in beats:
        fired = np.flatnonzero(beat["counts"])
        extra = {"side": beat["side"]} if "side" in beat else {}
        for n, k in enumerate(fired):
            items.append({"index": beat["index"] + int(k), "count": beat["counts"][k],
                          "last": int(beat["last"] and n == len(fired) - 1), **extra})
        if beat["last"] and not len(fired):
            items.append({"index": beat["index"], "count": 0, "last": 1, **extra})
    return items


def lane_beats(rng, lanes, n_beats, density, group=4, side_bits=0):
    counts = rng.integers(-15, 16, size=(n_beats, lanes))
    counts[rng.random(counts.shape) >= density] = 0
    counts[group - 1] = 0  # a group whose last beat has no spike: the zero-count closing item
    beats = []
    for b, row in enumerate(counts):
        beat = {"index": (b % group) * lanes, "counts": row.tolist(),
                "last": int(b % group == group - 1)}
        if side_bits:
            beat["side"] = int(rng.integers(0, 1 << side_bits))
        beats.append(beat)
    return beats


# one line per case: lanes, spike density, a side payload's width (0: none), gap, stall
LANE_CASES = [(8, 0.3, 0, 0.3, 0.3), (4, 0.9, 5, 0.2, 0.5), (2, 0.5, 0, 0.0, 0.0),
              (16, 0.05, 3, 0.3, 0.2), (3, 0.6, 0, 0.5, 0.0)]


@pytest.mark.parametrize("lanes,density,side_bits,gap,stall", LANE_CASES)
def test_index_filter_lanes_emit_fired_inputs_in_order(lanes, density, side_bits, gap, stall):
    from amaranth.hdl import unsigned

    side = unsigned(side_bits) if side_bits else None
    dut = SpikeIndexFilter(15, index_bits=8, lanes=lanes, side=side)
    rng = np.random.default_rng(lanes * 7 + side_bits)
    beats = lane_beats(rng, lanes, 60, density, side_bits=side_bits)
    expected = filter_items(beats)
    assert any(e["count"] == 0 for e in expected)  # the closing item is exercised
    got = run_amaranth_stream(dut, beats, len(expected), seed=lanes,
                              valid_probability=1 - gap, ready_probability=1 - stall)
    check_beats("SpikeIndexFilter", got, expected)


def test_index_filter_lanes_one_item_per_cycle():
    """At full rate a beat takes as many cycles as it has spikes (at least one): dense beats
    leave one item every cycle, with no bubble between beats."""
    lanes = 4
    dut = SpikeIndexFilter(15, index_bits=8, lanes=lanes)
    rng = np.random.default_rng(2)
    beats = lane_beats(rng, lanes, 24, 0.5, group=24)
    for beat in beats[:-1]:  # every beat but the closing one has at least one spike
        beat["counts"][int(rng.integers(lanes))] = int(rng.choice([-3, 5]))
    expected = filter_items(beats)
    got = run_amaranth_stream(dut, beats, len(expected), valid_probability=1.0,
                              ready_probability=1.0)
    check_beats("SpikeIndexFilter", got, expected)
    cycles = [c for c, _ in got]
    assert cycles == list(range(cycles[0], cycles[0] + len(expected)))


def test_index_filter_lanes_spike_less_beats_cost_one_cycle():
    lanes = 4
    dut = SpikeIndexFilter(15, index_bits=8, lanes=lanes)
    beats = [{"index": 4 * b, "counts": [0, 0, 0, 0], "last": 0} for b in range(10)]
    beats[4]["counts"] = [1, 0, 0, 2]
    beats[-1]["last"] = 1
    expected = filter_items(beats)
    got = run_amaranth_stream(dut, beats, len(expected), valid_probability=1.0,
                              ready_probability=1.0)
    check_beats("SpikeIndexFilter", got, expected)
    # beats 5..8 (no spikes) take a cycle each before the closing item of beat 9
    assert got[-1][0] - got[1][0] == 5


def encoder_words(rng, lanes, n_words, scale=1 << 14):
    x = rng.integers(-scale, scale, size=(n_words, lanes))
    x[0, :2] = [nx.ACT_MAX, nx.ACT_MIN][:min(2, lanes)]
    mant = rng.integers(-(1 << (nx.MULT_BITS - 1)), 1 << (nx.MULT_BITS - 1), (n_words, lanes))
    # table words are int32: the bits above the mantissa must be ignored
    junk = rng.integers(-(1 << 15), 1 << 15, (n_words, lanes)) << nx.MULT_BITS
    table = (mant.astype(np.int64) & 0xFFFF) | junk
    table = np.where(table >= 1 << 31, table - (1 << 32), table)
    return x, mant, table


# one line per case: lanes, max_D, shift, D, delta_q, input scale
ENCODER_CASES = [(4, 15, 20, 15, 0, 1 << 14), (8, 15, 14, 7, 300, 1 << 12), (2, 7, 1, 7, 5, 64),
                 (1, 15, 30, 15, 0, 1 << 23), (4, 127, 12, 127, 77, 1 << 16),
                 (3, 15, 0, 3, 0, 1 << 4)]


@pytest.mark.parametrize("lanes,max_D,shift,D,delta_q,scale", ENCODER_CASES)
def test_encoder_array_equals_encode_q(lanes, max_D, shift, D, delta_q, scale):
    dut = EncoderArray(lanes, max_D, index_bits=8)
    rng = np.random.default_rng(lanes + shift)
    n = 40
    x, mant, table = encoder_words(rng, lanes, n, scale)
    counts = nx.encode_q(x, mant, shift, D, delta_q)
    assert np.count_nonzero(counts) > 0

    def setup(ctx):
        ctx.set(dut.D, D)
        ctx.set(dut.delta_q, delta_q)
        ctx.set(dut.shift, shift)

    beats = [{"x": x[w].tolist(), "mant": table[w].tolist(), "index": (w * lanes) % 256,
              "last": int(w % 5 == 4)} for w in range(n)]
    expected = [{"counts": counts[w].tolist(), "index": (w * lanes) % 256,
                 "last": int(w % 5 == 4)} for w in range(n)]
    got = run_amaranth_stream(dut, beats, n, setup=setup, seed=shift)
    check_beats("EncoderArray", got, expected)


def test_encoder_array_equals_integer_model_spikes(tiny_arith):
    """On a real layer: the lanes of the array give IntegerArithmetic.spikes."""
    name = sorted(tiny_arith.params.linears)[1]
    lp = tiny_arith.params.linears[name]
    d, lanes = lp.trits.shape[1], 8
    xn = nx.rmsnorm_q(np.random.default_rng(4).normal(0, 2, (1, d)) * (1 << nx.ACT_FRAC))
    golden = tiny_arith.spikes(name, xn.astype(np.int64))[0]
    dut = EncoderArray(lanes, 15, index_bits=8)

    def setup(ctx):
        ctx.set(dut.D, lp.D)
        ctx.set(dut.delta_q, lp.delta_q)
        ctx.set(dut.shift, lp.enc_shift)

    beats = [{"x": xn[0, w:w + lanes].tolist(), "mant": lp.enc.mant[w:w + lanes].tolist(),
              "index": w % 256, "last": int(w + lanes == d)} for w in range(0, d, lanes)]
    got = run_amaranth_stream(dut, beats, len(beats), setup=setup, seed=5)
    assert np.array_equal(np.concatenate([v["counts"] for _, v in got]), golden)


def test_encoder_array_full_rate_and_latency_2():
    dut = EncoderArray(2, 15, index_bits=8)
    beats = [{"x": [k << 10, -k << 10], "mant": [1 << 12, 1 << 12], "index": k, "last": 0}
             for k in range(20)]
    got = run_amaranth_stream(dut, beats, 20, valid_probability=1.0, ready_probability=1.0,
                              setup=lambda ctx: (ctx.set(dut.D, 15), ctx.set(dut.shift, 14)))
    cycles = [c for c, _ in got]
    # taken at the first edge, out after the third (a one-stage unit's after the second)
    assert cycles == list(range(3, 23))
    assert [v["counts"] for _, v in got] == [
        nx.encode_q(np.array(b["x"]), np.array(b["mant"]), 14, 15, 0).tolist() for b in beats]


@pytest.mark.parametrize("D,shift,error", [(12, 42, 0), (12, 0, 0), (13, 4, 1), (15, 4, 1),
                                           (12, 43, 1), (12, 127, 1)])
def test_encoder_array_flags_configuration_outside_its_range(D, shift, error):
    """D above max_D or a shift outside [0, shift_max] (the port is unsigned: 64…127 are the
    encoders' negative shifts) sets the sticky error."""
    from amaranth.sim import Simulator

    dut = EncoderArray(2, 12, shift_max=42, index_bits=4)
    seen = []

    async def tb(ctx):
        ctx.set(dut.o_stream.ready, 1)
        ctx.set(dut.D, D)
        ctx.set(dut.shift, shift)
        ctx.set(dut.i_stream.valid, 1)
        for _ in range(3):
            await ctx.tick()
        ctx.set(dut.i_stream.valid, 0)
        ctx.set(dut.D, 1)
        ctx.set(dut.shift, 1)
        for _ in range(3):
            await ctx.tick()
        seen.append(ctx.get(dut.error))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert seen == [error]


@pytest.mark.parametrize("factory,message", [
    (lambda: SpikeEncoder(0), r"^max_D must be an integer in \[1, 127\], not 0$"),
    (lambda: SpikeEncoder(15, shift_min=1),
     r"^need integers shift_min <= 0 < shift_max, not 1, 42$"),
    (lambda: SpikeTrainEmitter(0), r"^lanes must be a positive integer, not 0$"),
    (lambda: SpikeIndexFilter(15, index_bits=0), r"^index_bits must be a positive integer, not 0$"),
    (lambda: SpikeIndexFilter(15, lanes=0), r"^lanes must be a positive integer, not 0$"),
    (lambda: MembraneScale(index_bits=-1), r"^index_bits must be a positive integer, not -1$"),
    (lambda: EncoderArray(0, 15), r"^lanes must be a positive integer, not 0$"),
    (lambda: EncoderArray(4, 128), r"^max_D must be an integer in \[1, 127\], not 128$"),
])
def test_init_wrong_arguments(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()
