"""amaranth.sim tests of the MLGRU state unit against IntegerArithmetic's gate/recur functions."""

from __future__ import annotations

import numpy as np
import pytest

from nsllm.hdl.mlgru import MLGRUStateUnit
from nsllm.model import numerics as nx

from .amaranth_stream_tb import run_stream

A_MAX, A_MIN, ONE = nx.ACT_MAX, nx.ACT_MIN, nx.GATE_ONE
EDGE = 8 << nx.ACT_FRAC


def golden(f_pre, i_pre, lb, h):
    """IntegerArithmetic.forget_gate / input_gate / recur, written with the same primitives.

    (IntegerArithmetic needs model weights for the lower bound; the three methods are restated
    here with the lower bound as an argument and compared against the class below.)
    """
    sig = nx.sigmoid_q(f_pre)
    f = lb + nx.shift_round((nx.GATE_ONE - lb) * sig, nx.GATE_FRAC)
    i = nx.shift_round(nx.silu_q(i_pre) * (nx.GATE_ONE - f), nx.GATE_FRAC)
    h_new = nx.saturate(nx.shift_round(f * h, nx.GATE_FRAC) + i)
    return f, i, h_new


def test_golden_matches_integer_arithmetic(tiny_weights, tiny_arith):
    """The restated golden functions equal IntegerArithmetic's on a real model's lower bounds."""
    ar = tiny_arith
    rng = np.random.default_rng(5)
    d = tiny_weights.config.hidden_size
    for layer in range(tiny_weights.config.num_layers):
        f_pre, i_pre = (rng.integers(-10 << nx.ACT_FRAC, 10 << nx.ACT_FRAC, d) for _ in range(2))
        h = rng.integers(A_MIN, A_MAX + 1, d)
        lb = ar.params.lower_bounds[layer]
        lb = np.zeros(d, np.int64) if lb is None else lb
        f, i, hn = golden(f_pre, i_pre, lb, h)
        f_ref = ar.forget_gate(f_pre, layer)
        i_ref = ar.input_gate(i_pre, f_ref)
        np.testing.assert_array_equal(f, f_ref)
        np.testing.assert_array_equal(i, i_ref)
        np.testing.assert_array_equal(hn, ar.recur(f_ref, h, i_ref))
        assert lb.min() >= 0 and lb.max() <= ONE  # the unit's documented lb range


# (f_pre, i_pre, lb, h): ±8 sigmoid edges, saturation of h, lb at 0 and 1, extremes
CASES = [
    (0, 0, 0, 0), (EDGE, EDGE, 0, A_MAX), (EDGE - 1, EDGE - 1, 0, A_MAX),
    (EDGE - 32, EDGE - 32, 0, A_MAX), (EDGE - 33, EDGE - 33, 0, A_MIN),
    (-EDGE, -EDGE, 0, A_MIN), (-EDGE - 1, -EDGE - 1, 0, 5), (-EDGE - 32, -EDGE - 32, 0, -5),
    (-EDGE - 33, -EDGE - 33, 0, 7), (A_MAX, A_MAX, 0, A_MAX), (A_MIN, A_MIN, 0, A_MIN),
    (A_MAX, A_MAX, ONE, A_MAX), (A_MIN, A_MAX, ONE, A_MAX), (A_MIN, A_MAX, 0, A_MAX),
    (A_MIN, A_MIN, ONE, A_MIN), (0, A_MAX, 16384, A_MAX), (EDGE, A_MAX, 0, A_MAX),
    (-(3 << nx.ACT_FRAC), A_MAX, 1, A_MAX), (100, -300, 30000, -1), (-1, 1, 1, -1),
    (-EDGE - 9, -EDGE - 9, 0, 3), (-EDGE - 8, -EDGE - 8, 0, 3), (EDGE - 9, EDGE - 9, 7, -3),
    (EDGE - 8, EDGE - 8, 7, -3), (-EDGE - 24, -EDGE - 24, 0, 9), (-EDGE - 25, -EDGE - 25, 0, 9),
]


def run(f_pre, i_pre, lb, h, lasts, gap, stall, seed):
    items = [{"f_pre": int(a), "i_pre": int(b), "lb": int(c), "h": int(d), "last": int(e)}
             for a, b, c, d, e in zip(f_pre, i_pre, lb, h, lasts, strict=True)]
    got = run_stream(MLGRUStateUnit(), items, len(items), gap=gap, stall=stall, seed=seed)
    f, i, hn = golden(*(np.asarray(v, np.int64) for v in (f_pre, i_pre, lb, h)))
    assert len(got) == len(items)
    for k, r in enumerate(got):
        p = r.payload
        exp = (int(f[k]), int(i[k]), int(hn[k]), int(lasts[k]))
        assert (p.f, p.i, p.h, p.last) == exp, (
            f"MLGRUStateUnit: channel {k} (cycle {r.cycle}): got f={p.f} i={p.i} h={p.h} "
            f"last={p.last}, expected f,i,h,last={exp} for input {items[k]}")


@pytest.mark.parametrize("gap,stall", [(0.0, 0.0), (0.4, 0.5)])
def test_mlgru_corners(gap, stall):
    cols = [np.array(c) for c in zip(*CASES, strict=True)]
    lasts = np.arange(len(CASES)) == len(CASES) - 1
    run(*cols, lasts, gap, stall, seed=11)


def test_mlgru_random():
    rng = np.random.default_rng(9)
    n = 400
    pre = [np.where(rng.random(n) < 0.85, rng.integers(-10 << nx.ACT_FRAC, 10 << nx.ACT_FRAC, n),
                    rng.integers(A_MIN, A_MAX + 1, n)) for _ in range(2)]
    lb = np.where(rng.random(n) < 0.2, 0, rng.integers(0, ONE + 1, n))
    h = rng.integers(A_MIN, A_MAX + 1, n)
    run(pre[0], pre[1], lb, h, rng.random(n) < 0.1, 0.3, 0.3, seed=12)


def test_mlgru_full_rate():
    """Without gaps or stalls one channel leaves per cycle."""
    items = [{"f_pre": 37 * k, "i_pre": -53 * k, "lb": 100 * k, "h": 1000 * k, "last": 0}
             for k in range(40)]
    cycles = [r.cycle for r in run_stream(MLGRUStateUnit(), items, 40, gap=0.0, stall=0.0)]
    assert cycles == list(range(cycles[0], cycles[0] + 40))
