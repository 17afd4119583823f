"""The default model on the simulated core: cycles, bytes, efficiency, simulation speed.

    python bench/core_speed.py [--tokens 16] [--latency 0 24] [--json]

For each DRAM latency (cycles from an accepted burst request to its first beat) it runs greedy
decoding on the Verilator-simulated NSLLMCore and reports, per generated token: cycles, bytes
read (all, and weights), firing rate, efficiency = cycles in which the read port moves data
(bytes ÷ port bytes ÷ cycles), the cycle model's prediction (nsllm.perf.cycles) and its
error, and the simulation speed. It also checks that fetched weight bytes follow the firing rate:
the same model with every other input neuron silenced fetches about half the weight bytes.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

from nsllm.hdl.core import CoreParams
from nsllm.model import load_model, resolve_model_path
from nsllm.model.tokenizer import load_tokenizer
from nsllm.perf.bench import BenchConfig, run_bench
from nsllm.sim.verilator_device import sim_backend

PROMPT = "The "


def run(weights, tokens: int, latency: int, stall: float = 0.0) -> dict:
    tok = load_tokenizer(weights.config.tokenizer, resolve_model_path(None))
    params = CoreParams.for_model(weights.config)
    backend = sim_backend(weights, params, latency=latency, stall_prob=stall, seed=1)
    cfg = BenchConfig(backend="sim", latency=latency, stall_prob=stall, tokens=tokens,
                      prompt=PROMPT)
    t0 = time.perf_counter()
    out = run_bench(cfg, weights, tok, backend=backend, params=params)
    seconds = time.perf_counter() - t0
    port = params.port_bytes
    cycles = out["cycles_per_token"]
    return {
        "latency": latency, "stall_prob": stall, "tokens": out["tokens"],
        "cycles_per_token": round(cycles), "bytes_per_token": out["bytes_per_token"],
        "weight_bytes_per_token": out["weight_bytes_per_token"],
        "firing_rate": out["firing_rate"],
        "efficiency": round(out["bytes_per_token"] / port / cycles, 4),
        "model_cycles_per_token": round(out["predicted_cycles_per_token"]),
        "model_error": round(out["model_error"], 4),
        "sim_tokens_per_s": round(len(backend.summary.per_token) / seconds, 2),
        "sim_cycles_per_s": round(backend.summary.cycles / seconds),
    }


def halved(weights):
    """The same model with every other input neuron of every ternary layer silenced."""
    w = copy.deepcopy(weights)
    for lin in w.linears.values():
        lin.norm_weight[1::2] = 0.0
    return w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--latency", type=int, nargs="+", default=[0, 24])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    weights = load_model(resolve_model_path(None))
    rows = [run(weights, args.tokens, lat) for lat in args.latency]
    rows.append(run(weights, args.tokens, args.latency[-1], stall=0.2))
    half = run(halved(weights), args.tokens, args.latency[0])
    half["model"] = "every other input silenced"
    rows.append(half)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'latency':>7} {'stalls':>6} {'cycles/tok':>10} {'bytes/tok':>9} {'weights':>8} "
          f"{'firing':>6} {'effic.':>6} {'model':>8} {'err':>6} {'sim tok/s':>9}")
    for r in rows:
        print(f"{r['latency']:>7} {r['stall_prob']:>6.0%} {r['cycles_per_token']:>10,} "
              f"{r['bytes_per_token']:>9,} {r['weight_bytes_per_token']:>8,} "
              f"{r['firing_rate']:>6.1%} {r['efficiency']:>6.1%} "
              f"{r['model_cycles_per_token']:>8,} {r['model_error']:>+6.1%} "
              f"{r['sim_tokens_per_s']:>9.2f}" + ("  (every other input silenced)"
                                                  if "model" in r else ""))
    full, half = rows[0], rows[-1]
    print(f"\nsilencing half the inputs: firing rate {full['firing_rate']:.1%} → "
          f"{half['firing_rate']:.1%}, weight bytes {full['weight_bytes_per_token']:,} → "
          f"{half['weight_bytes_per_token']:,} "
          f"({half['weight_bytes_per_token'] / full['weight_bytes_per_token']:.2f}×)")


if __name__ == "__main__":
    main()
