"""cocotb testbenches of the spike path: one module, one test per component.

``run_cocotb`` builds one component per run; ``tests/hdl/test_spike_cocotb.py`` runs only that
component's test (``testcase=``, :data:`TESTS`), so no test runs on a design it is not for.
"""

import cocotb
import numpy as np

from nsllm.model import numerics as nx
from nsllm.sim.streams import TB, dut_component, test_parameters

#: registry name → the test of this module that exercises it
TESTS = {"MembraneScale": "membrane_scale", "SpikeEncoder": "spike_encoder",
         "SpikeTrainEmitter": "spike_train_emitter", "SpikeIndexFilter": "spike_index_filter",
         "EncoderArray": "encoder_array"}


def _signed_port(handle, value):
    handle.value = value & ((1 << len(handle)) - 1)


async def _run(dut, model, beats, expected, params):
    tb = TB(dut, type(model).__name__, seed=params.get("seed", 0))
    source = tb.source("i_stream", model.in_layout, valid_probability=0.7)
    sink = tb.sink("o_stream", model.out_layout, ready_probability=0.6)
    return tb, source, sink


async def _check(tb, source, sink, beats, expected):
    await tb.reset()
    sink.expect(expected)
    source.send(beats)
    await sink.wait_for(len(expected), timeout_cycles=12 * max(len(beats), len(expected)) + 100)
    await source.wait_idle()
    await sink.wait_quiet()


@cocotb.test()
async def membrane_scale(dut):
    model = dut_component()
    params = test_parameters()
    rng = np.random.default_rng(params.get("seed", 0))
    n = params.get("beats", 1000)
    x = rng.integers(nx.ACT_MIN, nx.ACT_MAX + 1, n)
    mant = rng.integers(-(1 << (nx.MULT_BITS - 1)), 1 << (nx.MULT_BITS - 1), n)
    idx = (1 << model.index_bits) - 1
    beats = [{"x": int(a), "mant": int(b), "index": k & idx, "last": int(k % 9 == 8)}
             for k, (a, b) in enumerate(zip(x, mant, strict=True))]
    expected = [{"potential": int(a) * int(b), "index": k & idx, "last": int(k % 9 == 8)}
                for k, (a, b) in enumerate(zip(x, mant, strict=True))]
    tb, source, sink = await _run(dut, model, beats, expected, params)
    await _check(tb, source, sink, beats, expected)


@cocotb.test()
async def spike_encoder(dut):
    """Several (shift, D, δ) configurations, reconfigured at runtime between batches."""
    model = dut_component()
    params = test_parameters()
    rng = np.random.default_rng(params.get("seed", 0))
    tb, source, sink = await _run(dut, model, [], [], params)
    await tb.reset()
    limit = 1 << (nx.ACT_BITS + nx.MULT_BITS - 1)
    idx = (1 << model.index_bits) - 1
    for shift, D, delta_q, uns in params.get("configs", [
            [2, 15, 40, 0], [0, 7, 0, 1], [-3, 3, 9, 0], [30, 15, 128, 0], [1, 1, 0, 0],
            [2, 2, 40, 1]]):
        await source.wait_idle()
        await sink.wait_for(len(sink.beats) + len(sink.expected), timeout_cycles=10_000)
        dut.D.value = D
        dut.delta_q.value = delta_q
        dut.unsigned_counts.value = uns
        _signed_port(dut.shift, shift)
        scale = 1 << max(shift + nx.U_FRAC, 0)
        p = np.clip(np.concatenate([rng.integers(-(D + 2) * scale, (D + 2) * scale + 1, 250),
                                    rng.integers(-limit, limit, 30)]), -limit, limit - 1)
        count = nx.spike_count_unsigned if uns else nx.spike_count
        counts = count(nx.shift_round(p, shift), D, delta_q)
        sink.expect({"count": int(c), "index": k & idx, "last": 0} for k, c in enumerate(counts))
        source.send({"potential": int(v), "index": k & idx, "last": 0} for k, v in enumerate(p))
    await sink.wait_for(len(sink.beats) + len(sink.expected), timeout_cycles=20_000)
    await sink.wait_quiet()
    assert int(dut.error.value) == 0


