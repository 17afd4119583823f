"""amaranth.sim tests of the Argmax unit (one logit per beat and ``lanes`` per beat) against
graph.greedy / numerics.argmax_q."""

from __future__ import annotations

import numpy as np
import pytest

from nsllm.hdl.argmax import Argmax
from nsllm.model import numerics as nx
from nsllm.model.graph import greedy

from .amaranth_stream_tb import run_stream

A_MAX, A_MIN = nx.ACT_MAX, nx.ACT_MIN


def run_argmax(vocab_max, vectors, *, gap, stall, seed):
    items = [{"x": int(x), "last": int(k == len(v) - 1)} for v in vectors for k, x in enumerate(v)]
    got = run_stream(Argmax(vocab_max), items, len(vectors), gap=gap, stall=stall, seed=seed)
    for j, (v, r) in enumerate(zip(vectors, got, strict=True)):
        expect = int(greedy(np.asarray(v, np.int64)))
        assert (r.payload.index, r.payload.value) == (expect, int(v[expect])), (
            f"Argmax: vector {j} (cycle {r.cycle}): got index {r.payload.index} value "
            f"{r.payload.value}, expected {expect} value {v[expect]}")


CASES = [
    [5], [A_MIN], [A_MIN, A_MIN, A_MIN], [A_MAX, A_MAX], [0, 0, 0, 0],  # ties → lowest index
    [1, 2, 3, 4], [4, 3, 2, 1], [-1, -1, 0, 0], [A_MIN, A_MAX, A_MAX - 1, A_MAX],
    [-5, -3, -3, -7], list(range(16)), [7] * 16, [A_MIN] * 15 + [A_MIN + 1],
]


@pytest.mark.parametrize("gap,stall", [(0.0, 0.0), (0.5, 0.6)])
def test_argmax_corners(gap, stall):
    run_argmax(16, CASES, gap=gap, stall=stall, seed=1)


def test_argmax_random_with_ties():
    rng = np.random.default_rng(2)
    vectors = []
    for _ in range(30):
        n = int(rng.integers(1, 65))
        # a small alphabet makes repeated maxima common
        vectors.append(rng.choice(rng.integers(A_MIN, A_MAX + 1, 4), n))
    run_argmax(64, vectors, gap=0.3, stall=0.3, seed=3)


def test_argmax_full_vocab():
    rng = np.random.default_rng(5)
    v = rng.integers(-(1 << 14), 1 << 14, 256)
    run_argmax(256, [v, v[::-1]], gap=0.1, stall=0.1, seed=6)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_argmax_index_width_follows_vocab():
    assert len(Argmax(256).o_stream.p.index) == 8
    assert len(Argmax(32000).o_stream.p.index) == 15
    with pytest.raises(ValueError, match=r"^vocab_max must be a positive integer, not 0$"):
        Argmax(0)


def test_argmax_cuts_overlong_vectors():
    """Logit number vocab_max closes the vector, as documented; the rest starts a new one."""
    items = [{"x": x, "last": int(k == 5)} for k, x in enumerate([1, 9, 9, 2, 3, 8])]
    got = run_stream(Argmax(4), items, 2, gap=0.2, stall=0.2)
    assert [(r.payload.index, r.payload.value) for r in got] == [(1, 9), (1, 8)]


def run_lanes(vocab_max, lanes, vectors, *, gap, stall, seed):
    """``vectors`` (lengths multiples of ``lanes``) through Argmax(vocab_max, lanes)."""
    items = [{"x": [int(x) for x in v[k:k + lanes]], "last": int(k + lanes == len(v))}
             for v in vectors for k in range(0, len(v), lanes)]
    got = run_stream(Argmax(vocab_max, lanes=lanes), items, len(vectors), gap=gap, stall=stall,
                     seed=seed)
    return [(r.payload.index, r.payload.value) for r in got]


def golden(vectors):
    return [(nx.argmax_q(np.asarray(v)), int(v[nx.argmax_q(np.asarray(v))])) for v in vectors]


