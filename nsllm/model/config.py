"""Model configuration, per-layer spike quantization, and presets.

A :class:`ModelConfig` describes the shapes of a MatMul-free LM (``hgrn_bit``) and, for every
ternary linear layer, the spiking parameters of its input (:class:`SpikeQuant`). It round-trips
through JSON and is stored in the metadata of every ``.nsllm`` file.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace

from .numerics import (
    MAX_DELTA,
    MAX_TIMESTEPS,
    SLA_MAX_COUNT,
    SLA_MAX_DECAY_SHIFT,
    SLA_STATE_MAX,
    sla_state_bound,
)

TOKEN_MIXERS = ("mlgru", "sla")
ATTN_PROJECTIONS = ("i_proj", "f_proj", "g_proj", "o_proj")  #: the MLGRU token mixer's
SLA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "g_proj", "o_proj")  #: the SLA token mixer's
MIXER_PROJECTIONS = {"mlgru": ATTN_PROJECTIONS, "sla": SLA_PROJECTIONS}
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


@dataclass
class SLAParams:
    """Spike-based linear attention parameters of one layer (ARCHITECTURE §3).

    The per-channel thresholds θ_q, θ_k, θ_v of the count encoders are tensors
    (``layers.<i>.attn.q_theta`` …); everything static and integer lives here.

    Attributes
    ----------
    head_dim : int
        d_h; the layer has ``hidden_size / head_dim`` heads.
    decay_shifts : list of int
        b_h per head: the state decays by γ_h = 1 − 2**−b_h per token.
    D_q, D_k, D_v : int
        Largest count of q and k (unsigned, [0, D]) and of v (signed, [−D_v, D_v]).
    delta_q, delta_k, delta_v : float
        Sparsification shifts of the three count encoders (in units of θ, ≥ 0).
    """

    head_dim: int = 64
    decay_shifts: list[int] = field(default_factory=list)
    D_q: int = 2
    D_k: int = 2
    D_v: int = 4
    delta_q: float = 0.0
    delta_k: float = 0.0
    delta_v: float = 0.0

    def validate(self, name: str, hidden_size: int) -> None:
        if not isinstance(self.head_dim, int) or self.head_dim < 1 or hidden_size % self.head_dim:
            raise ConfigError(f"{name}: head_dim must be a positive divisor of hidden_size "
                              f"{hidden_size}, not {self.head_dim!r}")
        heads = hidden_size // self.head_dim
        b = self.decay_shifts
        if (not isinstance(b, list) or len(b) != heads
                or not all(isinstance(x, int) and 1 <= x <= SLA_MAX_DECAY_SHIFT for x in b)):
            raise ConfigError(f"{name}: decay_shifts must be {heads} integers (one per head) in "
                              f"[1, {SLA_MAX_DECAY_SHIFT}], not {b!r}")
        for what in ("D_q", "D_k", "D_v"):
            D = getattr(self, what)
            if not isinstance(D, int) or not 1 <= D <= SLA_MAX_COUNT:
                raise ConfigError(f"{name}: {what} must be an integer in [1, {SLA_MAX_COUNT}], "
                                  f"not {D!r}")
        for what in ("delta_q", "delta_k", "delta_v"):
            v = getattr(self, what)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name}: {what} must be a number ≥ 0, not {v!r}")
        worst = sla_state_bound(self.D_k, self.D_v, max(b))
        if worst > SLA_STATE_MAX:
            raise ConfigError(
                f"{name}: the SLA state could reach {worst} > {SLA_STATE_MAX} (24-bit entries) "
                f"with D_k {self.D_k}, D_v {self.D_v} and decay shift {max(b)}; lower D_k·D_v "
                "or the largest decay shift (docs/numerics.md, SLA state bound)")

    @property
    def heads(self) -> int:
        return len(self.decay_shifts)


def _sla_params(name: str, value) -> SLAParams:
    """An SLAParams copy from an SLAParams or a JSON dict (unknown keys are a ConfigError)."""
    data = asdict(value) if isinstance(value, SLAParams) else value
    if not isinstance(data, dict):
        raise ConfigError(f"sla[{name!r}] must be an object, not {type(data).__name__}")
    unknown = set(data) - set(SLAParams.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"sla[{name!r}]: unknown fields {sorted(unknown)}")
    return SLAParams(**data)


def default_head_dim(hidden_size: int) -> int:
    """d_h = 128 where it divides d (ARCHITECTURE §3), else 64, else one head of size d."""
    for dh in (128, 64):
        if hidden_size % dh == 0 and hidden_size >= dh:
            return dh
    return hidden_size


def default_decay_shifts(heads: int) -> list[int]:
    """b_h spread evenly from 9 (γ ≈ 0.998, long memory) down to 2 (γ = 0.75, local)."""
    if heads == 1:
        return [9]
    return [int(math.floor(9 - 7 * h / (heads - 1) + 0.5)) for h in range(heads)]


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
    token_mixer : str or list of str
        Per layer ``"mlgru"`` (the MatMul-free LM's gated recurrent unit) or ``"sla"``
        (spike-based linear attention); one string applies to every layer, a list of
        ``num_layers`` names makes a hybrid stack.
    use_lower_bound : bool
        Learned forget-gate lower bounds per layer (``lower_bounds`` tensor).
    norm_eps : float
        Epsilon of the block RMSNorms (float reference only; see docs/numerics.md).
    tokenizer : str
        ``"byte"`` (UTF-8 bytes, vocab 256) or ``"hf"`` (a ``tokenizer.json`` beside the model).
    quant : dict[str, SpikeQuant]
        Per ternary layer (``layers.3.attn.i_proj``, …, ``lm_head``) spiking parameters;
        missing entries are filled with defaults.
    sla : dict[str, SLAParams]
        Per SLA layer (``layers.3.attn``) its heads, decays and count parameters; missing
        entries are filled with defaults. Not stored for models without SLA layers.
    """

    name: str = "custom"
    vocab_size: int = 256
    hidden_size: int = 128
    num_layers: int = 4
    intermediate_size: int = 512
    token_mixer: str | list[str] = "mlgru"
    use_lower_bound: bool = True
    norm_eps: float = 1e-6
    tokenizer: str = "byte"
    quant: dict[str, SpikeQuant] = field(default_factory=dict)
    sla: dict[str, SLAParams] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.quant = {k: v if isinstance(v, SpikeQuant) else SpikeQuant(**v)
                      for k, v in self.quant.items()}
        if not isinstance(self.sla, dict):
            raise ConfigError(f"sla must be a mapping of layer names to SLA parameters, not "
                              f"{type(self.sla).__name__}")
        # copies: configs made with dataclasses.replace must not share mutable SLA parameters
        self.sla = {k: _sla_params(k, v) for k, v in self.sla.items()}
        self.validate_shapes()
        for name in self.ternary_layers():
            self.quant.setdefault(name, SpikeQuant())
        for li in self.sla_layers():
            dh = default_head_dim(self.hidden_size)
            self.sla.setdefault(f"layers.{li}.attn", SLAParams(
                head_dim=dh, decay_shifts=default_decay_shifts(self.hidden_size // dh)))

    # -- structure -----------------------------------------------------------------------------
    def mixer(self, layer: int) -> str:
        """The token mixer of a layer: ``"mlgru"`` or ``"sla"``."""
        if isinstance(self.token_mixer, str):
            return self.token_mixer
        return self.token_mixer[layer]

    def mixers(self) -> list[str]:
        return [self.mixer(i) for i in range(self.num_layers)]

    def sla_layers(self) -> list[int]:
        """Indices of the layers whose token mixer is SLA."""
        return [i for i in range(self.num_layers) if self.mixer(i) == "sla"]

    def sla_params(self, layer: int) -> SLAParams:
        return self.sla[f"layers.{layer}.attn"]

    def attn_projections(self, layer: int) -> tuple[str, ...]:
        """Leaf names of a layer's token-mixer projections, in execution order."""
        return MIXER_PROJECTIONS[self.mixer(layer)]

    def ternary_layers(self) -> list[str]:
        """Names of every ternary linear layer, in execution order."""
        names = []
        for i in range(self.num_layers):
            names += [f"layers.{i}.attn.{p}" for p in self.attn_projections(i)]
            names += [f"layers.{i}.mlp.{p}" for p in MLP_PROJECTIONS]
        return names + ["lm_head"]

    def ternary_shape(self, name: str) -> tuple[int, int]:
        """(out_features, in_features) of a ternary layer."""
        d, inter = self.hidden_size, self.intermediate_size
        leaf = name.rsplit(".", 1)[-1]
        shapes = {
            "i_proj": (d, d), "f_proj": (d, d), "g_proj": (d, d), "o_proj": (d, d),
            "q_proj": (d, d), "k_proj": (d, d), "v_proj": (d, d),
            "gate_proj": (2 * inter, d), "down_proj": (d, inter),
            "lm_head": (self.vocab_size, d),
        }
        if leaf not in shapes:
            raise ConfigError(f"unknown ternary layer {name!r}")
        parts = name.split(".")
        if len(parts) == 4 and parts[0] == "layers" and parts[2] == "attn" and parts[1].isdigit():
            li = int(parts[1])
            if li < self.num_layers and leaf not in self.attn_projections(li):
                mixer = self.mixer(li)
                raise ConfigError(
                    f"{name} does not exist: layer {li}'s token mixer is {mixer!r} "
                    f"({', '.join(self.attn_projections(li))}). Code that handles only MLGRU "
                    "layers (so far the core, its model image and cycle model) cannot run a "
                    "model with 'sla' layers; use the golden or float model (--backend golden "
                    "or float)")
        return shapes[leaf]

    def num_ternary_weights(self) -> int:
        return sum(o * i for o, i in map(self.ternary_shape, self.ternary_layers()))

    def num_parameters(self) -> int:
        """All parameters: ternary weights, their norm weights, and every float tensor
        (embedding, block norms, lower bounds, SLA thresholds)."""
        from .weights import expected_tensor_shapes

        floats = sum(math.prod(s) for s in expected_tensor_shapes(self).values())
        own_norms = sum(self.ternary_shape(n)[1] for n in self.ternary_layers())
        return self.num_ternary_weights() + own_norms + floats

    def validate_shapes(self) -> None:
        for attr in ("vocab_size", "hidden_size", "num_layers", "intermediate_size"):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{attr} must be a positive integer, not {v!r}")
        mixers = self.token_mixer
        if isinstance(mixers, (list, tuple)):
            if len(mixers) != self.num_layers:
                raise ConfigError(f"token_mixer lists {len(mixers)} layers, the model has "
                                  f"{self.num_layers}")
            mixers = list(mixers)
            # a uniform stack is one name (the form a file stores)
            self.token_mixer = mixers[0] if len(set(mixers)) == 1 else mixers
        else:
            mixers = [mixers]
        for m in mixers:
            if m not in TOKEN_MIXERS:
                raise ConfigError(
                    f"token_mixer {m!r} is not supported; choose from {TOKEN_MIXERS}"
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
        expected_sla = {f"layers.{li}.attn" for li in self.sla_layers()}
        unknown = set(self.sla) - expected_sla
        if unknown:
            raise ConfigError(f"sla has entries for layers that are not SLA layers: "
                              f"{sorted(unknown)[:5]}")
        for name in sorted(expected_sla):
            self.sla[name].validate(name, self.hidden_size)

    # -- serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dict. Models without SLA layers leave out ``sla`` (so their files are
        exactly what they were before SLA existed); a uniform stack stores one mixer name."""
        data = asdict(self)
        if not self.sla:
            del data["sla"]
        return data

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
