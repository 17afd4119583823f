"""Shared measurements on a model run: bits per byte, KL divergence, firing rates.

Everything here streams: text is run in segments whose recurrent state is carried over, so a long
text costs one segment of activations in memory. Logits of the integer model are converted from
fixed point before any statistic is taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .graph import LanguageModel
from .integer import IntegerModel
from .trace import Trace

LN2 = math.log(2.0)


def float_logits(model: LanguageModel, logits: np.ndarray) -> np.ndarray:
    """Logits as float64, whatever the model's number format."""
    if isinstance(model, IntegerModel):
        return IntegerModel.logits_to_float(logits)
    return np.asarray(logits, dtype=np.float64)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Natural-log probabilities over the last axis (float64)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def kl_divergence(ref_logprobs: np.ndarray, logprobs: np.ndarray) -> float:
    """Mean KL(ref ‖ other) in nats over all positions, from log-probabilities (…, V)."""
    p = np.exp(ref_logprobs)
    return float(np.mean(np.sum(p * (ref_logprobs - logprobs), axis=-1)))


def firing_rate(counts: np.ndarray) -> float:
    """Fraction of non-zero spike counts."""
    counts = np.asarray(counts)
    return float(np.count_nonzero(counts)) / max(counts.size, 1)


def firing_rates(source: Trace | LanguageModel, tokens=None,
                 segment: int = 1024) -> dict[str, float]:
    """Per ternary layer, the fraction of non-zero spike counts.

    ``source`` is a :class:`Trace` of a forward pass, or a model to run over ``tokens`` (streamed
    in segments with a :class:`SpikeCounter`, so memory stays bounded).
    """
    if isinstance(source, LanguageModel):
        if tokens is None:
            raise ValueError("firing_rates(model, tokens): give the tokens to run the model on")
        counter = SpikeCounter()
        for _ in run_logprobs(source, tokens, segment, counter):
            pass
        return counter.rates()
    trace = source
    rates = {}
    for name in trace.names():
        if name.endswith(".spikes"):
            recs = trace.records[name]
            nz = sum(int(np.count_nonzero(r)) for r in recs)
            rates[name[: -len(".spikes")]] = nz / max(sum(r.size for r in recs), 1)
    return rates


class SpikeCounter(Trace):
    """A :class:`Trace` that keeps only spike statistics (bounded memory on long texts).

    ``nonzero[layer]`` and ``total[layer]`` count spike counts; ``spike_sum[layer]`` sums |count|
    (the number of binary spikes in the spike-train form).
    """

    def __init__(self):
        super().__init__(only=set())
        self.nonzero: dict[str, int] = {}
        self.total: dict[str, int] = {}
        self.spike_sum: dict[str, int] = {}

    def wants(self, name: str) -> bool:
        return name.endswith(".spikes")

    def record(self, name: str, value: np.ndarray) -> None:
        if not name.endswith(".spikes"):
            return
        layer = name[: -len(".spikes")]
        v = np.asarray(value)
        self.nonzero[layer] = self.nonzero.get(layer, 0) + int(np.count_nonzero(v))
        self.total[layer] = self.total.get(layer, 0) + int(v.size)
        self.spike_sum[layer] = self.spike_sum.get(layer, 0) + int(np.abs(v).sum())

    def rates(self) -> dict[str, float]:
        return {k: self.nonzero[k] / max(self.total[k], 1) for k in self.nonzero}


def mean_firing_rate(rates: dict[str, float], weights: dict[str, float] | None = None) -> float:
    """Mean of per-layer firing rates, optionally weighted (e.g. by each layer's #weights)."""
    if not rates:
        return 0.0
    w = weights or dict.fromkeys(rates, 1.0)
    tot = sum(w[k] for k in rates)
    return sum(rates[k] * w[k] for k in rates) / tot


