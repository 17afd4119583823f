"""The cycle model against Verilator: the validation table of docs/performance.md.

    python bench/cycle_model.py [--tokens 8] [--json]

Runs the shipped model on the simulated core (greedy, prompt "def ") at 1 and 3 weight ports,
both packings, DRAM latency 0 and 64 cycles and read stalls 0 and 20 %, and reports the measured
cycles per generated token, the cycle model's prediction (nsllm.perf.cycles, from the fired
columns of the same tokens) and the error; writes bench/results/cycle_model.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from nsllm.hdl.core import CoreParams
from nsllm.model import load_model, resolve_model_path
from nsllm.model.tokenizer import ByteTokenizer
from nsllm.perf.bench import BenchConfig, run_bench
from nsllm.sim.verilator_device import sim_backend

CONFIGS = [(1, "2bit", 0, 0.0), (1, "base3", 64, 0.0), (1, "2bit", 64, 0.2),
           (1, "base3", 0, 0.2), (3, "2bit", 0, 0.0), (3, "base3", 64, 0.0),
           (3, "2bit", 64, 0.2), (3, "base3", 0, 0.2)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", default="bench/results/cycle_model.json")
    args = ap.parse_args(argv)
    weights = load_model(resolve_model_path(None))
    rows = []
    for ports, packing, latency, stall in CONFIGS:
        params = CoreParams.for_model(weights.config, weight_ports=ports,
                                      packings=("2bit", "base3"))
        backend = sim_backend(weights, params, packing=packing, latency=latency,
                              stall_prob=stall, seed=1, timeout=600)
        cfg = BenchConfig(backend="sim", weight_ports=ports, packing=packing, latency=latency,
                          stall_prob=stall, tokens=args.tokens, prompt="def ")
        t0 = time.perf_counter()
        out = run_bench(cfg, weights, ByteTokenizer(), backend=backend, params=params)
        out["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(out)
        if not args.json:
            print(f"{ports} ports {packing:5s} latency {latency:3d} stalls {stall:4.0%}: "
                  f"measured {out['cycles_per_token']:>9,.0f} model "
                  f"{out['predicted_cycles_per_token']:>9,.0f} ({out['model_error']:+.2%}, worst "
                  f"token {out['per_token_error_max']:.2%})", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
