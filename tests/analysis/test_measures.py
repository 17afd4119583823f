"""Estimators on synthetic data with known answers."""

import math

import numpy as np
import pytest

from nsllm.analysis import measures as ms


def test_entropy_of_histogram_plugin_and_miller_madow():
    hist = np.array([[5, 5, 5, 5], [20, 0, 0, 0]])
    assert ms.entropy_from_histogram(hist, miller_madow=False) == pytest.approx([2.0, 0.0])
    # Miller–Madow adds (m − 1) / (2 n ln 2): 3 / 40 / ln 2 for the first, 0 for the second
    mm = ms.entropy_from_histogram(hist)
    assert mm[0] == pytest.approx(2.0 + 3 / (40 * math.log(2)))
    assert mm[1] == 0.0


def test_count_entropy_per_neuron(rng):
    counts = np.stack([rng.integers(-3, 5, 20000), np.zeros(20000, int)], axis=1)
    h = ms.count_entropy(counts)
    assert h[0] == pytest.approx(3.0, abs=0.01) and h[1] == 0.0


def test_independent_inputs_give_mi_zero_within_ci(rng):
    x = rng.integers(0, 6, 3000)
    y = rng.integers(-4, 5, (3000, 32))
    est = ms.mutual_information(x, y, shuffles=10, bootstraps=60, rng=rng)
    assert est.ci[0] <= 0.0 <= est.ci[1]
    assert abs(est.mean) < 0.01
    # the plug-in estimate is clearly biased upward here: the corrections are doing the work
    assert est.plugin.mean() > 5 * abs(est.mean) and est.plugin.mean() > 0.005
    assert est.p_value > 0.01


def test_deterministic_mapping_gives_mi_equal_to_entropy(rng):
    x = rng.integers(0, 5, 4000)
    y = np.stack([3 * x - 7, (x * 7) % 5, x], axis=1)  # invertible functions of x
    est = ms.mutual_information(x, y, shuffles=10, bootstraps=60, rng=rng)
    h_true = math.log2(5)
    assert est.ci[0] <= h_true <= est.ci[1]
    assert est.per_neuron == pytest.approx(est.input_entropy, abs=0.01)
    assert est.normalised == pytest.approx(1.0, abs=0.01)
    assert est.p_value < 0.1


def test_binary_symmetric_channel_mi_within_ci(rng):
    eps = 0.1
    x = rng.integers(0, 2, 5000)
    y = (x[:, None] ^ (rng.random((5000, 16)) < eps)).astype(int)
    est = ms.mutual_information(x, y, shuffles=10, bootstraps=80, rng=rng)
    truth = 1 + eps * math.log2(eps) + (1 - eps) * math.log2(1 - eps)
    assert est.ci[0] <= truth <= est.ci[1]
    assert est.mean == pytest.approx(truth, abs=0.02)


def test_mutual_information_rejects_bad_arguments():
    with pytest.raises(ValueError, match="shuffles"):
        ms.mutual_information(np.zeros(4), np.zeros((4, 1)), shuffles=0)
    with pytest.raises(ValueError, match="must match"):
        ms.mi_terms(np.zeros(3, int), np.zeros((4, 1), int), 1, 1)


def test_relabel_top_merges_rare_labels():
    labels = np.array([5] * 10 + [7] * 5 + [9] * 2 + [11])
    sym, kept = ms.relabel_top(labels, 3)
    assert kept == [5, 7, -1]
    assert list(sym) == [0] * 10 + [1] * 5 + [2] * 3
    sym, kept = ms.relabel_top(labels, 10)
    assert kept == [5, 7, 9, 11] and sym[-1] == 3


def test_lempel_ziv_complexity_of_the_kaspar_schuster_example():
    seq = np.array([int(c) for c in "0001101001000101"], dtype=np.uint8)
    assert ms.lempel_ziv_complexity(seq) == 6  # 0 · 001 · 10 · 100 · 1000 · 101
    assert ms.lempel_ziv_complexity(bytes(100)) == 2  # 0 · 000…0


def test_entropy_rate_iid_periodic_and_markov(rng):
    t = 6000
    iid = rng.integers(-1, 2, (t, 4))  # uniform ternary: rate log2 3
    periodic = np.tile([1, -1, 0, 0, 1], t // 5)[:, None]
    # two-state Markov chain (silent ↔ firing) with stay probability 0.9: rate h(0.1)
    stay = rng.random(t) < 0.9
    mk = np.zeros(t, int)
    for k in range(1, t):
        mk[k] = mk[k - 1] if stay[k] else 1 - mk[k - 1]
    er = ms.entropy_rate(np.concatenate([iid, periodic, mk[:, None]], axis=1), lz_neurons=0)
    assert er.per_neuron[:4] == pytest.approx(math.log2(3), abs=0.03)
    assert er.per_neuron[4] == pytest.approx(0.0, abs=0.01)
    h01 = -(0.1 * math.log2(0.1) + 0.9 * math.log2(0.9))
    assert er.per_neuron[5] == pytest.approx(h01, abs=0.03)
    assert er.block_curve[0] > er.block_curve[-1]  # memory lowers the rate below H_1
    lz = ms.entropy_rate(iid, lz_neurons=4, rng=rng).lempel_ziv
    assert 1.2 < lz < 2.0  # LZ76 converges slowly (from above) to log2 3 ≈ 1.585


def test_paired_permutation_test_exact_and_null(rng):
    a = np.zeros(5)
    t = ms.paired_permutation_test(a, a + np.array([1.0, 2.0, 1.5, 0.5, 3.0]), rng=rng)
    assert t.exact and t.p_value == pytest.approx(2 / 32)  # only all-+ and all-− are as extreme
    assert t.mean_difference == pytest.approx(1.6) and t.ci[0] > 0
    null = [ms.paired_permutation_test(rng.normal(size=12), rng.normal(size=12), rng=rng).p_value
            for _ in range(60)]
    assert np.mean(np.array(null) < 0.05) <= 0.15  # a 5 % test rejects about 5 % of nulls
    big = ms.paired_permutation_test(rng.normal(size=40), rng.normal(size=40) + 1,
                                     permutations=2000, rng=rng)
    assert not big.exact and big.p_value < 0.01


def test_holm_adjust():
    assert ms.holm_adjust([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx(
        [0.03, 0.06, 0.06])


def test_correlation_permutation(rng):
    x = rng.normal(size=200)
    c = ms.correlation(x, 2 * x + 0.1 * rng.normal(size=200), permutations=500, rng=rng)
    assert c.r > 0.99 and c.p_value < 0.01
    c = ms.correlation(x, rng.normal(size=200), permutations=500, rng=rng)
    assert abs(c.r) < 0.25 and c.p_value > 0.001
    assert math.isnan(ms.correlation(x, np.ones(200)).r)
