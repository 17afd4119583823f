"""Command line: a thin layer over the Python API.

Feature packages add their own subcommands through a ``commands`` module with
``register(subparsers)``; see :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

#: Packages contributing subcommands (each has ``<package>.commands.register(subparsers)``).
COMMAND_MODULES = ("nsllm.quant.commands", "nsllm.hdl.commands", "nsllm.analysis.commands")

BACKENDS = ("golden", "float", "sim")
SIMULATORS = ("verilator", "icarus")


class CommandError(Exception):
    """A user-facing error: printed as ``nsllm: error: …`` with exit code 2."""


def load_weights(model: str | None):
    from .model import load_model, resolve_model_path

    return load_model(resolve_model_path(model))


def make_backend(name: str, weights, simulator: str = "verilator", timeout: float | None = None):
    """A generation backend: the golden model, the float reference, or the simulated core."""
    from .host.generator import ModelBackend
    from .model import FloatModel, IntegerModel

    if name == "golden":
        return ModelBackend(IntegerModel(weights), "golden")
    if name == "float":
        return ModelBackend(FloatModel(weights), "float")
    if name == "sim":
        from .sim.verilator_device import sim_backend

        print(f"[sim] building the core for {simulator} (cached after the first run)…",
              file=sys.stderr, flush=True)
        if timeout is None:  # Icarus runs the core about 200 times slower than Verilator
            timeout = 120.0 if simulator == "verilator" else 3600.0
        return sim_backend(weights, simulator=simulator, timeout=timeout)
    raise CommandError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")


def tokenizer_for(weights, model_arg: str | None):
    from .model import resolve_model_path
    from .model.tokenizer import load_tokenizer

    return load_tokenizer(weights.config.tokenizer, resolve_model_path(model_arg))


# -- info ---------------------------------------------------------------------------------------
def cmd_info(args) -> int:
    from .model import resolve_model_path
    from .model.fileformat import file_packing
    from .model.packing import PACKINGS, packed_bytes

    path = resolve_model_path(args.model)
    w = load_weights(args.model)
    cfg = w.config
    tern = cfg.num_ternary_weights()
    info = {
        "path": str(path),
        "name": cfg.name,
        "file_bytes": path.stat().st_size,
        "packing": file_packing(path),
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_layers,
        "intermediate_size": cfg.intermediate_size,
        "token_mixer": cfg.token_mixer,
        "tokenizer": cfg.tokenizer,
        "parameters": cfg.num_parameters(),
        "ternary_weights": tern,
        "ternary_bytes": {p: packed_bytes(map(cfg.ternary_shape, cfg.ternary_layers()), p)
                          for p in PACKINGS},
        "layers": {n: vars(q) for n, q in cfg.quant.items()},
    }
    if cfg.sla:
        info["sla"] = {n: vars(p) for n, p in cfg.sla.items()}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    mixers = cfg.token_mixer if isinstance(cfg.token_mixer, str) else "/".join(cfg.token_mixer)
    print(f"{info['name']}  ({path}, {info['file_bytes']:,} bytes, {info['packing']} trits)")
    print(f"  vocab {cfg.vocab_size}, d {cfg.hidden_size}, {cfg.num_layers} layers, "
          f"intermediate {cfg.intermediate_size}, {mixers}, {cfg.tokenizer} tokenizer")
    for n, sp in cfg.sla.items():
        print(f"  {n}: SLA, {sp.heads} heads × {sp.head_dim}, decay shifts {sp.decay_shifts}, "
              f"D_q {sp.D_q}, D_k {sp.D_k}, D_v {sp.D_v}")
    print(f"  {info['parameters']:,} parameters, {tern:,} ternary "
          f"({info['ternary_bytes']['2bit']:,} B at 2 bits/trit, "
          f"{info['ternary_bytes']['base3']:,} B at 1.6)")
    print(f"  {'ternary layer':28s} {'out×in':>12s} {'D':>3s} {'theta':>8s} {'delta':>6s} "
          f"{'beta':>9s}")
    for name in cfg.ternary_layers():
        q, (o, i) = cfg.quant[name], cfg.ternary_shape(name)
        print(f"  {name:28s} {f'{o}×{i}':>12s} {q.D:3d} {q.theta:8.4f} {q.delta:6.2f} "
              f"{q.weight_scale:9.5f}")
    return 0


# -- generate -----------------------------------------------------------------------------------
def cmd_generate(args) -> int:
    from .host.generator import Generator

    weights = load_weights(args.model)
    backend = make_backend(args.backend, weights, args.simulator, args.timeout)
    tok = tokenizer_for(weights, args.model)
    gen = Generator(backend, tok, temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    if args.json:
        res = gen.generate(args.prompt, args.max_new_tokens)
    else:
        sys.stdout.write(args.prompt)
        for t in gen.stream(args.prompt, args.max_new_tokens):
            sys.stdout.write(t.text)
            sys.stdout.flush()
        sys.stdout.write("\n")
        res = gen.result
    out = {
        "backend": backend.name,
        "model": weights.config.name,
        "prompt": args.prompt,
        "tokens": res.tokens,
        "text": res.text,
        "prompt_tokens": len(res.prompt_tokens),
        "seconds": round(res.prefill_seconds + res.decode_seconds, 6),
        "prefill_seconds": round(res.prefill_seconds, 6),
        "tokens_per_s": round(res.tokens_per_s, 3),
    }
    summary = getattr(backend, "summary", None)
    if summary is not None:  # the core's counters: cycles, bytes fetched, firing rate
        out.update(summary.as_dict())
    if args.json:
        print(json.dumps(out))
    else:
        print(f"[{backend.name}] {len(res.tokens)} tokens, {out['tokens_per_s']} tokens/s",
              file=sys.stderr)
    return 0


# -- demo ---------------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(model=args.model, max_new_tokens=args.max_new_tokens, prompt=args.prompt,
                    simulator=args.simulator)


# -- wiring -------------------------------------------------------------------------------------
def add_model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", default=None,
                   help="a .nsllm file, a folder with one, or a shipped model: default, hybrid "
                        "(default: the shipped default model)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nsllm",
        description="Neuromorphic spike-based LLMs: golden model, quantization, hardware.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("info", help="describe a .nsllm model")
    p.add_argument("model", nargs="?", default=None,
                   help="model file or shipped model name (default, hybrid; default: default)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("generate", help="generate text from a prompt")
    add_model_arg(p)
    p.add_argument("--backend", "-b", default="golden", choices=BACKENDS,
                   help="golden: the bit-exact integer model; float: the float reference; "
                        "sim: the generated core in a simulator")
    p.add_argument("--simulator", default="verilator", choices=SIMULATORS,
                   help="simulator of the core for --backend sim (default verilator)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds one token may take on the core before giving up with its "
                        "status registers (default 120 on Verilator, 3600 on Icarus)")
    p.add_argument("--prompt", "-p", required=True)
    p.add_argument("--max-new-tokens", "-n", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=None, help="sampler seed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("demo", help="the main job: the default model on the simulated core")
    add_model_arg(p)
    p.add_argument("--max-new-tokens", "-n", type=int, default=64)
    p.add_argument("--prompt", "-p", default=None, help="prompt (default: one from the corpus)")
    p.add_argument("--simulator", default="verilator", choices=SIMULATORS)
    p.set_defaults(func=cmd_demo)

    for mod in COMMAND_MODULES:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .host.device import DeviceError
    from .model import ModelFileError
    from .model.config import ConfigError
    from .sim.toolchain import ToolchainError

    os.environ.setdefault("MPLBACKEND", "Agg")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CommandError, ModelFileError, ConfigError, FileNotFoundError, ValueError,
            DeviceError, ToolchainError) as e:
        print(f"nsllm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())

