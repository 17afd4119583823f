"""Weight ports and packings: the layout choice, and what the core does with them (issue 9).

    python bench/ports.py [--tokens 16] [--skip-sim] [--json] [--out bench/results/ports.json]

1. **Layout costs** of splitting every LINEAR's columns over N weight ports, for the shipped
   model (at its 8-byte simulation ports and at the board's 64-byte ports) and for
   ``nsllm-1.5b`` at the board's ports, N = 3, both packings:

   * *row stripes* — port k fetches rows [k·⌈m/N⌉, …) of every spiking column into its own
     accumulator slice: balanced by construction, but each stripe is padded to whole beats;
   * *column interleave* (what the core does) — port k fetches whole columns j ≡ k (mod N) into
     its own full-size accumulator bank: no padding, balanced statistically.

   For each: dense bytes (÷ the one-port bytes), imbalance (the busiest port's beats ÷ the mean,
   per LINEAR and token, weighted by beats: measured from the golden model's spikes on held-out
   text for the shipped model, drawn at its measured per-layer firing rates for nsllm-1.5b) and
   accumulator memory in bits.
2. **Measured on the Verilator core** (shipped model, greedy, ``--tokens`` generated tokens):
   cycles/token, weight bytes per port, the fraction of cycles without a weight beat, and the
   simulation speed, for N = 1, 2, 3 at 2bit and N = 1 at base3; the ratios the issue asks for.
3. ``nsllm-1.5b``'s base3 ÷ 2bit weight bytes at the board's ports, computed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from nsllm.isa.layout import TRITS_PER_BYTE, columns_per_port
from nsllm.model import IntegerModel, Trace, load_model, resolve_model_path
from nsllm.model.config import preset
from nsllm.model.numerics import accumulator_bits
from nsllm.model.packing import bytes_per_column

PROMPT = "The "


def beats(rows: int, packing: str, pb: int) -> int:
    return -(-bytes_per_column(rows, packing) // pb)


def layers(cfg):
    return [(name, *cfg.ternary_shape(name)) for name in cfg.ternary_layers()]


def dense_costs(cfg, pb: int, ports: int, packing: str) -> dict:
    one = stripes = inter = acc_stripes = acc_inter = 0
    lanes = TRITS_PER_BYTE[packing] * pb
    acc_bits = accumulator_bits(max(cfg.hidden_size, cfg.intermediate_size), 15)
    max_out = max(m for _, m, _ in layers(cfg))
    for _, m, n in layers(cfg):
        b1 = beats(m, packing, pb)
        one += n * b1
        stripes += n * ports * beats(-(-m // ports), packing, pb)
        inter += ports * columns_per_port(n, ports) * b1  # padding slots are never fetched
    words = -(-max_out // lanes)
    acc_inter = ports * words * lanes * acc_bits
    stripe = -(-max_out // ports)
    acc_stripes = ports * -(-stripe // lanes) * lanes * acc_bits
    return {"one_port_beats": one, "row_stripes_bytes_ratio": round(stripes / one, 4),
            "interleave_bytes_ratio": 1.0, "interleave_slot_ratio": round(inter / one, 4),
            "acc_bits_row_stripes": acc_stripes, "acc_bits_interleave": acc_inter}


def imbalance(spike_sets, cfg, pb: int, ports: int, packing: str) -> float:
    """Busiest port's beats ÷ mean, weighted by beats, over (layer, token) spike patterns."""
    num = den = 0.0
    for name, fired in spike_sets:
        m, _ = cfg.ternary_shape(name)
        b = beats(m, packing, pb)
        per_port = np.bincount(fired % ports, minlength=ports) * b
        if per_port.sum():
            num += per_port.max() * ports
            den += per_port.sum()
    return round(num / den, 4) if den else 1.0


def shipped_spikes(weights, text: str):
    model = IntegerModel(weights)
    state = model.init_state()
    out = []
    for t in text.encode()[:128]:
        trace = Trace()
        _, state = model.step(t, state, trace=trace)
        for name in weights.config.ternary_layers():
            out.append((name, np.flatnonzero(trace[f"{name}.spikes"][0, -1])))
    return out


