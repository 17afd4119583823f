"""Evaluating one model under many per-layer spike quantizations, against a fixed reference."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..model.config import SpikeQuant
from ..model.integer import IntegerModel
from ..model.reference import FloatModel
from ..model.stats import TextStats, evaluate, reference_logprobs
from ..model.weights import ModelWeights


@dataclass
class Measurement:
    """Loss and firing of one quantization on the probe text."""

    kl: float  #: mean KL(reference ‖ model) per position, nats
    bits_per_byte: float
    firing: dict[str, float]

    def as_dict(self) -> dict:
        return {"kl": self.kl, "bits_per_byte": self.bits_per_byte}


def layer_weights(weights: ModelWeights) -> dict[str, int]:
    """Number of ternary weights of every ternary layer (the cost weight of its D and firing)."""
    cfg = weights.config
    return {n: int(np.prod(cfg.ternary_shape(n))) for n in cfg.ternary_layers()}


class QuantProbe:
    """Runs a model with per-layer quantization changes and compares it with the unchanged model.

    The reference is the input model as configured, run with the same arithmetic: every KL is
    ``KL(reference ‖ changed)``. Changes are applied to a private copy of the config, so the
    caller's weights are never modified.

    Parameters
    ----------
    weights : ModelWeights
    tokens : array of int
        Probe text (calibration text for sensitivity and sparsification sweeps).
    backend : {"float", "integer"}
        Arithmetic of the reference and the changed models (``float``: the float reference with
        spike activations, fast, used for sweeps; ``integer``: the golden model, rebuilt per
        measurement, used for reported numbers).
    """

    def __init__(self, weights: ModelWeights, tokens, backend: str = "float", segment: int = 1024,
                 token_bytes: np.ndarray | None = None):
        if backend not in ("float", "integer"):
            raise ValueError(f"backend must be 'float' or 'integer', not {backend!r}")
        self.tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        self.backend = backend
        self.segment = segment
        self.token_bytes = token_bytes
        quant = {n: replace(q) for n, q in weights.config.quant.items()}
        cfg = replace(weights.config, quant=quant)
        self.base_quant = {n: replace(q) for n, q in cfg.quant.items()}
        self.weights = ModelWeights(cfg, weights.tensors, weights.linears)
        self._float = FloatModel(self.weights, act="spike")
        ref_model = IntegerModel(self.weights) if backend == "integer" else self._float
        self.reference = reference_logprobs(ref_model, self.tokens, segment)
        self.base = self.measure({})

    def __getstate__(self) -> dict:
        # shipped to executor workers without the float model's derived copy of the weights
        # (float32 trits: 4× the int8 trits); each worker rebuilds it once
        state = dict(self.__dict__)
        state["_float"] = None
        return state

    def quant_of(self, changes: dict[str, SpikeQuant]) -> dict[str, SpikeQuant]:
        q = {n: replace(v) for n, v in self.base_quant.items()}
        q.update({n: replace(v) for n, v in changes.items()})
        return q

    def stats(self, changes: dict[str, SpikeQuant]) -> TextStats:
        quant = self.weights.config.quant
        try:
            quant.update(changes)
            if self.backend == "integer":
                model = IntegerModel(self.weights)
            else:
                if self._float is None:
                    self._float = FloatModel(self.weights, act="spike")
                model = self._float
            return evaluate(model, self.tokens, token_bytes=self.token_bytes,
                            reference=self.reference, segment=self.segment)
        finally:
            quant.update({n: replace(self.base_quant[n]) for n in changes})

    def measure(self, changes: dict[str, SpikeQuant]) -> Measurement:
        st = self.stats(changes)
        return Measurement(st.kl, st.bits_per_byte, st.firing)


def measure_changes(probe: QuantProbe, changes: dict[str, SpikeQuant]) -> Measurement:
    """``probe.measure(changes)`` as a module-level function: one evaluation of a sweep, in the
    form an executor ships to a worker (:mod:`nsllm.quant.executor`)."""
    return probe.measure(changes)
