"""Decode speed of the integer golden model on random-weight presets.

    python bench/golden_speed.py [--presets tiny mmfree-370m] [--tokens 16] [--json]

Prints tokens/s of batch-1 decode (after a 4-token prefill) and the exactness argument: the
ternary accumulation runs as a float32 BLAS product of small integers, exact because every partial
sum is an integer below 2**24 in magnitude (fan_in · D < 2**24); layers beyond that use float64.
"""

from __future__ import annotations

import argparse
import json
import time

from nsllm.model import IntegerModel, preset, random_weights
from nsllm.model import numerics as nx


def measure(name: str, tokens: int) -> dict:
    cfg = preset(name)
    t0 = time.perf_counter()
    model = IntegerModel(random_weights(cfg, seed=0))
    setup = time.perf_counter() - t0
    _, state = model.prefill([[1, 2, 3, 4]])
    tok, times = 5, []
    for _ in range(tokens):
        t = time.perf_counter()
        logits, state = model.step(tok, state)
        tok = int(logits.argmax())
        times.append(time.perf_counter() - t)
    worst = max(cfg.ternary_shape(n)[1] * cfg.quant[n].D for n in cfg.ternary_layers())
    return {
        "preset": name,
        "ternary_weights": cfg.num_ternary_weights(),
        "setup_s": round(setup, 2),
        "tokens_per_s": round(len(times) / sum(times), 2),
        "max_fan_in_times_D": worst,
        "float32_exact": worst < nx.FLOAT32_EXACT,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "mmfree-370m"])
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [measure(p, args.tokens) for p in args.presets]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'preset':14s} {'ternary weights':>16s} {'tokens/s':>9s} {'max fan_in·D':>13s} exact")
    for r in rows:
        print(f"{r['preset']:14s} {r['ternary_weights']:>16,} {r['tokens_per_s']:>9.2f} "
              f"{r['max_fan_in_times_D']:>13,} {'float32' if r['float32_exact'] else 'float64'}"
              f" (< 2**24: {r['float32_exact']})")


if __name__ == "__main__":
    main()
