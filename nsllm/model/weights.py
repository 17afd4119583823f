"""The parameters of a quantized model, independent of how they are stored or executed.

Ternary layers keep their trits (int8, shape (out, in)) and the weight of their own input RMSNorm;
the per-tensor weight scale β and the spiking parameters live in the config. Every other tensor
(embedding, block norms, lower bounds) is float32 and is turned into fixed point by the integer
model with the rules in :mod:`nsllm.model.numerics`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import numerics as nx
from .config import ModelConfig

SLA_COUNTS = ("q", "k", "v")  #: the SLA count encoders, each with a per-channel θ tensor
#: Initial θ of the SLA count encoders for unit-RMS projections: q and k fire (≥ 1) above
#: 0.5 (≈ 31 % of a standard normal); v, signed with more levels, uses a finer step.
SLA_INITIAL_THETA = {"q": 1.0, "k": 1.0, "v": 0.5}


class WeightsError(ValueError):
    """Weights a model cannot run with; the message names the tensor or layer and the limit."""


@dataclass
class TernaryLinear:
    """A BitLinear layer: its own input RMSNorm weight, then ternary weights."""

    trits: np.ndarray  #: int8 (out_features, in_features) in {-1, 0, 1}
    norm_weight: np.ndarray  #: float32 (in_features,)

    @property
    def shape(self) -> tuple[int, int]:
        return self.trits.shape


@dataclass
class ModelWeights:
    """All parameters of a model plus its config.

    ``tensors`` holds the float tensors by name (``embeddings.weight``,
    ``layers.0.attn_norm.weight``, ``layers.0.mlp_norm.weight``, ``layers.0.attn.g_norm.weight``,
    ``norm.weight`` and, with lower bounds, ``lower_bounds``; an SLA layer has
    ``layers.i.attn.o_norm.weight`` — its per-head RMSNorm weight — and the per-channel count
    thresholds ``layers.i.attn.q_theta``, ``k_theta``, ``v_theta`` instead of ``g_norm``);
    ``linears`` the ternary layers by name (``layers.0.attn.i_proj`` … ``lm_head``).
    """

    config: ModelConfig
    tensors: dict[str, np.ndarray]
    linears: dict[str, TernaryLinear]

    def expected_tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        return expected_tensor_shapes(self.config)

    def validate(self) -> None:
        """Check everything the integer model and the device image need, so a bad model fails
        where it is made or loaded, not deep inside a run.

        The config (shapes; per layer D, θ, δ, β in range), every tensor's presence, shape and
        finiteness, every trit in {-1, 0, 1}, embedding values inside the activation range, and
        the fixed-point multipliers (norm weights, norm weight / θ, θ · β) representable with the
        shifts the core supports (:class:`~nsllm.model.integer.IntegerParams`).

        Raises
        ------
        ConfigError, WeightsError
            Naming the layer or tensor and the limit.
        """
        from .integer import IntegerParams

        cfg = self.config
        cfg.validate()
        shapes = expected_tensor_shapes(cfg)
        _same_names("tensors", set(self.tensors), set(shapes))
        _same_names("ternary layers", set(self.linears), set(cfg.ternary_layers()))
        for name, shape in shapes.items():
            _check_float(name, self.tensors[name], shape)
        for name in cfg.ternary_layers():
            lin = self.linears[name]
            trits = np.asarray(lin.trits)
            if trits.shape != cfg.ternary_shape(name):
                raise WeightsError(f"{name}: trits have shape {trits.shape}, the config needs "
                                   f"{cfg.ternary_shape(name)}")
            if trits.dtype.kind not in "iu" or (trits.size and (trits.min() < -1
                                                                 or trits.max() > 1)):
                raise WeightsError(f"{name}: trits must be integers in {{-1, 0, 1}}")
            _check_float(f"{name}.norm.weight", lin.norm_weight, (trits.shape[1],))
        emb = np.abs(np.asarray(self.tensors["embeddings.weight"], dtype=np.float64))
        limit = nx.ACT_MAX / (1 << nx.ACT_FRAC)
        if emb.size and emb.max() > limit:
            raise WeightsError(f"embeddings.weight: |value| {emb.max():.4g} exceeds the "
                               f"activation range ±{limit:.6g} of the integer model")
        IntegerParams(self)  # multiplier ranges (raises ConfigError naming the layer)

    def lower_bound(self, layer: int) -> np.ndarray | None:
        """A layer's forget-gate lower bound: cumsum(softmax(lb over layers)) − its first row."""
        if not self.config.use_lower_bound:
            return None
        lb = self.tensors["lower_bounds"].astype(np.float64)
        p = np.exp(lb - lb.max(axis=0, keepdims=True))
        p /= p.sum(axis=0, keepdims=True)
        c = np.cumsum(p, axis=0) - p[0]
        return c[layer]


