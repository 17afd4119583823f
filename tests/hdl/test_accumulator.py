"""AccumulatorBank in amaranth.sim: column words in, a memory of sums out (read through ``rd``),
against numerics.ternary_accumulate.

Every case is one line: the bank's parameters and a stream of beats; the factory
(:func:`run_bank`) drives the beats (with random idle cycles between them unless told not to),
waits for ``busy`` to fall, reads every word through ``rd`` and returns the words and ``error``.
"""

import re

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator

from nsllm.hdl.accumulator import AccumulatorBank
from nsllm.hdl.registry import verilog_text
from nsllm.model import numerics as nx
from nsllm.sim.streams import pack


def run_bank(dut, beats, *, gap=0.3, seed=0, read_words=None):
    """Drive ``beats`` (dicts of the beat layout) into ``dut``; then read the words.

    Returns ``(words, error, trace)``: ``words[w]`` is the list of ``lanes`` sums of word ``w``
    (read through ``rd`` once ``busy`` is low), ``error`` the sticky flag at the end, ``trace``
    the ``busy`` value of every cycle from the first beat on.
    """
    rng = np.random.default_rng(seed)
    shape = dut.i_stream.payload.shape()
    raw = Value.cast(dut.i_stream.payload)
    read_words = range(dut.words) if read_words is None else read_words
    out = {}

    async def tb(ctx):
        trace = []
        for beat in beats:
            while rng.random() < gap:
                ctx.set(dut.i_stream.valid, 0)
                await ctx.tick()
                trace.append(ctx.get(dut.busy))
            ctx.set(raw, pack(shape, beat))
            ctx.set(dut.i_stream.valid, 1)
            assert ctx.get(dut.i_stream.ready), "AccumulatorBank: not ready (it must always be)"
            await ctx.tick()
            trace.append(ctx.get(dut.busy))
        ctx.set(dut.i_stream.valid, 0)
        for _ in range(8):
            if not ctx.get(dut.busy):
                break
            await ctx.tick()
            trace.append(ctx.get(dut.busy))
        assert not ctx.get(dut.busy), "AccumulatorBank: busy stuck high"
        words = []
        for w in read_words:
            ctx.set(dut.rd.addr, w)
            ctx.set(dut.rd.en, 1)
            await ctx.tick()
            words.append([ctx.get(dut.rd.data[i]) for i in range(dut.lanes)])
        ctx.set(dut.rd.en, 0)
        out.update(words=words, error=ctx.get(dut.error), trace=trace)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return out["words"], out["error"], out["trace"]


def layer_beats(trits, counts, lanes, order="columns"):
    """Beats of one layer: every column's words (``first`` on the first column's), and the
    expected words (``ternary_accumulate``, ``lanes`` rows per word)."""
    rows, n = trits.shape
    words = rows // lanes
    beats = []
    for k, j in enumerate(range(n)):
        for w in range(words):
            beats.append({"trits": trits[w * lanes:(w + 1) * lanes, j].tolist(),
                          "count": int(counts[j]), "word": w, "first": int(k == 0)})
    expected = nx.ternary_accumulate(trits, counts).reshape(words, lanes).tolist()
    return beats, expected


def random_layer(rng, lanes, words, n, max_D, density=0.6):
    trits = rng.integers(-1, 2, size=(lanes * words, n))
    counts = rng.integers(-max_D, max_D + 1, n)
    counts[rng.random(n) > density] = 0
    return trits, counts


# one line per case: lanes, words, fan_in, max_D, columns, gap
LAYERS = [
    (4, 1, 8, 1, 8, 0.0),  # one word: every beat hits the word the previous beat writes
    (8, 4, 20, 15, 20, 0.3),
    (3, 5, 5, 7, 5, 0.5),
    (16, 2, 64, 15, 64, 0.0),
    (5, 3, 1, 127, 1, 0.2),  # a single column: first only
]


@pytest.mark.parametrize("lanes,words,fan_in,max_D,n,gap", LAYERS)
def test_random_layer_equals_ternary_accumulate(lanes, words, fan_in, max_D, n, gap):
    dut = AccumulatorBank(lanes, words, fan_in, max_D)
    rng = np.random.default_rng(lanes * 31 + n)
    beats, expected = layer_beats(*random_layer(rng, lanes, words, n, max_D), lanes)
    got, error, _ = run_bank(dut, beats, gap=gap, seed=n)
    assert got == expected
    assert error == 0


