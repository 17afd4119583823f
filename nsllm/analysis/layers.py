"""Per-layer measures of a :class:`~nsllm.analysis.recording.SpikeRecording`.

A *layer* here is the input population of one ternary layer (N = its ``in_features`` neurons,
in execution order). The *spike pattern* of a neuron at a token is its integer spike count
(2D + 1 possible values); a layer's MI is the mean over its neurons of ``I(X; count_n)``, where
X is the token's input symbol (its character class, or its id). Joint patterns of many neurons
are not used: their alphabet is far too large to estimate from thousands of tokens.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..model.stats import firing_rate
from . import measures as ms
from .recording import SpikeRecording

#: Character classes of a token (by its first decoded character); ``other`` takes the rest,
#: including byte tokens that are not a whole UTF-8 character.
TOKEN_CLASSES = ("space", "newline", "lower", "upper", "digit", "punct", "other")
#: Distinct token ids kept when X is the token id; rarer ids are merged into one class.
MAX_TOKEN_SYMBOLS = 32
INPUT_KINDS = ("class", "token")

_LAYER = re.compile(r"^layers\.(\d+)\.(attn|mlp)\.(\w+)_proj$")


def token_class(text: str) -> int:
    """Index into :data:`TOKEN_CLASSES` of a token's decoded text."""
    c = text[:1]
    if c == "" or c == "\ufffd":
        return TOKEN_CLASSES.index("other")
    if c == "\n":
        return TOKEN_CLASSES.index("newline")
    if c.isspace():
        return TOKEN_CLASSES.index("space")
    if c.isdigit():
        return TOKEN_CLASSES.index("digit")
    if c.isalpha():
        return TOKEN_CLASSES.index("lower" if c.islower() else "upper")
    if c in string.punctuation:
        return TOKEN_CLASSES.index("punct")
    return TOKEN_CLASSES.index("other")


def token_classes(tokenizer, tokens) -> np.ndarray:
    """Class of every token id (decoded one token at a time)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    cache = {int(t): token_class(tokenizer.decode([int(t)])) for t in np.unique(tokens)}
    return np.array([cache[int(t)] for t in tokens], dtype=np.int64)


def input_symbols(kind: str, tokenizer, tokens) -> tuple[np.ndarray, list[str]]:
    """The X of the MI: ``class`` (:data:`TOKEN_CLASSES`) or ``token`` (the
    :data:`MAX_TOKEN_SYMBOLS` − 1 most frequent ids, the rest merged). Returns symbols and names."""
    if kind == "class":
        return token_classes(tokenizer, tokens), list(TOKEN_CLASSES)
    if kind == "token":
        sym, ids = ms.relabel_top(tokens, MAX_TOKEN_SYMBOLS)
        return sym, [repr(tokenizer.decode([i])) if i >= 0 else "(other)" for i in ids]
    raise ValueError(f"unknown input kind {kind!r}; choose from {', '.join(INPUT_KINDS)}")


def short_name(layer: str) -> str:
    """Compact plot label: ``layers.2.mlp.down_proj`` → ``2.down``, ``lm_head`` → ``head``."""
    m = _LAYER.match(layer)
    if m:
        return f"{m.group(1)}.{m.group(3)}"
    return "head" if layer == "lm_head" else layer


def block_of(layer: str) -> int | None:
    """Block index of a ternary layer (None for the LM head)."""
    m = _LAYER.match(layer)
    return int(m.group(1)) if m else None


@dataclass
class LayerMeasures:
    """Every measure of one layer (JSON-able through :meth:`to_json`). Entropies in bits."""

    layer: str
    label: str
    block: int | None
    neurons: int
    D: int
    tokens: int
    firing_rate: float  #: fraction of non-zero counts
    firing_rate_p10: float  #: 10th percentile over neurons of the per-neuron rate
    firing_rate_p90: float
    spikes_per_count: float  #: mean |count|: binary spikes per neuron and token
    entropy: float  #: mean over neurons of the Miller–Madow count entropy
    entropy_ci: tuple[float, float]
    entropy_max: float  #: log2(2D + 1), the entropy of a uniform count
    mi: float  #: mean over neurons of the bias-corrected I(X; count)
    mi_ci: tuple[float, float]
    mi_p_value: float
    mi_plugin: float
    mi_miller_madow: float
    mi_shuffle: float  #: mean shuffle baseline subtracted
    mi_normalised: float  #: mi / H(X)
    mi_efficiency: float  #: mi / entropy
    input_entropy: float
    mi_entropy_r: float  #: Pearson r over neurons between MI and count entropy
    mi_entropy_p: float
    entropy_rate: float  #: block-entropy difference h_L, bits per token (ternary symbols)
    entropy_rate_curve: list[float]
    entropy_rate_block: int
    entropy_rate_lz: float

    def to_json(self) -> dict:
        return {k: _clean(v) for k, v in asdict(self).items()}


def _clean(v):
    """JSON-safe: NaN → None, tuples → lists, numpy scalars → Python numbers."""
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else round(float(v), 6)
    if isinstance(v, np.integer):
        return int(v)
    return v


@dataclass
class NeuronMeasures:
    """Per-neuron arrays of one layer (for scatter plots and ``neurons.npz``)."""

    firing_rate: np.ndarray
    entropy: np.ndarray
    mi: np.ndarray
    entropy_rate: np.ndarray


def measure_layer(layer: str, counts: np.ndarray, D: int, inputs: np.ndarray, *,
                  shuffles: int, bootstraps: int, block: int, rng: np.random.Generator,
                  lz_neurons: int = 32) -> tuple[LayerMeasures, NeuronMeasures]:
    """All measures of one layer's (T, N) counts against input symbols (T,)."""
    t, n = counts.shape
    mi = ms.mutual_information(inputs, counts, shuffles=shuffles, bootstraps=bootstraps,
                               block=block, rng=rng)
    rate_n = np.count_nonzero(counts, axis=0) / max(t, 1)
    corr = ms.correlation(mi.response_entropy, mi.per_neuron, permutations=1000, rng=rng)
    er = ms.entropy_rate(counts, lz_neurons=lz_neurons, rng=rng)
    lm = LayerMeasures(
        layer=layer, label=short_name(layer), block=block_of(layer), neurons=n, D=D, tokens=t,
        firing_rate=firing_rate(counts),
        firing_rate_p10=float(np.quantile(rate_n, 0.1)),
        firing_rate_p90=float(np.quantile(rate_n, 0.9)),
        spikes_per_count=float(np.abs(counts.astype(np.int64)).mean()),
        entropy=float(mi.response_entropy.mean()), entropy_ci=mi.entropy_ci,
        entropy_max=math.log2(2 * D + 1),
        mi=mi.mean, mi_ci=mi.ci, mi_p_value=mi.p_value,
        mi_plugin=float(mi.plugin.mean()), mi_miller_madow=float(mi.miller_madow.mean()),
        mi_shuffle=float(mi.shuffle_mean.mean()), mi_normalised=mi.normalised,
        mi_efficiency=mi.efficiency, input_entropy=mi.input_entropy,
        mi_entropy_r=corr.r, mi_entropy_p=corr.p_value,
        entropy_rate=er.mean, entropy_rate_curve=er.block_curve,
        entropy_rate_block=er.block_length, entropy_rate_lz=er.lempel_ziv,
    )
    return lm, NeuronMeasures(rate_n, mi.response_entropy, mi.per_neuron, er.per_neuron)


