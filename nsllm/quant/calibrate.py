"""Calibration: the firing threshold θ of every ternary layer's input, from calibration text.

Rule (documented in docs/quantization.md): θ is the **MSE-optimal step** for the layer's D on the
layer's recorded real inputs ``x`` (the BitLinear's own RMSNorm output times its norm weight):

    θ*(D) = argmin_θ  E[(|x| − θ·clip(round(|x|/θ), 0, D))²]

searched on a log grid of θ/rms(x) and refined around the best point. The inputs are recorded
from the float model with unquantised activations (ternary weights only), streamed over the text
segment by segment; each layer keeps a uniform random sample of at most ``max_samples`` values
(a reservoir), so memory is bounded by layers × max_samples whatever the text length or model
size.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..model.graph import LanguageModel
from ..model.numerics import SPIKE_COUNT_SET
from ..model.reference import FloatArithmetic
from ..model.weights import ModelWeights

DEFAULT_MAX_SAMPLES = 1 << 15


class _Reservoir:
    """A uniform random sample of a stream of values (Algorithm R, vectorised per batch)."""

    def __init__(self, size: int, rng: np.random.Generator):
        self.size, self.rng = size, rng
        self.values = np.empty(0, dtype=np.float32)
        self.seen = 0

    def add(self, v: np.ndarray) -> None:
        v = np.asarray(v, dtype=np.float32).reshape(-1)
        n = len(v)
        if n == 0:
            return
        room = self.size - len(self.values)
        if room > 0:
            self.values = np.concatenate([self.values, v[:room]])
            self.seen += min(room, n)
            v = v[room:]
            n = len(v)
            if n == 0:
                return
        # item j of this batch replaces a random slot with probability size / (seen + j + 1)
        pos = self.seen + np.arange(1, n + 1)
        keep = self.rng.random(n) < self.size / pos
        idx = np.flatnonzero(keep)
        self.values[self.rng.integers(0, self.size, size=len(idx))] = v[idx]
        self.seen += n


class _RecordingArithmetic(FloatArithmetic):
    """Float arithmetic that samples every ternary layer's real input before quantizing it."""

    def __init__(self, weights: ModelWeights, max_samples: int, seed: int):
        super().__init__(weights, act="none")
        rng = np.random.default_rng(seed)
        self.samples = {n: _Reservoir(max_samples, rng) for n in weights.config.ternary_layers()}

    def spikes(self, layer, xn):
        x = super().spikes(layer, xn)  # act="none": the real input x = xn · norm weight
        self.samples[layer].add(x)
        return x


def record_inputs(weights: ModelWeights, tokens, *, segment: int = 512,
                  max_samples: int = DEFAULT_MAX_SAMPLES, seed: int = 0) -> dict[str, np.ndarray]:
    """A bounded random sample of every ternary layer's real input over a token sequence."""
    arith = _RecordingArithmetic(weights, max_samples, seed)
    lm = LanguageModel(arith)
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    state = None
    for s in range(0, len(tokens), segment):
        _, state = lm.prefill(tokens[None, s:s + segment], state)
    return {n: r.values for n, r in arith.samples.items()}


def _record_one(weights: ModelWeights, job) -> dict[str, tuple[np.ndarray, int]]:
    """Samples of one text: ``{layer: (values, number of values seen)}`` (an executor task)."""
    k, tokens, segment, max_samples, seed = job
    arith = _RecordingArithmetic(weights, max_samples, seed + k)
    lm = LanguageModel(arith)
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    state = None
    for s in range(0, len(tokens), segment):
        _, state = lm.prefill(tokens[None, s:s + segment], state)
    return {n: (r.values, r.seen) for n, r in arith.samples.items()}


