"""Quantization-assisted sparsification: per-layer shift δ against a loss budget.

The I-LIF count is ``sign(u)·clip(round(|u| − δ), 0, D)``: a larger δ sends more inputs to a count
of zero, so fewer weight columns are touched. For every layer the sweep sets only that layer's δ
to each value of the grid and measures the layer's firing rate (fraction of non-zero counts) and
the loss against the unchanged model (KL, bits/byte delta). A global curve (every layer at the same
δ) is measured too; it is the trade-off curve shown in the docs.

**Choosing δ.** The objective is the weighted mean firing rate — weighted by each layer's number of
weights, because a zero count skips a whole weight column, so this is the fraction of weight
traffic left — subject to ``Σ_l ΔKL_l(δ_l) ≤ budget`` (additive model). Solved by Lagrangian
relaxation: for a multiplier λ every layer independently picks ``argmin rate_l·n_l/N + λ·KL_l``;
λ is bisected to the smallest value whose choice meets the budget. This finds the optimal points
on the lower convex hull of each layer's curve (:func:`choose_deltas`). The per-layer choice is
then measured as a whole on the probe text and compared with the global curve's points (same δ in
every layer); the lowest weighted firing rate whose measured KL is within budget is kept
(:func:`choose_sparsity`), so interactions are never assumed away in what is chosen or reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..model.stats import mean_firing_rate
from .executor import SERIAL, Executor, log_progress
from .probe import QuantProbe, layer_weights, measure_changes

DEFAULT_DELTAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)


@dataclass
class SparsitySweep:
    """Per-layer and global δ sweeps."""

    deltas: list[float]
    base_bpb: float
    base_firing: dict[str, float]
    per_layer: dict[str, dict[float, dict[str, float]]] = field(default_factory=dict)
    global_curve: list[dict] = field(default_factory=list)
    relative: bool = False  #: grid values are added to each layer's own δ
    base_delta: dict[str, float] = field(default_factory=dict)  #: each layer's own δ

    def delta_of(self, layer: str, d: float) -> float:
        """The δ ``layer`` gets at grid value ``d``."""
        return self.base_delta.get(layer, 0.0) + d if self.relative else d

    def to_json(self) -> dict:
        return {"deltas": self.deltas, "base_bits_per_byte": self.base_bpb,
                "base_firing": self.base_firing,
                "per_layer": {n: {str(d): v for d, v in c.items()}
                              for n, c in self.per_layer.items()},
                "global_curve": self.global_curve, "relative": self.relative}


def sweep(probe: QuantProbe, deltas=DEFAULT_DELTAS, per_layer: bool = True,
          log=None, executor: Executor = SERIAL, relative: bool = False) -> SparsitySweep:
    """Measure firing rate and loss for each δ, layer by layer and for all layers at once.

    ``relative``: the grid is added to each layer's own δ (for a model trained with learned δ
    per layer) instead of replacing it. The evaluations run through ``executor``
    (:mod:`nsllm.quant.executor`).
    """
    sizes = layer_weights(probe.weights)
    base = probe.base

    def at(q, d):
        return replace(q, delta=float(q.delta + d if relative else d))

    res = SparsitySweep([float(d) for d in deltas], base.bits_per_byte, base.firing,
                        relative=relative,
                        base_delta={n: q.delta for n, q in probe.base_quant.items()})
    jobs = [{n: at(q, d) for n, q in probe.base_quant.items()} for d in deltas]
    layer_jobs = []
    if per_layer:
        for n, q in probe.base_quant.items():
            for d in deltas:
                if at(q, d).delta != q.delta:
                    layer_jobs.append((n, float(d)))
                    jobs.append({n: at(q, d)})
    results = executor.map(measure_changes, probe, jobs, progress=log_progress(log))
    for d, m in zip(deltas, results, strict=False):
        row = {"delta": float(d), "kl": m.kl, "bits_per_byte": m.bits_per_byte,
               "mean_firing": mean_firing_rate(m.firing),
               "weighted_firing": mean_firing_rate(m.firing, sizes)}
        res.global_curve.append(row)
        if log:
            log(f"  all layers δ{'+' if relative else '='}{d:4.2f}: firing "
                f"{row['weighted_firing']:.3f}  KL {m.kl:.4f}  bpb {m.bits_per_byte:.4f}")
    if per_layer:
        by_job = dict(zip(layer_jobs, results[len(deltas):], strict=True))
        for n in probe.base_quant:
            res.per_layer[n] = {}
            for d in deltas:
                m = by_job.get((n, float(d)), base)
                res.per_layer[n][float(d)] = {"firing": m.firing[n], "kl": m.kl,
                                              "dbpb": m.bits_per_byte - base.bits_per_byte}
            if log:
                c = res.per_layer[n]
                log(f"  {n:26s} " + "  ".join(f"δ={d}: {c[d]['firing']:.2f}/{c[d]['kl']:.4f}"
                                              for d in res.deltas))
    return res


@dataclass
class DeltaChoice:
    delta: dict[str, float]
    predicted_kl: float
    predicted_firing: float  #: weighted mean firing rate predicted from the per-layer sweeps
    source: str = "per-layer"  #: "per-layer" (Lagrangian) or "uniform δ=…" (global curve)


def choose_deltas(sw: SparsitySweep, sizes: dict[str, int], kl_budget: float) -> DeltaChoice:
    """δ per layer minimising the weighted firing rate with Σ ΔKL ≤ ``kl_budget`` (see module)."""
    if not sw.per_layer:
        raise ValueError("the sweep has no per-layer measurements")
    total = sum(sizes[n] for n in sw.per_layer)

    def pick(lam: float) -> dict[str, float]:
        out = {}
        for n, curve in sw.per_layer.items():
            out[n] = min(curve, key=lambda d, c=curve, n=n: (
                c[d]["firing"] * sizes[n] / total + lam * max(c[d]["kl"], 0.0), d))
        return out

    def kl_of(choice):
        return sum(max(sw.per_layer[n][d]["kl"], 0.0) for n, d in choice.items())

    lo, hi = 0.0, 1.0
    while kl_of(pick(hi)) > kl_budget and hi < 1e12:
        hi *= 4
    if kl_of(pick(lo)) <= kl_budget:
        hi = lo
    for _ in range(60):
        if hi - lo <= 1e-9 * max(hi, 1e-12):
            break
        mid = (lo + hi) / 2
        if kl_of(pick(mid)) <= kl_budget:
            hi = mid
        else:
            lo = mid
    choice = pick(hi)
    firing = sum(sw.per_layer[n][d]["firing"] * sizes[n] for n, d in choice.items()) / total
    return DeltaChoice({n: sw.delta_of(n, d) for n, d in choice.items()}, kl_of(choice), firing)


def plot_sweep(sw: SparsitySweep, path, chosen: dict | list[dict] | None = None) -> None:
    """Firing rate vs bits/byte: the global δ curve and, if given, chosen per-layer points
    (dicts with ``weighted_firing`` and ``bits_per_byte``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["weighted_firing"] for r in sw.global_curve]
    ys = [r["bits_per_byte"] for r in sw.global_curve]
    ax.plot(xs, ys, "o-", label="same δ in every layer")
    for r in sw.global_curve:
        ax.annotate(f"δ={r['delta']:g}", (r["weighted_firing"], r["bits_per_byte"]), fontsize=7,
                    textcoords="offset points", xytext=(4, 4))
    if chosen:
        pts = [chosen] if isinstance(chosen, dict) else chosen
        ax.plot([c["weighted_firing"] for c in pts], [c["bits_per_byte"] for c in pts], "r*",
                markersize=12, label="per-layer δ under a KL budget")
    ax.set_xlabel("firing rate (non-zero counts, weighted by #weights)")
    ax.set_ylabel("bits/byte (probe text)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    from ..outputs import atomic_write

    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def choose_sparsity(probe: QuantProbe, sw: SparsitySweep, kl_budget: float) -> DeltaChoice:
    """The lowest weighted firing rate whose **measured** KL on the probe text is within budget.

    Candidates: the per-layer Lagrangian choice (:func:`choose_deltas`, measured as a whole on the
    probe text) and every point of the global curve (same δ in every layer, already measured).
    The additive per-layer model can be pessimistic or optimistic; measuring each candidate as a
    whole makes the choice honest, and on a model whose layers are similar a uniform small δ can
    beat a few large per-layer shifts.
    """
    sizes = layer_weights(probe.weights)
    per_layer = choose_deltas(sw, sizes, kl_budget)
    m = probe.measure({n: replace(q, delta=per_layer.delta[n])
                       for n, q in probe.base_quant.items()})
    candidates = [(mean_firing_rate(m.firing, sizes), m.kl, per_layer)]
    for row in sw.global_curve:
        d = row["delta"]
        candidates.append((row["weighted_firing"], row["kl"], DeltaChoice(
            {n: sw.delta_of(n, d) for n in probe.base_quant}, row["kl"], row["weighted_firing"],
            source=f"uniform δ{'+' if sw.relative else '='}{d:g}")))
    feasible = [c for c in candidates if c[1] <= kl_budget]
    if not feasible:  # δ = 0 everywhere is always in the curve; keep the input as it is
        return DeltaChoice({n: q.delta for n, q in probe.base_quant.items()}, 0.0,
                           sw.global_curve[0]["weighted_firing"] if sw.global_curve else 1.0,
                           source="unchanged")
    firing, kl, choice = min(feasible, key=lambda c: (c[0], c[1]))
    return replace(choice, predicted_kl=kl, predicted_firing=firing)
