"""Recall: the MLGRU model against the MLGRU/SLA hybrid on synthetic recall tasks.

    .venv/bin/python bench/recall.py [--train] [--steps 600] [--sequences 200]
        [--out bench/results/recall.json]

1. **Copy, zero-shot** — the two shipped models (trained on pydoc text only): random words and
   the same words again (:func:`nsllm.quant.recall.copy_sequences`); bits/byte of the second copy
   against the same bytes in the first copy. Only a model that recalls its context gains.
2. **Key–value lookup, trained on the task** — with ``--train``, one model of each kind is
   trained from scratch on key–value sequences (same size class as the shipped models: d 192,
   4 layers, byte tokens; same settings and steps for both; models kept in ``build/recall/``);
   then both answer 24 lookups per sequence of 242 bytes (chance 10 %).

Every number comes from the integer golden model (the hardware spec) on sequences of a seed the
training never saw.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nsllm.model import DEFAULT_MODEL, HYBRID_MODEL, IntegerModel, load_model, save_model
from nsllm.quant.recall import copy_recall, copy_sequences, kv_corpus, kv_recall, kv_sequences

TRAIN_SEED, HELD_SEED, EVAL_SEED = 1, 2, 3


def train_task_model(mixer: str, steps: int, out: Path, log) -> dict:
    from nsllm.quant.train import TrainSettings, train

    corpus = (kv_corpus(1_000_000, TRAIN_SEED), kv_corpus(24_000, HELD_SEED))
    s = TrainSettings(steps=steps, seed=0, mixer=mixer, eval_every=200)
    t0 = time.time()
    weights, report = train(s, log=log, corpus=corpus)
    weights.config.name = f"kv-{mixer}"
    save_model(weights, out)
    return {"train_seconds": round(time.time() - t0, 1), "steps": steps,
            "heldout_bpb_torch": report["history"][-1]["heldout_bpb_torch"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", action="store_true", help="train the two key–value models first")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--sequences", type=int, default=200)
    ap.add_argument("--models", default="build/recall", help="folder of the task models")
    ap.add_argument("--out", default="bench/results/recall.json")
    args = ap.parse_args()

    def log(msg):
        print(msg, flush=True)

    results: dict = {"sequences": args.sequences, "eval_seed": EVAL_SEED}
    copy = copy_sequences(args.sequences, EVAL_SEED)
    kv = kv_sequences(args.sequences, EVAL_SEED)
    results["copy_zero_shot"] = {}
    results["kv_zero_shot"] = {}
    for name, path in (("nsllm-default (MLGRU)", DEFAULT_MODEL),
                       ("nsllm-hybrid (MLGRU + SLA)", HYBRID_MODEL)):
        m = IntegerModel(load_model(path))
        results["copy_zero_shot"][name] = copy_recall(m, copy)
        results["kv_zero_shot"][name] = kv_recall(m, kv)
        log(f"{name}: copy {results['copy_zero_shot'][name]}  kv {results['kv_zero_shot'][name]}")

    folder = Path(args.models)
    results["kv_trained"] = {}
    for mixer in ("mlgru", "hybrid"):
        path = folder / f"kv-{mixer}.nsllm"
        entry = {}
        if args.train:
            log(f"training a {mixer} model on key–value sequences ({args.steps} steps)")
            entry.update(train_task_model(mixer, args.steps, path, log))
        if path.is_file():
            entry.update(kv_recall(IntegerModel(load_model(path)), kv))
            results["kv_trained"][mixer] = entry
            log(f"kv-trained {mixer}: {entry}")

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
