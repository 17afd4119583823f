"""cocotb testbenches of the spike path: one module, one test per component type.

``run_cocotb`` builds one component per run, so each test first checks which component it is
running on (``dut_component()``) and returns early on the others.
"""

import cocotb
import numpy as np

from nsllm.hdl.spike import MembraneScale, SpikeEncoder, SpikeIndexFilter, SpikeTrainEmitter
from nsllm.model import numerics as nx
from nsllm.sim.streams import TB, dut_component, test_parameters


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
    if not isinstance(model, MembraneScale):
        return
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
    if not isinstance(model, SpikeEncoder):
        return
    params = test_parameters()
    rng = np.random.default_rng(params.get("seed", 0))
    tb, source, sink = await _run(dut, model, [], [], params)
    await tb.reset()
    limit = 1 << (nx.ACT_BITS + nx.MULT_BITS - 1)
    idx = (1 << model.index_bits) - 1
    for shift, D, delta_q in params.get("configs", [[2, 15, 40], [0, 7, 0], [-3, 3, 9],
                                                    [30, 15, 128], [1, 1, 0]]):
        await source.wait_idle()
        await sink.wait_for(len(sink.beats) + len(sink.expected), timeout_cycles=10_000)
        dut.D.value = D
        dut.delta_q.value = delta_q
        _signed_port(dut.shift, shift)
        scale = 1 << max(shift + nx.U_FRAC, 0)
        p = np.clip(np.concatenate([rng.integers(-(D + 2) * scale, (D + 2) * scale + 1, 250),
                                    rng.integers(-limit, limit, 30)]), -limit, limit - 1)
        counts = nx.spike_count(nx.shift_round(p, shift), D, delta_q)
        sink.expect({"count": int(c), "index": k & idx, "last": 0} for k, c in enumerate(counts))
        source.send({"potential": int(v), "index": k & idx, "last": 0} for k, v in enumerate(p))
    await sink.wait_for(len(sink.beats) + len(sink.expected), timeout_cycles=20_000)
    await sink.wait_quiet()
    assert int(dut.error.value) == 0


@cocotb.test()
async def spike_train_emitter(dut):
    model = dut_component()
    if not isinstance(model, SpikeTrainEmitter):
        return
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
    model = dut_component()
    if not isinstance(model, SpikeIndexFilter):
        return
    params = test_parameters()
    rng = np.random.default_rng(params.get("seed", 0))
    n = params.get("beats", 1500)
    counts = rng.integers(-model.max_D, model.max_D + 1, n)
    counts[rng.random(n) < 0.7] = 0
    idx = (1 << model.index_bits) - 1
    beats = [{"index": k & idx, "count": int(c), "last": int(k % 64 == 63)}
             for k, c in enumerate(counts)]
    expected = [b for b in beats if b["count"] or b["last"]]
    tb, source, sink = await _run(dut, model, beats, expected, params)
    await _check(tb, source, sink, beats, expected)
