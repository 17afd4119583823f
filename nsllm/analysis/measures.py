"""Information measures of spike counts: entropy, mutual information, entropy rate, tests.

Every estimator works on integer symbols and is vectorised over neurons: ``responses`` is a
(T, N) array (T tokens, N neurons of one layer) and a per-neuron result is an (N,) array.
Entropies are in **bits**.

Estimators (see ``docs/interpretability.md`` for the reasoning):

* Entropy of a count distribution: plug-in (maximum-likelihood) entropy plus the Miller–Madow
  correction ``(m − 1) / (2 T ln 2)`` bits, m = number of occupied bins.
* Mutual information ``I(X; Y_n)`` between the input symbol X of a token (its class or id) and
  neuron n's spike count ``Y_n``: Miller–Madow on each of ``H(X) + H(Y) − H(X, Y)``, minus a
  **shuffle baseline** (the mean of the same estimator after permuting X against Y, which
  estimates the bias left at this sample size). Confidence intervals come from a **moving-block
  bootstrap** over token positions (blocks keep the serial dependence of text); the interval is
  centred on the estimate (the bootstrap supplies the spread, not the location, because resampled
  data repeat tokens and so carry more bias than the sample itself).
* Entropy rate (Kolmogorov–Sinai style) of each neuron's symbol sequence over tokens: block
  entropy differences ``h_k = H_{k+1} − H_k`` and the Lempel–Ziv (LZ76) complexity estimate.
* Paired sign-flip permutation test (exact up to 16 pairs), Holm adjustment, permutation test of
  a correlation. NumPy only: SciPy is not a dependency.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

LOG2E = 1.0 / math.log(2.0)


# -- symbols ------------------------------------------------------------------------------------
def as_symbols(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Map integer values onto ``0 … k−1`` (k = number of distinct values) preserving order.

    Returns the symbols (same shape, int64) and k. Used for spike counts, whose range [−D, D]
    is mostly unoccupied in any one text.
    """
    values = np.asarray(values)
    uniq, inv = np.unique(values, return_inverse=True)
    return inv.reshape(values.shape).astype(np.int64), max(len(uniq), 1)


def relabel_top(labels: np.ndarray, max_classes: int) -> tuple[np.ndarray, list[int]]:
    """Keep the ``max_classes − 1`` most frequent labels and merge the rest into one class.

    Returns symbols in ``0 … k−1`` and the original label of each kept symbol (the merged class,
    when present, is last and reported as −1). Makes MI against token ids tractable for large
    vocabularies: a 32k-symbol X cannot be estimated from a few thousand tokens.
    """
    labels = np.asarray(labels).reshape(-1)
    uniq, counts = np.unique(labels, return_counts=True)
    if len(uniq) <= max_classes:
        return np.searchsorted(uniq, labels).astype(np.int64), [int(u) for u in uniq]
    keep = uniq[np.argsort(-counts, kind="stable")[: max_classes - 1]]
    keep.sort()
    idx = np.searchsorted(keep, labels)
    idx = np.minimum(idx, len(keep) - 1)
    hit = keep[idx] == labels
    return np.where(hit, idx, len(keep)).astype(np.int64), [int(k) for k in keep] + [-1]


# -- entropy ------------------------------------------------------------------------------------
def entropy_from_histogram(hist: np.ndarray, miller_madow: bool = True) -> np.ndarray:
    """Entropy in bits of histograms along the last axis.

    Parameters
    ----------
    hist : array of non-negative counts, (..., bins)
    miller_madow : bool
        Add the Miller–Madow bias correction ``(m − 1) / (2 n ln 2)`` (m occupied bins, n samples).
    """
    hist = np.asarray(hist, dtype=np.float64)
    n = hist.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        nlogn = np.where(hist > 0, hist * np.log2(np.where(hist > 0, hist, 1.0)), 0.0).sum(axis=-1)
        h = np.where(n > 0, np.log2(np.where(n > 0, n, 1.0)) - nlogn / np.where(n > 0, n, 1.0),
                     0.0)
        if miller_madow:
            m = np.count_nonzero(hist, axis=-1)
            h = h + np.where(n > 0, (m - 1) * LOG2E / (2.0 * np.where(n > 0, n, 1.0)), 0.0)
    return h


