"""CLI: ``convert``, ``quantize``, ``sensitivity``, ``sparsify``, ``eval``, ``train`` and
``pipeline``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import options
from ..model.numerics import MAX_TIMESTEPS, SPIKE_COUNT_SET


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _read_text(path: str, limit: int | None = None) -> str:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such text file")
    text = p.read_text(encoding="utf-8", errors="replace")
    if limit:
        text = text[:limit]
    if len(text) < 2:
        raise ValueError(f"{p}: the text is empty; give a file with at least a few hundred bytes")
    return text


def _load(model: str | None):
    from ..model import load_model, resolve_model_path

    path = resolve_model_path(model)
    return load_model(path), path


def _tokens(weights, path, text):
    from .evaluation import encode_text

    return encode_text(weights, text, path)[0]


# -- convert --------------------------------------------------------------------------------------
def cmd_convert(args) -> int:
    from ..model.fileformat import save_model
    from .calibrate import calibrate
    from .convert import convert_checkpoint, copy_tokenizer

    weights = convert_checkpoint(args.src, name=args.name)
    if args.calib:  # the checkpoint's own tokenizer: nothing is written before the model is done
        ids = _tokens(weights, args.src, _read_text(args.calib, args.calib_chars))
        _log(f"calibrating θ on {len(ids)} tokens")
        weights = calibrate(weights, ids)
    weights.validate()  # refuse what the integer model cannot run before writing anything
    tok = copy_tokenizer(args.src, args.out)  # with the model, in the command's transaction
    save_model(weights, args.out, packing=args.packing)
    cfg = weights.config
    print(f"wrote {args.out}: {cfg.num_layers} layers, d {cfg.hidden_size}, vocab "
          f"{cfg.vocab_size}, {cfg.num_ternary_weights():,} ternary weights"
          + (f"; tokenizer copied to {tok}" if tok else ""))
    return 0


# -- sensitivity / quantize ------------------------------------------------------------------------
def _sensitivity_outputs(report, args) -> None:
    from .sensitivity import plot_sensitivity

    if getattr(args, "report", None):
        report.save(args.report)
        _log(f"sensitivity report: {args.report}")
    if getattr(args, "plot", None):
        plot_sensitivity(report, args.plot)
        _log(f"sensitivity plot: {args.plot}")


def cmd_sensitivity(args) -> int:
    from .executor import make_executor
    from .probe import QuantProbe
    from .quantize import calibration_thetas
    from .sensitivity import measure_sensitivity

    weights, path = _load(args.model)
    ids = _tokens(weights, path, _read_text(args.calib, args.calib_chars))
    with make_executor(args.ray) as ex:
        thetas = calibration_thetas(weights, ids, args.timesteps)
        report = measure_sensitivity(QuantProbe(weights, ids), thetas, args.timesteps,
                                     log=_log if args.verbose else None, executor=ex)
    _sensitivity_outputs(report, args)
    if args.json or not args.report:
        print(json.dumps(report.to_json()))
    return 0


def cmd_quantize(args) -> int:
    from ..model.fileformat import save_model
    from .executor import make_executor
    from .quantize import quantize_model, sparsify_model
    from .sensitivity import SensitivityReport

    weights, path = _load(args.model)
    ids = _tokens(weights, path, _read_text(args.calib, args.calib_chars))
    sens = SensitivityReport.load(args.sensitivity) if args.sensitivity else None
    with make_executor(args.ray) as ex:
        out, alloc, report = quantize_model(weights, ids, args.budget, metric=args.metric,
                                            sensitivity=sens, timesteps=args.timesteps,
                                            log=_log if args.verbose else None, executor=ex)
        if args.kl_budget is not None:
            out, choice, _ = sparsify_model(out, ids, args.kl_budget, executor=ex)
    if sens is None:
        _sensitivity_outputs(report, args)
    summary = {"budget": args.budget, "average_timesteps": alloc.average_timesteps,
               "predicted_sensitivity": alloc.sensitivity, "exact": alloc.exact, "D": alloc.D}
    if args.kl_budget is not None:
        summary.update(delta=choice.delta, delta_source=choice.source,
                       predicted_delta_kl=choice.predicted_kl,
                       predicted_weighted_firing=choice.predicted_firing)
    out.config.name = args.name or f"{weights.config.name}-B{args.budget:g}"
    save_model(out, args.out, packing=args.packing)
    print(json.dumps(summary) if args.json else
          f"wrote {args.out}: average D {alloc.average_timesteps:.3f} (budget {args.budget}), "
          f"D per layer {sorted(set(alloc.D.values()))}, predicted Σ{args.metric} "
          f"{alloc.sensitivity:.5f}")
    return 0


def cmd_sparsify(args) -> int:
    from ..model.fileformat import save_model
    from ..outputs import write_json
    from .executor import make_executor
    from .quantize import sparsify_model
    from .sparsify import plot_sweep

    weights, path = _load(args.model)
    ids = _tokens(weights, path, _read_text(args.calib, args.calib_chars))
    with make_executor(args.ray) as ex:
        out, choice, sw = sparsify_model(weights, ids, args.kl_budget, args.deltas,
                                         log=_log if args.verbose else None, executor=ex,
                                         relative=args.relative)
    if args.plot:
        plot_sweep(sw, args.plot)
    if args.report:
        write_json(args.report, {"sweep": sw.to_json(), "delta": choice.delta,
                                 "source": choice.source, "predicted_kl": choice.predicted_kl,
                                 "predicted_weighted_firing": choice.predicted_firing})
    if args.out:
        save_model(out, args.out, packing=args.packing)
    print(f"δ chosen under KL ≤ {args.kl_budget} ({choice.source}): weighted firing rate "
          f"{choice.predicted_firing:.3f} (δ=0 everywhere: "
          f"{sw.global_curve[0]['weighted_firing']:.3f}), KL {choice.predicted_kl:.4f} on the "
          "calibration text"
          + (f"; wrote {args.out}" if args.out else ""))
    return 0


# -- eval -----------------------------------------------------------------------------------------
def cmd_eval(args) -> int:
    from .evaluation import evaluate_model

    weights, path = _load(args.model)
    res = evaluate_model(weights, _read_text(args.text, args.max_chars), backend=args.backend,
                         model_path=path)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"{res['model']} on {args.text} ({res['predictions']} predictions, {args.backend})")
    print(f"  bits/byte {res['bits_per_byte']:.4f}   bits/token {res['bits_per_token']:.4f}"
          + (f"   perplexity {res['perplexity']:.2f}" if "perplexity" in res else ""))
    print(f"  firing rate: mean {res['mean_firing_rate']:.3f}, weighted by #weights "
          f"{res['weighted_firing_rate']:.3f}; average D {res['average_timesteps']:.2f}")
    for n, r in res["firing_rate"].items():
        print(f"    {n:28s} {r:.3f}   D={weights.config.quant[n].D:<3d} "
              f"δ={weights.config.quant[n].delta:g}")
    print("  size: " + ", ".join(f"{p} {b:,} B" for p, b in res["size_bytes"].items())
          + (f" (file {res['file_bytes']:,} B)" if "file_bytes" in res else ""))
    return 0


# -- train ----------------------------------------------------------------------------------------
def train_settings(cls, args):
    """TrainSettings from the ``train`` options (validated: bad values are a clear error)."""
    s = cls(steps=args.steps, seed=args.seed, hidden_size=args.hidden_size,
            num_layers=args.layers, batch=args.batch, seq_len=args.seq_len, lr=args.lr,
            D=args.timesteps, delta=args.delta, threads=args.threads,
            delta_mode=args.delta_mode, firing_target=args.firing_target,
            sparsity_weight=args.sparsity_weight, init=args.init, eval_every=args.eval_every,
            firing_ramp=args.firing_ramp, mixer=args.mixer, sla_every=args.sla_every,
            distill=args.distill, distill_weight=args.distill_weight)
    if args.warmup is not None:
        s.warmup = args.warmup
    if s.init and not Path(s.init).is_file():
        raise FileNotFoundError(f"{s.init}: no such model file to start training from")
    if s.distill and not Path(s.distill).is_file():
        raise FileNotFoundError(f"{s.distill}: no such model file (--distill teacher)")
    s.validate()
    return s


def cmd_train(args) -> int:
    try:
        from .train import TrainSettings, main_train
    except ModuleNotFoundError as e:
        if e.name == "torch":
            raise ValueError(str(e)) from None
        raise
    s = train_settings(TrainSettings, args)
    card = args.card or str(Path(args.out).with_suffix(".train.json"))
    main_train(args.out, s, card=card, log=_log)  # checks both paths before training
    print(f"wrote {args.out} and {card}")
    return 0


# -- pipeline -------------------------------------------------------------------------------------
def cmd_pipeline(args) -> int:
    from .executor import make_executor
    from .pipeline import PipelineSettings, run_pipeline

    ps = PipelineSettings(budget=args.budget, kl_budget=args.kl_budget,
                          calib_bytes=args.calib_bytes, calib_texts=args.calib_texts,
                          deltas=args.deltas, name=args.name, theta=args.theta,
                          allocate_first=args.allocate_first,
                          init_sensitivity=args.init_sensitivity)
    ps.validate()
    if args.allocate_first and (args.trained or not args.init):
        raise ValueError("--allocate-first allocates D on the model training starts from: it "
                         "needs --init (and no --trained)")
    if args.init_sensitivity and not Path(args.init_sensitivity).is_file():
        raise FileNotFoundError(f"{args.init_sensitivity}: no such sensitivity report "
                                f"(--init-sensitivity)")
    ts = None
    if args.trained:
        if not Path(args.trained).is_file():
            raise FileNotFoundError(f"{args.trained}: no such model file (--trained)")
    else:
        try:
            from .train import TrainSettings
        except ModuleNotFoundError as e:
            if e.name == "torch":
                raise ValueError(f"{e}; or skip training with --trained MODEL") from None
            raise
        ts = train_settings(TrainSettings, args)
    with make_executor(args.ray) as ex:
        card = run_pipeline(ps, args.out, train_settings=ts, trained=args.trained, executor=ex,
                            log=_log, workdir=args.workdir)
    res = card["heldout"]["integer (golden)"]
    print(f"wrote {args.out}: held-out bits/byte {res['bits_per_byte']:.4f}, weighted firing "
          f"rate {res['weighted_firing_rate']:.3f}, average D {res['average_D']:.2f} "
          f"(budgets: average D ≤ {args.budget:g}, KL ≤ {args.kl_budget:g})")
    return 0


# -- wiring ---------------------------------------------------------------------------------------
def _model_pos(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None,
                   help="a .nsllm file or a shipped model: default, hybrid (default: default)")


def _calib_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--calib", required=required, help="calibration text file (UTF-8)")
    p.add_argument("--calib-chars", type=options.integer(1, what="a character count"),
                   default=None,
                   help="use only the first N characters of the calibration text")
    p.add_argument("--verbose", "-v", action="store_true", help="log every measurement")


def _timesteps(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timesteps", type=options.timesteps_list, default=SPIKE_COUNT_SET,
                   help=f"choices of D in [1, {MAX_TIMESTEPS}], comma-separated (default "
                        f"{SPIKE_COUNT_SET})")


def register(subparsers) -> None:
    """Add the quantization subcommands to the ``nsllm`` CLI."""
    from .executor import add_ray_arg

    p = subparsers.add_parser("convert", help="convert a Hugging Face hgrn_bit checkpoint")
    p.add_argument("src", help="checkpoint folder: config.json + model.safetensors")
    p.add_argument("--out", "-o", required=True, type=options.output_file,
                   help="output .nsllm file (tokenizer.json, if any, is copied beside it)")
    p.add_argument("--name", default=None, help="model name stored in the file")
    p.add_argument("--packing", default="base3", choices=("base3", "2bit"))
    _calib_args(p, required=False)
    p.set_defaults(func=cmd_convert)

    p = subparsers.add_parser("sensitivity", help="hierarchical sensitivity report (JSON + PNG)")
    _model_pos(p)
    _calib_args(p)
    _timesteps(p)
    p.add_argument("--report", type=options.output_file, help="write the JSON report here")
    p.add_argument("--plot", type=options.output_file, help="write a PNG plot here")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_ray_arg(p)
    p.set_defaults(func=cmd_sensitivity)

    p = subparsers.add_parser("quantize", help="mixed-timestep allocation under a budget")
    _model_pos(p)
    p.add_argument("--budget", "-B", required=True,
                   type=options.number(1.0, MAX_TIMESTEPS, what="an average D"),
                   help="average timesteps D, weighted by each layer's number of weights")
    _calib_args(p)
    _timesteps(p)
    p.add_argument("--out", "-o", required=True, type=options.output_file)
    p.add_argument("--metric", default="kl", choices=("kl", "dbpb"),
                   help="sensitivity to minimise (default: KL divergence)")
    p.add_argument("--sensitivity", help="reuse a saved sensitivity report (JSON)")
    p.add_argument("--report", type=options.output_file,
                   help="write the sensitivity report (JSON)")
    p.add_argument("--plot", type=options.output_file, help="write the sensitivity plot (PNG)")
    p.add_argument("--kl-budget", type=options.number(0.0, what="a KL budget"), default=None,
                   help="also choose δ per layer under this KL budget (nats per position)")
    p.add_argument("--name", default=None)
    p.add_argument("--packing", default="base3", choices=("base3", "2bit"))
    p.add_argument("--json", action="store_true")
    add_ray_arg(p)
    p.set_defaults(func=cmd_quantize)

    p = subparsers.add_parser("sparsify", help="choose the sparsification shift δ per layer")
    _model_pos(p)
    _calib_args(p)
    p.add_argument("--kl-budget", type=options.number(0.0, what="a KL budget"), required=True,
                   help="allowed Σ KL increase (nats per position) over the layers")
    p.add_argument("--deltas", type=options.delta_list, default=(0.0, 0.25, 0.5, 0.75, 1.0, 1.5),
                   help="δ grid, comma-separated, each in [0, 255.99] (the core's 16-bit field)")
    p.add_argument("--out", "-o", default=None, type=options.output_file,
                   help="write the sparsified model here")
    p.add_argument("--plot", type=options.output_file, help="PNG of firing rate vs bits/byte")
    p.add_argument("--report", type=options.output_file, help="JSON of the sweep and the choice")
    p.add_argument("--packing", default="base3", choices=("base3", "2bit"))
    p.add_argument("--relative", action="store_true",
                   help="add the δ grid to each layer's own δ (models trained with learned δ)")
    add_ray_arg(p)
    p.set_defaults(func=cmd_sparsify)

    p = subparsers.add_parser("eval", help="bits/byte, firing rate per layer, size")
    _model_pos(p)
    p.add_argument("--text", required=True, help="UTF-8 text file to evaluate on")
    p.add_argument("--max-chars", type=options.integer(1, what="a character count"), default=None,
                   help="use only the first N characters")
    p.add_argument("--backend", "-b", default="golden", choices=("golden", "float"))
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)

    p = subparsers.add_parser("train", help="QAT of a small byte model (needs the train extra)")
    p.add_argument("--out", "-o", required=True, type=options.output_file)
    _train_args(p)
    p.add_argument("--card", default=None, type=options.output_file,
                   help="training log JSON (default: OUT.train.json)")
    p.set_defaults(func=cmd_train)

    from .pipeline import PIPELINE_DELTAS

    p = subparsers.add_parser(
        "pipeline", help="train (sparse) → sensitivity → allocation → sparsification → golden "
                         "model → held-out evaluation → model card")
    p.add_argument("--out", "-o", required=True, type=options.output_file,
                   help="output .nsllm (card: OUT.json)")
    p.add_argument("--trained", default=None,
                   help="skip training: start from this trained .nsllm model")
    p.add_argument("--budget", "-B", type=options.number(1.0, 127.0, what="an average D"),
                   default=7.0,
                   help="average D, weighted by #weights (default 7)")
    p.add_argument("--kl-budget", type=options.number(0.0), default=0.03,
                   help="KL (nats per prediction) the sparsification may add (default 0.03)")
    p.add_argument("--calib-bytes", type=options.integer(1, what="a byte count"),
                   default=4096,
                   help="bytes of calibration text (training split) for the sweeps")
    p.add_argument("--calib-texts", type=options.integer(1, what="a count"), default=4,
                   help="slices of the training split that θ is calibrated on")
    p.add_argument("--deltas", type=options.delta_list, default=PIPELINE_DELTAS,
                   help="extra δ grid added to each layer's learned δ, comma-separated")
    p.add_argument("--theta", default="trained", choices=("trained", "mse"),
                   help="θ of a layer at a lower D: its trained θ, counts clipped at D (default), "
                        "or θ*(D) calibrated on --calib-texts slices of the training split")
    p.add_argument("--allocate-first", action="store_true",
                   help="allocate D on the --init model under --budget first, then train with "
                        "every layer at its allocated D (the allocation then costs nothing)")
    p.add_argument("--init-sensitivity", default=None, metavar="REPORT",
                   help="with --allocate-first: a saved sensitivity report of the --init model "
                        "(JSON of nsllm sensitivity; default: measure it)")
    p.add_argument("--name", default="nsllm-default", help="model name stored in the file")
    p.add_argument("--workdir", default=None,
                   help="where the intermediate files go (default: next to OUT)")
    add_ray_arg(p)
    _train_args(p)
    p.set_defaults(func=cmd_pipeline)


def _train_args(p: argparse.ArgumentParser, steps: int = 800) -> None:
    p.add_argument("--steps", type=options.integer(1), default=steps)
    p.add_argument("--seed", type=options.integer(0, what="a seed"), default=0)
    p.add_argument("--hidden-size", type=options.integer(1), default=192)
    p.add_argument("--layers", type=options.integer(1), default=4)
    p.add_argument("--batch", type=options.integer(1), default=16)
    p.add_argument("--seq-len", type=options.integer(1), default=256)
    p.add_argument("--lr", type=options.number(0.0, open_lo=True, what="a learning rate"),
                   default=3e-3)
    p.add_argument("--timesteps", type=options.timesteps, default=15,
                   help="D of every layer during training")
    p.add_argument("--delta", type=options.delta, default=0.0,
                   help="sparsification shift δ in the training loop: fixed value, end of the "
                        "schedule, or start value when learned")
    p.add_argument("--delta-mode", default="fixed", choices=("fixed", "schedule", "learn"),
                   help="δ per layer: fixed, ramped 0 → --delta, or learned (default fixed)")
    p.add_argument("--firing-target", default=None,
                   type=options.number(0.0, 1.0, open_lo=True, what="a firing rate"),
                   help="target weighted firing rate r* in (0, 1): adds λ·max(0, r̂ − r*) to the "
                        "loss (r̂: surrogate of the non-zero count, weighted by #weights)")
    p.add_argument("--firing-ramp", type=options.integer(0, what="a step count"),
                   default=0,
                   help="lower the target linearly from the first batch's rate to "
                        "--firing-target over N steps (default 0: the target from the start)")
    p.add_argument("--sparsity-weight", type=options.number(0.0), default=4.0,
                   help="λ of the firing-rate term (default 4)")
    p.add_argument("--init", default=None,
                   help="start from this .nsllm model (fine-tuning; its shapes, D, θ, δ are used)")
    p.add_argument("--distill", default=None, metavar="TEACHER",
                   help="distil from this .nsllm model (same vocabulary): the loss adds "
                        "KL(teacher ‖ student) per byte")
    p.add_argument("--distill-weight", type=options.number(0.0, 1.0, what="a weight"),
                   default=0.5,
                   help="α: loss = (1 − α)·cross-entropy + α·KL to the teacher (default 0.5)")
    p.add_argument("--warmup", type=options.integer(0, what="a step count"), default=None,
                   help="warm-up steps (default 100)")
    p.add_argument("--eval-every", type=options.integer(1, what="a step count"),
                   default=250,
                   help="held-out evaluation every N steps (shown in the progress line)")
    p.add_argument("--mixer", default="mlgru", choices=("mlgru", "hybrid", "sla"),
                   help="token mixer: MLGRU everywhere (default), spike-based linear attention "
                        "everywhere, or hybrid (SLA in every --sla-every-th layer)")
    p.add_argument("--sla-every", type=options.integer(1, what="a layer count"), default=2,
                   help="hybrid: every N-th layer is SLA (default 2: layers 1, 3, …)")
    p.add_argument("--threads", type=options.integer(1), default=1,
                   help="PyTorch threads (default 1)")
