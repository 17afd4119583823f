"""Sensitivity-driven mixed timesteps vs uniform D at equal average-timestep budgets.

    .venv/bin/python bench/allocation.py [--model M] [--budgets 3,7] [--out-dir docs/figures]

1. θ*(D) for every layer and D ∈ {1, 3, 7, 15} from the calibration text (a slice of the training
   split, :func:`nsllm.data.corpus.calibration_text`).
2. Hierarchical sensitivity (block, sub-layer, projection) on the calibration text, float model;
   JSON report and PNG plot.
3. For each budget B: the DP allocation (average D weighted by #weights ≤ B) and uniform D = B
   (when B is in the set); both use the same θ rule.
4. Every configuration is measured on the **held-out** text with the **integer golden model**:
   KL of next-token distributions from the unchanged (D = 15) integer model, and bits/byte.
Prints a Markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from nsllm.data.corpus import calibration_text, pydoc_corpus
from nsllm.model import load_model, resolve_model_path
from nsllm.model.numerics import SPIKE_COUNT_SET
from nsllm.model.stats import mean_firing_rate
from nsllm.quant.allocation import allocate, uniform, weighted_average
from nsllm.quant.probe import QuantProbe, layer_weights
from nsllm.quant.quantize import calibration_thetas
from nsllm.quant.sensitivity import measure_sensitivity, plot_sensitivity, quant_at


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None,
                    help="a .nsllm file or a shipped model name (default: the default model)")
    ap.add_argument("--budgets", default="3,7")
    ap.add_argument("--calib-bytes", type=int, default=4096)
    ap.add_argument("--heldout-bytes", type=int, default=None, help="default: all of it")
    ap.add_argument("--out-dir", default="docs/figures")
    ap.add_argument("--json", default="bench/results/allocation.json")
    args = ap.parse_args()

    t0 = time.time()
    args.model = str(resolve_model_path(args.model))
    w = load_model(args.model)
    calib = np.frombuffer(calibration_text(args.calib_bytes).encode(), np.uint8).astype(np.int64)
    held = pydoc_corpus()[1].encode()[: args.heldout_bytes]
    held = np.frombuffer(held, np.uint8).astype(np.int64)
    sizes = layer_weights(w)

    thetas = calibration_thetas(w, calib, SPIKE_COUNT_SET)
    probe = QuantProbe(w, calib, backend="float")
    report = measure_sensitivity(probe, thetas, SPIKE_COUNT_SET)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report.save(Path(args.json).with_name("sensitivity.json") if args.json else
                out_dir / "sensitivity.json")
    plot_sensitivity(report, out_dir / "sensitivity.png")
    t_sens = time.time() - t0

    golden = QuantProbe(w, held, backend="integer")
    costs = report.cost_table("kl")
    rows = [{"budget": 15, "method": "uniform D = 15 (reference)", "average_D": 15.0,
             "kl": golden.base.kl, "bits_per_byte": golden.base.bits_per_byte,
             "weighted_firing": mean_firing_rate(golden.base.firing, sizes),
             "predicted_sensitivity": 0.0}]
    for B in [float(b) for b in args.budgets.split(",")]:
        configs = []
        if B in SPIKE_COUNT_SET:
            configs.append((f"uniform D = {B:g}", uniform(costs, int(B))))
        alloc = allocate(costs, sizes, B)
        configs.append(("sensitivity allocation (DP)", alloc.D))
        for method, D in configs:
            changes = {n: quant_at(probe, report.thetas, n, d) for n, d in D.items()}
            m = golden.measure(changes)
            rows.append({"budget": B, "method": method, "average_D": weighted_average(D, sizes),
                         "kl": m.kl, "bits_per_byte": m.bits_per_byte,
                         "weighted_firing": mean_firing_rate(m.firing, sizes),
                         "predicted_sensitivity": sum(costs[n][d] for n, d in D.items()),
                         "D": D})
    print("| budget (avg D) | method | avg D | KL vs D=15 (nats/prediction) | bits/byte | "
          "firing (weighted) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['budget']:g} | {r['method']} | {r['average_D']:.2f} | {r['kl']:.4f} | "
              f"{r['bits_per_byte']:.4f} | {r['weighted_firing']:.3f} |")
    for r in rows:
        if "D" in r and r["method"].startswith("sensitivity"):
            counts = {d: sum(1 for v in r["D"].values() if v == d) for d in SPIKE_COUNT_SET}
            print(f"B={r['budget']:g}: layers per D {counts}; "
                  + ", ".join(f"{n}={d}" for n, d in r["D"].items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "model": Path(args.model).name, "calib_bytes": len(calib), "heldout_bytes": len(held),
            "seconds_sensitivity": round(t_sens, 1), "seconds_total": round(time.time() - t0, 1),
            "rows": rows}, indent=1) + "\n")
    print(f"sensitivity {t_sens:.0f} s, total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
