"""Command line: a thin layer over the Python API.

Feature packages add their own subcommands through a ``commands`` module with
``register(subparsers)``; see :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import json
import os
import sys
import warnings

from . import options
from .isa import MAX_WEIGHT_PORTS
from .model.packing import PACKINGS

#: Packages contributing subcommands (each has ``<package>.commands.register(subparsers)``).
COMMAND_MODULES = ("nsllm.quant.commands", "nsllm.hdl.commands", "nsllm.analysis.commands",
                   "nsllm.perf.commands", "nsllm.boards.commands")

BACKENDS = ("golden", "float", "sim", "xrt")
SIMULATORS = ("verilator", "icarus")


class CommandError(Exception):
    """A user-facing error: printed as ``nsllm: error: …`` with exit code 2."""


DEBUG_HINT = "rerun with --debug (or NSLLM_DEBUG=1) for the traceback"


def load_weights(model: str | None):
    from .model import load_model, resolve_model_path

    return load_model(resolve_model_path(model))


def make_backend(name: str, weights, simulator: str = "verilator", timeout: float | None = None,
                 weight_ports: int = 1, packing: str = "2bit", xclbin: str | None = None):
    """A generation backend: the golden model, the float reference, the simulated core
    (built, and cached, for ``weight_ports`` weight ports decoding ``packing``), or the board
    through XRT (``xclbin``)."""
    from .host.generator import ModelBackend
    from .model import FloatModel, IntegerModel

    if name == "golden":
        return ModelBackend(IntegerModel(weights), "golden")
    if name == "float":
        return ModelBackend(FloatModel(weights), "float")
    if name == "sim":
        from .sim.verilator_device import sim_backend

        print(f"[sim] building the core for {simulator}: {weight_ports} weight port(s), "
              f"{packing} trits (cached after the first run)…", file=sys.stderr, flush=True)
        if timeout is None:  # Icarus runs the core about 200 times slower than Verilator
            timeout = 120.0 if simulator == "verilator" else 3600.0
        return sim_backend(weights, simulator=simulator, timeout=timeout,
                           weight_ports=weight_ports, packing=packing)
    if name == "xrt":
        from .boards.xrt import xrt_backend

        if xclbin is None:
            raise CommandError("--backend xrt needs --xclbin FILE (built by `nsllm build` and "
                               "`make`, see docs/board.md)")
        return xrt_backend(weights, xclbin, packing=packing, timeout=timeout or 10.0)
    raise CommandError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")


def tokenizer_for(weights, model_arg: str | None):
    from .model import resolve_model_path
    from .model.tokenizer import load_tokenizer

    return load_tokenizer(weights.config.tokenizer, resolve_model_path(model_arg))


# -- info ---------------------------------------------------------------------------------------
def cmd_info(args) -> int:
    from .model import resolve_model_path, save_model
    from .model.fileformat import FORMAT_VERSION, file_packing, format_version
    from .model.packing import PACKINGS, packed_bytes

    path = resolve_model_path(args.model)
    if args.upgrade:
        version = format_version(path)
        if version == FORMAT_VERSION:
            print(f"{path} is already format version {FORMAT_VERSION}; nothing to do")
            return 0
        with warnings.catch_warnings():  # the warning says to do what we are doing
            warnings.simplefilter("ignore")
            weights = load_weights(str(path))
        save_model(weights, path, packing=file_packing(path))
        print(f"rewrote {path} as format version {FORMAT_VERSION} (was {version}), with "
              "checksums; the model is unchanged")
        return 0
    w = load_weights(args.model)
    cfg = w.config
    tern = cfg.num_ternary_weights()
    info = {
        "path": str(path),
        "name": cfg.name,
        "file_bytes": path.stat().st_size,
        "format_version": format_version(path),
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
    from .quant.pipeline import card_info

    card = card_info(path, info)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    mixers = cfg.token_mixer if isinstance(cfg.token_mixer, str) else "/".join(cfg.token_mixer)
    print(f"{info['name']}  ({path}, {info['file_bytes']:,} bytes, format "
          f"v{info['format_version']}, {info['packing']} trits)")
    print(f"  vocab {cfg.vocab_size}, d {cfg.hidden_size}, {cfg.num_layers} layers, "
          f"intermediate {cfg.intermediate_size}, {mixers}, {cfg.tokenizer} tokenizer")
    for n, sp in cfg.sla.items():
        print(f"  {n}: SLA, {sp.heads} heads × {sp.head_dim}, decay shifts {sp.decay_shifts}, "
              f"D_q {sp.D_q}, D_k {sp.D_k}, D_v {sp.D_v}")
    print(f"  {info['parameters']:,} parameters, {tern:,} ternary "
          f"({info['ternary_bytes']['2bit']:,} B at 2 bits/trit, "
          f"{info['ternary_bytes']['base3']:,} B at 1.6)")
    if card:
        print("  card: " + card["summary"])
    fire = {n: card["firing_rate"].get(n) for n in cfg.ternary_layers()} if card else {}
    print(f"  {'ternary layer':28s} {'out×in':>12s} {'D':>3s} {'theta':>8s} {'delta':>6s} "
          f"{'beta':>9s}" + (f" {'firing':>7s}" if card else ""))
    for name in cfg.ternary_layers():
        q, (o, i) = cfg.quant[name], cfg.ternary_shape(name)
        f = fire.get(name)
        print(f"  {name:28s} {f'{o}×{i}':>12s} {q.D:3d} {q.theta:8.4f} {q.delta:6.2f} "
              f"{q.weight_scale:9.5f}" + (f" {f:7.3f}" if f is not None else ""))
    return 0


# -- generate -----------------------------------------------------------------------------------
def cmd_generate(args) -> int:
    from .host.generator import Generator

    weights = load_weights(args.model)
    backend = make_backend(args.backend, weights, args.simulator, args.timeout,
                           args.weight_ports, args.packing, args.xclbin)
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
        ports = len(summary.port_bytes) or args.weight_ports  # the board reports its own
        out.update(weight_ports=ports, packing=args.packing)
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
                    simulator=args.simulator, weight_ports=args.weight_ports,
                    packing=args.packing)


# -- wiring -------------------------------------------------------------------------------------
def add_model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", default=None,
                   help="a .nsllm file, a folder with one, or a shipped model: default, hybrid "
                        "(default: the shipped default model)")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's error format: usage, then ``nsllm: error: …``, exit 2."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"nsllm: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="nsllm",
        description="Neuromorphic spike-based LLMs: golden model, quantization, hardware.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: NSLLM_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("info", help="describe a .nsllm model")
    p.add_argument("model", nargs="?", default=None,
                   help="model file or shipped model name (default, hybrid; default: default)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--upgrade", action="store_true",
                   help="rewrite an older-format file in place as the current format (with "
                        "checksums); the model itself is unchanged")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("generate", help="generate text from a prompt")
    add_model_arg(p)
    p.add_argument("--backend", "-b", default="golden", choices=BACKENDS,
                   help="golden: the bit-exact integer model; float: the float reference; "
                        "sim: the generated core in a simulator; xrt: the board (--xclbin)")
    p.add_argument("--simulator", default="verilator", choices=SIMULATORS,
                   help="simulator of the core for --backend sim (default verilator)")
    p.add_argument("--weight-ports", type=options.integer(1, MAX_WEIGHT_PORTS,
                                                          what="a number of weight ports"),
                   default=1, help="weight ports of the simulated core (--backend sim; default 1)")
    p.add_argument("--packing", choices=PACKINGS, default="2bit",
                   help="trit packing of the model image (--backend sim/xrt; default 2bit)")
    p.add_argument("--xclbin", default=None,
                   help="the kernel's xclbin for --backend xrt (XRT's libxrt_coreutil.so is "
                        "found as docs/board.md says; NSLLM_XRT_LIBRARY overrides)")
    p.add_argument("--timeout", type=options.number(0.0, open_lo=True, what="a time in seconds"),
                   default=None,
                   help="seconds one token may take on the core before giving up with its "
                        "status registers (default 120 on Verilator, 3600 on Icarus)")
    p.add_argument("--prompt", "-p", required=True)
    p.add_argument("--max-new-tokens", "-n", type=options.integer(1, what="a token count"),
                   default=64)
    p.add_argument("--temperature", type=options.number(0.0), default=0.0,
                   help="0 = greedy (default)")
    p.add_argument("--top-k", type=options.integer(0, what="a token count"), default=0,
                   help="sample from the k most likely tokens (0 = all, default)")
    p.add_argument("--seed", type=options.integer(0, what="a seed"), default=None,
                   help="sampler seed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("demo", help="the main job: the default model on the simulated core")
    add_model_arg(p)
    p.add_argument("--max-new-tokens", "-n", type=options.integer(1, what="a token count"),
                   default=64)
    p.add_argument("--prompt", "-p", default=None, help="prompt (default: one from the corpus)")
    p.add_argument("--simulator", default="verilator", choices=SIMULATORS)
    p.add_argument("--weight-ports", type=options.integer(1, MAX_WEIGHT_PORTS,
                                                          what="a number of weight ports"),
                   default=3, help="weight ports of the simulated core (default 3, as on the "
                                   "VCK190)")
    p.add_argument("--packing", choices=PACKINGS, default="2bit",
                   help="trit packing of the model image (default 2bit)")
    p.set_defaults(func=cmd_demo)

    for mod in COMMAND_MODULES:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        module.register(sub)
    for p in sub.choices.values():  # --debug after the command too (default kept from above)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Failures with a message for the user (printed as ``nsllm: error: …``, exit 2)."""
    import subprocess

    from .host.device import DeviceError
    from .sim.buildcache import BuildCacheError
    from .sim.toolchain import ToolchainError

    return (CommandError, ValueError, DeviceError, ToolchainError, BuildCacheError, OSError,
            subprocess.TimeoutExpired, ModuleNotFoundError, MemoryError)


