"""Model configuration, per-layer spike quantization, and presets.

A :class:`ModelConfig` describes the shapes of a MatMul-free LM (``hgrn_bit``) and, for every
ternary linear layer, the spiking parameters of its input (:class:`SpikeQuant`). It round-trips
through JSON and is stored in the metadata of every ``.nsllm`` file.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace

from .numerics import MAX_DELTA, MAX_TIMESTEPS

TOKEN_MIXERS = ("mlgru",)
ATTN_PROJECTIONS = ("i_proj", "f_proj", "g_proj", "o_proj")
MLP_PROJECTIONS = ("gate_proj", "down_proj")

#: Default I-LIF threshold for unit-RMS inputs: θ = mean|x| / 3 of a standard normal (√(2/π)/3),
#: the SpikingBrain rule used before calibration replaces it with a measured value.
DEFAULT_THETA = math.sqrt(2.0 / math.pi) / 3.0
DEFAULT_TIMESTEPS = 15


class ConfigError(ValueError):
    """A model configuration that cannot describe a valid model."""


@dataclass
class SpikeQuant:
    """Spiking parameters of one ternary layer's input.

    Attributes
    ----------
    D : int
        Maximum spike count (the layer's timestep count); counts lie in [-D, D].
    theta : float
        Firing threshold θ: the count is ``round(x / θ - δ)`` of the normalised input x.
    delta : float
        Sparsification shift δ ≥ 0 (in units of θ); moves counts toward zero.
    weight_scale : float
        The ternary weights' absmean scale β: the real weight is ``β · trit``.
    """

    D: int = DEFAULT_TIMESTEPS
    theta: float = DEFAULT_THETA
    delta: float = 0.0
    weight_scale: float = 1.0

    def validate(self, name: str) -> None:
        for attr in ("theta", "delta", "weight_scale"):
            if not _is_number(getattr(self, attr)):
                raise ConfigError(f"{name}: {attr} must be a number, not {getattr(self, attr)!r}")
        if isinstance(self.D, bool) or not isinstance(self.D, int) \
                or not 1 <= self.D <= MAX_TIMESTEPS:
            raise ConfigError(
                f"{name}: D must be an integer in [1, {MAX_TIMESTEPS}], not {self.D!r}"
            )
        if not (math.isfinite(self.theta) and self.theta > 0):
            raise ConfigError(f"{name}: theta must be a positive number, not {self.theta!r}")
        if not (math.isfinite(self.delta) and 0 <= self.delta <= MAX_DELTA):
            raise ConfigError(f"{name}: delta must be a number in [0, {MAX_DELTA:g}] (the "
                              f"hardware holds δ in 16 bits), not {self.delta!r}")
        if not (math.isfinite(self.weight_scale) and self.weight_scale > 0):
            raise ConfigError(
                f"{name}: weight_scale must be a positive number, not {self.weight_scale!r}"
            )


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def mlp_intermediate_size(hidden_size: int, hidden_ratio: int = 4) -> int:
    """The MatMul-free LM's rule: 256 · ceil(hidden_ratio · 2/3 · d / 256)."""
    return 256 * math.ceil(hidden_size * hidden_ratio * 2 / 3 / 256)


@dataclass
class ModelConfig:
    """Shapes and spiking parameters of a MatMul-free spiking LM.

    Attributes
    ----------
    name : str
        Preset or model name (informational).
    vocab_size, hidden_size, num_layers, intermediate_size : int
        Shapes; the token mixer's inner width equals ``hidden_size``.
    token_mixer : str
        ``"mlgru"`` (the MatMul-free LM's gated recurrent unit).
    use_lower_bound : bool
        Learned forget-gate lower bounds per layer (``lower_bounds`` tensor).
    norm_eps : float
        Epsilon of the block RMSNorms (float reference only; see docs/numerics.md).
    tokenizer : str
        ``"byte"`` (UTF-8 bytes, vocab 256) or ``"hf"`` (a ``tokenizer.json`` beside the model).
    quant : dict[str, SpikeQuant]
        Per ternary layer (``layers.3.attn.i_proj``, …, ``lm_head``) spiking parameters;
        missing entries are filled with defaults.
    """

    name: str = "custom"
    vocab_size: int = 256
    hidden_size: int = 128
    num_layers: int = 4
    intermediate_size: int = 512
    token_mixer: str = "mlgru"
    use_lower_bound: bool = True
    norm_eps: float = 1e-6
    tokenizer: str = "byte"
    quant: dict[str, SpikeQuant] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.quant = {k: v if isinstance(v, SpikeQuant) else SpikeQuant(**v)
                      for k, v in self.quant.items()}
        self.validate_shapes()
        for name in self.ternary_layers():
            self.quant.setdefault(name, SpikeQuant())

    # -- structure -----------------------------------------------------------------------------
    def ternary_layers(self) -> list[str]:
        """Names of every ternary linear layer, in execution order."""
        names = []
        for i in range(self.num_layers):
            names += [f"layers.{i}.attn.{p}" for p in ATTN_PROJECTIONS]
            names += [f"layers.{i}.mlp.{p}" for p in MLP_PROJECTIONS]
        return names + ["lm_head"]

    def ternary_shape(self, name: str) -> tuple[int, int]:
        """(out_features, in_features) of a ternary layer."""
        d, inter = self.hidden_size, self.intermediate_size
        leaf = name.rsplit(".", 1)[-1]
        shapes = {
            "i_proj": (d, d), "f_proj": (d, d), "g_proj": (d, d), "o_proj": (d, d),
            "gate_proj": (2 * inter, d), "down_proj": (d, inter),
            "lm_head": (self.vocab_size, d),
        }
        if leaf not in shapes:
            raise ConfigError(f"unknown ternary layer {name!r}")
        return shapes[leaf]

    def num_ternary_weights(self) -> int:
        return sum(o * i for o, i in map(self.ternary_shape, self.ternary_layers()))

    def num_parameters(self) -> int:
        """All parameters: ternary weights, embedding, norms and lower bounds."""
        d = self.hidden_size
        norms = self.num_layers * (3 * d + 4 * d + 2 * self.intermediate_size) + 2 * d
        lb = self.num_layers * d if self.use_lower_bound else 0
        return self.num_ternary_weights() + self.vocab_size * d + norms + lb

    def validate_shapes(self) -> None:
        for attr in ("vocab_size", "hidden_size", "num_layers", "intermediate_size"):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{attr} must be a positive integer, not {v!r}")
        if self.token_mixer not in TOKEN_MIXERS:
            raise ConfigError(
                f"token_mixer {self.token_mixer!r} is not supported; choose from {TOKEN_MIXERS}"
            )
        if not (_is_number(self.norm_eps) and math.isfinite(self.norm_eps) and self.norm_eps > 0):
            raise ConfigError(f"norm_eps must be a positive number, not {self.norm_eps!r}")
        if not isinstance(self.use_lower_bound, bool):
            raise ConfigError(f"use_lower_bound must be true or false, not "
                              f"{self.use_lower_bound!r}")
        if self.tokenizer not in ("byte", "hf"):
            raise ConfigError(f"tokenizer must be 'byte' or 'hf', not {self.tokenizer!r}")
        if self.tokenizer == "byte" and self.vocab_size < 256:
            raise ConfigError(f"a byte tokenizer needs vocab_size ≥ 256, not {self.vocab_size}")

    def validate(self) -> None:
        """Check shapes and every layer's spiking parameters."""
        self.validate_shapes()
        expected = set(self.ternary_layers())
        unknown = set(self.quant) - expected
        if unknown:
            raise ConfigError(f"quant has entries for unknown layers: {sorted(unknown)[:5]}")
        for name in self.ternary_layers():
            self.quant[name].validate(name)

    # -- serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown config fields: {sorted(unknown)}")
        quant = data.get("quant", {})
        if not isinstance(quant, dict) or not all(isinstance(q, dict) for q in quant.values()):
            raise ConfigError("quant must map layer names to objects of spiking parameters")
        for layer, q in quant.items():
            bad = set(q) - set(SpikeQuant.__dataclass_fields__)
            if bad:
                raise ConfigError(f"{layer}: unknown spiking parameters {sorted(bad)}")
        cfg = cls(**data)
        cfg.validate()
        return cfg

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"model config is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError("model config must be a JSON object")
        return cls.from_dict(data)

    def with_quant(self, **changes) -> ModelConfig:
        """A copy with the given SpikeQuant fields changed on every layer."""
        cfg = replace(self, quant={k: replace(v, **changes) for k, v in self.quant.items()})
        cfg.validate()
        return cfg


def _preset(name: str, vocab: int, d: int, layers: int, tokenizer: str = "hf") -> ModelConfig:
    return ModelConfig(name=name, vocab_size=vocab, hidden_size=d, num_layers=layers,
                       intermediate_size=mlp_intermediate_size(d), tokenizer=tokenizer)


#: Preset shapes. The ``mmfree-*`` presets have the shapes of the public MatMul-free LM
#: checkpoints (ridger/MMfreeLM-370M, -1.3B, -2.7B). ``nsllm-1.5b`` is d=2048 × 28 layers:
#: 1.50 B ternary weights (1.57 B parameters with the embedding), the NSLLM paper's size.
PRESETS = {
    "tiny": lambda: _preset("tiny", 256, 128, 4, tokenizer="byte"),
    "mmfree-370m": lambda: _preset("mmfree-370m", 32000, 1024, 24),
    "mmfree-1.3b": lambda: _preset("mmfree-1.3b", 32000, 2048, 24),
    "mmfree-2.7b": lambda: _preset("mmfree-2.7b", 32000, 2560, 32),
    "nsllm-1.5b": lambda: _preset("nsllm-1.5b", 32000, 2048, 28),
}


def preset(name: str) -> ModelConfig:
    """A fresh config for a named preset (see :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]()
