"""The float reference model (NumPy float32), used to measure quantization error.

The same graph as the integer model (:mod:`nsllm.model.graph`) with real arithmetic and the
MatMul-free LM's equations. How a BitLinear treats its (normalised) input is selectable:

* ``"spike"`` — the NSLLM form: ``s = sign(u)·clip(round(|u| − δ), 0, D)``, ``u = x/θ``,
  ``y = β·θ·(W s)``; the integer model is this, in fixed point.
* ``"absmax8"`` — the MatMul-free LM's BitLinear: per-token absmax 8-bit activations.
* ``"none"`` — unquantised activations (ternary weights only).

SLA layers' q, k, v count encoders round to integer counts in ``"spike"`` mode only; in the other
modes they keep the clipped real value ``clip(x/θ − δ, 0, D)`` (signed for v).
"""

from __future__ import annotations

import numpy as np

from .graph import Arithmetic, LanguageModel
from .weights import ModelWeights

ACT_MODES = ("spike", "absmax8", "none")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


class FloatArithmetic(Arithmetic):
    def __init__(self, weights: ModelWeights, act: str = "spike"):
        if act not in ACT_MODES:
            raise ValueError(f"act must be one of {ACT_MODES}, not {act!r}")
        self.weights = weights
        self.act = act
        cfg = weights.config
        self.eps = cfg.norm_eps
        self.lower_bounds = [weights.lower_bound(i) for i in range(cfg.num_layers)]
        self._w = {n: np.ascontiguousarray(lin.trits.T, dtype=np.float32)
                   for n, lin in weights.linears.items()}

    def embed(self, tokens):
        return self.weights.tensors["embeddings.weight"][tokens].astype(np.float32)

    def _rms(self, x, eps):
        x = x.astype(np.float32)
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)

    def norm(self, x, weight):
        return self._rms(x, self.eps) * self.weights.tensors[weight]

    def unit_norm(self, x):
        # FusedBitLinear's own RMSNorm: the fused kernel runs with its default eps 1e-6
        return self._rms(x, 1e-6)

    def spikes(self, layer, xn):
        """Here: the BitLinear's quantised input (counts in "spike" mode, reals otherwise)."""
        lin = self.weights.linears[layer]
        x = xn * lin.norm_weight
        if self.act == "spike":
            q = self.weights.config.quant[layer]
            u = x / q.theta
            mag = np.clip(np.floor(np.abs(u) - q.delta + 0.5), 0, q.D)
            return (np.sign(u) * mag).astype(np.float32)
        if self.act == "absmax8":
            scale = 127.0 / np.maximum(np.max(np.abs(x), axis=-1, keepdims=True), 1e-5)
            return (np.clip(np.round(x * scale), -128, 127) / scale).astype(np.float32)
        return x.astype(np.float32)

    def accumulate(self, layer, counts):
        q = self.weights.config.quant[layer]
        gain = q.weight_scale * (q.theta if self.act == "spike" else 1.0)
        return (counts @ self._w[layer]) * np.float32(gain)

    def forget_gate(self, f_pre, layer):
        sig = _sigmoid(f_pre)
        lb = self.lower_bounds[layer]
        return sig if lb is None else (lb + (1.0 - lb) * sig).astype(np.float32)

    def input_gate(self, i_pre, f):
        return self.silu(i_pre) * (1.0 - f)

    def recur(self, f, h, i):
        return f * h + i

    def silu(self, x):
        return x * _sigmoid(x)

    def mul(self, a, b):
        return a * b

    def add(self, a, b):
        return a + b

    def zeros_state(self, batch):
        return np.zeros((batch, self.weights.config.hidden_size), dtype=np.float32)

    # SLA: counts as in the integer model, the state in float64 (the exact recurrence in real
    # arithmetic; the integer state has 10 fractional bits, see docs/numerics.md)
    def sla_counts(self, layer, which, x):
        sp = self.weights.config.sla_params(layer)
        D, delta = getattr(sp, f"D_{which}"), getattr(sp, f"delta_{which}")
        u = x / self.weights.tensors[f"layers.{layer}.attn.{which}_theta"]
        if which == "v":
            mag = np.abs(u) - delta
            mag = np.floor(mag + 0.5) if self.act == "spike" else mag
            return (np.sign(u) * np.clip(mag, 0, D)).astype(np.float32)
        pos = u - delta
        pos = np.floor(pos + 0.5) if self.act == "spike" else pos
        return np.clip(pos, 0, D).astype(np.float32)

    def sla_scan(self, layer, q, k, v, state):
        sp = self.weights.config.sla_params(layer)
        B, T, d = q.shape
        heads = (B, T, sp.heads, sp.head_dim)
        qh, kh, vh = (np.asarray(c, dtype=np.float64).reshape(heads) for c in (q, k, v))
        gamma = (1.0 - 2.0 ** -np.asarray(sp.decay_shifts, dtype=np.float64))[:, None, None]
        out = np.empty(heads, dtype=np.float64)
        for t in range(T):
            state = gamma * state + kh[:, t, :, :, None] * vh[:, t, :, None, :]
            out[:, t] = np.einsum("bhi,bhij->bhj", qh[:, t], state)
        return out.reshape(B, T, d), state

    def head_norm(self, o, layer):
        heads = self.weights.config.sla_params(layer).heads
        oh = o.reshape(o.shape[:-1] + (heads, -1)).astype(np.float64)
        on = oh / np.sqrt(np.mean(oh * oh, axis=-1, keepdims=True) + self.eps)
        return (on.reshape(o.shape) * self.weights.tensors[f"layers.{layer}.attn.o_norm.weight"]
                ).astype(np.float32)

    def zeros_sla_state(self, batch, layer):
        sp = self.weights.config.sla_params(layer)
        return np.zeros((batch, sp.heads, sp.head_dim, sp.head_dim), dtype=np.float64)


class FloatModel(LanguageModel):
    """Float reference of the same model (see module docstring for ``act``)."""

    def __init__(self, weights: ModelWeights, act: str = "spike"):
        super().__init__(FloatArithmetic(weights, act))
