"""The sparsity trade-off: held-out bits/byte against weighted firing rate and against average D.

    .venv/bin/python bench/pareto.py --points A.nsllm,B.nsllm,... --dense DENSE.nsllm
        [--dense-mixed DENSE_B7.nsllm] [--control CONTROL.nsllm] [--shipped SHIPPED.nsllm]
        [--shipped-trained TRAINED.nsllm] [--sensitivity MODEL=REPORT.json,...]
        [--budgets 3,5] [--previous OLD_RESULTS.json]

* Every **trained point** (sparsity-aware QAT, its training card ``X.train.json`` beside it) is
  measured as trained (its own D per layer, learned θ and δ); the table names its starting model,
  steps, firing target, distillation teacher and average D.
* The **baseline curves**: the dense-trained model with post-hoc δ (same δ added in every layer,
  the grid below); with ``--dense-mixed``, the same for the dense model at an allocated mixed D
  (the fair baseline for points trained at that D); with ``--control``, a model fine-tuned like
  the points but without a firing-rate target, so that extra training alone is not counted as the
  gain of sparsity-aware training.
* **Margin at equal firing rate**: the baseline curve's bits/byte at the point's firing rate
  (linear interpolation between its measured points) minus the point's bits/byte; positive means
  sparsity-aware training is better. No number when the point lies outside the curve's range.
* **Against average D**: the mixed-timestep allocation (sensitivity report → DP) at each budget
  below the model's own D, for the dense model and for ``--shipped-trained`` (reports passed with
  ``--sensitivity`` are reused, else measured); the trained points at their own average D.
* ``--previous``: points of an earlier results file (models not kept) are shown, marked reused.

Everything is measured on the held-out text with the integer golden model. Prints Markdown tables,
writes ``bench/results/pareto.json`` and ``docs/figures/pareto.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from nsllm.data.corpus import calibration_text, pydoc_corpus
from nsllm.model import load_model
from nsllm.model.stats import evaluate, mean_firing_rate
from nsllm.quant.allocation import allocate, weighted_average
from nsllm.quant.calibrate import with_quant
from nsllm.quant.probe import QuantProbe, layer_weights
from nsllm.quant.quantize import apply_timesteps, calibration_thetas
from nsllm.quant.sensitivity import SensitivityReport, measure_sensitivity

POSTHOC = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)


def measure(weights, held) -> dict:
    from nsllm.model import IntegerModel

    st = evaluate(IntegerModel(weights), held)
    sizes = layer_weights(weights)
    return {"bits_per_byte": round(st.bits_per_byte, 4),
            "weighted_firing": round(mean_firing_rate(st.firing, sizes), 4),
            "average_D": round(weighted_average({n: q.D for n, q in weights.config.quant.items()},
                                                sizes), 3)}


def posthoc_curve(weights, held, log, measured: list[dict] | None = None) -> list[dict]:
    """Same δ added in every layer; rows of ``measured`` (held-out, integer model, same text:
    ``bench/sparsify.py``'s ``heldout_curve``) are reused instead of measured again."""
    known = {r["delta"]: r for r in measured or []}
    rows = []
    for d in POSTHOC:
        if d in known:
            r = known[d]
            rows.append({"delta": d, "bits_per_byte": round(r["bits_per_byte"], 4),
                         "weighted_firing": round(r["weighted_firing"], 4), "average_D": 15.0,
                         "reused": True})
            continue
        w = with_quant(weights, {n: replace(q, delta=q.delta + d)
                                 for n, q in weights.config.quant.items()})
        rows.append({"delta": d, **measure(w, held)})
        log(f"    post-hoc δ +{d:g}: {rows[-1]}")
    return rows


def measure_avg_d(weights) -> float:
    return weighted_average({n: q.D for n, q in weights.config.quant.items()},
                            layer_weights(weights))


def interpolate(curve: list[dict], firing: float) -> float | None:
    pts = sorted((r["weighted_firing"], r["bits_per_byte"]) for r in curve)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    if not xs[0] <= firing <= xs[-1]:
        return None
    return float(np.interp(firing, xs, ys))


def train_card(path: Path) -> dict:
    p = path.with_suffix(".train.json")
    return json.loads(p.read_text()) if p.is_file() else {}


def d_curve(weights, held, calib, budgets, report, log) -> list[dict]:
    """The model as it is, then allocated under each budget below its own average D."""
    own = measure(weights, held)
    budgets = [B for B in budgets if B < own["average_D"] - 1e-9]
    rows = [{"budget": own["average_D"], "as_trained": True, **own}]
    if not budgets:
        return rows
    if report is None:
        thetas = calibration_thetas(weights, calib)
        report = measure_sensitivity(QuantProbe(weights, calib), thetas)
    probe = QuantProbe(weights, calib)
    for B in budgets:
        alloc = allocate(report.cost_table("kl"), layer_weights(weights), B)
        rows.append({"budget": B, **measure(apply_timesteps(probe, report.thetas, alloc.D), held)})
        log(f"    budget {B:g}: {rows[-1]}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", required=True, help="trained models, comma-separated")
    ap.add_argument("--dense", required=True, help="the dense-trained model (δ = 0)")
    ap.add_argument("--dense-mixed", default=None,
                    help="the dense model at an allocated mixed D (post-hoc δ baseline at that D)")
    ap.add_argument("--control", default=None, help="fine-tuned like the points, no target")
    ap.add_argument("--previous", default=None,
                    help="an earlier results file whose points are shown too (marked reused)")
    ap.add_argument("--shipped", default=None, help="pipeline output (its card has the stages)")
    ap.add_argument("--shipped-trained", default=None, help="the shipped model before allocation")
    ap.add_argument("--sensitivity", default="", help="MODEL=REPORT.json pairs, comma-separated")
    ap.add_argument("--budgets", default="3,5,7")
    ap.add_argument("--labels", default="",
                    help="MODEL=LABEL pairs, comma-separated: what each point is (table and plot)")
    ap.add_argument("--reuse", default="bench/results/sparsify.json",
                    help="bench/sparsify.py results of the dense model: its held-out δ curve is "
                         "reused ('' to measure everything)")
    ap.add_argument("--reuse-allocation", default="bench/results/allocation.json",
                    help="bench/allocation.py results of the dense model: its DP rows are reused "
                         "for the dense curve against average D ('' to measure)")
    ap.add_argument("--json", default="bench/results/pareto.json")
    ap.add_argument("--plot", default="docs/figures/pareto.png")
    args = ap.parse_args()

    t0 = time.time()

    def log(m):
        print(m, flush=True)

    held = np.frombuffer(pydoc_corpus()[1].encode(), np.uint8).astype(np.int64)
    calib = np.frombuffer(calibration_text().encode(), np.uint8).astype(np.int64)
    reports = {}
    for pair in filter(None, args.sensitivity.split(",")):
        m, r = pair.split("=")
        reports[str(Path(m))] = SensitivityReport.load(r)
    budgets = [float(b) for b in args.budgets.split(",")]

    log("dense model, post-hoc δ")
    dense = load_model(args.dense)
    reuse = json.loads(Path(args.reuse).read_text())["heldout_curve"] if args.reuse else None
    baselines = {"dense-trained + post-hoc δ": posthoc_curve(dense, held, log, reuse)}
    if args.dense_mixed:
        mixed = load_model(args.dense_mixed)
        label = f"dense-trained at average D {measure_avg_d(mixed):.2f} + post-hoc δ"
        log(label)
        baselines[label] = posthoc_curve(mixed, held, log)
    if args.control:
        log("control (fine-tuned without a target), post-hoc δ")
        baselines["control (fine-tuned, no target) + post-hoc δ"] = posthoc_curve(
            load_model(args.control), held, log)
    labels = dict(pair.split("=", 1) for pair in filter(None, args.labels.split(",")))
    points = []
    for path in map(Path, filter(None, args.points.split(","))):
        card = train_card(path)
        s = card.get("settings", {})
        row = {"model": path.name, "label": labels.get(path.name, labels.get(str(path))),
               "firing_target": s.get("firing_target"),
               "steps": s.get("steps"), "firing_ramp": s.get("firing_ramp", 0),
               "init": s.get("init"), "distill": s.get("distill"),
               "distill_weight": s.get("distill_weight") if s.get("distill") else None,
               "lr": s.get("lr"), "train_seconds": card.get("train_seconds"),
               **measure(load_model(path), held)}
        for name, curve in baselines.items():
            b = interpolate(curve, row["weighted_firing"])
            row[f"margin vs {name}"] = None if b is None else round(b - row["bits_per_byte"], 4)
            row[f"baseline bpb, {name}"] = None if b is None else round(b, 4)
        points.append(row)
        log(f"  point {row}")
    previous = []
    if args.previous:
        previous = [{**p, "reused": True}
                    for p in json.loads(Path(args.previous).read_text())["points"]]
    d_curves = {}
    log("against average D: dense")
    if args.reuse_allocation:
        rows = json.loads(Path(args.reuse_allocation).read_text())["rows"]
        d_curves["dense-trained"] = [
            {"budget": float(r["budget"]), "bits_per_byte": round(r["bits_per_byte"], 4),
             "weighted_firing": round(r["weighted_firing"], 4),
             "average_D": round(r["average_D"], 3), "reused": True}
            for r in rows if r["method"].startswith(("sensitivity", "uniform D = 15"))]
    else:
        d_curves["dense-trained"] = d_curve(dense, held, calib, budgets,
                                            reports.get(str(Path(args.dense))), log)
    if args.shipped_trained:
        log("against average D: shipped model's trained stage")
        d_curves["sparsity-aware trained (shipped run's trained stage)"] = d_curve(
            load_model(args.shipped_trained), held, calib, budgets,
            reports.get(str(Path(args.shipped_trained))), log)
    shipped = None
    if args.shipped:
        shipped = {"model": Path(args.shipped).name, **measure(load_model(args.shipped), held)}

    res = {"heldout_bytes": len(held), "posthoc_deltas": POSTHOC, "baselines": baselines,
           "points": points, "previous_points": previous, "d_curves": d_curves,
           "shipped": shipped,
           "seconds": round(time.time() - t0, 1)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    plot(res, args.plot)

    names = list(baselines)
    print("\n| point | init | steps | r* | distill | average D | weighted firing | bits/byte | "
          + " | ".join(f"margin vs {n}" for n in names) + " |")
    print("| --- " * (8 + len(names)) + "|")
    for p in points + previous:
        cells = []
        for n in names:
            m = p.get(f"margin vs {n}")
            cells.append("—" if m is None else f"{m:+.4f} (baseline {p[f'baseline bpb, {n}']:.4f})")
        init = Path(p["init"]).name if p.get("init") else "scratch"
        kd = f"{Path(p['distill']).name} α={p['distill_weight']}" if p.get("distill") else "—"
        name = p.get("label") or p["model"]
        print(f"| {name}{' (reused)' if p.get('reused') else ''} | {init} | {p['steps']} | "
              f"{p['firing_target']} | {kd} | {p['average_D']:.2f} | {p['weighted_firing']:.3f} | "
              f"{p['bits_per_byte']:.4f} | " + " | ".join(cells) + " |")
    for name, curve in baselines.items():
        print(f"\n{name}: " + ", ".join(f"δ+{r['delta']:g}: {r['weighted_firing']:.3f} / "
                                        f"{r['bits_per_byte']:.4f}" for r in curve))
    print("\n| model | budget (avg D) | average D | weighted firing | bits/byte |")
    print("| --- | --- | --- | --- | --- |")
    for name, rows in d_curves.items():
        for r in rows:
            budget = "as trained" if r.get("as_trained") else f"{r['budget']:g}"
            print(f"| {name} | {budget} | {r['average_D']:.2f} | "
                  f"{r['weighted_firing']:.3f} | {r['bits_per_byte']:.4f} |")
    if shipped:
        print(f"\nshipped: {shipped}")
    print(f"total {time.time() - t0:.0f} s")


def plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for (name, curve), style in zip(res["baselines"].items(), ("o-", "s--"), strict=False):
        a.plot([r["weighted_firing"] for r in curve], [r["bits_per_byte"] for r in curve], style,
               label=name, alpha=0.8)
    groups: dict[str, list[dict]] = {}
    for p in res["points"] + res.get("previous_points", []):
        key = f"sparsity-aware QAT, average D {p['average_D']:.1f}"
        if p.get("reused"):
            key += " (earlier run)"
        groups.setdefault(key, []).append(p)
    for (key, pts), style in zip(groups.items(), ("r*", "m^", "c*", "gv"), strict=False):
        a.plot([p["weighted_firing"] for p in pts], [p["bits_per_byte"] for p in pts], style,
               markersize=11 if "*" in style else 7, label=key,
               fillstyle="none" if "earlier" in key else "full")
        for p in pts:
            a.annotate(p.get("label") or f"r*={p['firing_target']}",
                       (p["weighted_firing"], p["bits_per_byte"]), fontsize=6,
                       textcoords="offset points", xytext=(4, -10))
    if res.get("shipped"):
        s = res["shipped"]
        a.plot([s["weighted_firing"]], [s["bits_per_byte"]], "kD", markersize=8,
               label=f"shipped (pipeline, average D {s['average_D']:.1f})")
    a.set_xlabel("weighted firing rate (held-out)")
    a.set_ylabel("held-out bits/byte (integer model)")
    a.grid(alpha=0.3)
    a.legend(fontsize=7)
    for name, rows in res["d_curves"].items():
        rows = sorted(rows, key=lambda r: r["average_D"])
        b.plot([r["average_D"] for r in rows], [r["bits_per_byte"] for r in rows], "o-",
               label=f"{name}: allocation")
        for r in rows:
            b.annotate(f"{r['weighted_firing']:.2f}", (r["average_D"], r["bits_per_byte"]),
                       fontsize=7, textcoords="offset points", xytext=(3, 3))
    for key, pts in groups.items():
        if "earlier" not in key:
            b.plot([p["average_D"] for p in pts], [p["bits_per_byte"] for p in pts], "r*",
                   markersize=9, label="sparsity-aware QAT at its D" if key == next(iter(groups))
                   else None)
    b.set_xlabel("average D (weighted by #weights)")
    b.set_ylabel("held-out bits/byte (integer model)")
    b.set_title("labels: weighted firing rate", fontsize=8)
    b.grid(alpha=0.3)
    b.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
