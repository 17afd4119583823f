"""``nsllm analyze`` as a Python API: record a text and/or run the study, write the report."""

from __future__ import annotations

import os
from html import escape as html_escape
from pathlib import Path

import numpy as np

from ..model import IntegerModel, ModelWeights
from ..model.stats import mean_firing_rate
from ..outputs import atomic_write, check_output, transaction
from . import report as rp
from .layers import (
    INPUT_KINDS,
    LayerMeasures,
    NeuronMeasures,
    across_layers,
    input_symbols,
    measure_recording,
)
from .recording import SpikeRecording, record
from .study import STUDY_MEASURES, load_passages, run_study


def text_findings(layers: list[LayerMeasures], across: dict, input_label: str) -> list[str]:
    """Plain statements of what was measured on one text (no interpretation)."""
    fr = [lm.firing_rate for lm in layers]
    lo, hi = int(np.argmin(fr)), int(np.argmax(fr))
    mi = np.array([lm.mi for lm in layers])
    top = int(np.argmax(mi))
    sig = [lm for lm in layers if np.isfinite(lm.mi_ci[0]) and lm.mi_ci[0] > 0]
    pos = [lm for lm in layers if lm.mi_entropy_r is not None and np.isfinite(lm.mi_entropy_r)
           and lm.mi_entropy_p < 0.05 and lm.mi_entropy_r > 0]
    neg = [lm for lm in layers if lm.mi_entropy_r is not None and np.isfinite(lm.mi_entropy_r)
           and lm.mi_entropy_p < 0.05 and lm.mi_entropy_r < 0]
    ac = across["mi_vs_entropy"]
    rs = [lm.mi_entropy_r for lm in layers if lm.mi_entropy_r is not None
          and np.isfinite(lm.mi_entropy_r)]
    return [
        f"Firing rate (fraction of non-zero spike counts) ranges from {fr[lo]:.3f} "
        f"({layers[lo].layer}) to {fr[hi]:.3f} ({layers[hi].layer}); unweighted mean over "
        f"layers {mean_firing_rate({lm.layer: lm.firing_rate for lm in layers}):.3f}.",
        f"Mean count entropy per neuron ranges from {min(lm.entropy for lm in layers):.3f} to "
        f"{max(lm.entropy for lm in layers):.3f} bits (uniform over 2D+1 counts would be "
        f"{layers[0].entropy_max:.2f} bits).",
        f"Bias-corrected MI between the input ({input_label}, H(X) = "
        f"{layers[0].input_entropy:.3f} bits) and a neuron's count: largest in {layers[top].layer}"
        f" ({mi[top]:.4f} bits, 95 % CI [{layers[top].mi_ci[0]:.4f}, {layers[top].mi_ci[1]:.4f}]"
        f"), smallest in {layers[int(np.argmin(mi))].layer} ({mi.min():.4f} bits); "
        f"{len(sig)} of {len(layers)} layers have a CI above 0.",
        f"Across neurons, MI and count entropy correlate positively (permutation p < 0.05) in "
        f"{len(pos)} of {len(layers)} layers and negatively in {len(neg)}; median r = "
        f"{np.median(rs) if rs else float('nan'):.3f}. Across layers (layer means) r = "
        f"{ac['r'] if ac['r'] is not None else float('nan'):.3f} (p = {ac['p_value']}).",
        f"Entropy rate (ternary symbol, block length {layers[0].entropy_rate_block}) ranges "
        f"from {min(lm.entropy_rate for lm in layers):.3f} to "
        f"{max(lm.entropy_rate for lm in layers):.3f} bits/token, against a one-symbol "
        f"entropy of {min(lm.entropy_rate_curve[0] for lm in layers):.3f}–"
        f"{max(lm.entropy_rate_curve[0] for lm in layers):.3f}.",
    ]


def study_findings(study: dict) -> list[str]:
    out = []
    for m in STUDY_MEASURES:
        t = study["tests"][m]
        a = t["all_layers"]
        sig = [x for x in t["layers"] if x["p_holm"] is not None and x["p_holm"] < 0.05]
        dirs = ", ".join(f"{x['label']} ({x['difference']:+.4g})" for x in sig)
        out.append(
            f"{rp.STUDY_TITLES.get(m, m)}: ambiguous − clear, averaged over layers, "
            f"{a['difference']:+.4g} (95 % CI [{a['ci'][0]:.4g}, {a['ci'][1]:.4g}], exact "
            f"sign-flip p = {a['p_value']:.3g}, {a['n']} pairs); layers with Holm-adjusted "
            f"p < 0.05: {dirs or 'none'}.")
    return out