def measure_recording(rec: SpikeRecording, inputs: np.ndarray, *, shuffles: int = 20,
                      bootstraps: int = 100, block: int = 16, seed: int = 0,
                      lz_neurons: int = 32,
                      progress: Callable[[int, int, str], None] | None = None,
                      ) -> tuple[list[LayerMeasures], dict[str, NeuronMeasures]]:
    """Measures of every layer of a recording, in execution order.

    Parameters
    ----------
    rec : SpikeRecording
    inputs : (T,) input symbols (see :func:`input_symbols`)
    shuffles, bootstraps, block : int
        See :func:`nsllm.analysis.measures.mutual_information`.
    seed : int
        One seed for every random draw, so a report is reproducible.
    progress : callable(done, total, layer), optional
    """
    inputs = np.asarray(inputs).reshape(-1)
    if len(inputs) != len(rec):
        raise ValueError(f"{len(inputs)} input symbols for a recording of {len(rec)} tokens")
    rng = np.random.default_rng(seed)
    out, neurons = [], {}
    for k, name in enumerate(rec.layers):
        lm, nm = measure_layer(name, rec[name], rec.timesteps[name], inputs, shuffles=shuffles,
                               bootstraps=bootstraps, block=block, rng=rng, lz_neurons=lz_neurons)
        out.append(lm)
        neurons[name] = nm
        if progress is not None:
            progress(k + 1, len(rec.layers), name)
    return out, neurons


def across_layers(layers: list[LayerMeasures], *, seed: int = 0) -> dict:
    """Correlation over layers of layer-mean MI with layer-mean entropy (and firing rate)."""
    rng = np.random.default_rng(seed)
    mi = [lm.mi for lm in layers]
    res = {}
    for key in ("entropy", "firing_rate", "entropy_rate"):
        c = ms.correlation([getattr(lm, key) for lm in layers], mi, permutations=2000, rng=rng)
        res[f"mi_vs_{key}"] = {"r": _clean(c.r), "p_value": _clean(c.p_value), "layers": c.n}
    return res
