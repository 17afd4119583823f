"""Quantization-assisted sparsification of the default model: δ sweep, choice, measured cost.

    .venv/bin/python bench/sparsify.py [--model M] [--kl-budgets 0.02,0.05,0.1]
        [--out-dir docs/figures]

1. Per-layer δ sweep on the calibration text (float model): each layer's firing rate and KL.
2. δ per layer under Σ KL ≤ budget, for each budget (Lagrangian choice,
   :mod:`nsllm.quant.sparsify`).
3. Measured on the **held-out** text with the **integer golden model**: the same δ in every layer
   for each δ of the grid (the curve), and the chosen per-layer δ (the point).
Prints Markdown tables, writes JSON and a PNG (firing rate vs bits/byte).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from nsllm.data.corpus import calibration_text, pydoc_corpus
from nsllm.model import load_model, resolve_model_path
from nsllm.model.stats import mean_firing_rate
from nsllm.quant.probe import QuantProbe, layer_weights
from nsllm.quant.sparsify import (
    DEFAULT_DELTAS,
    choose_deltas,
    choose_sparsity,
    plot_sweep,
    sweep,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None,
                    help="a .nsllm file or a shipped model name (default: the default model)")
    ap.add_argument("--kl-budgets", default="0.02,0.05,0.1",
                    help="Σ KL budgets (nats per prediction), comma-separated")
    ap.add_argument("--calib-bytes", type=int, default=4096)
    ap.add_argument("--out-dir", default="docs/figures")
    ap.add_argument("--json", default="bench/results/sparsify.json")
    args = ap.parse_args()

    t0 = time.time()
    args.model = str(resolve_model_path(args.model))
    w = load_model(args.model)
    sizes = layer_weights(w)
    calib = np.frombuffer(calibration_text(args.calib_bytes).encode(), np.uint8).astype(np.int64)
    held = np.frombuffer(pydoc_corpus()[1].encode(), np.uint8).astype(np.int64)

    calib_probe = QuantProbe(w, calib, backend="float")
    sw = sweep(calib_probe, DEFAULT_DELTAS)
    budgets = [float(b) for b in args.kl_budgets.split(",")]

    golden = QuantProbe(w, held, backend="integer")
    curve = []
    for d in DEFAULT_DELTAS:
        m = golden.measure({n: replace(q, delta=d) for n, q in golden.base_quant.items()})
        curve.append({"delta": d, "kl": m.kl, "bits_per_byte": m.bits_per_byte,
                      "mean_firing": mean_firing_rate(m.firing),
                      "weighted_firing": mean_firing_rate(m.firing, sizes)})
    chosen = []
    for budget in budgets:
        for method, choice in (("per-layer δ (Lagrangian)", choose_deltas(sw, sizes, budget)),
                               ("chosen (choose_sparsity)",
                                choose_sparsity(calib_probe, sw, budget))):
            m = golden.measure({n: replace(q, delta=choice.delta[n])
                                for n, q in golden.base_quant.items()})
            chosen.append({"kl_budget": budget, "method": method, "source": choice.source,
                           "kl": m.kl, "bits_per_byte": m.bits_per_byte,
                           "mean_firing": mean_firing_rate(m.firing),
                           "weighted_firing": mean_firing_rate(m.firing, sizes),
                           "delta": choice.delta, "firing": m.firing,
                           "calib": {"kl": choice.predicted_kl,
                                     "weighted_firing": choice.predicted_firing}})
    base = curve[0]

    held_sweep = replace(sw, global_curve=curve)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_sweep(held_sweep, out_dir / "sparsify.png",
               [c for c in chosen if c["method"].startswith("chosen")])

    print("| δ (all layers) | firing rate (weighted) | firing rate (mean) | bits/byte | KL |")
    print("| --- | --- | --- | --- | --- |")
    for r in curve:
        print(f"| {r['delta']:g} | {r['weighted_firing']:.3f} | {r['mean_firing']:.3f} | "
              f"{r['bits_per_byte']:.4f} | {r['kl']:.4f} |")
    for c in chosen:
        print(f"| {c['method']}, KL ≤ {c['kl_budget']:g}: {c['source']} | "
              f"{c['weighted_firing']:.3f} | "
              f"{c['mean_firing']:.3f} | {c['bits_per_byte']:.4f} | {c['kl']:.4f} |")
    for c in chosen:
        cut = 1 - c["weighted_firing"] / base["weighted_firing"]
        print(f"{c['method']}, KL ≤ {c['kl_budget']:g}: weighted firing rate "
              f"{base['weighted_firing']:.3f} → "
              f"{c['weighted_firing']:.3f} ({100 * cut:.1f} % fewer non-zero counts) for "
              f"{c['bits_per_byte'] - base['bits_per_byte']:+.4f} bits/byte; δ ≠ 0: "
              + ", ".join(f"{n}={d:g}" for n, d in c["delta"].items() if d))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "model": Path(args.model).name, "kl_budgets": budgets,
            "calib_sweep": sw.to_json(), "heldout_curve": curve, "chosen": chosen,
            "seconds": round(time.time() - t0, 1)}, indent=1) + "\n")
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