def analyze(weights: ModelWeights, tokenizer, out: str | os.PathLike, *, text: str | None = None,
            study: str | None = None, input_kind: str = "class", max_tokens: int = 4096,
            shuffles: int = 20, bootstraps: int = 100, block: int = 16, seed: int = 0,
            raster_layer: str | None = None, trains: list[str] | None = None,
            progress: rp.Progress | None = None, model_label: str = "") -> dict:
    """Record a text and/or run a study on the golden model, and write the report into ``out``.

    Parameters
    ----------
    weights : ModelWeights
    tokenizer : the model's tokenizer
    out : folder for ``index.html``, ``analysis.json``, ``plots/*.png``, recordings
    text : str, optional
        Text to record (truncated to ``max_tokens`` tokens).
    study : str, optional
        A study name (``clear-vs-ambiguous``) or a JSON file of passage pairs.
    input_kind : ``class`` or ``token``
        The X of the mutual information (see :func:`nsllm.analysis.layers.input_symbols`).
    shuffles, bootstraps, block : int
        MI estimator settings (:func:`nsllm.analysis.measures.mutual_information`).
    seed : int
    raster_layer : str, optional
        Layer of the raster plot (default: a middle layer).
    trains : list of str, optional
        Layers whose spike trains are also written (``spike_trains.npz``).
    progress : Progress, optional

    Returns
    -------
    dict: the content of ``analysis.json``.
    """
    if text is None and study is None:
        raise ValueError("nothing to analyze: give a text, a study, or both")
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"unknown input kind {input_kind!r}; choose from {INPUT_KINDS}")
    cfg = weights.config
    for what, names in (("--raster-layer", [raster_layer] if raster_layer else []),
                        ("--trains", trains or [])):
        unknown = [n for n in names if n not in cfg.quant]
        if unknown:
            raise ValueError(f"{what}: unknown layer(s) {', '.join(unknown)}; the model's "
                             f"layers are {', '.join(cfg.ternary_layers())}")
    for what, v, lo in (("max_tokens", max_tokens, 8), ("shuffles", shuffles, 1),
                        ("bootstraps", bootstraps, 1), ("block", block, 1)):
        if not isinstance(v, int) or v < lo:
            raise ValueError(f"{what} must be an integer ≥ {lo}, not {v!r}")
    check_output(out, "out", kind="folder")
    pairs = None if study is None else load_passages(study)
    with transaction():  # the report appears complete, or the folder stays as it was
        return _analyze(weights, tokenizer, Path(out), text, pairs, input_kind, max_tokens,
                        shuffles, bootstraps, block, seed, raster_layer, trains,
                        progress or rp.Progress(enabled=False), model_label)


