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
             simulator: str = "verilator", out=sys.stdout) -> int:
    from .boards import get_board
    from .cli import load_weights, tokenizer_for
    from .host.generator import Generator, ModelBackend
    from .host.runtime import locate_divergence
    from .model import IntegerModel, resolve_model_path
    from .perf.model import estimate_cycles, fired_from_stats
    from .sim.verilator_device import sim_backend

    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
            or max_new_tokens < 1:
        raise ValueError(f"the demo needs at least one new token, not {max_new_tokens!r}")
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
    backend = sim_backend(weights, simulator=simulator)
    runner = backend.runner
    params = backend.runner.loaded.build
    print(f"core     ready in {time.perf_counter() - t0:.0f} s: {params.port_bytes * 8}-bit weight "
          f"port, {4 * params.port_bytes} accumulator lanes\n", file=out)

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
    cycles = sum(c.cycles for c in per_token) / len(per_token)
    bus = sum(c.bus_bytes for c in per_token) / len(per_token)
    weight = sum(c.weight_bytes for c in per_token) / len(per_token)
    fired = sum(c.spikes_nonzero for c in per_token) / sum(c.spikes_total for c in per_token)
    image = runner.loaded.image
    dense = sum(i.n * i.col_stride for i in image.token if i.op.name == "LINEAR")
    port = params.port_bytes
    board = get_board("vck190")
    clock = board.pl_clock_mhz * 1e6

    # the board build: same model, the VCK190's 512-bit port, from the analytic cycle model
    from .host.image import build_image
    from .host.program import Interpreter

    board_image = build_image(weights, port_bytes=board.axi_port_bytes)
    interp = Interpreter(board_image.raw, board_image.scratch_entries, board_image.packing)
    interp.run(board_image.reset)
    for tid in ids[:-1]:
        stats = interp.run(board_image.token, token=tid)
    board_est = estimate_cycles(board_image.token, fired_from_stats(stats), board.axi_port_bytes,
                                vector=16, latency=64)

    print(f"check    {len(got)} tokens, every one equal to the golden model's", file=out)
    print(f"cycles   {cycles:,.0f} per token; simulation ran {len(s.per_token) / sim_seconds:.1f}"
          f" tokens/s ({s.cycles / sim_seconds / 1e3:,.0f} k cycles/s)", file=out)
    print(f"bytes    {bus:,.0f} read per token, of which weights {weight:,.0f} "
          f"({weight / dense:.0%} of the dense {dense:,} B)", file=out)
    print(f"spikes   firing rate {fired:.1%}: only columns of inputs that spiked are fetched",
          file=out)
    print(f"port     {bus / port / cycles:.1%} of cycles move data on the {port * 8}-bit port "
          f"(bandwidth bound: {bus / port:,.0f} cycles per token)", file=out)
    print(f"board    projected at the {board.pl_clock_mhz:.0f} MHz PL clock (estimate): "
          f"{clock / cycles:,.0f} tokens/s with this {port * 8}-bit build, "
          f"{clock / board_est.cycles:,.0f} tokens/s with a 512-bit port "
          f"(analytic model, 64-cycle DRAM latency)", file=out)
    return 0
