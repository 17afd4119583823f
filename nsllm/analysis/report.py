"""The interpretability report: PNG plots (matplotlib, Agg), JSON and an ``index.html``.

Also the one progress abstraction of the package (:class:`Progress`, to stderr).
"""

from __future__ import annotations

import html
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..outputs import atomic_write, write_text
from .layers import LayerMeasures, NeuronMeasures, short_name
from .recording import SpikeRecording


class Progress:
    """Progress of long steps on stderr: one updating line on a terminal, else a line every
    10 % (so logs stay short). ``Progress(enabled=False)`` is silent."""

    def __init__(self, stream=None, enabled: bool = True):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self._tty = getattr(self.stream, "isatty", lambda: False)()
        self._last: dict[str, int] = {}
        self._start: dict[str, float] = {}

    def __call__(self, label: str, done: int, total: int, detail: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        self._start.setdefault(label, now)
        tenth = done * 10 // max(total, 1)
        if not self._tty and done != total and self._last.get(label) == tenth:
            return
        self._last[label] = tenth
        msg = f"[{label}] {done}/{total} {detail} ({now - self._start[label]:.1f} s)"
        if self._tty:
            end = "\n" if done >= total else ""
            self.stream.write(f"\r\033[K{msg}{end}")
        else:
            self.stream.write(msg + "\n")
        self.stream.flush()


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int) -> None:
    """Lay out, write atomically (a temporary file, then a rename) and close a figure."""
    fig.tight_layout()
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        _plt().close(fig)


def _ci_err(values, cis):
    v = np.asarray(values, dtype=np.float64)
    lo = np.array([np.nan if c[0] is None else c[0] for c in cis], dtype=np.float64)
    hi = np.array([np.nan if c[1] is None else c[1] for c in cis], dtype=np.float64)
    return np.nan_to_num(np.vstack([v - lo, hi - v]), nan=0.0).clip(min=0)


def _layer_axis(ax, labels):
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.grid(alpha=0.3)


# -- plots --------------------------------------------------------------------------------------
def plot_raster(rec: SpikeRecording, path: Path, *, layer: str | None = None,
                max_tokens: int = 96, max_neurons: int = 64, train_neurons: int = 12,
                train_tokens: int = 24) -> Path:
    """Top: spike counts (neurons × tokens) of one layer; bottom: the same neurons' binary
    spike trains (D timesteps per token; +1 black, −1 red) for the first tokens."""
    plt = _plt()
    layer = layer or rec.layers[len(rec.layers) // 2]
    t = min(len(rec), max_tokens)
    counts = rec[layer][:t, :max_neurons].T.astype(np.int64)
    d = rec.timesteps[layer]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 7.5), height_ratios=[3, 2])
    im = a1.imshow(counts, aspect="auto", cmap="RdBu_r", vmin=-d, vmax=d, interpolation="nearest")
    fig.colorbar(im, ax=a1, label="spike count")
    a1.set_ylabel(f"neuron (first {counts.shape[0]})")
    a1.set_title(f"{layer}: spike counts, first {t} tokens")
    chars = [rec_token_label(rec, i) for i in range(t)]
    if t <= 120:
        a1.set_xticks(range(t))
        a1.set_xticklabels(chars, fontsize=6, family="monospace")
    a1.set_xlabel("token")
    tt = min(len(rec), train_tokens)
    trains = rec.train(layer, slice(0, tt))[:, :, :train_neurons]  # (T, D, N)
    flat = trains.reshape(tt * d, -1)  # time = token * D + step
    for j in range(flat.shape[1]):
        pos = np.flatnonzero(flat[:, j] > 0)
        neg = np.flatnonzero(flat[:, j] < 0)
        a2.vlines(pos, j + 0.1, j + 0.9, color="black", linewidth=0.8)
        a2.vlines(neg, j + 0.1, j + 0.9, color="tab:red", linewidth=0.8)
    for k in range(tt + 1):
        a2.axvline(k * d - 0.5, color="0.85", linewidth=0.5, zorder=0)
    a2.set_xlim(-0.5, tt * d - 0.5)
    a2.set_ylim(0, flat.shape[1])
    a2.set_xticks(np.arange(tt) * d + d / 2 - 0.5)
    a2.set_xticklabels([rec_token_label(rec, i) for i in range(tt)], fontsize=7,
                       family="monospace")
    a2.set_ylabel("neuron")
    a2.set_xlabel(f"token ({d} timesteps each)")
    a2.set_title("spike trains (binary spike conversion): +1 black, −1 red")
    _save(fig, path, 110)
    return path