def test_back_to_back_beats_on_the_same_word_are_exact():
    """Random word order with long runs on one word at full rate: the read-modify-write sees
    the word the previous beat has not written yet (the transparent read port)."""
    lanes, words, max_D = 4, 3, 15
    dut = AccumulatorBank(lanes, words, fan_in=40, max_D=max_D)
    rng = np.random.default_rng(3)
    sums = {}
    beats = []
    for _ in range(120):
        w = int(rng.choice([0, 0, 0, 1, 2]))
        trits = rng.integers(-1, 2, lanes)
        count = int(rng.integers(-max_D, max_D + 1))
        first = w not in sums
        sums[w] = (np.zeros(lanes, np.int64) if first else sums[w]) + trits * count
        beats.append({"trits": trits.tolist(), "count": count, "word": w, "first": int(first)})
    got, error, _ = run_bank(dut, beats, gap=0.0)
    assert got == [sums[w].tolist() for w in range(words)]
    assert error == 0


def test_first_starts_a_word_without_a_clearing_pass():
    """A second layer over the first one's sums: ``first`` writes the term instead of adding
    it, so nothing of the first layer remains; ``first`` in the middle of a word restarts it."""
    dut = AccumulatorBank(2, 2, fan_in=8, max_D=7)

    def b(word, count, trits=(1, -1), first=0):
        return {"trits": list(trits), "count": count, "word": word, "first": first}

    layer1 = [b(0, 7, first=1), b(1, 5, first=1), b(0, 3), b(1, -2)]
    layer2 = [b(0, 1, (1, 1), first=1), b(1, -4, (0, 1), first=1), b(0, 2, (-1, 0))]
    restart = [b(1, 6, (1, 1)), b(1, 3, (1, 1), first=1)]
    got, error, _ = run_bank(dut, layer1 + layer2 + restart, gap=0.2)
    assert got == [[1 - 2, 1], [3, 3]]
    assert error == 0


def test_busy_covers_the_write_and_reads_follow_en_by_one_cycle():
    """busy is high while a beat is taken and during its write, low one cycle after the last
    beat; a read issued then returns the final word; ``rd.data`` follows ``en`` by one cycle and
    holds while ``en`` is low."""
    dut = AccumulatorBank(2, 2, fan_in=4, max_D=3)
    seen = {}

    async def tb(ctx):
        p = dut.i_stream.payload
        ctx.set(p.trits[0], 1)
        ctx.set(p.trits[1], -1)
        ctx.set(p.count, 3)
        ctx.set(p.first, 1)
        ctx.set(dut.i_stream.valid, 1)
        seen["busy_with_beat"] = ctx.get(dut.busy)
        await ctx.tick()
        ctx.set(p.first, 0)  # a second beat on word 0, back to back
        await ctx.tick()
        ctx.set(dut.i_stream.valid, 0)
        seen["busy_after"] = [ctx.get(dut.busy)]
        await ctx.tick()
        seen["busy_after"].append(ctx.get(dut.busy))
        ctx.set(dut.rd.addr, 0)
        ctx.set(dut.rd.en, 1)
        await ctx.tick()
        seen["read"] = [ctx.get(dut.rd.data[i]) for i in range(2)]
        ctx.set(dut.rd.addr, 1)
        ctx.set(dut.rd.en, 0)
        await ctx.tick()
        seen["held"] = [ctx.get(dut.rd.data[i]) for i in range(2)]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert seen["busy_with_beat"] == 1
    assert seen["busy_after"] == [1, 0]  # the last beat's write, then idle
    assert seen["read"] == [6, -6]
    assert seen["held"] == [6, -6]


@pytest.mark.parametrize("fan_in,D", [(1, 1), (17, 15), (64, 15), (2048, 7), (8192, 15), (3, 127)])
def test_width_is_derived_from_fan_in_and_D(fan_in, D):
    dut = AccumulatorBank(2, 1, fan_in, D)
    assert dut.acc_bits == nx.accumulator_bits(fan_in, D)
    # the worst case fits and the width is the smallest that does
    assert fan_in * D <= (1 << (dut.acc_bits - 1)) - 1
    assert fan_in * D > (1 << (dut.acc_bits - 2)) - 1


def read_width(dut):
    text = verilog_text(dut, "T")
    return int(re.search(r"output \[(\d+):0\] rd__data;", text)[1]) + 1


def test_changing_fan_in_or_D_changes_the_generated_width():
    base = AccumulatorBank(4, 2, 64, 7)
    wider_fan_in = AccumulatorBank(4, 2, 4096, 7)
    wider_D = AccumulatorBank(4, 2, 64, 127)
    assert read_width(base) == 4 * nx.accumulator_bits(64, 7)
    assert read_width(wider_fan_in) == 4 * nx.accumulator_bits(4096, 7)
    assert read_width(wider_D) == 4 * nx.accumulator_bits(64, 127)


