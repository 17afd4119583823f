"""Mixed-timestep allocation: one D per layer minimising total sensitivity under a budget.

The budget is an **average timestep count weighted by each layer's number of ternary weights**:
``Σ_l n_l·D_l / Σ_l n_l ≤ B``. The weight is the number of weights because a layer's work (and,
in the spike-train form, its weight traffic) per token is proportional to ``n_l·D_l``; a layer of
four times the size costs four times as much per timestep.

Given per-layer costs ``S_l(D)`` (combined sensitivities, assumed additive), the choice is a
multiple-choice knapsack, solved exactly by dynamic programming over the budget in units of
``g = gcd(n_l)`` (all costs are integers in those units). If the table would be larger than
``max_cells``, the unit is coarsened and every cost rounded **up**, so the result still meets the
budget (then it is optimal for the rounded costs; :class:`Allocation` says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Allocation:
    """The chosen D per layer and what it costs."""

    D: dict[str, int]
    sensitivity: float  #: Σ S_l(D_l) predicted by the additive model
    average_timesteps: float  #: weighted average D actually used
    budget: float
    exact: bool  #: False when costs had to be coarsened (still within budget)


def weighted_average(D: dict[str, int], sizes: dict[str, int]) -> float:
    tot = sum(sizes[n] for n in D)
    return sum(sizes[n] * D[n] for n in D) / tot


def allocate(costs: dict[str, dict[int, float]], sizes: dict[str, int], budget: float,
             max_cells: int = 20_000_000) -> Allocation:
    """Optimal D per layer for the additive model (multiple-choice knapsack, exact DP).

    Parameters
    ----------
    costs : {layer: {D: sensitivity}}
        Choices per layer; every layer needs at least one.
    sizes : {layer: number of weights}
    budget : float
        Maximum weighted average D.
    """
    layers = list(costs)
    if not layers:
        raise ValueError("nothing to allocate: no layers")
    min_avg = weighted_average({n: min(costs[n]) for n in layers}, sizes)
    if budget < min_avg - 1e-12:
        raise ValueError(f"budget {budget} is below the smallest possible average timestep count "
                         f"{min_avg:.3f} (every layer at its lowest D)")
    unit = math.gcd(*[int(sizes[n]) for n in layers])
    total = sum(sizes[n] for n in layers)
    exact = True
    cap = int(math.floor(budget * total / unit + 1e-9))
    while len(layers) * (cap + 1) > max_cells:
        unit *= 2
        exact = False
        cap = int(math.floor(budget * total / unit + 1e-9))
    INF = math.inf
    best = np.full(cap + 1, INF)
    best[0] = 0.0
    choice = []
    for n in layers:
        new = np.full(cap + 1, INF)
        arg = np.zeros(cap + 1, dtype=np.int64)
        for D, s in sorted(costs[n].items()):
            c = int(math.ceil(sizes[n] * D / unit - 1e-9))
            if c > cap:
                continue
            cand = np.full(cap + 1, INF)
            cand[c:] = best[: cap + 1 - c] + s
            better = cand < new
            new[better] = cand[better]
            arg[better] = D
        best = new
        choice.append(arg)
    end = int(np.argmin(best))
    if not np.isfinite(best[end]):
        raise ValueError(f"budget {budget} cannot be met with these timestep choices")
    D: dict[str, int] = {}
    c = end
    for n, arg in zip(reversed(layers), reversed(choice), strict=True):
        d = int(arg[c])
        D[n] = d
        c -= int(math.ceil(sizes[n] * d / unit - 1e-9))
    D = {n: D[n] for n in layers}
    return Allocation(D, float(sum(costs[n][D[n]] for n in layers)), weighted_average(D, sizes),
                      budget, exact)


def uniform(costs: dict[str, dict[int, float]], D: int) -> dict[str, int]:
    """Every layer at the same D (the baseline the allocation is compared with)."""
    return dict.fromkeys(costs, int(D))
