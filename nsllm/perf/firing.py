"""Firing rates for projections: measured with the golden model on a text, or given.

A projection needs, per LINEAR, the fraction of its inputs that spike (only those columns are
fetched). :func:`measure` runs the bit-exact integer model (:class:`~nsllm.model.IntegerModel`)
over a text and counts non-zero spike counts per layer; :meth:`FiringProfile.rates_for` maps
them onto another shape of the same family (a preset): layer by layer when the names match, else
by the layer's role in the block (``attn.i_proj``, …, ``lm_head``), averaged over the source's
layers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nsllm.isa import Op

__all__ = ["DEFAULT_TEXT", "FiringProfile", "measure", "role"]

#: The text rates are measured on unless another is given (``nsllm.analysis.analyze.load_text``).
DEFAULT_TEXT = "pydoc-heldout"
#: Tokens of the text the golden model runs over by default.
DEFAULT_TOKENS = 2048


def role(layer: str) -> str:
    """``layers.3.mlp.down_proj`` → ``mlp.down_proj``; ``lm_head`` → ``lm_head``."""
    return re.sub(r"^layers\.\d+\.", "", layer)


@dataclass
class FiringProfile:
    """Per-layer firing rates and where they come from."""

    rates: dict[str, float]  #: layer name → fraction of non-zero spike counts
    source: str  #: e.g. "measured with the golden model of nsllm-default (…) on pydoc-heldout"
    model: str | None = None  #: the model the rates were measured on (None: given)
    text: str | None = None
    tokens: int = 0
    uniform: float | None = None  #: a given rate for every layer
    by_role: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if not self.by_role and self.rates:
            sums: dict[str, list[float]] = {}
            for name, r in self.rates.items():
                sums.setdefault(role(name), []).append(r)
            self.by_role = {k: sum(v) / len(v) for k, v in sums.items()}

    @classmethod
    def given(cls, rate: float) -> FiringProfile:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"a firing rate is a fraction in [0, 1], not {rate}")
        return cls(rates={}, source=f"given: {rate:g} for every layer", uniform=rate)

    def rate(self, layer: str) -> float:
        """The rate of ``layer`` of the projected shape."""
        if self.uniform is not None:
            return self.uniform
        if layer in self.rates:
            return self.rates[layer]
        r = role(layer)
        if r not in self.by_role:
            raise ValueError(f"no firing rate for {layer}: the rates were measured on "
                             f"{self.model} whose layers are {', '.join(sorted(self.by_role))}")
        return self.by_role[r]

    def rates_for(self, program) -> dict[str, float]:
        """``{layer: rate}`` of every LINEAR of ``program``."""
        return {ins.name: self.rate(ins.name) for ins in program if ins.op == Op.LINEAR}

    def as_dict(self) -> dict:
        return {"source": self.source, "model": self.model, "text": self.text,
                "tokens": self.tokens, "uniform": self.uniform,
                "by_role": {k: round(v, 4) for k, v in self.by_role.items()}}


def measure(weights, text: str = DEFAULT_TEXT, max_tokens: int = DEFAULT_TOKENS,
            model_label: str | None = None, model_path=None) -> FiringProfile:
    """Per-layer firing rates of ``weights`` on ``text`` (a file or ``pydoc-heldout``) with the
    golden integer model, over its first ``max_tokens`` tokens (``model_path``: where an ``hf``
    tokenizer's ``tokenizer.json`` is)."""
    from nsllm.analysis.analyze import load_text
    from nsllm.model import IntegerModel
    from nsllm.model.stats import firing_rates
    from nsllm.model.tokenizer import load_tokenizer

    body = load_text(text)
    cfg = weights.config
    tok = load_tokenizer(cfg.tokenizer, model_path)
    ids = [t for t in tok.encode(body) if t < cfg.vocab_size][:max_tokens]
    if len(ids) < 2:
        raise ValueError(f"the text {text} gives {len(ids)} tokens; the firing rate needs a "
                         "longer text")
    rates = firing_rates(IntegerModel(weights), ids)
    label = model_label or cfg.name
    return FiringProfile(rates=rates, model=label, text=str(text), tokens=len(ids),
                         source=f"measured with the golden model of {label} on {text} "
                                f"({len(ids)} tokens)")