def drawn_spikes(cfg, rates: dict[str, float], tokens: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    names = cfg.ternary_layers()
    shipped = list(rates)
    for _ in range(tokens):
        for k, name in enumerate(names):
            # the shipped model's rate of the layer in the same position of its block
            rate = rates[shipped[k % (len(shipped) - 1)] if name != "lm_head" else "lm_head"]
            n = cfg.ternary_shape(name)[1]
            out.append((name, np.flatnonzero(rng.random(n) < rate)))
    return out


def layout_table(weights, text: str, ports: int = 3) -> list[dict]:
    spikes = shipped_spikes(weights, text)
    counts: dict[str, list[float]] = {}
    for name, fired in spikes:
        counts.setdefault(name, []).append(fired.size / weights.config.ternary_shape(name)[1])
    rates = {k: float(np.mean(v)) for k, v in counts.items()}
    big = preset("nsllm-1.5b")
    big_spikes = drawn_spikes(big, rates, tokens=4)
    rows = []
    for label, cfg, pb, sp in [("shipped model, 8-byte ports", weights.config, 8, spikes),
                               ("shipped model, 64-byte ports", weights.config, 64, spikes),
                               ("nsllm-1.5b, 64-byte ports", big, 64, big_spikes)]:
        for packing in ("2bit", "base3"):
            row = {"shape": label, "packing": packing, "ports": ports,
                   **dense_costs(cfg, pb, ports, packing),
                   "interleave_imbalance": imbalance(sp, cfg, pb, ports, packing)}
            rows.append(row)
    return rows


def simulate(weights, tokens: int, ports: int, packing: str) -> dict:
    from nsllm.hdl.core import CoreParams
    from nsllm.host.generator import Generator
    from nsllm.model.tokenizer import load_tokenizer
    from nsllm.sim.verilator_device import sim_backend

    params = CoreParams.for_model(weights.config, weight_ports=ports, packings=(packing,))
    t0 = time.perf_counter()
    backend = sim_backend(weights, params, packing=packing, timeout=600)
    build = time.perf_counter() - t0
    gen = Generator(backend, load_tokenizer(weights.config.tokenizer))
    c0 = time.process_time()
    t0 = time.perf_counter()
    res = gen.generate(PROMPT, tokens)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    runs = backend.summary.per_token[len(res.prompt_tokens):]
    n = len(runs)
    cycles = sum(r.cycles for r in runs) / n
    return {
        "ports": ports, "packing": packing, "tokens": n, "cycles_per_token": round(cycles),
        "weight_bytes_per_token": round(sum(r.weight_bytes for r in runs) / n),
        "weight_bytes_per_port": [round(sum(r.port_bytes[k] for r in runs) / n)
                                  for k in range(ports)],
        "non_weight_cycle_fraction": round(1 - sum(r.weight_cycles for r in runs)
                                           / sum(r.cycles for r in runs), 4),
        "firing_rate": round(sum(r.spikes_nonzero for r in runs)
                             / sum(r.spikes_total for r in runs), 4),
        "sim_tokens_per_s": round(len(backend.summary.per_token) / seconds, 2),
        "sim_cycles_per_cpu_s": round(backend.summary.cycles / cpu),
        "build_seconds": round(build, 1),
    }


def board_base3_ratio(pb: int = 64, ports: int = 3) -> float:
    cfg = preset("nsllm-1.5b")
    total = {p: sum(ports * columns_per_port(n, ports) * beats(m, p, pb) for _, m, n in
                    layers(cfg)) for p in ("2bit", "base3")}
    return round(total["base3"] / total["2bit"], 4)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--skip-sim", action="store_true", help="only the layout costs")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", default="bench/results/ports.json")
    args = ap.parse_args(argv)
    weights = load_model(resolve_model_path(None))
    from nsllm.data.corpus import pydoc_corpus

    result = {"layout": layout_table(weights, pydoc_corpus()[1][:2000]),
              "nsllm_1p5b_base3_over_2bit_weight_bytes": board_base3_ratio()}
    if not args.skip_sim:
        runs = [simulate(weights, args.tokens, n, "2bit") for n in (1, 2, 3)]
        runs.append(simulate(weights, args.tokens, 1, "base3"))
        one, three, b3 = runs[0], runs[2], runs[3]
        per_port = three["weight_bytes_per_port"]
        result["sim"] = runs
        result["ratios"] = {
            "cycles_3_over_1_ports": round(three["cycles_per_token"] / one["cycles_per_token"],
                                           4),
            "weight_bytes_3_over_1_ports": round(three["weight_bytes_per_token"]
                                                 / one["weight_bytes_per_token"], 4),
            "port_bytes_spread": round(max(per_port) / min(per_port) - 1, 4),
            "base3_over_2bit_weight_bytes": round(b3["weight_bytes_per_token"]
                                                  / one["weight_bytes_per_token"], 4),
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for row in result["layout"]:
            print(f"{row['shape']:30s} {row['packing']:6s} "
                  f"stripes ×{row['row_stripes_bytes_ratio']}"
                  f"  interleave imbalance ×{row['interleave_imbalance']}  acc bits "
                  f"{row['acc_bits_row_stripes']:,} vs {row['acc_bits_interleave']:,}")
        print("nsllm-1.5b base3/2bit weight bytes:",
              result["nsllm_1p5b_base3_over_2bit_weight_bytes"])
        for run in result.get("sim", []):
            print(run)
        print(result.get("ratios"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