#: What to do about a file-system error, by errno.
_OS_HINTS = {
    errno.EACCES: "check the permissions or choose another path",
    errno.EPERM: "check the permissions or choose another path",
    errno.EROFS: "the file system is read-only; choose another path",
    errno.ENOSPC: "the disk is full; free some space and rerun",
    errno.EDQUOT: "the disk quota is exhausted; free some space and rerun",
    errno.ENOENT: "check the path",
    errno.EISDIR: "give a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "use a shorter path",
}


def describe_error(e: BaseException) -> str:
    """The one-line message of an expected failure: the problem and, where known, the fix."""
    import subprocess

    if isinstance(e, ModuleNotFoundError):
        return f"{e} (a missing Python package: install it into the project's virtualenv)"
    if isinstance(e, MemoryError):
        return "out of memory; use a smaller model or input, or a machine with more memory"
    if isinstance(e, subprocess.TimeoutExpired):
        return f"{e}; the tool did not finish in time"
    if isinstance(e, OSError) and not isinstance(e, TimeoutError) and e.strerror:
        where = f"{e.filename}: " if e.filename is not None else ""
        hint = _OS_HINTS.get(e.errno)
        return f"{where}{e.strerror}" + (f"; {hint}" if hint else "")
    return str(e) or type(e).__name__