def record_inputs_many(weights: ModelWeights, texts, *, segment: int = 512,
                       max_samples: int = DEFAULT_MAX_SAMPLES, seed: int = 0,
                       executor=None) -> dict[str, np.ndarray]:
    """:func:`record_inputs` over many token sequences (each from zero state), one executor task
    per text. The per-text samples are merged into one uniform sample of at most ``max_samples``
    values per layer: text k contributes in proportion to the values it produced, drawn with a
    seeded generator, so the result depends only on the texts and the seed (serial = Ray)."""
    from .executor import SERIAL

    executor = executor or SERIAL
    jobs = [(k, np.asarray(t, dtype=np.int64), segment, max_samples, seed)
            for k, t in enumerate(texts)]
    parts = executor.map(_record_one, weights, jobs)
    rng = np.random.default_rng(seed)
    out = {}
    for n in weights.config.ternary_layers():
        vals = [p[n][0] for p in parts]
        seen = np.array([p[n][1] for p in parts], dtype=np.float64)
        if sum(len(v) for v in vals) <= max_samples:
            out[n] = np.concatenate(vals)
            continue
        take = np.floor(max_samples * seen / seen.sum()).astype(np.int64)
        out[n] = np.concatenate([v[rng.choice(len(v), size=min(int(t), len(v)), replace=False)]
                                 for v, t in zip(vals, take, strict=True)])
    return out


def quantization_mse(x: np.ndarray, theta: np.ndarray, D: int, delta: float = 0.0) -> np.ndarray:
    """Mean squared error of spike-count quantization of ``x`` for each θ in ``theta``."""
    a = np.abs(np.asarray(x, dtype=np.float64))[None, :]
    th = np.asarray(theta, dtype=np.float64)[:, None]
    q = np.clip(np.floor(a / th - delta + 0.5), 0, D) * th
    return np.mean((a - q) ** 2, axis=1)


def mse_optimal_theta(x: np.ndarray, D: int, delta: float = 0.0) -> float:
    """θ*(D): minimum-MSE step on the samples ``x`` (coarse log grid, then a fine one), for a
    layer whose shift is ``delta``."""
    x = np.asarray(x, dtype=np.float64)
    rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
    if rms == 0.0:
        return 1.0
    grid = rms * np.geomspace(0.02, 4.0, 48)
    best = grid[np.argmin(quantization_mse(x, grid, D, delta))]
    fine = best * np.geomspace(0.85, 1.0 / 0.85, 33)
    return float(fine[np.argmin(quantization_mse(x, fine, D, delta))])


def theta_table(samples: dict[str, np.ndarray], timesteps=SPIKE_COUNT_SET,
                deltas: dict[str, float] | None = None,
                keep: dict[str, float] | None = None) -> dict[str, dict[int, float]]:
    """θ*(D) for every layer and every D in ``timesteps``.

    ``deltas``: each layer's shift δ (the MSE is that of the layer's own quantizer; default 0).
    ``keep``: each layer's trained θ, a second candidate: for every D the one of {trained θ,
    θ*(D)} with the lower quantization MSE is kept. A model trained sparse (large learned δ, few
    counts above a few) often loses least by keeping its θ and only clipping at the lower D.
    """
    out = {}
    for n, x in samples.items():
        d = (deltas or {}).get(n, 0.0)
        out[n] = {}
        for D in map(int, timesteps):
            th = mse_optimal_theta(x, D, d)
            if keep and n in keep:
                mse = quantization_mse(x, np.array([th, keep[n]]), D, d)
                th = float(keep[n]) if mse[1] <= mse[0] else th
            out[n][D] = th
    return out


def calibrate(weights: ModelWeights, tokens, *, segment: int = 512,
              max_samples: int = DEFAULT_MAX_SAMPLES, seed: int = 0) -> ModelWeights:
    """A copy of ``weights`` whose every θ is MSE-optimal for the layer's current D."""
    samples = record_inputs(weights, tokens, segment=segment, max_samples=max_samples, seed=seed)
    cfg = weights.config
    quant = {n: replace(q, theta=mse_optimal_theta(samples[n], q.D)) for n, q in cfg.quant.items()}
    return with_quant(weights, quant)


def with_quant(weights: ModelWeights, quant: dict) -> ModelWeights:
    """The same tensors with another per-layer spike quantization (a new config object)."""
    cfg = replace(weights.config, quant={n: replace(q) for n, q in quant.items()})
    cfg.validate()
    return ModelWeights(cfg, weights.tensors, weights.linears)
