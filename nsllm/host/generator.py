"""The generation loop, shared by every backend.

A backend turns tokens into next-token logits and keeps its own recurrent state; the
:class:`Generator` encodes the prompt, feeds it, picks tokens (greedy, or sampled from the logits
with a seed) and yields them as they come, with timings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from numbers import Integral
from typing import Protocol

import numpy as np

from ..model.graph import LanguageModel, greedy
from ..model.stats import float_logits


class Backend(Protocol):
    """Something that runs a model: feed tokens, get the logits after the last one."""

    name: str

    def reset(self) -> None:
        """Forget all state (start of a new sequence)."""

    def feed(self, tokens: list[int]) -> np.ndarray:
        """Run the tokens in order; return the raw logits (vocab,) after the last one."""


class ModelBackend:
    """A backend over a NumPy :class:`~nsllm.model.graph.LanguageModel` (golden or float)."""

    def __init__(self, model: LanguageModel, name: str):
        self.model = model
        self.name = name
        self.reset()

    def reset(self) -> None:
        self.state = self.model.init_state(1)

    def feed(self, tokens: list[int]) -> np.ndarray:
        logits, self.state = self.model.prefill(np.asarray([tokens]), self.state)
        return logits[0, -1]

    def to_float(self, logits: np.ndarray) -> np.ndarray:
        return float_logits(self.model, logits)


@dataclass
class GeneratedToken:
    id: int
    text: str  #: the text this token completes (may be "" mid UTF-8 sequence)
    seconds: float  #: time to produce this token


@dataclass
class GenerationResult:
    prompt_tokens: list[int]
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return len(self.tokens) / self.decode_seconds if self.decode_seconds > 0 else 0.0


class Generator:
    """Prompt → tokens, as an iterator.

    Parameters
    ----------
    backend : Backend
    tokenizer : ByteTokenizer or HFTokenizer
    temperature : float
        0 (default) is greedy: the first maximum of the logits, as the hardware's argmax does.
    top_k : int
        Sample from the k most likely tokens only (0 = all).
    seed : int or None
        Seed of the sampler.
    """

    def __init__(self, backend: Backend, tokenizer, temperature: float = 0.0, top_k: int = 0,
                 seed: int | None = None):
        if not temperature >= 0 or temperature == float("inf"):
            raise ValueError(f"temperature must be a finite number ≥ 0, not {temperature}")
        if isinstance(top_k, bool) or not isinstance(top_k, Integral) or top_k < 0:
            raise ValueError(f"top_k must be an integer ≥ 0 (0 = all tokens), not {top_k!r}")
        self.backend = backend
        if hasattr(backend, "read_logits"):  # a device argmax: read logits only to sample
            backend.read_logits = temperature > 0
        self.tokenizer = tokenizer
        self.temperature = temperature
        self.top_k = top_k
        self.rng = np.random.default_rng(seed)
        self.result: GenerationResult | None = None

    def pick(self, logits: np.ndarray) -> int:
        if self.temperature == 0:
            return int(greedy(logits))
        to_float = getattr(self.backend, "to_float", lambda x: x)
        z = np.asarray(to_float(logits), dtype=np.float64) / self.temperature
        if self.top_k:
            cut = np.sort(z)[-min(self.top_k, z.size)]
            z = np.where(z >= cut, z, -np.inf)
        p = np.exp(z - z.max())
        return int(self.rng.choice(z.size, p=p / p.sum()))

    def stream(self, prompt: str, max_new_tokens: int) -> Iterator[GeneratedToken]:
        """Yield generated tokens one by one; :attr:`result` holds the totals afterwards."""
        if isinstance(max_new_tokens, bool) \
                or not isinstance(max_new_tokens, Integral) \
                or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an integer ≥ 0, not {max_new_tokens!r}")
        ids = self.tokenizer.encode(prompt)
        if not ids:
            raise ValueError("the prompt is empty: give at least one character")
        self.backend.reset()
        res = self.result = GenerationResult(prompt_tokens=ids)
        decode = self.tokenizer.stream_decoder()
        t0 = time.perf_counter()
        logits = self.backend.feed(ids)
        res.prefill_seconds = time.perf_counter() - t0
        for _ in range(max_new_tokens):
            t = time.perf_counter()
            tok = self.pick(logits)
            logits = self.backend.feed([tok])  # also leaves the state ready to continue
            dt = time.perf_counter() - t
            res.decode_seconds += dt
            res.tokens.append(tok)
            yield GeneratedToken(tok, decode(tok), dt)
        res.text = self.tokenizer.decode(res.tokens)

    def generate(self, prompt: str, max_new_tokens: int) -> GenerationResult:
        for _ in self.stream(prompt, max_new_tokens):
            pass
        assert self.result is not None
        return self.result
