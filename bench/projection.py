"""Projections on the VCK190 (estimates): every preset, the port counts, what limits them.

    python bench/projection.py [--json | --markdown] [--from-json]

Measures the shipped model's per-layer firing rates with the golden model on the held-out text
(2048 tokens), then projects every preset at 3 and 4 weight ports and both packings with
``nsllm estimate``'s code (nsllm.perf.estimate: cycle model, board memories, measured toggle
activity when cached, the resource snapshot), and a sensitivity sweep for nsllm-1.5b (DRAM
latency, firing rate). Writes bench/results/projection.json; ``--markdown`` prints the two tables
of docs/performance.md from it (``--from-json``: from the saved file, without measuring again).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nsllm.boards import get_board
from nsllm.hdl.core.params import CoreParams
from nsllm.model import load_model, preset, resolve_model_path
from nsllm.model.config import PRESETS
from nsllm.perf import resources as res_mod
from nsllm.perf.activity import Activity
from nsllm.perf.activity import measure as measure_activity
from nsllm.perf.estimate import estimate
from nsllm.perf.firing import FiringProfile, measure


def row(est) -> dict:
    d = est.as_dict()
    return {k: d[k] for k in ("model", "weight_ports", "packing", "firing_rate", "tokens_per_s",
                              "cycles_per_token", "roofline_tokens_per_s", "roofline_fraction",
                              "limits", "bytes_per_token", "watts", "watts_total",
                              "tokens_per_joule", "ports")}


def markdown(out: dict) -> str:
    """The preset table and the nsllm-1.5b sensitivity table of docs/performance.md."""
    lines = ["| model | ports | packing | firing | tokens/s | roofline tokens/s | reached "
             "| dynamic W (band) | tokens/J |", "| --- " * 9 + "|"]
    for r in out["presets"]:
        w = r["watts"]
        lines.append(f"| {r['model']} | {r['weight_ports']} | {r['packing']} | "
                     f"{r['firing_rate']:.2f} | {r['tokens_per_s']:,.1f} | "
                     f"{r['roofline_tokens_per_s']:,.1f} | {r['roofline_fraction']:.0%} | "
                     f"{w['typical']:.2f} ({w['low']:.2f}–{w['high']:.2f}) | "
                     f"{r['tokens_per_joule']['typical']:.1f} |")
    lines += ["", "| ports | case | firing | tokens/s | roofline | reached | ports' bandwidth "
              "limit | with latency | cycles without weight streaming |", "| --- " * 9 + "|"]
    for r in out["sensitivity"]:
        lim = r["limits"]
        lines.append(f"| {r['weight_ports']} | {r['case']} | {r['firing_rate']:.2f} | "
                     f"{r['tokens_per_s']:.1f} | {r['roofline_tokens_per_s']:.1f} | "
                     f"{r['roofline_fraction']:.0%} | {lim['ports_bandwidth_tokens_per_s']:.1f} | "
                     f"{lim['ports_with_latency_tokens_per_s']:.1f} | "
                     f"{lim['non_weight_cycle_fraction']:.1%} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="print docs/performance.md's tables")
    ap.add_argument("--from-json", action="store_true",
                    help="with --markdown: the tables of the saved --out file, nothing measured")
    ap.add_argument("--out", default="bench/results/projection.json")
    args = ap.parse_args(argv)
    if args.markdown and args.from_json:
        print(markdown(json.loads(Path(args.out).read_text())))
        return 0
    board = get_board("vck190")
    path = resolve_model_path(None)
    weights = load_model(path)
    firing = measure(weights, model_label=f"{weights.config.name} ({path.name})",
                     model_path=path)
    try:
        activity = measure_activity(weights, tokens=8, progress=print)
    except Exception as e:  # no Verilator: XPE's default, said so in the output
        print(f"activity not measured ({e}); XPE default", file=sys.stderr)
        activity = Activity.default()
    out = {"firing": firing.as_dict(), "activity": activity.as_dict(), "presets": [],
           "sensitivity": []}
    for name in PRESETS:
        cfg = preset(name)
        for ports in (3, 4):
            for packing in ("2bit", "base3"):
                params = CoreParams.for_model(cfg, port_bytes=64, vector=16, weight_ports=ports,
                                              packings=("2bit", "base3"), max_D=15)
                est = estimate(cfg, board, firing, res_mod.load(params), activity,
                               weight_ports=ports, packing=packing, params=params)
                out["presets"].append(row(est))
                r = out["presets"][-1]
                if not args.json:
                    print(f"{name:12s} {ports} ports {packing:5s} firing {r['firing_rate']:.3f}: "
                          f"{r['tokens_per_s']:8.1f} tokens/s ({r['roofline_fraction']:.0%} of "
                          f"{r['roofline_tokens_per_s']:.1f}), {r['watts']['typical']:.2f} W, "
                          f"{r['tokens_per_joule']['typical']:.2f} tokens/J", flush=True)
    cfg = preset("nsllm-1.5b")
    for ports in (3, 4):
        params = CoreParams.for_model(cfg, port_bytes=64, vector=16, weight_ports=ports,
                                      packings=("2bit", "base3"), max_D=15)
        res = res_mod.load(params)
        for label, prof, lat in [("measured rate, 0 ns", firing, 0.0),
                                 ("measured rate, 100 ns", firing, 100.0),
                                 ("measured rate, 300 ns", firing, 300.0),
                                 ("rate 0.35, 150 ns", FiringProfile.given(0.35), None),
                                 ("rate 0.25, 150 ns", FiringProfile.given(0.25), None)]:
            est = estimate(cfg, board, prof, res, activity, weight_ports=ports,
                           packing="base3", latency_ns=lat, params=params)
            r = row(est) | {"case": label}
            out["sensitivity"].append(r)
            if not args.json:
                print(f"nsllm-1.5b {ports} ports base3 {label:22s}: {r['tokens_per_s']:8.1f} "
                      f"tokens/s ({r['roofline_fraction']:.0%} of "
                      f"{r['roofline_tokens_per_s']:.1f}), limits {r['limits']}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    if args.json:
        print(json.dumps(out, indent=1))
    if args.markdown:
        print(markdown(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
