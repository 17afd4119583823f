"""Cost of the interpretability pipeline on a model: recording, measures, and output size.

    python bench/analysis_speed.py [--model M.nsllm] [--tokens 2048] [--json]

Records the held-out pydoc text (``nsllm.data.corpus``) on the golden model, then times the
per-layer measures (MI with shuffles and bootstrap, entropy rate) and reports the size of the
compressed recording against its raw int8 size.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from nsllm.analysis.layers import input_symbols, measure_recording
from nsllm.analysis.recording import record
from nsllm.data.corpus import pydoc_corpus
from nsllm.model import IntegerModel, load_model, resolve_model_path
from nsllm.model.tokenizer import load_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--shuffles", type=int, default=20)
    ap.add_argument("--bootstraps", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    path = resolve_model_path(args.model)
    weights = load_model(path)
    tok = load_tokenizer(weights.config.tokenizer, path)
    text = pydoc_corpus()[1]
    ids = np.asarray(tok.encode(text), dtype=np.int64)[: args.tokens]
    model = IntegerModel(weights)
    t0 = time.perf_counter()
    rec = record(model, ids)
    t_rec = time.perf_counter() - t0
    x, _ = input_symbols("class", tok, ids)
    t0 = time.perf_counter()
    measure_recording(rec, x, shuffles=args.shuffles, bootstraps=args.bootstraps)
    t_meas = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        size = rec.save(Path(d) / "r.npz").stat().st_size
    raw = sum(v.nbytes for v in rec.counts.values())
    res = {"model": weights.config.name, "tokens": len(ids), "layers": len(rec.layers),
           "neurons_per_token": sum(v.shape[1] for v in rec.counts.values()),
           "record_s": round(t_rec, 3), "record_tokens_per_s": round(len(ids) / t_rec, 1),
           "measures_s": round(t_meas, 3), "shuffles": args.shuffles,
           "bootstraps": args.bootstraps, "recording_bytes": size, "raw_int8_bytes": raw}
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:20s} {v}")


if __name__ == "__main__":
    main()