def rec_token_label(rec: SpikeRecording, i: int) -> str:
    """A printable label of token i when the recording's text is a byte-level text."""
    tok = int(rec.tokens[i])
    if rec.meta.get("tokenizer", "byte") == "byte" and tok < 256:
        ch = chr(tok)
        return {" ": "␣", "\n": "⏎", "\t": "⇥"}.get(ch, ch if ch.isprintable() else "·")
    return str(tok)


def plot_firing(layers: list[LayerMeasures], path: Path) -> Path:
    """Firing rate per layer (mean, and the 10–90 % band over neurons) and spikes per count."""
    plt = _plt()
    labels = [lm.label for lm in layers]
    x = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.fill_between(x, [lm.firing_rate_p10 for lm in layers],
                    [lm.firing_rate_p90 for lm in layers], alpha=0.25,
                    label="10–90 % of neurons")
    ax.plot(x, [lm.firing_rate for lm in layers], "o-", label="firing rate (non-zero counts)")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("fraction of non-zero spike counts")
    ax2 = ax.twinx()
    ax2.plot(x, [lm.spikes_per_count for lm in layers], "s--", color="tab:orange",
             label="mean |count| (spikes per neuron and token)")
    ax2.set_ylabel("mean |count|")
    _layer_axis(ax, labels)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3,
              frameon=False)
    fig.suptitle("Firing rate per layer (input population of each ternary layer)")
    _save(fig, path, 110)
    return path


def plot_entropy_mi(layers: list[LayerMeasures], path: Path, input_label: str) -> Path:
    """Three panels per layer: count entropy, MI (with CIs and shuffle baseline), entropy rate."""
    plt = _plt()
    labels = [lm.label for lm in layers]
    x = np.arange(len(layers))
    fig, (a1, a2, a3) = plt.subplots(3, 1, figsize=(11, 9.5), sharex=True)
    ent = [lm.entropy for lm in layers]
    a1.errorbar(x, ent, yerr=_ci_err(ent, [lm.entropy_ci for lm in layers]), fmt="o-",
                capsize=2, label="mean count entropy H(count) (Miller–Madow)")
    a1.plot(x, [lm.entropy_max for lm in layers], ":", color="0.5", label="log2(2D+1) (uniform)")
    a1.set_ylabel("bits")
    a1.legend(fontsize=8)
    a1.set_title("Shannon entropy of spike-count distributions (mean over neurons, 95 % CI)")
    mi = [lm.mi for lm in layers]
    a2.errorbar(x, mi, yerr=_ci_err(mi, [lm.mi_ci for lm in layers]), fmt="o-", capsize=2,
                label=f"I(X; count), bias-corrected, X = {input_label}")
    a2.plot(x, [lm.mi_plugin for lm in layers], "x:", color="0.5", label="plug-in (biased)")
    a2.plot(x, [lm.mi_shuffle for lm in layers], "v:", color="tab:red",
            label="shuffle baseline (subtracted)")
    a2.set_ylabel("bits")
    ax2 = a2.twinx()
    ax2.plot(x, [lm.mi_normalised for lm in layers], "d--", color="tab:green",
             label="MI / H(X)")
    ax2.set_ylabel("MI / H(X)")
    h1, l1 = a2.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    a2.legend(h1 + h2, l1 + l2, fontsize=8)
    a2.set_title("Mutual information between input and each neuron's count (mean over neurons)")
    a3.plot(x, [lm.entropy_rate for lm in layers], "o-",
            label="block-entropy rate H_L − H_{L−1}")
    a3.plot(x, [lm.entropy_rate_curve[0] for lm in layers], ":", color="0.5",
            label="H_1 (no memory)")
    a3.plot(x, [lm.entropy_rate_lz for lm in layers], "s--", label="Lempel–Ziv (LZ76)")
    a3.set_ylabel("bits per token")
    a3.legend(fontsize=7, ncol=3, loc="upper left")
    a3.set_title("Entropy rate of each neuron's silent/+/− sequence over tokens (mean)")
    _layer_axis(a3, labels)
    for a in (a1, a2):
        a.grid(alpha=0.3)
    _save(fig, path, 110)
    return path


