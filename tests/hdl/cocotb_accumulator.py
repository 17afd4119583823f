"""cocotb testbench of the accumulator bank (run by test_accumulator_cocotb.py).

Layers of column words stream in with random idle cycles (the bank is always ready: it has no
back-pressure to give); when ``busy`` falls every word is read through ``rd`` and compared with
``numerics.ternary_accumulate``, lane by lane.
"""

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from nsllm.model import numerics as nx
from nsllm.sim.streams import TB, compare_beat, dut_component, test_parameters, unpack


def layer(model, rng, n_words, max_columns):
    """Beats of one layer of at most ``max_columns`` columns over the first ``n_words`` words,
    and their sums (word by word)."""
    n = int(rng.integers(1, min(max_columns, model.fan_in) + 1))
    trits = rng.integers(-1, 2, size=(n_words * model.lanes, n))
    counts = rng.integers(-model.max_D, model.max_D + 1, n)
    counts[rng.random(n) > 0.6] = 0
    beats = [{"trits": trits[w * model.lanes:(w + 1) * model.lanes, j].tolist(),
              "count": int(counts[j]), "word": w, "first": int(j == 0)}
             for j in range(n) for w in range(n_words)]
    sums = nx.ternary_accumulate(trits, counts).reshape(n_words, model.lanes)
    return beats, [row.tolist() for row in sums]


async def wait_idle(tb, dut, timeout_cycles):
    for _ in range(timeout_cycles):
        await FallingEdge(tb.clk)
        if not int(dut.busy.value):
            return
    raise AssertionError(f"{tb.component}: busy still high after {timeout_cycles} cycles")


async def read_words(tb, dut, model, words):
    """Read ``words`` through ``rd`` (data one cycle after ``en``); [(cycle, word values)]."""
    layout = model.word_layout
    got = []
    for w in words:
        await FallingEdge(tb.clk)
        dut.rd__addr.value = w
        dut.rd__en.value = 1
        await RisingEdge(tb.clk)
        await ReadOnly()
        got.append((tb.cycle(), unpack(layout, dut.rd__data.value.to_unsigned())))
    await FallingEdge(tb.clk)
    dut.rd__en.value = 0
    return got


@cocotb.test()
async def random_layers_with_gaps(dut):
    """Layers over 1, 2 or all words (1 word: every beat hits the word just written), random
    valid gaps; every word read back after each layer."""
    params = test_parameters()
    model = dut_component()
    tb = TB(dut, "AccumulatorBank", seed=params.get("seed", 0))
    dut.rd__en.value = 0
    dut.rd__addr.value = 0
    source = tb.source("i_stream", model.in_layout, valid_probability=0.7)
    await tb.reset()
    rng = np.random.default_rng(params.get("seed", 0))
    memory = [[0] * model.lanes for _ in range(model.words)]
    for k in range(params.get("layers", 6)):
        n_words = [1, 2, model.words][k % 3]
        beats, sums = layer(model, rng, n_words, params.get("max_columns", model.fan_in))
        memory[:n_words] = sums
        expected = [list(row) for row in memory]
        if "corrupt" in params and k == 0:  # self-test of the checker: one wrong expected lane
            word, lane = params["corrupt"]
            expected[word][lane] += 1
        source.send(beats)
        await source.wait_idle(timeout_cycles=4 * len(beats) + 100)
        await wait_idle(tb, dut, 10)
        got = await read_words(tb, dut, model, range(model.words))
        for w, (cycle, value) in enumerate(got):
            compare_beat(tb.component, cycle, w, expected[w], value)
    assert int(dut.error.value) == 0, "AccumulatorBank: error raised on legal input"


@cocotb.test()
async def worst_case_and_contract(dut):
    """fan_in beats of ±max_D with all trits ±1 give exactly ±fan_in·max_D (no overflow); then
    a count beyond max_D sets the sticky error and is dropped."""
    model = dut_component()
    tb = TB(dut, "AccumulatorBank")
    dut.rd__en.value = 0
    dut.rd__addr.value = 0
    source = tb.source("i_stream", model.in_layout, valid_probability=1.0)
    await tb.reset()
    D, n, L = model.max_D, model.fan_in, model.lanes
    trits = [1 if i % 2 == 0 else -1 for i in range(L)]
    source.send({"trits": trits, "count": D if w == 0 else -D, "word": w, "first": int(j == 0)}
                for j in range(n) for w in (0, 1))
    await source.wait_idle(timeout_cycles=4 * n + 100)
    await wait_idle(tb, dut, 10)
    got = await read_words(tb, dut, model, [0, 1])
    for w, (cycle, value) in enumerate(got):
        sign = 1 if w == 0 else -1
        compare_beat(tb.component, cycle, w, [sign * t * D * n for t in trits], value)
    assert int(dut.error.value) == 0
    source.send([{"trits": trits, "count": -D - 1, "word": 0, "first": 1}])
    await source.wait_idle(timeout_cycles=10)
    await wait_idle(tb, dut, 10)
    assert int(dut.error.value) == 1, "AccumulatorBank: count -max_D-1 not flagged"
    (cycle, value), = await read_words(tb, dut, model, [0])
    compare_beat(tb.component, cycle, 0, [t * D * n for t in trits], value)
