"""``nsllm estimate --plot``: tokens/s and tokens/J against the firing rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .estimate import PUBLISHED, estimate
from .firing import FiringProfile

__all__ = ["plot_estimate", "sweep"]

RATES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def sweep(cfg, board, est, resources, activity, rates=RATES) -> list[dict]:
    """The estimate of ``est``'s setup at each given firing rate."""
    proj = est.projection
    out = []
    for r in rates:
        e = estimate(cfg, board, FiringProfile.given(r), resources, activity,
                     weight_ports=proj.weight_ports, packing=proj.packing,
                     clock_mhz=proj.clock_mhz, params=proj.params)
        out.append({"rate": r, "tokens_per_s": e.projection.tokens_per_s,
                    "roofline": e.projection.roofline_tokens_per_s,
                    "tokens_per_joule": e.tokens_per_joule})
    return out


def plot_estimate(cfg, board, est, path: Path, *, resources, activity, rates=RATES) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sweep(cfg, board, est, resources, activity, rates)
    r = np.array([row["rate"] for row in rows])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    a1.plot(r, [row["tokens_per_s"] for row in rows], "o-", label="estimate (cycle model)")
    a1.plot(r, [row["roofline"] for row in rows], "--", color="gray",
            label="DRAM roofline at the fetched bytes")
    a2.plot(r, [row["tokens_per_joule"]["typical"] for row in rows], "o-",
            label="estimate (typical)")
    a2.fill_between(r, [row["tokens_per_joule"]["low"] for row in rows],
                    [row["tokens_per_joule"]["high"] for row in rows], alpha=0.25,
                    label="low–high coefficients")
    here = est.projection.firing_rate
    for ax in (a1, a2):
        ax.axvline(here, color="tab:green", lw=1, ls=":",
                   label=f"measured rate {here:.2f}" if est.projection.firing.uniform is None
                   else f"given rate {here:.2f}")
    for name, tps, watts, _ in PUBLISHED:
        a1.axhline(tps, color="tab:red", lw=0.6, alpha=0.5)
        a1.annotate(name, (1.0, tps), fontsize=7, ha="right", va="bottom", color="tab:red")
        if watts:
            a2.axhline(tps / watts, color="tab:red", lw=0.6, alpha=0.5)
            a2.annotate(name, (1.0, tps / watts), fontsize=7, ha="right", va="bottom",
                        color="tab:red")
    a1.set(xlabel="firing rate (fraction of columns fetched)", ylabel="tokens/s",
           title=f"{cfg.name} on {board.name}, {est.projection.weight_ports} ports, "
                 f"{est.projection.packing} (estimate)", yscale="log")
    a2.set(xlabel="firing rate", ylabel="tokens/J (dynamic power)",
           title="energy per token (estimate)", yscale="log")
    a1.legend(fontsize=7, loc="lower left")
    a2.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