def neuron_histograms(responses: np.ndarray, bins: int) -> np.ndarray:
    """Per-neuron histograms of symbols: (T, N) symbols in [0, bins) → (N, bins) counts."""
    responses = np.asarray(responses, dtype=np.int64)
    t, n = responses.shape
    flat = responses + np.arange(n, dtype=np.int64)[None, :] * bins
    return np.bincount(flat.ravel(), minlength=n * bins).reshape(n, bins)


def count_entropy(counts: np.ndarray, miller_madow: bool = True) -> np.ndarray:
    """Shannon entropy (bits) of each neuron's spike-count distribution: (T, N) → (N,)."""
    sym, k = as_symbols(counts)
    return entropy_from_histogram(neuron_histograms(sym, k), miller_madow)


# -- mutual information -------------------------------------------------------------------------
def joint_histograms(inputs: np.ndarray, responses: np.ndarray, kx: int, ky: int) -> np.ndarray:
    """(N, kx, ky) joint counts of input symbol x_t and each neuron's response symbol y_{t,n}."""
    x = np.asarray(inputs, dtype=np.int64).reshape(-1)
    y = np.asarray(responses, dtype=np.int64)
    t, n = y.shape
    if x.shape[0] != t:
        raise ValueError(f"{x.shape[0]} input symbols for {t} response rows; they must match")
    flat = (np.arange(n, dtype=np.int64)[None, :] * kx + x[:, None]) * ky + y
    return np.bincount(flat.ravel(), minlength=n * kx * ky).reshape(n, kx, ky)