def _same_names(what: str, have: set[str], need: set[str]) -> None:
    missing, extra = sorted(need - have), sorted(have - need)
    if missing or extra:
        raise WeightsError(f"{what} do not match the config: "
                           + "; ".join(f"{label} {', '.join(names[:5])}"
                                       + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                                       for label, names in (("missing", missing),
                                                            ("unexpected", extra)) if names))


def _check_float(name: str, t, shape: tuple[int, ...]) -> None:
    t = np.asarray(t)
    if t.shape != shape:
        raise WeightsError(f"tensor {name} has shape {t.shape}, the config needs {shape}")
    if t.dtype.kind != "f":
        raise WeightsError(f"tensor {name} is {t.dtype}, not floating point")
    if not np.all(np.isfinite(t)):
        bad = int(np.size(t) - np.count_nonzero(np.isfinite(t)))
        raise WeightsError(f"tensor {name} has {bad} non-finite value(s) (NaN or Inf)")


def expected_tensor_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of the float tensors a model with this config must have."""
    d = cfg.hidden_size
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.weight": (cfg.vocab_size, d), "norm.weight": (d,)
    }
    for i in range(cfg.num_layers):
        shapes[f"layers.{i}.attn_norm.weight"] = (d,)
        shapes[f"layers.{i}.mlp_norm.weight"] = (d,)
        if cfg.mixer(i) == "sla":
            shapes[f"layers.{i}.attn.o_norm.weight"] = (d,)
            for c in SLA_COUNTS:
                shapes[f"layers.{i}.attn.{c}_theta"] = (d,)
        else:
            shapes[f"layers.{i}.attn.g_norm.weight"] = (d,)
    if cfg.use_lower_bound:
        shapes["lower_bounds"] = (cfg.num_layers, d)
    return shapes


def random_weights(cfg: ModelConfig, seed: int = 0) -> ModelWeights:
    """Random weights for a config: uniform trits, unit norms, N(0, 1) embeddings.

    Each layer's β is 1/√(⅔·fan_in): with unit-RMS inputs (E[(θs)²] ≈ 1) and uniform trits
    (E[t²] = ⅔) a layer's output has roughly unit RMS, so the residual stream stays in range.
    """
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in expected_tensor_shapes(cfg).items():
        if name == "embeddings.weight":
            tensors[name] = rng.standard_normal(shape, dtype=np.float32)
        elif name == "lower_bounds":
            tensors[name] = np.zeros(shape, dtype=np.float32)
        elif name.endswith("_theta"):
            c = name.rsplit(".", 1)[-1][0]
            tensors[name] = np.full(shape, SLA_INITIAL_THETA[c], dtype=np.float32)
        else:
            tensors[name] = np.ones(shape, dtype=np.float32)
    linears = {}
    for name in cfg.ternary_layers():
        out_f, in_f = cfg.ternary_shape(name)
        trits = (rng.integers(0, 3, size=(out_f, in_f), dtype=np.int8) - 1).astype(np.int8)
        linears[name] = TernaryLinear(trits, np.ones(in_f, dtype=np.float32))
        q = cfg.quant[name]
        # unit-RMS inputs quantised with step θ have E[(θ s)²] ≈ 1, trits have E[t²] = 2/3
        q.weight_scale = float(1.0 / np.sqrt(in_f * 2.0 / 3.0))
    return ModelWeights(cfg, tensors, linears)