def _analyze(weights, tokenizer, out, text, pairs, input_kind, max_tokens, shuffles, bootstraps,
             block, seed, raster_layer, trains, progress, model_label) -> dict:
    plots = out / "plots"
    model = IntegerModel(weights)
    cfg = weights.config
    result: dict = {"model": {"name": cfg.name, "path": model_label, "layers": cfg.num_layers,
                              "hidden_size": cfg.hidden_size, "vocab_size": cfg.vocab_size},
                    "input": input_kind, "seed": seed,
                    "estimator": {"shuffles": shuffles, "bootstraps": bootstraps,
                                  "block": block}}
    sections = []
    input_label = "token class" if input_kind == "class" else "token id"

    if text is not None:
        toks = np.asarray(tokenizer.encode(text), dtype=np.int64)[:max_tokens]
        if len(toks) < 8:
            raise ValueError(f"the text has {len(toks)} tokens; give at least 8 (a few hundred "
                             "for useful estimates)")
        rec = record(model, toks, text=text,
                     progress=lambda d, t: progress("recording", d, t, "tokens"),
                     meta={"model_path": model_label})
        rec.save(out / "recording.npz")
        if trains:
            with atomic_write(out / "spike_trains.npz") as tmp:
                np.savez_compressed(tmp, **{k: rec.train(k) for k in trains})
        x, names = input_symbols(input_kind, tokenizer, toks)
        layers, neurons = measure_recording(
            rec, x, shuffles=shuffles, bootstraps=bootstraps, block=block, seed=seed,
            progress=lambda d, t, name: progress("measures", d, t, name))
        across = across_layers(layers, seed=seed)
        save_neurons(out / "neurons.npz", neurons)
        pngs = [
            rp.plot_raster(rec, plots / "raster.png", layer=raster_layer),
            rp.plot_firing(layers, plots / "firing_rate.png"),
            rp.plot_entropy_mi(layers, plots / "entropy_mi.png", input_label),
            rp.plot_mi_vs_entropy(layers, neurons, plots / "mi_vs_entropy.png", seed=seed),
        ]
        findings = text_findings(layers, across, input_label)
        counts = np.bincount(x, minlength=len(names))
        result["text"] = {"tokens": int(len(toks)), "characters": len(text),
                          "input_symbols": {n: int(c) for n, c in zip(names, counts, strict=True)},
                          "layers": [lm.to_json() for lm in layers], "across_layers": across,
                          "findings": findings}
        body = ("<p>" + html_escape(f"{len(toks)} tokens of the given text; X = {input_label}. ")
                + "Measures per ternary layer input population (N neurons), see "
                "<code>docs/interpretability.md</code>.</p><ul>"
                + "".join(f"<li>{html_escape(f)}</li>" for f in findings) + "</ul>"
                + rp.layer_table(layers))
        sections.append(("Text", body, [rp.relpath(p, out) for p in pngs]))

    if pairs is not None:
        res = run_study(model, tokenizer, pairs, input_kind=input_kind,
                        shuffles=max(5, shuffles // 2), pooled_bootstraps=max(0, bootstraps // 2),
                        block=block, seed=seed, progress=progress)
        recs = res.pop("recordings")
        pooled_neurons = res.pop("pooled_neurons")
        rec_dir = out / "study_recordings"
        for cond, lst in recs.items():
            for pair, r in zip(pairs, lst, strict=True):
                r.save(rec_dir / f"{pair.id}.{cond}.npz")
        pooled = {c: [layer_from_json(d) for d in res["pooled"][c]["layers"]] for c in recs}
        pngs = [rp.plot_study(res, plots / "study.png")]
        for cond in recs:
            pngs.append(rp.plot_mi_vs_entropy(pooled[cond], pooled_neurons[cond],
                                              plots / f"study_mi_vs_entropy_{cond}.png",
                                              seed=seed))
        res["findings"] = study_findings(res)
        result["study"] = res
        body = ("<p>" + html_escape(
            f"{len(pairs)} matched pairs (nsllm/data/study); each pair cut to its shorter "
            f"passage's token count; X = {input_label}; per passage measures, paired exact "
            "sign-flip tests of ambiguous − clear, Holm-adjusted over layers. The star in the "
            "plot marks Holm p < 0.05.") + "</p><ul>"
            + "".join(f"<li>{html_escape(f)}</li>" for f in res["findings"]) + "</ul>"
            + rp.study_table(res))
        sections.append(("Clear vs ambiguous text", body, [rp.relpath(p, out) for p in pngs]))

    rp.write_json(out / "analysis.json", result)
    rp.write_index(out, f"nsllm interpretability report — {cfg.name}", sections)
    return result


def save_neurons(path: Path, neurons: dict[str, NeuronMeasures]) -> Path:
    """Per-neuron measures of every layer as ``<layer>/<measure>`` arrays."""
    arrays = {f"{layer}/{k}": np.asarray(v) for layer, nm in neurons.items()
              for k, v in vars(nm).items()}
    with atomic_write(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    return path


def layer_from_json(d: dict) -> LayerMeasures:
    """Inverse of :meth:`LayerMeasures.to_json` (None → NaN)."""
    nan = float("nan")
    fixed = {k: (nan if v is None else v) for k, v in d.items()}
    for k in ("entropy_ci", "mi_ci"):
        fixed[k] = tuple(nan if v is None else v for v in d[k])
    fixed["block"] = d["block"]
    return LayerMeasures(**fixed)


#: Named texts ``--text`` accepts besides files.
NAMED_TEXTS = ("pydoc-heldout",)


def load_text(path: str | os.PathLike) -> str:
    """A UTF-8 text file (undecodable bytes become U+FFFD), or ``pydoc-heldout``: the held-out
    split of the training corpus (:func:`nsllm.data.corpus.pydoc_corpus`), present on every
    Python installation, so a report can be reproduced without shipping a text."""
    if str(path) == "pydoc-heldout" and not Path(path).exists():
        from ..data.corpus import pydoc_corpus

        return pydoc_corpus()[1]
    if not Path(path).is_file():
        raise FileNotFoundError(f"no text file {path}; give a UTF-8 file or one of "
                                f"{', '.join(NAMED_TEXTS)}")
    return Path(path).read_text(encoding="utf-8", errors="replace")


def cross_check(weights: ModelWeights, other: SpikeRecording):
    """Golden spike counts for the token ids of another recording (e.g. read back from the
    simulated core), compared layer by layer: the first :class:`SpikeMismatch`, or None."""
    golden = record(IntegerModel(weights), other.tokens, text=other.text,
                    layers=[k for k in other.layers if k in weights.config.quant])
    return golden.compare(other)


__all__ = ["analyze", "cross_check", "layer_from_json", "load_text", "study_findings",
           "text_findings"]