def mi_terms(inputs: np.ndarray, responses: np.ndarray, kx: int, ky: int,
             miller_madow: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-neuron ``I(X; Y_n)`` and ``H(Y_n)`` (bits) and ``H(X)`` from one joint histogram.

    With ``miller_madow`` each of the three entropies carries its own correction, so the MI is
    reduced by ``(m_xy − m_x − m_y + 1) / (2 T ln 2)``.
    """
    joint = joint_histograms(inputs, responses, kx, ky)
    h_xy = entropy_from_histogram(joint.reshape(joint.shape[0], -1), miller_madow)
    h_y = entropy_from_histogram(joint.sum(axis=1), miller_madow)
    h_x = float(entropy_from_histogram(joint[0].sum(axis=1), miller_madow)) if len(joint) else 0.0
    return h_x + h_y - h_xy, h_y, h_x


def block_bootstrap_indices(t: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """Moving-block bootstrap: T positions made of random contiguous blocks of length ``block``."""
    block = max(1, min(block, t))
    nblocks = -(-t // block)
    starts = rng.integers(0, t - block + 1, size=nblocks)
    return (starts[:, None] + np.arange(block)[None, :]).ravel()[:t]


@dataclass
class MutualInformation:
    """Bias-corrected MI between an input symbol and each neuron of one layer.

    Attributes
    ----------
    per_neuron : (N,) array
        ``mi_miller_madow − shuffle_mean`` per neuron, bits (the estimate; may be slightly < 0).
    plugin, miller_madow, shuffle_mean : (N,) arrays
        The plug-in MI, its Miller–Madow version, and the mean Miller–Madow MI of shuffles.
    response_entropy : (N,) array
        Miller–Madow entropy of each neuron's count distribution, bits.
    input_entropy : float
        Miller–Madow H(X), bits.
    mean : float
        Layer mean of ``per_neuron``.
    ci : (float, float)
        Block-bootstrap interval of ``mean`` centred on it (NaN when no bootstrap was run).
    entropy_ci : (float, float)
        The same for the layer-mean response entropy.
    p_value : float
        Shuffle test of ``mean`` against independence (exchangeable tokens assumed; optimistic
        for serially dependent text, the bootstrap interval is the primary uncertainty).
    """

    per_neuron: np.ndarray
    plugin: np.ndarray
    miller_madow: np.ndarray
    shuffle_mean: np.ndarray
    response_entropy: np.ndarray
    input_entropy: float
    mean: float
    ci: tuple[float, float]
    entropy_ci: tuple[float, float]
    p_value: float
    samples: int
    shuffles: int
    bootstraps: int
    block: int

    @property
    def normalised(self) -> float:
        """Layer-mean MI as a fraction of the input entropy H(X)."""
        return self.mean / self.input_entropy if self.input_entropy > 0 else float("nan")

    @property
    def efficiency(self) -> float:
        """Layer-mean MI over layer-mean response entropy: the share of response entropy that
        is information about the input (a coding-efficiency measure)."""
        h = float(np.mean(self.response_entropy))
        return self.mean / h if h > 0 else float("nan")


def mutual_information(inputs: np.ndarray, responses: np.ndarray, *, shuffles: int = 20,
                       bootstraps: int = 100, block: int = 16, confidence: float = 0.95,
                       rng: np.random.Generator | None = None) -> MutualInformation:
    """Bias-corrected MI between input symbols (T,) and each neuron's responses (T, N).

    Parameters
    ----------
    inputs : (T,) integer array
        Input symbol of each token (token class or token id); any integers.
    responses : (T, N) integer array
        Spike counts (any integers; mapped to symbols internally).
    shuffles : int
        Permutations of the inputs for the bias baseline and the p-value (≥ 1).
    bootstraps : int
        Moving-block bootstrap replicates for the confidence interval (0: none).
    block : int
        Bootstrap block length in tokens.
    confidence : float
        Coverage of the interval.
    rng : numpy Generator

    Returns
    -------
    MutualInformation
    """
    rng = np.random.default_rng() if rng is None else rng
    if shuffles < 1:
        raise ValueError(f"shuffles must be at least 1 (the bias baseline), not {shuffles}")
    x, kx = as_symbols(np.asarray(inputs).reshape(-1))
    y, ky = as_symbols(np.asarray(responses))
    t = y.shape[0]
    mi_mm, h_y, h_x = mi_terms(x, y, kx, ky, True)
    mi_plugin, _, _ = mi_terms(x, y, kx, ky, False)
    null = np.stack([mi_terms(rng.permutation(x), y, kx, ky, True)[0] for _ in range(shuffles)])
    shuffle_mean = null.mean(axis=0)
    per_neuron = mi_mm - shuffle_mean
    mean = float(per_neuron.mean())
    # shuffle test on the layer mean: how often does a permuted X give as much MI?
    p_value = (1 + int(np.sum(null.mean(axis=1) >= mi_mm.mean()))) / (1 + shuffles)
    ci = entropy_ci = (float("nan"), float("nan"))
    if bootstraps > 0:
        reps, hreps = np.empty(bootstraps), np.empty(bootstraps)
        for b in range(bootstraps):
            idx = block_bootstrap_indices(t, block, rng)
            mi_b, h_b, _ = mi_terms(x[idx], y[idx], kx, ky, True)
            reps[b], hreps[b] = mi_b.mean(), h_b.mean()
        ci = centred_interval(mean, reps, confidence)
        entropy_ci = centred_interval(float(h_y.mean()), hreps, confidence)
    return MutualInformation(per_neuron, mi_plugin, mi_mm, shuffle_mean, h_y, h_x, mean, ci,
                             entropy_ci, p_value, t, shuffles, bootstraps, block)


def centred_interval(estimate: float, replicates: np.ndarray,
                     confidence: float = 0.95) -> tuple[float, float]:
    """Bootstrap interval centred on a bias-corrected estimate: ``θ̂ + quantiles(θ* − mean θ*)``.

    Resampled data repeat tokens, which shifts information estimates (MI up, entropy down) by
    more than the original sample's bias; the estimate is already bias-corrected (Miller–Madow,
    shuffle baseline), so only the bootstrap's spread is used, not its location.
    """
    a = (1.0 - confidence) / 2.0
    dev = np.asarray(replicates, dtype=np.float64) - np.mean(replicates)
    lo, hi = np.quantile(dev, [a, 1.0 - a])
    return float(estimate + lo), float(estimate + hi)


def percentile_interval(replicates: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic whose replicates are unbiased (e.g. means)."""
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(replicates, [a, 1.0 - a])
    return float(lo), float(hi)