@dataclass
class TextStats:
    """Totals of one evaluation over a text."""

    predictions: int = 0  #: number of predicted tokens
    nll_bits: float = 0.0  #: Σ −log2 p(next token)
    kl_nats: float = 0.0  #: Σ over positions of KL(reference ‖ model), when a reference was given
    text_bytes: int = 0  #: UTF-8 bytes of the predicted tokens
    firing: dict[str, float] = field(default_factory=dict)
    spikes_per_count: dict[str, float] = field(default_factory=dict)

    @property
    def bits_per_token(self) -> float:
        return self.nll_bits / max(self.predictions, 1)

    @property
    def bits_per_byte(self) -> float:
        return self.nll_bits / max(self.text_bytes, 1)

    @property
    def kl(self) -> float:
        """Mean KL per position in nats."""
        return self.kl_nats / max(self.predictions, 1)

    @property
    def perplexity(self) -> float:
        return 2.0 ** self.bits_per_token


def run_logprobs(model: LanguageModel, tokens, segment: int = 1024, trace: Trace | None = None):
    """Yield log-probabilities (float64, (T_seg, V)) of each segment of one token sequence.

    The recurrent state is carried from segment to segment, so the result equals one prefill of
    the whole sequence while holding only one segment of activations.
    """
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    state = None
    for s in range(0, len(tokens), segment):
        logits, state = model.prefill(tokens[None, s:s + segment], state, trace)
        yield log_softmax(float_logits(model, logits[0]))


def evaluate(model: LanguageModel, tokens, *, token_bytes: np.ndarray | None = None,
             reference: list[np.ndarray] | None = None, segment: int = 1024,
             spikes: bool = True) -> TextStats:
    """Next-token statistics of a model over one token sequence.

    Parameters
    ----------
    model : LanguageModel
        Integer or float model.
    tokens : sequence of int
        The text; position t predicts token t + 1.
    token_bytes : array, optional
        UTF-8 length of each token id (default: one byte per token, a byte vocabulary).
    reference : list of arrays, optional
        Log-probabilities of a reference model per segment (:func:`reference_logprobs` with the
        same ``segment``); the KL(reference ‖ model) is then accumulated.
    segment : int
        Tokens per prefill call.
    spikes : bool
        Also count non-zero spike counts per layer (firing rates).
    """
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    if len(tokens) < 2:
        raise ValueError("evaluation needs a text of at least two tokens")
    counter = SpikeCounter() if spikes else None
    st = TextStats()
    for k, lp in enumerate(run_logprobs(model, tokens[:-1], segment, counter)):
        s = k * segment
        tgt = tokens[s + 1:s + 1 + lp.shape[0]]
        st.nll_bits += float(-lp[np.arange(len(tgt)), tgt].sum()) / LN2
        st.predictions += len(tgt)
        st.text_bytes += int(len(tgt) if token_bytes is None else token_bytes[tgt].sum())
        if reference is not None:
            st.kl_nats += kl_divergence(reference[k], lp) * len(tgt)
    if counter is not None:
        st.firing = counter.rates()
        st.spikes_per_count = {k: counter.spike_sum[k] / max(counter.total[k], 1)
                               for k in counter.total}
    return st


def reference_logprobs(model: LanguageModel, tokens, segment: int = 1024) -> list[np.ndarray]:
    """Per-segment log-probabilities of a reference model (input of :func:`evaluate`)."""
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    return [lp.astype(np.float64) for lp in run_logprobs(model, tokens[:-1], segment)]


def bits_per_byte(model: LanguageModel, tokens, token_bytes: np.ndarray | None = None,
                  segment: int = 1024) -> float:
    """Bits per UTF-8 byte of a text under a model (bits per token for a byte vocabulary)."""
    return evaluate(model, tokens, token_bytes=token_bytes, segment=segment,
                    spikes=False).bits_per_byte


def unigram_bits_per_byte(train_tokens, test_tokens, vocab_size: int,
                          token_bytes: np.ndarray | None = None) -> float:
    """Baseline: bits/byte of add-one-smoothed token frequencies of ``train`` on ``test``."""
    counts = np.bincount(np.asarray(train_tokens), minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log2(counts / counts.sum())
    test = np.asarray(test_tokens)[1:]  # the same predictions as :func:`evaluate`
    nbytes = len(test) if token_bytes is None else int(token_bytes[test].sum())
    return float(-logp[test].sum()) / nbytes
