import itertools

import numpy as np
import pytest

from nsllm.quant.allocation import allocate, weighted_average


def brute_force(costs, sizes, budget):
    layers = list(costs)
    best = None
    for combo in itertools.product(*[sorted(costs[n]) for n in layers]):
        D = dict(zip(layers, combo, strict=True))
        if weighted_average(D, sizes) <= budget + 1e-12:
            s = sum(costs[n][D[n]] for n in layers)
            if best is None or s < best - 1e-12:
                best = s
    return best


@pytest.mark.parametrize("seed", range(12))
def test_dp_is_optimal_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    layers = [f"l{i}" for i in range(5)]
    sizes = {n: int(rng.choice([64, 128, 256, 1024])) for n in layers}
    # sensitivity falls with D (convexity not assumed)
    costs = {n: {15: 0.0, 7: rng.random() * 0.1, 3: rng.random() * 0.5, 1: rng.random() * 2}
             for n in layers}
    budget = float(rng.uniform(1.0, 15.0))
    alloc = allocate(costs, sizes, budget)
    assert alloc.exact
    assert alloc.average_timesteps <= budget + 1e-12
    assert alloc.sensitivity == pytest.approx(brute_force(costs, sizes, budget), abs=1e-12)
    assert alloc.sensitivity == pytest.approx(sum(costs[n][d] for n, d in alloc.D.items()))


def test_big_layers_are_cheaper_to_keep_small():
    # equal sensitivity, so the budget goes where it is cheapest: the small layer gets D = 15
    costs = {"big": {1: 1.0, 15: 0.0}, "small": {1: 1.0, 15: 0.0}}
    sizes = {"big": 900, "small": 100}
    alloc = allocate(costs, sizes, budget=2.5)
    assert alloc.D == {"big": 1, "small": 15}


def test_generous_budget_keeps_every_layer_at_its_best():
    costs = {n: {1: 3.0, 3: 2.0, 7: 1.0, 15: 0.0} for n in "abc"}
    alloc = allocate(costs, dict.fromkeys("abc", 10), budget=15)
    assert set(alloc.D.values()) == {15} and alloc.sensitivity == 0


def test_impossible_budget_is_explained():
    with pytest.raises(ValueError, match="below the smallest possible average"):
        allocate({"a": {3: 0.0, 7: 0.0}}, {"a": 5}, budget=2)


def test_coarsened_table_still_meets_the_budget():
    rng = np.random.default_rng(3)
    layers = [f"l{i}" for i in range(6)]
    sizes = {n: int(rng.integers(1000, 5000)) for n in layers}
    costs = {n: {1: rng.random(), 3: rng.random() / 2, 7: rng.random() / 4, 15: 0.0}
             for n in layers}
    alloc = allocate(costs, sizes, budget=5.0, max_cells=600)
    assert not alloc.exact
    assert alloc.average_timesteps <= 5.0