# -- entropy rate -------------------------------------------------------------------------------
def spike_symbols(counts: np.ndarray) -> np.ndarray:
    """The ternary symbol of a count (0: silent, 1: positive, 2: negative) — the alphabet of the
    entropy-rate estimates, small enough for blocks of several tokens."""
    c = np.asarray(counts)
    return np.where(c > 0, 1, np.where(c < 0, 2, 0)).astype(np.int64)


def default_block_length(t: int, alphabet: int = 3, samples_per_bin: int = 10) -> int:
    """Longest block L with ``alphabet**L · samples_per_bin ≤ T − L + 1`` (at least 2, so one
    block-entropy difference exists)."""
    length = 2
    while alphabet ** (length + 1) * samples_per_bin <= t - length:
        length += 1
    return length


def block_entropies(symbols: np.ndarray, max_length: int, alphabet: int = 3) -> np.ndarray:
    """Miller–Madow block entropies ``H_k`` (bits), k = 1 … max_length, per neuron: (N, L)."""
    s = np.asarray(symbols, dtype=np.int64)
    t, n = s.shape
    out = np.zeros((n, max_length))
    code = np.zeros((t, n), dtype=np.int64)
    for k in range(1, max_length + 1):
        rows = t - k + 1
        if rows <= 0:
            out[:, k - 1:] = np.nan
            break
        code = code[:rows] * alphabet + s[k - 1:k - 1 + rows]
        out[:, k - 1] = entropy_from_histogram(neuron_histograms(code, alphabet ** k))
    return out


@dataclass
class EntropyRate:
    """Entropy-rate estimates of each neuron's symbol sequence over tokens (bits per token).

    ``block_curve[k]`` is the layer mean of ``h_k = H_{k+1} − H_k`` (``h_0 = H_1``), k < L; the
    estimate is its last entry, ``H_L − H_{L−1}`` with L = ``block_length``, the longest block
    the sample supports. ``lempel_ziv`` is the
    LZ76 estimate ``c(T) log2(T) / T`` averaged over ``lz_neurons`` neurons.
    """

    per_neuron: np.ndarray
    block_curve: list[float]
    block_length: int
    lempel_ziv: float
    lz_neurons: int

    @property
    def mean(self) -> float:
        return float(np.nanmean(self.per_neuron)) if self.per_neuron.size else float("nan")


def lempel_ziv_complexity(sequence: bytes | np.ndarray) -> int:
    """Number of phrases of the LZ76 exhaustive parsing (Kaspar–Schuster) of a sequence."""
    s = bytes(np.asarray(sequence, dtype=np.uint8)) if not isinstance(sequence, bytes) else sequence
    n, i, c = len(s), 0, 0
    while i < n:
        length = 1
        # extend the phrase while it can be copied from what precedes its last symbol
        while i + length <= n and s[i:i + length] in s[:i + length - 1]:
            length += 1
        c += 1
        i += length
    return c


def lempel_ziv_rate(sequence: bytes | np.ndarray) -> float:
    """LZ76 entropy-rate estimate in bits per symbol, ``c(T) log2(T) / T`` (finite-sample bias
    of a few percent at thousands of symbols; compare like with like)."""
    n = len(sequence)
    if n < 2:
        return float("nan")
    return lempel_ziv_complexity(sequence) * math.log2(n) / n


