"""``nsllm demo`` / ``make demo``: the default model generating text on the simulated core.

Builds the core (Verilator, cached after the first run), loads the model image, generates a
continuation of a prompt on the simulated hardware with the text appearing as it is produced,
checks every token against the bit-exact golden model, and reports cycles and bytes per token,
the firing rate, efficiency against the port's bandwidth bound and projected board speed. On a
mismatch it replays the sequence instruction by instruction and names the first layer, unit and
element where the core departs from the golden model.
"""

from __future__ import annotations

import sys
import time

DEMO_PROMPT = "The "


def run_demo(model: str | None = None, max_new_tokens: int = 64, prompt: str | None = None,
             simulator: str = "verilator", weight_ports: int = 3, packing: str = "2bit",
             out=sys.stdout) -> int:
    from .boards import get_board
    from .cli import load_weights, tokenizer_for
    from .hdl.core import CoreParams
    from .host.generator import Generator, ModelBackend
    from .host.runtime import locate_divergence
    from .model import IntegerModel, preset, resolve_model_path
    from .perf.firing import FiringProfile
    from .perf.projection import project
    from .sim.verilator_device import sim_backend

    prompt = DEMO_PROMPT if prompt is None else prompt
    path = resolve_model_path(model)
    weights = load_weights(model)
    cfg = weights.config
    tok = tokenizer_for(weights, model)
    print(f"model    {cfg.name}: {cfg.num_parameters():,} parameters "
          f"({cfg.num_ternary_weights():,} ternary), {path.name}", file=out)

    golden = Generator(ModelBackend(IntegerModel(weights), "golden"), tok)
    expected = golden.generate(prompt, max_new_tokens).tokens

    t0 = time.perf_counter()
    print(f"core     building NSLLMCore for {simulator} (cached after the first run) …",
          file=out, flush=True)
    params = CoreParams.for_model(cfg, weight_ports=weight_ports, packings=(packing,))
    backend = sim_backend(weights, params, packing=packing, simulator=simulator)
    runner = backend.runner
    ports = (f"{weight_ports} weight ports of {params.port_bytes * 8} bits" if weight_ports > 1
             else f"1 weight port of {params.port_bytes * 8} bits")
    print(f"core     ready in {time.perf_counter() - t0:.0f} s: {ports} ({packing} trits, "
          f"{params.lanes} accumulator lanes{' each' if weight_ports > 1 else ''}) and an "
          f"image port\n", file=out)

    gen = Generator(backend, tok)
    out.write(prompt)
    got: list[int] = []
    t0 = time.perf_counter()
    for t in gen.stream(prompt, max_new_tokens):
        out.write(t.text)
        out.flush()
        got.append(t.id)
        if t.id != expected[len(got) - 1]:
            break
    sim_seconds = time.perf_counter() - t0
    out.write("\n\n")
    ids = gen.result.prompt_tokens + got
    if got != expected[: len(got)] or len(got) != len(expected):
        k = next(i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b)
        print(f"MISMATCH at generated token {k}: core {got[k]}, golden {expected[k]}; locating …",
              file=out, flush=True)
        where = locate_divergence(runner, ids[: len(gen.result.prompt_tokens) + k])
        print(f"first difference: {where}" if where else "replay agrees (nondeterminism?)",
              file=out)
        return 1

    s = backend.summary
    per_token = s.per_token[len(gen.result.prompt_tokens):]  # generated tokens only
    n = len(per_token)
    cycles = sum(c.cycles for c in per_token) / n
    bus = sum(c.bus_bytes for c in per_token) / n
    weight = sum(c.weight_bytes for c in per_token) / n
    per_port = [sum(c.port_bytes[k] for c in per_token) / n for k in range(weight_ports)]
    weight_cycles = sum(c.weight_cycles for c in per_token) / n
    fired = sum(c.spikes_nonzero for c in per_token) / sum(c.spikes_total for c in per_token)
    image = runner.loaded.image
    dense = sum(i.n * i.stride for i in image.token if i.op.name == "LINEAR")
    port = params.port_bytes
    board = get_board("vck190")
    from .model.stats import firing_rates

    profile = FiringProfile(rates=firing_rates(IntegerModel(weights), ids), model=cfg.name,
                            source="measured with the golden model on this run's tokens")
    own = project(cfg, board, profile)
    big = project(preset("nsllm-1.5b"), board, profile)

    print(f"check    {len(got)} tokens, every one equal to the golden model's", file=out)
    print(f"cycles   {cycles:,.0f} per token, {1 - weight_cycles / cycles:.0%} of them without a "
          f"weight beat; simulation ran {len(s.per_token) / sim_seconds:.1f} tokens/s "
          f"({s.cycles / sim_seconds / 1e3:,.0f} k cycles/s)", file=out)
    print(f"bytes    {bus:,.0f} read per token, of which weights {weight:,.0f} "
          f"({weight / dense:.0%} of the dense {dense:,} B)", file=out)
    print(f"spikes   firing rate {fired:.1%}: only columns of inputs that spiked are fetched",
          file=out)
    print("ports    weight bytes per port " + " / ".join(f"{b:,.0f}" for b in per_port)
          + f"; the busiest port moved data in {max(per_port) / port / cycles:.0%} of cycles",
          file=out)
    print(f"board    projected on the VCK190 (estimate: the cycle model with "
          f"{own.weight_ports} 512-bit weight ports, {own.packing}, the assumed "
          f"{board.pl_clock_mhz:.0f} MHz clock and {own.assumptions['dram_latency_ns']['value']:g}"
          f" ns DRAM latency, this run's firing rates): this model "
          f"{own.tokens_per_s:,.0f} tokens/s, nsllm-1.5b {big.tokens_per_s:,.0f} tokens/s "
          f"({big.roofline_fraction:.0%} of its DRAM roofline; watts: nsllm estimate)", file=out)
    return 0