def plot_mi_vs_entropy(layers: list[LayerMeasures], neurons: dict[str, NeuronMeasures],
                       path: Path, per_layer_points: int = 128, seed: int = 0) -> Path:
    """Scatter of per-neuron MI vs count entropy (a sample per layer), coloured by depth, and
    the per-layer Pearson r with its permutation p-value."""
    plt = _plt()
    rng = np.random.default_rng(seed)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.8), width_ratios=[3, 2])
    cmap = plt.get_cmap("viridis")
    for k, lm in enumerate(layers):
        nm = neurons[lm.layer]
        pick = rng.choice(len(nm.mi), size=min(per_layer_points, len(nm.mi)), replace=False)
        a1.scatter(nm.entropy[pick], nm.mi[pick], s=5, alpha=0.5,
                   color=cmap(k / max(len(layers) - 1, 1)))
    a1.scatter([lm.entropy for lm in layers], [lm.mi for lm in layers], marker="*", s=60,
               c=[cmap(k / max(len(layers) - 1, 1)) for k in range(len(layers))],
               edgecolors="black", linewidths=0.5, label="layer means")
    a1.set_xlabel("count entropy H(count) (bits)")
    a1.set_ylabel("I(X; count) (bits)")
    a1.set_title("Per neuron (colour: depth, yellow = LM head)")
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3)
    x = np.arange(len(layers))
    r = np.array([np.nan if lm.mi_entropy_r is None else lm.mi_entropy_r for lm in layers],
                 dtype=np.float64)
    sig = np.array([(lm.mi_entropy_p or 1) < 0.05 for lm in layers])
    a2.bar(x, np.nan_to_num(r), color=np.where(sig, "tab:blue", "0.7"))
    a2.axhline(0, color="black", linewidth=0.5)
    a2.set_ylim(-1, 1)
    a2.set_ylabel("Pearson r (MI, entropy) over neurons")
    a2.set_title("Per layer (grey: permutation p ≥ 0.05)")
    _layer_axis(a2, [lm.label for lm in layers])
    _save(fig, path, 110)
    return path


STUDY_TITLES = {
    "firing_rate": "firing rate", "entropy": "count entropy (bits)", "mi": "I(X; count) (bits)",
    "mi_normalised": "MI / H(X)", "mi_efficiency": "MI / H(count)",
    "entropy_rate": "entropy rate (bits/token)", "input_entropy": "H(X) of the input (control)",
}