def _debug_requested(argv: list[str]) -> bool:
    return os.environ.get("NSLLM_DEBUG", "") not in ("", "0") or "--debug" in argv


def _quiet_stdout() -> None:
    """Point stdout at /dev/null (after a broken pipe: nothing more to say, and Python's final
    flush must not complain)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"nsllm: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one command: the CLI's single error boundary.

    Expected failures (bad input, file-system errors, missing tools, device errors) print
    ``nsllm: error: …`` and return 2; anything else is a bug: a short message with the hint to
    rerun with ``--debug``, return 1. Broken pipes and a closed stdout are quiet. Files the
    command writes appear together when it succeeds (:func:`nsllm.outputs.transaction`).
    """
    from .outputs import transaction

    os.environ.setdefault("MPLBACKEND", "Agg")
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = _debug_requested(argv)
    if sys.stdout is None:  # started with stdout closed
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning  # one line per warning
        try:
            with transaction():
                try:
                    code = int(args.func(args) or 0)
                except BrokenPipeError:  # the reader went away: keep what was written, be quiet
                    _quiet_stdout()
                    return 0
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                _quiet_stdout()
                return 0
            except OSError as e:  # e.g. > /dev/full
                _quiet_stdout()
                print(f"nsllm: error: cannot write the standard output: {e.strerror or e}",
                      file=sys.stderr)
                return 2
            return code
        except KeyboardInterrupt:
            print("nsllm: interrupted", file=sys.stderr)
            return 130
        except _expected_errors() as e:
            if debug:
                raise
            print(f"nsllm: error: {describe_error(e)}", file=sys.stderr)
            return 2
        except Exception as e:  # a bug: say so briefly, the traceback is one flag away
            if debug:
                raise
            print(f"nsllm: internal error: {type(e).__name__}: {e}\n"
                  f"nsllm: this is a bug in nsllm, not in your input; {DEBUG_HINT} and report "
                  "it", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
