"""Synthetic recall tasks: how much a model retrieves from a few hundred bytes of context.

Two byte-level tasks, both generated from a seed (no files):

* **key–value lookup** (:func:`kv_sequences`): ``"qx=4 mb=7 … | mb=7 qx=4 …\\n"`` — a list of
  two-letter keys with one-digit values, then every key again in a random order with its value.
  Scored on the value bytes of the second half: a model can get them only by looking the key
  up in its context (chance: one in ten). A model must be trained on the format to use it
  (``nsllm.quant.train.train(..., corpus=kv_corpus(…))``).
* **copy** (:func:`copy_sequences`): random lowercase words, then the same words again. Needs no
  training on the format: the second copy is predictable only from the context, so the drop in
  bits/byte from the first copy to the second measures in-context recall of any byte model.

:func:`kv_recall` and :func:`copy_recall` run a model (integer golden model or float reference)
over a batch of sequences from zero state and score them.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

from ..model.graph import LanguageModel
from ..model.stats import LN2, float_logits, log_softmax

LETTERS = string.ascii_lowercase.encode()
DIGITS = string.digits.encode()
KV_PAIRS = 24  #: pairs per sequence: 24 × 5 bytes + " | " + 24 × 5 bytes + newline = 244 bytes


@dataclass
class RecallTask:
    """Byte sequences (equal length) and the positions whose bytes are scored."""

    tokens: np.ndarray  #: (N, T) int64 byte values
    scored: np.ndarray  #: (N, T) bool: position t is scored (predicted from positions < t)
    baseline: np.ndarray | None = None  #: (N, T) bool: the same bytes where recall cannot help

    def text(self, i: int = 0) -> str:
        return bytes(self.tokens[i].astype(np.uint8)).decode()


def _letters(rng: np.random.Generator, n: int) -> bytes:
    return bytes(LETTERS[i] for i in rng.integers(0, len(LETTERS), n))


def _kv_sequence(rng: np.random.Generator, pairs: int) -> tuple[bytes, list[int]]:
    keys = set()
    while len(keys) < pairs:
        keys.add(_letters(rng, 2))
    keys = sorted(keys)
    rng.shuffle(keys)
    values = {k: bytes([DIGITS[rng.integers(0, 10)]]) for k in keys}
    text = b" ".join(k + b"=" + values[k] for k in keys) + b" | "
    scored = []
    for j, k in enumerate(rng.permutation(len(keys))):
        key = keys[k]
        text += key + b"="
        scored.append(len(text))
        text += values[key] + (b" " if j < len(keys) - 1 else b"\n")
    return text, scored


def kv_sequences(n: int, seed: int = 0, pairs: int = KV_PAIRS) -> RecallTask:
    """``n`` key–value lookup sequences (see the module docstring); the value bytes of the
    query half are scored."""
    rng = np.random.default_rng(seed)
    seqs = [_kv_sequence(rng, pairs) for _ in range(n)]
    T = len(seqs[0][0])
    tokens = np.array([list(s) for s, _ in seqs], dtype=np.int64).reshape(n, T)
    scored = np.zeros((n, T), dtype=bool)
    for i, (_, pos) in enumerate(seqs):
        scored[i, pos] = True
    return RecallTask(tokens, scored)


def kv_corpus(n_bytes: int, seed: int) -> np.ndarray:
    """A training stream of key–value sequences (uint8), about ``n_bytes`` long."""
    task = kv_sequences(max(1, n_bytes // (5 * 2 * KV_PAIRS + 4)), seed)
    return task.tokens.astype(np.uint8).reshape(-1)


def copy_sequences(n: int, seed: int = 0, words: int = 24) -> RecallTask:
    """``n`` sequences of ``words`` random words (3–5 letters), ``". "`` and a second copy of
    them. ``scored`` marks the second copy after its first byte, ``baseline`` the same bytes in
    the first copy."""
    rng = np.random.default_rng(seed)
    rows, marks = [], []
    for _ in range(n):
        ws = [_letters(rng, int(rng.integers(3, 6))) for _ in range(words)]
        first = b" ".join(ws)
        rows.append(first + b". " + first + b".")
        marks.append(len(first))
    T = max(len(r) for r in rows)
    tokens = np.full((n, T), ord(" "), dtype=np.int64)
    scored = np.zeros((n, T), dtype=bool)
    baseline = np.zeros((n, T), dtype=bool)
    for i, (r, m) in enumerate(zip(rows, marks, strict=True)):
        tokens[i, :len(r)] = list(r)
        scored[i, m + 3:2 * m + 2] = True  # the second copy after its first byte
        baseline[i, 1:m] = True  # the same bytes of the first copy
    return RecallTask(tokens, scored, baseline)


def _logprobs(model: LanguageModel, tokens: np.ndarray, batch: int) -> np.ndarray:
    out = []
    for s in range(0, len(tokens), batch):
        logits, _ = model.prefill(tokens[s:s + batch])
        out.append(log_softmax(float_logits(model, logits)))
    return np.concatenate(out)


def kv_recall(model: LanguageModel, task: RecallTask, batch: int = 64) -> dict:
    """Accuracy (greedy) and bits per value byte on a key–value task."""
    lp = _logprobs(model, task.tokens[:, :-1], batch)
    tgt = task.tokens[:, 1:]
    mask = task.scored[:, 1:]
    hit = (lp.argmax(-1) == tgt)[mask]
    bits = -np.take_along_axis(lp, tgt[..., None], -1)[..., 0][mask] / LN2
    return {"accuracy": float(hit.mean()), "bits_per_value": float(bits.mean()),
            "values": int(mask.sum()), "chance_accuracy": 0.1}


def copy_recall(model: LanguageModel, task: RecallTask, batch: int = 64) -> dict:
    """Bits/byte of the first copy (same positions, shifted) and of the second copy."""
    lp = _logprobs(model, task.tokens[:, :-1], batch)
    tgt = task.tokens[:, 1:]
    nll = -np.take_along_axis(lp, tgt[..., None], -1)[..., 0] / LN2
    first, second = task.baseline[:, 1:], task.scored[:, 1:]
    b1, b2 = float(nll[first].mean()), float(nll[second].mean())
    return {"first_copy_bits_per_byte": b1, "second_copy_bits_per_byte": b2,
            "copy_gain": b1 - b2, "bytes": int(second.sum())}
