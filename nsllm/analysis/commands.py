"""``nsllm analyze``: spike recordings, information measures and the clear-vs-ambiguous study."""

from __future__ import annotations

import argparse
import sys

from .. import options


def cmd_analyze(args) -> int:
    from ..model import load_model, resolve_model_path
    from ..model.tokenizer import load_tokenizer
    from .analyze import analyze, cross_check, load_text
    from .recording import SpikeRecording
    from .report import Progress

    path = resolve_model_path(args.model)
    weights = load_model(path)
    if args.compare:
        mismatch = cross_check(weights, SpikeRecording.load(args.compare))
        if mismatch is None:
            print(f"spike counts of {args.compare} equal the golden model's")
            return 0
        print(f"first difference from the golden model: {mismatch}")
        return 1
    if args.text is None and args.study is None:
        raise ValueError("give --text FILE and/or --study clear-vs-ambiguous (or --compare FILE)")
    if args.out is None:
        raise ValueError("give --out DIR for the report")
    tokenizer = load_tokenizer(weights.config.tokenizer, path)
    text = load_text(args.text) if args.text else None
    trains = [t for t in (args.trains or "").split(",") if t]
    res = analyze(weights, tokenizer, args.out, text=text, study=args.study,
                  input_kind=args.inputs, max_tokens=args.max_tokens, shuffles=args.shuffles,
                  bootstraps=args.bootstraps, block=args.block, seed=args.seed,
                  raster_layer=args.raster_layer, trains=trains,
                  progress=Progress(enabled=not args.quiet), model_label=str(path))
    for part in ("text", "study"):
        for line in res.get(part, {}).get("findings", []):
            print(f"[{part}] {line}")
    print(f"report: {args.out}/index.html", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``analyze`` to the ``nsllm`` command line."""
    p = subparsers.add_parser(
        "analyze", help="spike recordings, firing rates, entropy, mutual information, study",
        description="Record every layer's spike counts on the golden model and write a report "
                    "(analysis.json, plots/*.png, index.html) of firing rates, entropies, "
                    "mutual information and entropy rates; optionally the clear-vs-ambiguous "
                    "text study.")
    p.add_argument("--model", "-m", default=None,
                   help="a .nsllm file, a folder with one, or a shipped model: default, hybrid "
                        "(default: the shipped default model)")
    p.add_argument("--text", help="a UTF-8 text file to record, or pydoc-heldout (the held-out "
                                  "split of the training corpus)")
    p.add_argument("--study", help="a study: clear-vs-ambiguous (shipped), or a JSON file of "
                                   "passage pairs")
    p.add_argument("--out", "-o", type=options.output_folder, help="report folder")
    p.add_argument("--inputs", choices=("class", "token"), default="class",
                   help="X of the mutual information: token character class (default) or token "
                        "id (the 31 most frequent, the rest merged)")
    p.add_argument("--max-tokens", type=options.integer(8, what="a token count"), default=4096,
                   help="tokens of --text recorded (at least 8)")
    p.add_argument("--shuffles", type=options.integer(1), default=20,
                   help="shuffles for the MI bias baseline")
    p.add_argument("--bootstraps", type=options.integer(1), default=100,
                   help="block-bootstrap replicates for confidence intervals")
    p.add_argument("--block", type=options.integer(1), default=16,
                   help="bootstrap block length in tokens")
    p.add_argument("--seed", type=options.integer(0, what="a seed"), default=0)
    p.add_argument("--raster-layer", help="layer of the raster plot (default: a middle layer)")
    p.add_argument("--trains", help="comma-separated layers whose spike trains are also saved")
    p.add_argument("--compare", metavar="NPZ",
                   help="cross-check: compare a spike recording (e.g. read back from the "
                        "simulated core) with the golden model on its tokens; exit 1 on a "
                        "difference")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_analyze)