@pytest.mark.parametrize("fan_in,D", [(17, 15), (64, 15), (31, 1), (9, 127)])
def test_worst_case_inputs_reach_exactly_fan_in_times_D_without_overflow(fan_in, D):
    """fan_in beats of ±D with every trit ±1: the extremes ±fan_in·D come out exactly."""
    dut = AccumulatorBank(4, 2, fan_in, D)
    beats = []
    for j in range(fan_in):
        beats.append({"trits": [1, -1, 1, -1], "count": D, "word": 0, "first": int(j == 0)})
        beats.append({"trits": [-1, 1, -1, 1], "count": -D, "word": 1, "first": int(j == 0)})
    peak = fan_in * D
    got, error, _ = run_bank(dut, beats, gap=0.1)
    assert got == [[peak, -peak, peak, -peak]] * 2
    assert error == 0


def b(count=1, trits=(1, 1), word=0, first=0):
    return {"trits": list(trits), "count": count, "word": word, "first": first}


# one line per case: beats, error, the words afterwards (a beat that breaks the contract is
# dropped, so the words hold only the legal beats' sums). Bank: 2 lanes, 2 words, max_D 15.
CONTRACT = [
    ([b(15, first=1)], 0, [[15, 15], [0, 0]]),
    ([b(-15, first=1)], 0, [[-15, -15], [0, 0]]),
    ([b(2, first=1), b(-16)], 1, [[2, 2], [0, 0]]),  # representable in 5 bits, beyond max_D
    ([b(2, first=1), b(16)], 1, [[2, 2], [0, 0]]),
    ([b(2, first=1), b(3, trits=(1, -2))], 1, [[2, 2], [0, 0]]),  # -2 is not a trit
    ([b(2, first=1), b(3, trits=(-2, 0))], 1, [[2, 2], [0, 0]]),
    ([b(2, first=1), b(3, trits=(0, 0)), b(-3, trits=(1, 0))], 0, [[-1, 2], [0, 0]]),
    ([b(2, first=1), b(1, word=1, first=1), b(1, trits=(0, -1))], 0, [[2, 1], [1, 1]]),
    ([b(-16, first=1), b(4, first=1)], 1, [[4, 4], [0, 0]]),  # sticky: stays set after
    ([b(2, first=1), b(-16, first=1)], 1, [[2, 2], [0, 0]]),  # a dropped first clears nothing
    ([b(2, first=1), b(1, trits=(-2, 1), first=1)], 1, [[2, 2], [0, 0]]),
]


@pytest.mark.parametrize("beats,error,words", CONTRACT)
def test_contract_checks_set_sticky_error_and_drop_the_beat(beats, error, words):
    dut = AccumulatorBank(2, 2, fan_in=4, max_D=15)
    # word 1 is started by a legal beat first when the case does not start it
    starts = [b(0, word=1, first=1)] if not any(x["word"] == 1 for x in beats) else []
    got, err, _ = run_bank(dut, starts + beats, gap=0.2, seed=len(beats))
    assert err == error
    assert got == words


def test_words_not_a_power_of_two_flag_the_unused_addresses():
    """words = 3 uses a 2-bit word index: index 3 exists on the wire but not in the memory."""
    dut = AccumulatorBank(1, 3, fan_in=4, max_D=3)
    legal = [{"trits": [1], "count": 1, "word": w, "first": 1} for w in range(3)]
    got, error, _ = run_bank(dut, legal, gap=0.0)
    assert (got, error) == ([[1], [1], [1]], 0)
    got, error, _ = run_bank(dut, legal + [{"trits": [1], "count": 1, "word": 3, "first": 1}],
                             gap=0.0)
    assert (got, error) == ([[1], [1], [1]], 1)


@pytest.mark.parametrize("kwargs,message", [
    ({"lanes": 0}, r"^lanes must be a positive integer, not 0$"),
    ({"words": -1}, r"^words must be a positive integer, not -1$"),
    ({"fan_in": 0}, r"^fan_in must be a positive integer, not 0$"),
    ({"max_D": 0}, r"^max_D must be an integer in \[1, 127\], not 0$"),
    ({"max_D": nx.MAX_TIMESTEPS + 1}, r"^max_D must be an integer in \[1, 127\], not 128$"),
])
def test_init_wrong_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AccumulatorBank(**kwargs)