# one line per case: a vector of 4 lanes per beat; the first maximum wins within a beat, across
# beats, and between the beat's tree halves
LANE_CASES = [
    [1, 2, 3, 4], [4, 3, 2, 1], [7, 7, 7, 7], [0, 5, 5, 0], [5, 0, 0, 5], [-1, -1, -1, -2],
    [A_MIN] * 8, [A_MAX] * 8, [1, 2, 3, 4, 4, 3, 2, 1], [0, 0, 0, 1, 1, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 1], [A_MIN, A_MIN, A_MIN, A_MIN + 1, A_MIN + 1, A_MIN, A_MIN, A_MIN],
    [3, 1, 1, 1, 3, 9, 9, 1, 2, 9, 1, 1], [A_MAX - 1] * 12 + [A_MAX, 0, 0, A_MAX],
    list(range(16)), list(range(16))[::-1], [2] * 16,
]


@pytest.mark.parametrize("gap,stall", [(0.0, 0.0), (0.5, 0.6)])
def test_argmax_lanes_corners(gap, stall):
    assert run_lanes(16, 4, LANE_CASES, gap=gap, stall=stall, seed=4) == golden(LANE_CASES)


@pytest.mark.parametrize("lanes", [2, 8, 16])
def test_argmax_lanes_random_with_ties(lanes):
    rng = np.random.default_rng(lanes)
    vectors = [rng.choice(rng.integers(A_MIN, A_MAX + 1, 3), lanes * int(rng.integers(1, 9)))
               for _ in range(20)]
    assert run_lanes(8 * lanes, lanes, vectors, gap=0.3, stall=0.3, seed=lanes) == \
        golden(vectors)


def test_argmax_lanes_cuts_at_vocab_max():
    """The beat holding logit vocab_max − 1 closes the vector; the beats after it start a new
    one (closed by ``last``)."""
    v = [1, 2, 3, 4, 9, 9, 5, 6, 0, 0, 0, 0, 0, 0, 0, 0, 1, 8, 8, 3, 2, 2, 2, 2]
    items = [{"x": v[k:k + 4], "last": int(k == 20)} for k in range(0, 24, 4)]
    got = run_stream(Argmax(16, lanes=4), items, 2, gap=0.2, stall=0.2, seed=1)
    assert [(r.payload.index, r.payload.value) for r in got] == [(4, 9), (1, 8)]


def test_argmax_lanes_result_two_cycles_after_last_and_input_held_off():
    """The result leaves two cycles after the last beat; while it waits unaccepted no new beat
    is taken (here the sink is never ready: one vector's beats go in, the next one's do not)."""
    from amaranth.sim import Simulator

    dut = Argmax(16, lanes=4)
    seen = {"ready": []}

    async def tb(ctx):
        ctx.set(dut.o_stream.ready, 0)
        ctx.set(dut.i_stream.valid, 1)
        for k, beat in enumerate([[1, 5, 2, 0], [9, 0, 9, 3]]):
            for i, x in enumerate(beat):
                ctx.set(dut.i_stream.p.x[i], x)
            ctx.set(dut.i_stream.p.last, k == 1)
            await ctx.tick()
        ctx.set(dut.i_stream.p.last, 0)
        for _ in range(4):
            seen["ready"].append(ctx.get(dut.i_stream.ready))
            seen.setdefault("valid", []).append(ctx.get(dut.o_stream.valid))
            await ctx.tick()
        seen["result"] = (ctx.get(dut.o_stream.p.index), ctx.get(dut.o_stream.p.value))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert seen["valid"] == [0, 1, 1, 1]  # two edges after the last beat was taken
    assert seen["ready"] == [0, 0, 0, 0]  # held off while the last beat is in flight and after
    assert seen["result"] == (4, 9)


@pytest.mark.parametrize("lanes,message", [
    (3, r"^lanes must be a power of two, not 3$"), (0, r"^lanes must be a power of two, not 0$"),
])
def test_argmax_lanes_must_be_a_power_of_two(lanes, message):
    with pytest.raises(ValueError, match=message):
        Argmax(16, lanes=lanes)
