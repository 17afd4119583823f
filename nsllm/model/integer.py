"""The bit-exact integer model: the specification the hardware must match.

Every operation here is integer arithmetic defined by :mod:`nsllm.model.numerics`; the only
floating point is the ternary accumulation, done by BLAS on small integers where it is provably
exact (:func:`nsllm.model.numerics.float32_exact`), else in float64 (exact below 2**53).
:class:`IntegerParams` turns a model's float parameters into the integer constants the hardware
loads; the HDL and the model image use the same object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import numerics as nx
from .config import ConfigError
from .graph import Arithmetic, LanguageModel
from .weights import ModelWeights


@dataclass
class LinearParams:
    """Integer constants of one ternary layer.

    ``u = shift_round(xn * enc.mant, enc.shift + ACT_FRAC - U_FRAC)`` (membrane potential),
    ``s = spike_count(u, D, delta_q)``, ``acc = W s``,
    ``y = saturate(shift_round(acc * out.mant, out.shift))``.
    """

    trits: np.ndarray  #: int8 (out, in)
    D: int
    delta_q: int  #: δ in U_FRAC fixed point
    enc: nx.Multipliers  #: per input channel: norm weight / θ
    out: nx.Multipliers  #: one value: θ · β · 2**ACT_FRAC

    @property
    def enc_shift(self) -> int:
        return self.enc.shift + nx.ACT_FRAC - nx.U_FRAC

    @property
    def acc_bits(self) -> int:
        return nx.accumulator_bits(self.trits.shape[1], self.D)


@dataclass
class CountParams:
    """Integer constants of one SLA count encoder (q, k or v of one layer).

    ``u = shift_round(x · enc.mant, enc.shift + ACT_FRAC − U_FRAC)`` with ``enc = 1/θ`` per
    channel, then ``spike_count_unsigned(u, D, delta_q)`` (q, k) or ``spike_count`` (v): the
    I-LIF encoder of every BitLinear input, with static per-channel multipliers.
    """

    D: int
    delta_q: int  #: δ in U_FRAC fixed point
    enc: nx.Multipliers  #: per channel: 1 / θ
    signed: bool

    @property
    def enc_shift(self) -> int:
        return self.enc.shift + nx.ACT_FRAC - nx.U_FRAC

    def counts(self, x: np.ndarray) -> np.ndarray:
        return nx.encode_q(x, self.enc.mant, self.enc_shift, self.D, self.delta_q,
                           unsigned=not self.signed)


@dataclass
class SLALayerParams:
    """Integer constants of one SLA layer: its three count encoders and per-head decays."""

    counts: dict[str, CountParams]  #: "q", "k", "v"
    shifts: np.ndarray  #: int64 (heads,): decay shifts b_h
    head_dim: int

    @property
    def heads(self) -> int:
        return len(self.shifts)


def _delta_q(delta: float) -> int:
    return int(np.floor(delta * (1 << nx.U_FRAC) + 0.5))


class IntegerParams:
    """All integer constants of a model, derived deterministically from its weights and config."""

    def __init__(self, weights: ModelWeights):
        cfg = weights.config
        cfg.validate()
        self.config = cfg
        self.embedding = nx.to_fixed(weights.tensors["embeddings.weight"])
        self.norms = {
            name: nx.quantize_multipliers(t)
            for name, t in weights.tensors.items()
            if name.endswith("norm.weight")
        }
        self.lower_bounds = [
            None if (lb := weights.lower_bound(i)) is None
            else nx.to_fixed(lb, nx.GATE_FRAC, bits=nx.GATE_FRAC + 2)
            for i in range(cfg.num_layers)
        ]
        self.linears: dict[str, LinearParams] = {}
        for name, lin in weights.linears.items():
            q = cfg.quant[name]
            self.linears[name] = LinearParams(
                trits=lin.trits,
                D=q.D,
                delta_q=_delta_q(q.delta),
                enc=nx.quantize_multipliers(lin.norm_weight.astype(np.float64) / q.theta),
                out=nx.quantize_multipliers(q.theta * q.weight_scale * (1 << nx.ACT_FRAC)),
            )
        self.sla: dict[int, SLALayerParams] = {}
        for li in cfg.sla_layers():
            sp = cfg.sla_params(li)
            counts = {}
            for c in ("q", "k", "v"):
                theta = weights.tensors[f"layers.{li}.attn.{c}_theta"].astype(np.float64)
                counts[c] = CountParams(D=getattr(sp, f"D_{c}"),
                                        delta_q=_delta_q(getattr(sp, f"delta_{c}")),
                                        enc=nx.quantize_multipliers(1.0 / theta),
                                        signed=c == "v")
            self.sla[li] = SLALayerParams(counts, np.asarray(sp.decay_shifts, dtype=np.int64),
                                          sp.head_dim)
        self._check_ranges()

    def _check_ranges(self) -> None:
        """Refuse multipliers the fixed-point formats cannot hold.

        A multiplier above 2**(MULT_BITS-1) gets a negative shift (a left shift), and products
        of 24-bit activations with it can leave int64: a norm weight, g/θ or θ·β·2**ACT_FRAC that
        large means a broken checkpoint or calibration, so it is an error, not a silent wrap.
        The core's run-time shifts are at least 1 (descriptor shifts lie in [1, 63]), so the
        limit is a shift ≥ 1 after the fixed offsets: |v| < 2**(MULT_BITS-2) for norm weights
        and θ·β·2**ACT_FRAC, |v| < 2**(MULT_BITS-1) for norm weight / θ.
        """
        # (name, multiplier, offset of its run-time shift = mult.shift + offset)
        named = [(name, m, 0) for name, m in self.norms.items()]
        for name, lp in self.linears.items():
            named += [(f"{name} (norm weight / theta)", lp.enc, lp.enc_shift - lp.enc.shift),
                      (f"{name} (theta · beta)", lp.out, 0)]
        for li, sp in self.sla.items():
            named += [(f"layers.{li}.attn.{c}_theta (1 / theta)", cp.enc,
                       cp.enc_shift - cp.enc.shift) for c, cp in sp.counts.items()]
        for name, mult, offset in named:
            min_shift = max(0, 1 - offset)
            if mult.shift < min_shift and np.any(mult.mant):  # all-zero: any shift is exact
                peak = float(np.max(np.abs(mult.real())))
                raise ConfigError(
                    f"{name}: multiplier {peak:.4g} exceeds the fixed-point range "
                    f"(|v| < {1 << (nx.MULT_BITS - 1 - min_shift)}); "
                    "check the layer's weights, theta and weight_scale"
                )


class IntegerArithmetic(Arithmetic):
    """Integer implementation of the graph's operations (int64 arrays of fixed-point values).

    Parameters
    ----------
    weights : ModelWeights
    spike_form : {"count", "train"}
        ``count`` adds ±count·w per weight (what the hardware does); ``train`` expands each count
        into D ternary spikes and accumulates timestep by timestep. Both give identical results.
    """

    def __init__(self, weights: ModelWeights, spike_form: str = "count"):
        if spike_form not in ("count", "train"):
            raise ValueError(f"spike_form must be 'count' or 'train', not {spike_form!r}")
        self.weights = weights
        self.params = IntegerParams(weights)
        self.spike_form = spike_form
        self._dense: dict[str, np.ndarray] = {}
        for name, lp in self.params.linears.items():
            exact32 = nx.float32_exact(lp.trits.shape[1], lp.D)
            # trits transposed (in, out): one BLAS product per layer; exact, see float32_exact
            self._dense[name] = np.ascontiguousarray(
                lp.trits.T, dtype=np.float32 if exact32 else np.float64
            )

    def embed(self, tokens):
        return self.params.embedding[tokens]

    def norm(self, x, weight):
        m = self.params.norms[weight]
        return nx.norm_q(x, m.mant, m.shift)

    def unit_norm(self, x):
        return nx.rmsnorm_q(x)

    def spikes(self, layer, xn):
        lp = self.params.linears[layer]
        return nx.encode_q(xn, lp.enc.mant, lp.enc_shift, lp.D, lp.delta_q)

    def accumulate(self, layer, counts):
        lp = self.params.linears[layer]
        if self.spike_form == "train":
            acc = nx.ternary_accumulate_train(lp.trits, nx.spike_train(counts, lp.D))
        else:
            w = self._dense[layer]
            flat = counts.reshape(-1, counts.shape[-1]).astype(w.dtype)
            acc = (flat @ w).astype(np.int64).reshape(counts.shape[:-1] + (w.shape[1],))
        return nx.requant_q(acc, lp.out.mant[0], lp.out.shift)

    def forget_gate(self, f_pre, layer):
        return nx.forget_gate_q(f_pre, self.params.lower_bounds[layer])

    def input_gate(self, i_pre, f):
        return nx.input_gate_q(i_pre, f)

    def recur(self, f, h, i):
        return nx.recur_q(f, h, i)

    def silu(self, x):
        return nx.silu_q(x)

    def mul(self, a, b):
        return nx.mul_q(a, b)

    def add(self, a, b):
        return nx.add_q(a, b)

    def zeros_state(self, batch):
        return np.zeros((batch, self.weights.config.hidden_size), dtype=np.int64)

    def sla_counts(self, layer, which, x):
        return self.params.sla[layer].counts[which].counts(x)

    def sla_scan(self, layer, q, k, v, state):
        sp = self.params.sla[layer]
        B, T, d = q.shape
        heads = (B, T, sp.heads, sp.head_dim)
        qh, kh, vh = (np.asarray(c, dtype=np.int64).reshape(heads) for c in (q, k, v))
        out = np.empty(heads, dtype=np.int64)
        for t in range(T):
            state = nx.sla_update(state, kh[:, t], vh[:, t], sp.shifts)
            out[:, t] = nx.sla_read(state, qh[:, t])
        return out.reshape(B, T, d), state

    def head_norm(self, o, layer):
        m = self.params.norms[f"layers.{layer}.attn.o_norm.weight"]
        return nx.saturate(m.apply(nx.head_rmsnorm_q(o, self.params.sla[layer].heads)))

    def zeros_sla_state(self, batch, layer):
        sp = self.params.sla[layer]
        return np.zeros((batch, sp.heads, sp.head_dim, sp.head_dim), dtype=np.int64)


class IntegerModel(LanguageModel):
    """The golden model: integer logits (ACT_FRAC fixed point), bit-exact hardware spec."""

    def __init__(self, weights: ModelWeights, spike_form: str = "count"):
        super().__init__(IntegerArithmetic(weights, spike_form))
        self.params = self.arith.params

    @staticmethod
    def logits_to_float(logits: np.ndarray) -> np.ndarray:
        return nx.from_fixed(logits)