@cocotb.test()
async def spike_train_emitter(dut):
    model = dut_component()
    params = test_parameters()
    rng = np.random.default_rng(params.get("seed", 0))
    D = params.get("D", 7)
    dut.D.value = D
    counts = rng.integers(-D, D + 1, size=(params.get("vectors", 150), model.lanes))
    beats = [{"counts": v.tolist()} for v in counts]
    expected = []
    for v in counts:
        train = nx.spike_train(v, D)
        expected += [{"spikes": train[t].tolist(), "t": t, "last": int(t == D - 1)}
                     for t in range(D)]
    tb, source, sink = await _run(dut, model, beats, expected, params)
    await _check(tb, source, sink, beats, expected)


@cocotb.test()
async def spike_index_filter(dut):
    """Beats of ``lanes`` counts → the fired inputs one per cycle; groups of 8 beats, some
    closing on a spike-less beat (the zero-count closing item)."""
    model = dut_component()
    params = test_parameters()
    rng = np.random.default_rng(params.get("seed", 0))
    n, L = params.get("beats", 400), model.lanes
    counts = rng.integers(-model.max_D, model.max_D + 1, (n, L))
    counts[rng.random(counts.shape) < 0.7] = 0
    counts[7::16] = 0  # every other group ends on a beat without spikes
    idx = (1 << model.index_bits) - 1
    beats = [{"index": (k * L) & idx, "counts": row.tolist(), "last": int(k % 8 == 7)}
             for k, row in enumerate(counts)]
    expected = []
    for beat in beats:
        fired = np.flatnonzero(beat["counts"])
        expected += [{"index": beat["index"] + int(j), "count": beat["counts"][j],
                      "last": int(beat["last"] and m == len(fired) - 1)}
                     for m, j in enumerate(fired)]
        if beat["last"] and not len(fired):
            expected.append({"index": beat["index"], "count": 0, "last": 1})
    tb, source, sink = await _run(dut, model, beats, expected, params)
    await _check(tb, source, sink, beats, expected)


@cocotb.test()
async def encoder_array(dut):
    """Words of activations and int32 table words (junk above the mantissa) → encode_q, for
    several (shift, D, δ) set between batches."""
    model = dut_component()
    params = test_parameters()
    rng = np.random.default_rng(params.get("seed", 0))
    tb, source, sink = await _run(dut, model, [], [], params)
    await tb.reset()
    L, idx = model.lanes, (1 << model.index_bits) - 1
    for shift, D, delta_q, uns in params.get("configs", [[14, 15, 0, 0], [20, 7, 300, 1],
                                                         [1, 15, 5, 0], [30, 3, 0, 1]]):
        await source.wait_idle()
        await sink.wait_for(len(sink.beats) + len(sink.expected), timeout_cycles=10_000)
        dut.D.value, dut.delta_q.value, dut.shift.value = D, delta_q, shift
        dut.unsigned_counts.value = uns
        n = params.get("words", 60)
        scale = 1 << int(rng.integers(4, nx.ACT_BITS))
        x = rng.integers(-scale, scale, (n, L))
        mant = rng.integers(-(1 << (nx.MULT_BITS - 1)), 1 << (nx.MULT_BITS - 1), (n, L))
        table = (mant & 0xFFFF) | (rng.integers(-(1 << 15), 1 << 15, (n, L)) << nx.MULT_BITS)
        counts = nx.encode_q(x, mant, shift, D, delta_q, unsigned=bool(uns))
        sink.expect({"counts": counts[w].tolist(), "index": (w * L) & idx,
                     "last": int(w == n - 1)} for w in range(n))
        source.send({"x": x[w].tolist(), "mant": table[w].tolist(), "index": (w * L) & idx,
                     "last": int(w == n - 1)} for w in range(n))
    await sink.wait_for(len(sink.beats) + len(sink.expected), timeout_cycles=20_000)
    await sink.wait_quiet()
    assert int(dut.error.value) == 0