def plot_study(study: dict, path: Path) -> Path:
    """Per measure and layer: the mean paired difference ambiguous − clear with its 95 %
    bootstrap CI over pairs; a star marks Holm-adjusted p < 0.05 (exact sign-flip test)."""
    plt = _plt()
    measures = list(study["tests"])
    labels = study["labels"]
    x = np.arange(len(labels))
    fig, axes = plt.subplots(len(measures), 1, figsize=(11, 2.3 * len(measures)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, m in zip(axes, measures, strict=True):
        rows = study["tests"][m]["layers"]
        d = np.array([np.nan if r["difference"] is None else r["difference"] for r in rows])
        err = _ci_err(d, [r["ci"] for r in rows])
        sig = np.array([r["p_holm"] is not None and r["p_holm"] < 0.05 for r in rows])
        ax.axhline(0, color="black", linewidth=0.6)
        ax.errorbar(x, d, yerr=err, fmt="o", ms=3, capsize=2, color="tab:purple")
        if sig.any():
            ax.plot(x[sig], d[sig], "*", ms=11, color="tab:red", label="Holm p < 0.05")
            ax.legend(fontsize=7, loc="upper right")
        a = study["tests"][m]["all_layers"]
        ax.set_ylabel("Δ " + STUDY_TITLES.get(m, m), fontsize=7)
        ax.set_title(f"{STUDY_TITLES.get(m, m)}: ambiguous − clear; all-layer mean "
                     f"{a['difference']:+.4g} [{a['ci'][0]:.3g}, {a['ci'][1]:.3g}], "
                     f"p = {a['p_value']:.3g} ({a['n']} pairs)", fontsize=9)
        ax.grid(alpha=0.3)
    _layer_axis(axes[-1], labels)
    _save(fig, path, 100)
    return path


# -- HTML ---------------------------------------------------------------------------------------
def _table(rows: list[list], head: list[str]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape("—" if v is None else str(v))

    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows]
    return "\n".join(out + ["</table>"])


def write_index(out: Path, title: str, sections: list[tuple[str, str, list[str]]]) -> Path:
    """An ``index.html`` of sections ``(heading, html body, [png paths relative to out])``."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             "</title><style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
             "padding:2px 6px;text-align:right}img{max-width:100%;border:1px solid #eee;"
             "margin:6px 0}code{background:#f4f4f4}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for heading, body, images in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
        parts += [f"<p><img src='{html.escape(p)}' alt='{html.escape(p)}'></p>" for p in images]
    parts.append("</body></html>")
    return write_text(out / "index.html", "\n".join(parts))


def layer_table(layers: list[LayerMeasures]) -> str:
    head = ["layer", "N", "D", "firing", "H(count)", "MI", "MI 95% CI", "shuffle", "MI/H(X)",
            "r(MI,H)", "h rate", "LZ"]
    rows = [[lm.layer, lm.neurons, lm.D, lm.firing_rate, lm.entropy, lm.mi,
             f"[{lm.mi_ci[0]:.4f}, {lm.mi_ci[1]:.4f}]" if np.isfinite(lm.mi_ci[0]) else None,
             lm.mi_shuffle, lm.mi_normalised, lm.mi_entropy_r, lm.entropy_rate,
             lm.entropy_rate_lz] for lm in layers]
    return _table(rows, head)


def study_table(study: dict) -> str:
    head = ["measure", "clear", "ambiguous", "ambiguous − clear", "95% CI", "p (sign-flip)",
            "layers with Holm p < 0.05"]
    rows = []
    for m, t in study["tests"].items():
        a = t["all_layers"]
        sig = [x["label"] for x in t["layers"] if x["p_holm"] is not None and x["p_holm"] < 0.05]
        rows.append([STUDY_TITLES.get(m, m), a["mean_clear"], a["mean_ambiguous"],
                     a["difference"], f"[{a['ci'][0]:.4g}, {a['ci'][1]:.4g}]", a["p_value"],
                     ", ".join(sig) or "none"])
    return _table(rows, head)


def write_json(path: Path, data: dict) -> Path:
    return write_text(path, json.dumps(data, indent=1, allow_nan=False))


def relpath(p: Path, out: Path) -> str:
    return os.path.relpath(p, out).replace(os.sep, "/")


__all__ = ["Progress", "layer_table", "plot_entropy_mi", "plot_firing", "plot_mi_vs_entropy",
           "plot_raster", "plot_study", "short_name", "study_table", "write_index", "write_json"]
