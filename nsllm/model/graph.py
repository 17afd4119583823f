"""The MatMul-free spiking LM's forward graph, written once for every arithmetic.

:class:`LanguageModel` runs the graph of ARCHITECTURE §3 — embedding → L × (token mixer: MLGRU
or spike-based linear attention (SLA), per layer; GLU channel mixer; each pre-normed with a
residual add) → RMSNorm → LM head — over an
:class:`Arithmetic`: :class:`nsllm.model.integer.IntegerArithmetic` (the bit-exact hardware
spec) or :class:`nsllm.model.reference.FloatArithmetic` (the float reference).

Tensors are (batch, time, features). The recurrence is scanned over time inside each layer, so a
prefill of T tokens runs every projection as one matrix product over T rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .trace import Trace
from .weights import ModelWeights


class Arithmetic(ABC):
    """The operations of the graph; implementations differ only in number format."""

    weights: ModelWeights

    @abstractmethod
    def embed(self, tokens: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def norm(self, x: np.ndarray, weight: str) -> np.ndarray:
        """RMSNorm with the named weight."""

    @abstractmethod
    def unit_norm(self, x: np.ndarray) -> np.ndarray:
        """RMSNorm without weight: the part shared by BitLinears reading the same input."""

    @abstractmethod
    def spikes(self, layer: str, xn: np.ndarray) -> np.ndarray:
        """The layer's input spike counts (I-LIF) from its unit-normalised input."""

    @abstractmethod
    def accumulate(self, layer: str, counts: np.ndarray) -> np.ndarray:
        """The ternary layer applied to spike counts, scaled back to activations."""

    def linear(self, layer: str, xn: np.ndarray, trace: Trace | None) -> np.ndarray:
        counts = self.spikes(layer, xn)
        y = self.accumulate(layer, counts)
        if trace is not None:
            trace.record(f"{layer}.spikes", counts)
            trace.record(f"{layer}.out", y)
        return y

    @abstractmethod
    def forget_gate(self, f_pre: np.ndarray, layer: int) -> np.ndarray:
        """σ(f) raised by the layer's lower bound: ``lb + (1 − lb)·σ(f)``."""

    @abstractmethod
    def input_gate(self, i_pre: np.ndarray, f: np.ndarray) -> np.ndarray:
        """``SiLU(i) ⊙ (1 − f)``."""

    @abstractmethod
    def recur(self, f: np.ndarray, h: np.ndarray, i: np.ndarray) -> np.ndarray:
        """``f ⊙ h + i``."""

    @abstractmethod
    def silu(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Elementwise product of two activations."""

    @abstractmethod
    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Residual add."""

    @abstractmethod
    def zeros_state(self, batch: int) -> np.ndarray:
        """An MLGRU layer's initial state h: (batch, hidden)."""

    # -- spike-based linear attention ----------------------------------------------------------
    @abstractmethod
    def sla_counts(self, layer: int, which: str, x: np.ndarray) -> np.ndarray:
        """SLA count encoder ``which`` (``"q"``, ``"k"``: unsigned; ``"v"``: signed) of a
        projection output, with the layer's per-channel θ, D and δ."""

    @abstractmethod
    def sla_scan(self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray,
                 state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per head ``S_t = γ S_{t−1} + k_tᵀ v_t`` and ``o_t = q_t S_t`` over the time axis of
        (batch, T, hidden) counts; returns (o (batch, T, hidden), last state)."""

    @abstractmethod
    def head_norm(self, o: np.ndarray, layer: int) -> np.ndarray:
        """Per-head RMSNorm of the read-out, times the layer's ``attn.o_norm.weight``."""

    @abstractmethod
    def zeros_sla_state(self, batch: int, layer: int) -> np.ndarray:
        """An SLA layer's initial state: (batch, heads, d_h, d_h) zeros."""


class LanguageModel:
    """Decode and prefill over an :class:`Arithmetic`.

    Parameters
    ----------
    arithmetic : Arithmetic
        Integer (hardware spec) or float (reference).
    """

    def __init__(self, arithmetic: Arithmetic):
        self.arith = arithmetic
        self.weights = arithmetic.weights
        self.config = arithmetic.weights.config

    def init_state(self, batch: int = 1) -> list[np.ndarray]:
        """Recurrent state, all zero: per MLGRU layer ``h`` of shape (batch, hidden), per SLA
        layer the state matrices ``S`` of shape (batch, heads, d_h, d_h)."""
        return [self.arith.zeros_sla_state(batch, li) if m == "sla"
                else self.arith.zeros_state(batch) for li, m in enumerate(self.config.mixers())]

    def step(self, tokens, state: list[np.ndarray], trace: Trace | None = None):
        """Decode one token per sequence.

        Parameters
        ----------
        tokens : int or array of shape (batch,)
        state : list of per-layer states from :meth:`init_state` or a previous call.

        Returns
        -------
        (logits, state): logits of shape (batch, vocab) and the new state.
        """
        tok = np.atleast_1d(np.asarray(tokens, dtype=np.int64))[:, None]
        logits, state = self.prefill(tok, state, trace)
        return logits[:, -1], state

    def prefill(self, tokens, state: list[np.ndarray] | None = None, trace: Trace | None = None):
        """Run a whole prompt: tokens (batch, T) or (T,) → (logits (batch, T, vocab), state)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.ndim == 1:
            tokens = tokens[None]
        if tokens.ndim != 2 or tokens.shape[1] == 0:
            raise ValueError(
                f"tokens must be (batch, time) with time ≥ 1, not shape {tokens.shape}"
            )
        vocab = self.config.vocab_size
        if tokens.min() < 0 or tokens.max() >= vocab:
            raise ValueError(
                f"token ids must lie in [0, {vocab}), got {tokens.min()}..{tokens.max()}"
            )
        if state is None:
            state = self.init_state(tokens.shape[0])
        return self._forward(tokens, state, trace)

    def _forward(self, tokens, state, trace):
        ar, cfg = self.arith, self.config
        x = ar.embed(tokens)
        if trace is not None:
            trace.record("embed", x)
        new_state = []
        for li in range(cfg.num_layers):
            x, h = self.block(li, x, state[li], trace)
            new_state.append(h)
        return self.head(x, trace), new_state

    def block(self, li: int, x: np.ndarray, h_prev: np.ndarray, trace: Trace | None = None):
        """One block over a (batch, T, d) input: returns (output, last recurrent state)."""
        ar = self.arith
        rec = trace.record if trace is not None else (lambda name, value: None)
        p = f"layers.{li}"
        a = ar.norm(x, f"{p}.attn_norm.weight")
        rec(f"{p}.attn_norm", a)
        an = ar.unit_norm(a)  # the token mixer's projections share their input's RMS
        mixer = self.sla_mixer if self.config.mixer(li) == "sla" else self.mlgru_mixer
        o_in, h_prev = mixer(li, an, h_prev, trace)
        rec(f"{p}.attn.o_in", o_in)
        o = ar.linear(f"{p}.attn.o_proj", ar.unit_norm(o_in), trace)
        x = ar.add(x, o)
        rec(f"{p}.resid_attn", x)
        m = ar.norm(x, f"{p}.mlp_norm.weight")
        rec(f"{p}.mlp_norm", m)
        gu = ar.linear(f"{p}.mlp.gate_proj", ar.unit_norm(m), trace)
        gate, up = np.split(gu, 2, axis=-1)  # first half is the gate (reference: chunk(2))
        z = ar.mul(ar.silu(gate), up)
        rec(f"{p}.mlp.z", z)
        y = ar.linear(f"{p}.mlp.down_proj", ar.unit_norm(z), trace)
        x = ar.add(x, y)
        rec(f"{p}.resid_mlp", x)
        return x, h_prev

    def mlgru_mixer(self, li: int, an: np.ndarray, h_prev: np.ndarray, trace: Trace | None):
        """MLGRU: ``h_t = f_t h_{t−1} + i_t``; returns (o_proj's input, last h)."""
        ar = self.arith
        rec = trace.record if trace is not None else (lambda name, value: None)
        p = f"layers.{li}"
        i_pre = ar.linear(f"{p}.attn.i_proj", an, trace)
        f_pre = ar.linear(f"{p}.attn.f_proj", an, trace)
        g = ar.linear(f"{p}.attn.g_proj", an, trace)
        f = ar.forget_gate(f_pre, li)
        i = ar.input_gate(i_pre, f)
        hs = []
        for t in range(an.shape[1]):
            h_prev = ar.recur(f[:, t], h_prev, i[:, t])
            hs.append(h_prev)
        h = np.stack(hs, axis=1)
        rec(f"{p}.mlgru.f", f)
        rec(f"{p}.mlgru.i", i)
        rec(f"{p}.mlgru.h", h)
        gn = ar.norm(g, f"{p}.attn.g_norm.weight")
        return ar.mul(gn, ar.silu(h)), h_prev

    def sla_mixer(self, li: int, an: np.ndarray, state: np.ndarray, trace: Trace | None):
        """Spike-based linear attention (ARCHITECTURE §3); returns (o_proj's input, last S).

        ``q, k, v`` are count encodings of ternary projections of the shared input; per head the
        state ``S ← γ S + kᵀv`` is read as ``o = q S``; ``RMSNorm_head(o) ⊙ SiLU(g)`` feeds o_proj.
        """
        ar = self.arith
        rec = trace.record if trace is not None else (lambda name, value: None)
        p = f"layers.{li}"
        pre = {c: ar.linear(f"{p}.attn.{c}_proj", an, trace) for c in ("q", "k", "v")}
        g = ar.linear(f"{p}.attn.g_proj", an, trace)
        counts = {}
        for c in ("q", "k", "v"):
            counts[c] = ar.sla_counts(li, c, pre[c])
            rec(f"{p}.sla.{c}", counts[c])
        o, state = ar.sla_scan(li, counts["q"], counts["k"], counts["v"], state)
        rec(f"{p}.sla.o", o)
        rec(f"{p}.sla.state", state)
        on = ar.head_norm(o, li)
        rec(f"{p}.sla.o_norm", on)
        return ar.mul(on, ar.silu(g)), state

    def head(self, x: np.ndarray, trace: Trace | None = None) -> np.ndarray:
        """Final RMSNorm and LM head: (batch, T, d) → logits (batch, T, vocab)."""
        xf = self.arith.norm(x, "norm.weight")
        logits = self.arith.linear("lm_head", self.arith.unit_norm(xf), trace)
        if trace is not None:
            trace.record("norm", xf)
            trace.record("logits", logits)
        return logits


def greedy(logits: np.ndarray) -> np.ndarray:
    """Next token per sequence: the first index of the maximum (ties go to the lowest id)."""
    return np.argmax(logits, axis=-1)
