"""amaranth.sim tests of the Argmax unit against graph.greedy."""

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
    with pytest.raises(ValueError, match="vocab_max must be a positive integer"):
        Argmax(0)


def test_argmax_cuts_overlong_vectors():
    """Logit number vocab_max closes the vector, as documented; the rest starts a new one."""
    items = [{"x": x, "last": int(k == 5)} for k, x in enumerate([1, 9, 9, 2, 3, 8])]
    got = run_stream(Argmax(4), items, 2, gap=0.2, stall=0.2)
    assert [(r.payload.index, r.payload.value) for r in got] == [(1, 9), (1, 8)]
