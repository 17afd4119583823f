"""Measure the default model on the held-out pydoc text and write its card (JSON).

    .venv/bin/python bench/default_model.py [--model nsllm/data/dense.nsllm]
        [--train-report TRAIN.json] [--card CARD.json]

Reports held-out bits/byte of the integer golden model, the float reference (same spikes), the
float model without activation quantization, and a unigram baseline; firing rates; sizes; and a
greedy continuation of a prompt from the corpus through the integer model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from nsllm.data.corpus import pydoc_corpus
from nsllm.model import DEFAULT_MODEL, FloatModel, IntegerModel, load_model
from nsllm.model.graph import greedy
from nsllm.model.stats import evaluate, mean_firing_rate, unigram_bits_per_byte
from nsllm.quant.evaluation import tensor_bytes
from nsllm.quant.probe import layer_weights

PROMPTS = ("The ", "Return the ", "If the object is ")


def continue_prompt(model, prompt: str, n: int) -> str:
    ids = list(prompt.encode())
    logits, state = model.prefill(np.array(ids)[None])
    out = []
    tok = int(greedy(logits[0, -1]))
    for _ in range(n):
        out.append(tok)
        logits, state = model.step(tok, state)
        tok = int(greedy(logits[0]))
    return bytes(out).decode("utf-8", errors="replace")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--train-report", default=None)
    ap.add_argument("--card", default=None,
                    help="write the card here (default: print only; the shipped model's card is "
                         "written by `nsllm pipeline`)")
    ap.add_argument("--tokens", type=int, default=80, help="continuation length")
    args = ap.parse_args()

    w = load_model(args.model)
    train, held = pydoc_corpus()
    tr = np.frombuffer(train.encode(), np.uint8).astype(np.int64)
    ho = np.frombuffer(held.encode(), np.uint8).astype(np.int64)
    sizes = layer_weights(w)
    rows = {}
    for name, model in [("integer (golden)", IntegerModel(w)),
                        ("float, same spikes", FloatModel(w, act="spike")),
                        ("float, no activation quantization", FloatModel(w, act="none"))]:
        t0 = time.time()
        st = evaluate(model, ho, spikes=name.startswith("integer"))
        rows[name] = {"bits_per_byte": round(st.bits_per_byte, 4),
                      "seconds": round(time.time() - t0, 2)}
        if st.firing:
            rows[name]["mean_firing_rate"] = round(mean_firing_rate(st.firing), 4)
            rows[name]["weighted_firing_rate"] = round(mean_firing_rate(st.firing, sizes), 4)
            rows[name]["firing_rate"] = {k: round(v, 4) for k, v in st.firing.items()}
    rows["unigram baseline"] = {"bits_per_byte": round(unigram_bits_per_byte(tr, ho, 256), 4)}
    golden = IntegerModel(w)
    samples = {p: continue_prompt(golden, p, args.tokens) for p in PROMPTS}
    cfg = w.config
    card = {
        "model": Path(args.model).name, "name": cfg.name,
        "shape": {"vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
                  "num_layers": cfg.num_layers, "intermediate_size": cfg.intermediate_size},
        "parameters": cfg.num_parameters(), "ternary_weights": cfg.num_ternary_weights(),
        "file_bytes": Path(args.model).stat().st_size, "tensor_bytes": tensor_bytes(w),
        "corpus": "pydoc_data.topics, topics sorted by name, every 10th held out",
        "train_bytes": len(tr), "heldout_bytes": len(ho),
        "heldout": rows, "greedy_continuations_integer_model": samples,
    }
    if args.train_report:
        rep = json.loads(Path(args.train_report).read_text())
        card["training"] = {"command": "nsllm train --out M --steps {steps} --seed {seed}".format(
            **rep["settings"]), **rep}
    if args.card:
        Path(args.card).write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n")
    print("| model | held-out bits/byte |\n| --- | --- |")
    for k, v in rows.items():
        print(f"| {k} | {v['bits_per_byte']:.3f} |")
    for p, s in samples.items():
        print(f"{p!r} -> {s!r}")
    if args.card:
        print(f"card: {args.card}")


if __name__ == "__main__":
    main()
