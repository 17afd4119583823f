"""Hierarchical sensitivity: how much the model loses when one unit gets fewer timesteps.

Three levels of units (ARCHITECTURE §3):

* **block** — ``layers.i`` (its six projections) and ``head`` (the LM head);
* **sub-layer** — ``layers.i.attn`` (token mixer: i, f, g, o projections of an MLGRU layer;
  q, k, v, g, o of an SLA layer) and ``layers.i.mlp`` (channel mixer: gate/up and down
  projections);
* **projection** — one ternary layer.

For every unit and every lower timestep count D of :data:`~nsllm.model.numerics.SPIKE_COUNT_SET`,
all layers of the unit are set to D (θ from the calibration table θ*(D)), everything else stays as
in the input model, and the probe text is run: the **sensitivity** is the mean KL divergence of the
next-token distributions from the unchanged model (nats), reported with the bits/byte delta.

**Combined top-down**: a projection's combined sensitivity at D is its block's measured
sensitivity, split over the block's sub-layers in proportion to their measured sensitivities, and
each sub-layer's share split over its projections in the same way::

    S*(proj) = S(block) · S(sub) / Σ_sub' S(sub') · S(proj) / Σ_proj' S(proj')

So the projections of a block sum exactly to what was measured for the whole block (interactions
inside the block are kept), while the finer measurements only decide how it is shared.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace

from ..model.config import MIXER_PROJECTIONS, MLP_PROJECTIONS, SpikeQuant
from ..model.numerics import SPIKE_COUNT_SET
from .executor import SERIAL, Executor, log_progress
from .probe import QuantProbe, measure_changes

METRICS = ("kl", "dbpb")


def hierarchy(num_layers: int, mixers=None) -> dict[str, dict[str, list[str]]]:
    """``{block: {sub-layer: [projections]}}`` of a model with ``num_layers`` blocks whose token
    mixers are ``mixers`` (one name per layer, default all MLGRU)."""
    mixers = ["mlgru"] * num_layers if mixers is None else list(mixers)
    h = {}
    for i in range(num_layers):
        p = f"layers.{i}"
        h[p] = {f"{p}.attn": [f"{p}.attn.{n}" for n in MIXER_PROJECTIONS[mixers[i]]],
                f"{p}.mlp": [f"{p}.mlp.{n}" for n in MLP_PROJECTIONS]}
    h["head"] = {"lm_head": ["lm_head"]}
    return h


@dataclass
class SensitivityReport:
    """Measured and combined sensitivities.

    ``measured[level][unit][D] = {"kl": …, "dbpb": …}`` for level in block / sublayer /
    projection; ``combined[layer][D]`` the top-down combined KL (and bits/byte delta).
    """

    timesteps: list[int]
    reference_bpb: float
    measured: dict[str, dict[str, dict[int, dict[str, float]]]]
    combined: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    thetas: dict[str, dict[int, float]] = field(default_factory=dict)
    reference_D: dict[str, int] = field(default_factory=dict)

    def cost_table(self, metric: str = "kl") -> dict[str, dict[int, float]]:
        """Per layer, the combined sensitivity of each D (0 at the reference D)."""
        out = {}
        for layer, per_d in self.combined.items():
            out[layer] = {D: max(v[metric], 0.0) for D, v in per_d.items()}
            out[layer][self.reference_D[layer]] = 0.0
        return out

    def to_json(self) -> dict:
        def keys(d):
            return {str(k): (keys(v) if isinstance(v, dict) else v) for k, v in d.items()}

        return {"timesteps": self.timesteps, "reference_bits_per_byte": self.reference_bpb,
                "reference_D": self.reference_D, "thetas": keys(self.thetas),
                "measured": keys(self.measured), "combined": keys(self.combined)}

    @classmethod
    def from_json(cls, data: dict) -> SensitivityReport:
        def ints(d):
            return {int(k) if k.lstrip("-").isdigit() else k:
                    (ints(v) if isinstance(v, dict) else v) for k, v in d.items()}

        return cls(timesteps=list(data["timesteps"]), reference_bpb=data["reference_bits_per_byte"],
                   measured=ints(data["measured"]), combined=ints(data["combined"]),
                   thetas=ints(data["thetas"]), reference_D=dict(data["reference_D"]))

    def save(self, path: str | os.PathLike, join: bool = True) -> None:
        from ..outputs import write_json

        write_json(path, self.to_json(), join=join)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SensitivityReport:
        """Read a report written by :meth:`save`; a file that is not one raises ValueError."""
        try:
            with open(path, encoding="utf-8") as f:
                return cls.from_json(json.load(f))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}: not a sensitivity report ({type(e).__name__}: {e}); "
                             "write one with `nsllm sensitivity --report`") from None


def sensitivity_units(num_layers: int, mixers=None) -> list[tuple[str, str, list[str]]]:
    """``(level, unit, layers)`` of every unit that is measured (a sub-layer or projection that
    is its parent's only child is not measured again: it is the same measurement)."""
    out = []
    for block, subs in hierarchy(num_layers, mixers).items():
        out.append(("block", block, [p for ps in subs.values() for p in ps]))
        for sub, projs in subs.items():
            if len(subs) > 1:
                out.append(("sublayer", sub, projs))
            for proj in projs:
                if len(projs) > 1:
                    out.append(("projection", proj, [proj]))
    return out


def sensitivity_evaluations(cfg, timesteps=SPIKE_COUNT_SET) -> int:
    """Number of model evaluations :func:`measure_sensitivity` runs on a model (besides the
    reference run): every measured unit at every D below its layers' reference D."""
    levels = sorted({int(D) for D in timesteps})
    return sum(1 for _, _, layers in sensitivity_units(cfg.num_layers, cfg.mixers())
               for D in levels
               if any(D < cfg.quant[n].D for n in layers))


def quant_at(probe: QuantProbe, thetas: dict[str, dict[int, float]], layer: str, D: int,
             delta: float | None = None) -> SpikeQuant:
    """The layer's quantization at D: its own θ at its reference D, θ*(D) otherwise."""
    base = probe.base_quant[layer]
    theta = base.theta if D == base.D else thetas[layer][D]
    return replace(base, D=int(D), theta=float(theta),
                   delta=base.delta if delta is None else float(delta))


def _share(value: float, part: float, total: float, n: int) -> float:
    if total > 0:
        return value * max(part, 0.0) / total
    return value / n  # nothing measurable below this unit: share equally


def measure_sensitivity(probe: QuantProbe, thetas: dict[str, dict[int, float]],
                        timesteps=SPIKE_COUNT_SET, log=None,
                        executor: Executor = SERIAL) -> SensitivityReport:
    """Measure every unit at every D below its reference and combine top-down.

    The evaluations (units × lower D) are independent and run through ``executor``
    (:mod:`nsllm.quant.executor`: serial, or Ray tasks); the report is the same either way.
    """
    cfg = probe.weights.config
    ref_d = {n: q.D for n, q in probe.base_quant.items()}
    levels = sorted({int(D) for D in timesteps})
    tree = hierarchy(cfg.num_layers, cfg.mixers())
    base = probe.base
    measured: dict[str, dict[str, dict[int, dict[str, float]]]] = {
        "block": {}, "sublayer": {}, "projection": {}}
    units = sensitivity_units(cfg.num_layers, cfg.mixers())
    jobs = []  # (level, unit, D, changes) of every evaluation
    for level, unit, layers in units:
        measured[level][unit] = {}
        for D in levels:
            changes = {n: quant_at(probe, thetas, n, D) for n in layers if D < ref_d[n]}
            if changes:
                jobs.append((level, unit, D, changes))
            else:
                measured[level][unit][D] = {"kl": 0.0, "dbpb": 0.0}
    results = executor.map(measure_changes, probe, [j[3] for j in jobs], progress=log_progress(log))
    for (level, unit, D, _), m in zip(jobs, results, strict=True):
        res = {"kl": m.kl, "dbpb": m.bits_per_byte - base.bits_per_byte}
        measured[level][unit][D] = res
        if log:
            log(f"  {level:10s} {unit:24s} D={D:2d}  KL {res['kl']:.5f}  "
                f"Δbpb {res['dbpb']:+.4f}")
    for level, unit, _ in units:  # in the order of the hierarchy, whatever the executor did
        measured[level][unit] = dict(sorted(measured[level][unit].items()))
    for block, subs in tree.items():  # single-child levels are the parent's measurement
        for sub, projs in subs.items():
            if len(subs) == 1:
                measured["sublayer"][sub] = measured["block"][block]
            for proj in projs:
                if len(projs) == 1:
                    measured["projection"][proj] = measured["sublayer"][sub]

    combined: dict[str, dict[int, dict[str, float]]] = {}
    for block, subs in tree.items():
        for D in levels:
            for metric in METRICS:
                sb = measured["block"][block][D][metric]
                sub_vals = {s: measured["sublayer"][s][D][metric] for s in subs}
                sub_tot = sum(max(v, 0.0) for v in sub_vals.values())
                for sub, projs in subs.items():
                    s_share = _share(sb, sub_vals[sub], sub_tot, len(subs))
                    p_vals = {p: measured["projection"][p][D][metric] for p in projs}
                    p_tot = sum(max(v, 0.0) for v in p_vals.values())
                    for proj in projs:
                        combined.setdefault(proj, {}).setdefault(D, {})[metric] = _share(
                            s_share, p_vals[proj], p_tot, len(projs))
    used_thetas = {n: {D: quant_at(probe, thetas, n, D).theta for D in levels}
                   for n in cfg.ternary_layers()}
    return SensitivityReport(levels, base.bits_per_byte, measured, combined, used_thetas, ref_d)


def plot_sensitivity(report: SensitivityReport, path: str | os.PathLike,
                     metric: str = "kl") -> None:
    """Bar charts of the measured sensitivity per unit at each D, one panel per level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    levels = ("block", "sublayer", "projection")
    fig, axes = plt.subplots(3, 1, figsize=(max(8, 0.35 * len(report.measured["projection"])), 10))
    lower = [D for D in report.timesteps if any(D < d for d in report.reference_D.values())]
    for ax, level in zip(axes, levels, strict=True):
        units = list(report.measured[level])
        x = np.arange(len(units))
        width = 0.8 / max(len(lower), 1)
        for k, D in enumerate(lower):
            vals = [max(report.measured[level][u][D][metric], 1e-7) for u in units]
            ax.bar(x + k * width, vals, width, label=f"D = {D}")
        ax.set_yscale("log")
        ax.set_xticks(x + width * (len(lower) - 1) / 2)
        ax.set_xticklabels([u.replace("layers.", "L") for u in units], rotation=60, ha="right",
                           fontsize=7)
        ax.set_ylabel("KL (nats)" if metric == "kl" else "Δ bits/byte")
        ax.set_title(f"{level} sensitivity")
        ax.legend(fontsize=7)
    fig.tight_layout()
    from ..outputs import atomic_write

    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