def entropy_rate(counts: np.ndarray, *, block_length: int | None = None, lz_neurons: int = 32,
                 rng: np.random.Generator | None = None) -> EntropyRate:
    """Entropy rate of each neuron's ternary spike symbol sequence over tokens.

    Parameters
    ----------
    counts : (T, N) spike counts
    block_length : int, optional
        Longest block for the block entropies (default: :func:`default_block_length`).
    lz_neurons : int
        Neurons (a random sample) for the Lempel–Ziv estimate, which runs a Python loop.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    sym = spike_symbols(counts)
    t, n = sym.shape
    length = block_length or default_block_length(t)
    hk = block_entropies(sym, length)  # (N, L): H_1 … H_L
    diffs = np.concatenate([hk[:, :1], np.diff(hk, axis=1)], axis=1)  # h_0 … h_{L-1}
    curve = [float(np.nanmean(diffs[:, k])) for k in range(diffs.shape[1])]
    pick = rng.choice(n, size=min(lz_neurons, n), replace=False) if n else np.zeros(0, int)
    lz = [lempel_ziv_rate(sym[:, j].astype(np.uint8).tobytes()) for j in pick]
    return EntropyRate(diffs[:, -1], curve, length, float(np.mean(lz)) if lz else float("nan"),
                       len(pick))


# -- tests and correlation ----------------------------------------------------------------------
@dataclass
class PairedTest:
    """Paired comparison of two conditions over matched items (``b − a``)."""

    n: int
    mean_a: float
    mean_b: float
    mean_difference: float
    ci: tuple[float, float]
    p_value: float
    exact: bool
    effect_size: float  #: mean difference / SD of differences (Cohen's d_z)


def paired_permutation_test(a: np.ndarray, b: np.ndarray, *, permutations: int = 20000,
                            bootstraps: int = 2000, confidence: float = 0.95,
                            rng: np.random.Generator | None = None) -> PairedTest:
    """Two-sided sign-flip permutation test of the mean paired difference ``b − a``.

    Under the null the sign of each difference is exchangeable; all ``2**n`` sign patterns are
    enumerated when n ≤ 16, else ``permutations`` random ones are drawn (p then includes the
    observed pattern: ``(1 + hits) / (1 + permutations)``). The interval is a percentile
    bootstrap of the mean difference over pairs.
    """
    rng = np.random.default_rng() if rng is None else rng
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be 1-D of equal length, got {a.shape}, {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    d = b - a
    n = len(d)
    if n == 0:
        nan = float("nan")
        return PairedTest(0, nan, nan, nan, (nan, nan), nan, True, nan)
    obs = abs(d.mean())
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if n <= 16:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        p = float(np.mean(np.abs(signs @ d / n) >= obs - tol))
        exact = True
    else:
        signs = rng.choice((1.0, -1.0), size=(permutations, n))
        p = (1 + int(np.sum(np.abs(signs @ d / n) >= obs - tol))) / (1 + permutations)
        exact = False
    boots = d[rng.integers(0, n, size=(bootstraps, n))].mean(axis=1)
    sd = float(d.std(ddof=1)) if n > 1 else float("nan")
    return PairedTest(n, float(a.mean()), float(b.mean()), float(d.mean()),
                      percentile_interval(boots, confidence), p, exact,
                      float(d.mean() / sd) if sd and sd > 0 else float("nan"))


def holm_adjust(p_values) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order as given; NaN stays NaN)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return [float(v) for v in out]


@dataclass
class Correlation:
    """Pearson correlation with a permutation p-value (two-sided)."""

    r: float
    p_value: float
    n: int


def correlation(x: np.ndarray, y: np.ndarray, *, permutations: int = 2000,
                rng: np.random.Generator | None = None) -> Correlation:
    """Pearson r of two samples and a permutation test of r = 0 (NaN when either is constant)."""
    rng = np.random.default_rng() if rng is None else rng
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep] - x[keep].mean(), y[keep] - y[keep].mean()
    n = len(x)
    den = math.sqrt(float(x @ x) * float(y @ y))
    if n < 3 or den == 0:
        return Correlation(float("nan"), float("nan"), n)
    r = float(x @ y) / den
    perm = rng.permuted(np.broadcast_to(y, (permutations, n)), axis=1) @ x / den
    p = (1 + int(np.sum(np.abs(perm) >= abs(r) - 1e-12))) / (1 + permutations)
    return Correlation(r, p, n)
