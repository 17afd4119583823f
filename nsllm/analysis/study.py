"""The clear-vs-ambiguous text study: matched passage pairs, per-layer paired comparisons.

Each shipped pair (``nsllm/data/study/clear_vs_ambiguous.json``, built as its README describes)
holds an ambiguous passage and a clear paraphrase on the same topic. Every passage is run from a
zero state; both passages of a pair are cut to the shorter one's token count (so estimator
biases, which depend on sample size, match); every layer measure is computed per passage; and the
per-pair differences (ambiguous − clear) are tested with an exact sign-flip permutation test,
Holm-adjusted over layers. The two conditions are also pooled (all passages of a condition
concatenated) for measures with block-bootstrap intervals.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model import IntegerModel
from . import measures as ms
from .layers import across_layers, input_symbols, measure_recording
from .recording import SpikeRecording, record

STUDY_DIR = Path(__file__).resolve().parent.parent / "data" / "study"
STUDIES = {"clear-vs-ambiguous": STUDY_DIR / "clear_vs_ambiguous.json"}
CONDITIONS = ("clear", "ambiguous")
#: Layer measures compared between conditions (attributes of LayerMeasures); ``input_entropy``
#: (the same in every layer) is a control: a difference in H(X) alone changes MI.
STUDY_MEASURES = ("firing_rate", "entropy", "mi", "mi_normalised", "mi_efficiency",
                  "entropy_rate", "input_entropy")


@dataclass
class PassagePair:
    """One matched pair: the same topic written clearly and ambiguously."""

    id: str
    kind: str  #: lexical, syntactic or referential ambiguity
    topic: str
    note: str  #: where the ambiguity lies
    clear: str
    ambiguous: str


def load_passages(study: str | os.PathLike = "clear-vs-ambiguous") -> list[PassagePair]:
    """The pairs of a shipped study (by name) or of a JSON file with the same layout."""
    path = STUDIES.get(str(study), Path(study))
    if not path.is_file():
        raise FileNotFoundError(f"no study {study!r}: give one of {', '.join(STUDIES)} or a JSON "
                                "file of passage pairs")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        pairs = [PassagePair(**p) for p in data["pairs"]]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a study file ({type(e).__name__}: {e}); expected "
                         '{"pairs": [{"id", "kind", "topic", "note", "clear", "ambiguous"}, …]}'
                         ) from None
    if len(pairs) < 2:
        raise ValueError(f"{path}: a study needs at least two passage pairs")
    return pairs


def _progress(progress, label):
    return None if progress is None else (lambda done, total, detail="": progress(
        label, done, total, detail))


def run_study(model: IntegerModel, tokenizer, pairs: list[PassagePair], *,
              input_kind: str = "class", shuffles: int = 10, pooled_bootstraps: int = 50,
              block: int = 16, seed: int = 0, match_length: bool = True,
              progress: Callable[[str, int, int, str], None] | None = None) -> dict:
    """Record and measure every passage; return the study's JSON-able result.

    Parameters
    ----------
    model : IntegerModel
    tokenizer : the model's tokenizer
    pairs : list of PassagePair
    input_kind : ``class`` or ``token`` — the X of the mutual information
    shuffles : int
        Shuffles per MI estimate (per passage and pooled).
    pooled_bootstraps : int
        Block-bootstrap replicates of the pooled per-condition measures.
    seed : int
    match_length : bool
        Cut both passages of a pair to the shorter one's token count.
    progress : callable(label, done, total, detail), optional

    Returns
    -------
    dict with ``pairs``, ``per_passage`` (measure → condition → pairs × layers), ``tests``
    (measure → per-layer and all-layer paired tests), ``pooled`` (condition → layer measures)
    and ``recordings`` (condition → list of SpikeRecording, not JSON; popped by the report).
    """
    rng = np.random.default_rng(seed)
    step = _progress(progress, "study passages")
    per_passage = {m: {c: [] for c in CONDITIONS} for m in STUDY_MEASURES}
    recordings: dict[str, list[SpikeRecording]] = {c: [] for c in CONDITIONS}
    inputs: dict[str, list[np.ndarray]] = {c: [] for c in CONDITIONS}
    described, layers = [], None
    total = 2 * len(pairs)
    for k, pair in enumerate(pairs):
        toks = {c: np.asarray(tokenizer.encode(getattr(pair, c)), dtype=np.int64)
                for c in CONDITIONS}
        n = min(len(t) for t in toks.values()) if match_length else None
        entry = {"id": pair.id, "kind": pair.kind, "topic": pair.topic}
        for j, cond in enumerate(CONDITIONS):
            t = toks[cond][:n]
            rec = record(model, t, text=getattr(pair, cond), meta={"pair": pair.id,
                                                                   "condition": cond})
            x, _ = input_symbols(input_kind, tokenizer, t)
            meas, _ = measure_recording(rec, x, shuffles=shuffles, bootstraps=0, block=block,
                                        seed=int(rng.integers(2**31)), lz_neurons=16)
            layers = [m.layer for m in meas]
            for m in STUDY_MEASURES:
                per_passage[m][cond].append([getattr(lm, m) for lm in meas])
            recordings[cond].append(rec)
            inputs[cond].append(x)
            entry[f"{cond}_tokens"] = len(t)
            if step:
                step(2 * k + j + 1, total, f"{pair.id} ({cond})")
        described.append(entry)

    labels = [lm.label for lm in meas]
    tests = {}
    for m in STUDY_MEASURES:
        a = np.array(per_passage[m]["clear"], dtype=np.float64)
        b = np.array(per_passage[m]["ambiguous"], dtype=np.float64)
        per_layer = [ms.paired_permutation_test(a[:, i], b[:, i], rng=rng)
                     for i in range(a.shape[1])]
        holm = ms.holm_adjust([t.p_value for t in per_layer])
        overall = ms.paired_permutation_test(np.nanmean(a, axis=1), np.nanmean(b, axis=1),
                                             rng=rng)
        tests[m] = {
            "layers": [dict(layer=name, label=lab, **_test_json(t), p_holm=_num(ph))
                       for name, lab, t, ph in zip(layers, labels, per_layer, holm, strict=True)],
            "all_layers": _test_json(overall),
        }

    pooled, pooled_neurons = {}, {}
    step = _progress(progress, "study pooled")
    for c_i, cond in enumerate(CONDITIONS):
        rec = concatenate(recordings[cond])
        x = np.concatenate(inputs[cond])
        meas, neurons = measure_recording(rec, x, shuffles=shuffles, bootstraps=pooled_bootstraps,
                                          block=block, seed=seed + c_i)
        pooled[cond] = {"layers": [lm.to_json() for lm in meas],
                        "across_layers": across_layers(meas, seed=seed)}
        pooled_neurons[cond] = neurons
        if step:
            step(c_i + 1, len(CONDITIONS), cond)
    return {
        "study": "clear-vs-ambiguous",
        "input": input_kind,
        "match_length": match_length,
        "shuffles": shuffles,
        "pairs": described,
        "layers": layers,
        "labels": labels,
        "per_passage": {m: {c: [[_num(v) for v in row] for row in rows]
                            for c, rows in d.items()} for m, d in per_passage.items()},
        "tests": tests,
        "pooled": pooled,
        "recordings": recordings,
        "pooled_neurons": pooled_neurons,
    }


def concatenate(recs: list[SpikeRecording]) -> SpikeRecording:
    """One recording of several texts back to back (each was run from its own zero state)."""
    first = recs[0]
    counts = {k: np.concatenate([r[k] for r in recs]) for k in first.layers}
    return SpikeRecording(counts, np.concatenate([r.tokens for r in recs]), first.timesteps,
                          "\n\n".join(r.text for r in recs), {"parts": len(recs)})


def _num(v):
    v = float(v)
    return None if not np.isfinite(v) else round(v, 6)


def _test_json(t: ms.PairedTest) -> dict:
    return {"n": t.n, "mean_clear": _num(t.mean_a), "mean_ambiguous": _num(t.mean_b),
            "difference": _num(t.mean_difference), "ci": [_num(t.ci[0]), _num(t.ci[1])],
            "p_value": _num(t.p_value), "exact": t.exact, "effect_size": _num(t.effect_size)}
