"""The integer primitives of the numerics contract."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsllm.model import numerics as nx


@pytest.mark.parametrize(
    "x, s, expected",
    [(5, 1, 3), (4, 1, 2), (-5, 1, -2), (-6, 1, -3), (7, 2, 2), (6, 2, 2), (-6, 2, -1),
     (3, 0, 3), (3, -2, 12), (-1, 3, 0)],
)
def test_shift_round_is_round_half_up(x, s, expected):
    assert nx.shift_round(x, s) == expected
    assert nx.shift_round(np.int64(x), s) == expected
    assert nx.shift_round_array(np.array([x]), np.array([s]))[0] == expected


@given(st.integers(-(2**40), 2**40), st.integers(1, 20))
def test_shift_round_matches_floor_half_up(x, s):
    assert nx.shift_round(x, s) == math.floor(x / 2**s + 0.5)


def test_saturate_to_activation_range():
    x = np.array([nx.ACT_MAX + 5, nx.ACT_MIN - 5, 3])
    assert nx.saturate(x).tolist() == [nx.ACT_MAX, nx.ACT_MIN, 3]


@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=20))
def test_multipliers_fit_and_are_accurate(values):
    m = nx.quantize_multipliers(values)
    assert np.all(np.abs(m.mant) < 2 ** (nx.MULT_BITS - 1))
    peak = max(abs(v) for v in values)
    # the largest value keeps MULT_BITS - 2 bits of precision, unless the shift cap (40) bites
    tol = peak * 2.0 ** -(nx.MULT_BITS - 2) + 2.0**-41
    assert np.max(np.abs(m.real() - values)) <= tol


def test_sigmoid_and_silu_tables_are_accurate():
    x = np.arange(-12 * 1024, 12 * 1024, 7)
    real = x / 1024.0
    sig = 1 / (1 + np.exp(-real))
    assert np.max(np.abs(nx.sigmoid_q(x) / nx.GATE_ONE - sig)) < 0.005
    assert nx.sigmoid_q(np.array([-9 * 1024]))[0] == 0
    assert nx.sigmoid_q(np.array([9 * 1024]))[0] == nx.GATE_ONE
    assert np.max(np.abs(nx.silu_q(x) / 1024.0 - real * sig)) < 0.04


@given(st.integers(1, 2**61))
def test_rsqrt_factor_relative_error(ss):
    d = 1024
    r, s = nx.rsqrt_factor(np.array([ss]), d)
    approx = float(r[0]) * 2.0 ** -(int(s[0]) + nx.ACT_FRAC) * 2.0**nx.ACT_FRAC
    exact = math.sqrt(d / ss) * 2.0**nx.ACT_FRAC  # factor mapping ACT ints to ACT ints
    assert abs(approx / exact - 1) < 2.0**-9


def test_rmsnorm_gives_unit_rms(rng):
    x = nx.to_fixed(rng.standard_normal((4, 300)) * np.array([[0.01], [1], [30], [3000]]))
    y = nx.from_fixed(nx.rmsnorm_q(x))
    assert np.allclose(np.sqrt(np.mean(y**2, axis=-1)), 1.0, atol=0.01)
    assert np.all(nx.rmsnorm_q(np.zeros((1, 8), dtype=np.int64)) == 0)


@pytest.mark.parametrize(
    "u, D, delta, expected",
    [(0, 15, 0, 0), (128, 15, 0, 1), (127, 15, 0, 0), (-128, 15, 0, -1), (-127, 15, 0, 0),
     (10_000, 15, 0, 15), (-10_000, 15, 0, -15), (384, 15, 128, 1), (383, 15, 128, 1),
     (-384, 3, 128, -1), (255, 1, 128, 0), (256, 1, 128, 1)],
)
def test_spike_count_table(u, D, delta, expected):
    assert nx.spike_count(np.array([u]), D, delta)[0] == expected


@settings(max_examples=60, deadline=None)
@given(
    out_f=st.integers(1, 40), in_f=st.integers(1, 60), batch=st.integers(1, 3),
    D=st.sampled_from([1, 2, 3, 7, 15, 31, 127]), delta=st.integers(0, 512),
    seed=st.integers(0, 2**31),
)
def test_count_form_equals_spike_train_form(out_f, in_f, batch, D, delta, seed):
    rng = np.random.default_rng(seed)
    trits = rng.integers(-1, 2, size=(out_f, in_f)).astype(np.int8)
    u = rng.integers(-(D + 3) << nx.U_FRAC, (D + 3) << nx.U_FRAC, size=(batch, in_f))
    counts = nx.spike_count(u, D, delta)
    assert np.all(np.abs(counts) <= D)
    train = nx.spike_train(counts, D)
    assert train.shape == (D, batch, in_f)
    assert set(np.unique(train)) <= {-1, 0, 1}
    assert np.array_equal(train.sum(axis=0), counts)  # the train carries exactly the count
    assert np.array_equal(nx.ternary_accumulate(trits, counts),
                          nx.ternary_accumulate_train(trits, train))


def test_float32_product_is_exact_at_the_bound():
    D = 15
    fan_in = (nx.FLOAT32_EXACT - 1) // D  # largest fan-in the float32 path accepts at D=15
    assert nx.float32_exact(fan_in, D) and not nx.float32_exact(fan_in + 1, D)
    counts = np.full((1, fan_in), D, dtype=np.float32)
    ones = np.ones((fan_in, 1), dtype=np.float32)
    assert int((counts @ ones)[0, 0]) == fan_in * D  # worst case: every partial sum grows
    counts[0, ::2] = -D
    assert int((counts @ ones)[0, 0]) == int(-D * (fan_in % 2))


def test_accumulator_bits_hold_the_worst_case():
    for fan_in, D in [(1, 1), (128, 15), (5632, 15), (2048, 127)]:
        bits = nx.accumulator_bits(fan_in, D)
        assert fan_in * D <= 2 ** (bits - 1) - 1
        assert fan_in * D > 2 ** (bits - 2) - 1  # and not wider than needed
