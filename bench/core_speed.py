"""The default model on the simulated core: cycles, bytes, efficiency, simulation speed.

    python bench/core_speed.py [--tokens 16] [--latency 0 24] [--json]

For each DRAM latency (cycles from an accepted burst request to its first beat) it runs greedy
decoding on the Verilator-simulated NSLLMCore and reports, per generated token: cycles, bytes
read (all, and weights), firing rate, efficiency = cycles in which the read port moves data
(bytes ÷ port bytes ÷ cycles), the analytic cycle model's estimate (nsllm.perf.model) and its
error, and the simulation speed. It also checks that fetched weight bytes follow the firing rate:
the same model with every other input neuron silenced fetches about half the weight bytes.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

from nsllm.hdl.core import CoreParams
from nsllm.host.generator import Generator
from nsllm.host.program import Interpreter
from nsllm.model import load_model, resolve_model_path
from nsllm.model.tokenizer import load_tokenizer
from nsllm.perf.model import estimate_cycles, fired_from_stats
from nsllm.sim.verilator_device import sim_backend

PROMPT = "The "


def run(weights, tokens: int, latency: int, stall: float = 0.0) -> dict:
    tok = load_tokenizer(weights.config.tokenizer, resolve_model_path(None))
    params = CoreParams.for_model(weights.config)
    backend = sim_backend(weights, params, latency=latency, stall_prob=stall, seed=1)
    gen = Generator(backend, tok)
    t0 = time.perf_counter()
    res = gen.generate(PROMPT, tokens)
    seconds = time.perf_counter() - t0
    runs = backend.summary.per_token[len(res.prompt_tokens):]
    image = backend.runner.loaded.image
    port = backend.runner.loaded.build.port_bytes
    interp = Interpreter(image.raw, image.scratch_entries, image.packing, base=image.base)
    interp.run(image.reset)
    estimates = []
    for tid in res.prompt_tokens + res.tokens[:-1]:
        estimates.append(estimate_cycles(image.token, fired_from_stats(
            interp.run(image.token, token=tid)), port, params.vector, latency=max(latency, 1)))
    estimates = estimates[len(res.prompt_tokens):]
    cycles = sum(r.cycles for r in runs) / len(runs)
    bus = sum(r.bus_bytes for r in runs) / len(runs)
    est = sum(e.cycles for e in estimates) / len(estimates)
    return {
        "latency": latency, "stall_prob": stall, "tokens": len(runs),
        "cycles_per_token": round(cycles), "bytes_per_token": round(bus),
        "weight_bytes_per_token": round(sum(r.weight_bytes for r in runs) / len(runs)),
        "firing_rate": round(sum(r.spikes_nonzero for r in runs)
                             / sum(r.spikes_total for r in runs), 4),
        "efficiency": round(bus / port / cycles, 4),
        "model_cycles_per_token": round(est), "model_error": round(est / cycles - 1, 4),
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
