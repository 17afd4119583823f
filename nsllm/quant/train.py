"""Quantization-aware training of a small spiking byte model (optional extra ``train``: PyTorch).

The PyTorch module mirrors :mod:`nsllm.model.graph` equation for equation, with straight-through
estimators (STE) where the forward pass is discrete:

* every BitLinear: its own RMSNorm (eps 1e-6) times its norm weight, divided by θ, rounded to a
  spike count in [−D, D] after the sparsification shift δ (``sign(u)·clip(round(|u| − δ), 0, D)``,
  STE through the rounding; θ is a learned parameter, LSQ-style: the gradient reaches it through
  both ``x/θ`` and the ``θ·β`` output gain); δ is fixed, scheduled or learned per layer
  (:class:`TrainSettings` ``delta_mode``);
* weights: latent floats ternarised per tensor with absmean (``β = mean|w|``,
  ``trit = clip(round(w/β), −1, 1)``), STE;
* MLGRU: ``f = lb + (1 − lb)·σ(W_f x)``, ``i = SiLU(W_i x)·(1 − f)``, ``h_t = f_t h_{t−1} + i_t``,
  ``o = W_o(RMSNorm(W_g x)·SiLU(h))``; the recurrence is evaluated as a parallel prefix scan
  (:func:`mlgru_scan`, ⌈log2 T⌉ tensor steps), so training is not a Python loop over time;
* SLA layers (``token_mixer`` "sla", hybrid stacks): the spike-based linear attention of
  :mod:`nsllm.quant.sla_train`, in chunked parallel form;
* GLU channel mixer and the LM head (a BitLinear) as in the graph.

**Sparsity-aware training.** A count is non-zero exactly when ``|u| ≥ δ + ½``. The firing rate of a
layer (fraction of non-zero counts) has no useful gradient, so the loss uses a differentiable
surrogate of the non-zero count, ``σ((|u| − δ − ½)/τ)`` averaged over the layer's inputs, used
straight-through: the forward value is the exact fraction of non-zero counts, the backward pass
takes the surrogate's gradient. The layers' rates are averaged **weighted by each layer's number
of weights** (the fraction of weight columns the hardware still fetches), and the loss adds
``λ·max(0, r̂ − r*)`` for a target rate ``r*``. Its gradient reaches θ (and δ when learned) and,
through ``u``, everything upstream.

**Distillation** (``distill``: a teacher ``.nsllm``, e.g. the dense model a sparse model is
fine-tuned from): the loss is ``(1 − α)·CE + α·KL(p_teacher ‖ p_student)`` per predicted byte
(α = ``distill_weight``), the teacher run as the same spiking module (its own D, θ, δ) without
gradients. On a small corpus the teacher's soft targets carry more than the one-hot next byte.

Training can start from a saved model (``init``): its trits, β, θ, δ, D (per layer: a model
with mixed timesteps trains at them) and float tensors are loaded, with latent weights
``trit·β/p`` (``p`` the fraction of non-zero trits) so that absmean ternarisation gives back
exactly the same trits and β.

:func:`export_weights` turns the trained module into :class:`~nsllm.model.weights.ModelWeights`
(trits, β, θ, D, δ), which the integer golden model runs directly.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..model.config import DEFAULT_THETA, DEFAULT_TIMESTEPS, ModelConfig, mlp_intermediate_size
from ..model.weights import ModelWeights, TernaryLinear
from .ternary import absmean_ternarize

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ModuleNotFoundError as e:  # pragma: no cover - exercised only without torch
    raise ModuleNotFoundError(
        "nsllm training needs PyTorch: install the extra with "
        "`.venv/bin/pip install torch==2.13.0` (or `pip install -e '.[train]'`)",
        name="torch",
    ) from e


def _ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Forward ``q``, backward identity to ``x``."""
    return x + (q - x).detach()


def _rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


#: Width τ of the sigmoid surrogate of the non-zero count (in units of θ).
SURROGATE_TAU = 0.25
DELTA_MODES = ("fixed", "schedule", "learn")


class SpikeBitLinear(nn.Module):
    """BitLinear with a spike-count input quantizer (takes the unit-normalised input).

    After each forward pass ``soft_rate`` holds the surrogate firing rate (a tensor in the graph)
    and ``hard_rate`` the exact fraction of non-zero counts (a float).
    """

    def __init__(self, in_f: int, out_f: int, D: int, delta: float, theta: float = DEFAULT_THETA,
                 learn_delta: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_f, in_f) * in_f**-0.5)
        self.norm_weight = nn.Parameter(torch.ones(in_f))
        self.theta = nn.Parameter(torch.tensor(float(theta)))
        self.D = D
        if learn_delta:
            self.delta = nn.Parameter(torch.tensor(float(delta)))
        else:
            self.register_buffer("delta", torch.tensor(float(delta)))
        self.soft_rate: torch.Tensor | None = None
        self.hard_rate = 0.0

    def ternary(self) -> tuple[torch.Tensor, torch.Tensor]:
        beta = self.weight.abs().mean().clamp_min(1e-5)
        trits = (self.weight / beta).round().clamp(-1, 1)
        return trits, beta

    def spikes(self, xn: torch.Tensor) -> torch.Tensor:
        u = xn * self.norm_weight / self.theta
        excess = u.abs() - self.delta
        mag = excess.clamp(0, self.D)
        counts = torch.sign(u) * _ste(mag, mag.round())
        with torch.no_grad():
            hard = (counts != 0).float().mean()
        self.hard_rate = float(hard)
        if self.training:  # forward: the exact rate; backward: the sigmoid surrogate's gradient
            soft = torch.sigmoid((excess - 0.5) / SURROGATE_TAU).mean()
            self.soft_rate = hard + (soft - soft.detach())
        return counts

    def forward(self, xn: torch.Tensor) -> torch.Tensor:
        trits, beta = self.ternary()
        w = _ste(self.weight, trits * beta)
        return F.linear(self.spikes(xn) * self.theta, w)


def mlgru_scan(f: torch.Tensor, i: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """``h_t = f_t h_{t−1} + i_t`` over (B, T, d) for all t, as a parallel prefix scan.

    Hillis–Steele scan over the affine maps ``h ↦ f h + i``: after the step with offset k every
    position holds the composition of the last 2k maps; ⌈log2 T⌉ steps of whole-tensor products,
    no Python loop over time, and only products of gates in [0, 1] (numerically stable).
    """
    a, b = f, i.clone()
    b[:, 0] = b[:, 0] + f[:, 0] * h0
    T = f.shape[1]
    k = 1
    while k < T:
        a_prev = F.pad(a[:, :-k], (0, 0, k, 0), value=1.0)
        b_prev = F.pad(b[:, :-k], (0, 0, k, 0), value=0.0)
        b = a * b_prev + b
        a = a * a_prev
        k *= 2
    return b


class QATModel(nn.Module):
    """The spiking MatMul-free LM of :mod:`nsllm.model.graph` in PyTorch, for QAT."""

    def __init__(self, cfg: ModelConfig, learn_delta: bool = False):
        super().__init__()
        self.cfg = cfg
        d, V, L = cfg.hidden_size, cfg.vocab_size, cfg.num_layers
        self.embeddings = nn.Parameter(torch.randn(V, d))
        self.lower_bounds = nn.Parameter(torch.zeros(L, d))
        self.norms = nn.ParameterDict()
        self.linears = nn.ModuleDict()
        for li in range(L):
            own = ("attn_norm", "mlp_norm") + (() if cfg.mixer(li) == "sla" else ("attn_g_norm",))
            for n in own:
                self.norms[f"{li}_{n}"] = nn.Parameter(torch.ones(d))
        from .sla_train import SLAState  # SLA layers: count encoders, head norm, decays
        self.sla = nn.ModuleDict({str(li): SLAState(d, cfg.sla_params(li))
                                  for li in cfg.sla_layers()})
        self.norms["final"] = nn.Parameter(torch.ones(d))
        for name in cfg.ternary_layers():
            out_f, in_f = cfg.ternary_shape(name)
            q = cfg.quant[name]
            self.linears[name.replace(".", "_")] = SpikeBitLinear(in_f, out_f, q.D, q.delta,
                                                                  q.theta, learn_delta)
        sizes = {n: float(np.prod(cfg.ternary_shape(n))) for n in cfg.ternary_layers()}
        total = sum(sizes.values())
        #: each layer's share of the weights: the weights of the weighted firing rate
        self.rate_weights = {n: v / total for n, v in sizes.items()}

    def lin(self, name: str) -> SpikeBitLinear:
        return self.linears[name.replace(".", "_")]

    def soft_firing_rate(self) -> torch.Tensor:
        """Surrogate firing rate of the last forward pass, weighted by #weights."""
        return sum(self.lin(n).soft_rate * w for n, w in self.rate_weights.items())

    def hard_firing_rate(self) -> float:
        """Exact fraction of non-zero counts of the last forward pass, weighted by #weights."""
        return sum(self.lin(n).hard_rate * w for n, w in self.rate_weights.items())

    def firing_rates(self) -> dict[str, float]:
        return {n: self.lin(n).hard_rate for n in self.rate_weights}

    def mlgru(self, li: int, an: torch.Tensor, lbs: torch.Tensor, eps: float) -> torch.Tensor:
        """An MLGRU token mixer's o_proj input from its normalised input ``an``."""
        p = f"layers.{li}"
        i_pre = self.lin(f"{p}.attn.i_proj")(an)
        f_pre = self.lin(f"{p}.attn.f_proj")(an)
        g = self.lin(f"{p}.attn.g_proj")(an)
        f = torch.sigmoid(f_pre)
        if li > 0:  # layer 0's lower bound is exactly 0
            f = lbs[li] + (1 - lbs[li]) * f
        i = F.silu(i_pre) * (1 - f)
        h = mlgru_scan(f, i, an.new_zeros(an.shape[0], an.shape[-1]))
        gn = _rms(g, eps) * self.norms[f"{li}_attn_g_norm"]
        return gn * F.silu(h)

    def lower_bound(self) -> torch.Tensor:
        p = torch.softmax(self.lower_bounds, dim=0)
        return torch.cumsum(p, dim=0) - p[0]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        eps = self.cfg.norm_eps
        x = self.embeddings[tokens]
        lbs = self.lower_bound()
        for li in range(self.cfg.num_layers):
            p = f"layers.{li}"
            a = _rms(x, eps) * self.norms[f"{li}_attn_norm"]
            an = _rms(a, 1e-6)
            if self.cfg.mixer(li) == "sla":
                qkvg = [self.lin(f"{p}.attn.{c}_proj")(an) for c in "qkvg"]
                o_in = self.sla[str(li)](*qkvg, eps=eps)
            else:
                o_in = self.mlgru(li, an, lbs, eps)
            x = x + self.lin(f"{p}.attn.o_proj")(_rms(o_in, 1e-6))
            m = _rms(x, eps) * self.norms[f"{li}_mlp_norm"]
            gate, up = self.lin(f"{p}.mlp.gate_proj")(_rms(m, 1e-6)).chunk(2, dim=-1)
            z = F.silu(gate) * up
            x = x + self.lin(f"{p}.mlp.down_proj")(_rms(z, 1e-6))
        xf = _rms(x, eps) * self.norms["final"]
        return self.lin("lm_head")(_rms(xf, 1e-6))


def export_weights(model: QATModel, name: str | None = None) -> ModelWeights:
    """The trained module as :class:`ModelWeights` (absmean trits, learned θ, its D and δ)."""
    cfg = ModelConfig.from_dict({**model.cfg.to_dict(), "name": name or model.cfg.name})
    sd = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    tensors = {"embeddings.weight": sd["embeddings"], "norm.weight": sd["norms.final"]}
    if cfg.use_lower_bound:
        tensors["lower_bounds"] = sd["lower_bounds"]
    for li in range(cfg.num_layers):
        tensors[f"layers.{li}.attn_norm.weight"] = sd[f"norms.{li}_attn_norm"]
        tensors[f"layers.{li}.mlp_norm.weight"] = sd[f"norms.{li}_mlp_norm"]
        if cfg.mixer(li) == "sla":
            tensors[f"layers.{li}.attn.o_norm.weight"] = sd[f"sla.{li}.o_norm"]
            for c in "qkv":
                tensors[f"layers.{li}.attn.{c}_theta"] = np.abs(sd[f"sla.{li}.{c}.theta"])
        else:
            tensors[f"layers.{li}.attn.g_norm.weight"] = sd[f"norms.{li}_attn_g_norm"]
    linears = {}
    for lname in cfg.ternary_layers():
        key = "linears." + lname.replace(".", "_")
        trits, beta = absmean_ternarize(sd[f"{key}.weight"])
        linears[lname] = TernaryLinear(trits, sd[f"{key}.norm_weight"])
        q = cfg.quant[lname]
        q.weight_scale = beta
        q.theta = float(abs(sd[f"{key}.theta"]))
        q.delta = max(float(sd[f"{key}.delta"]), 0.0)
    cfg.validate()
    return ModelWeights(cfg, tensors, linears)


def load_into(model: QATModel, weights: ModelWeights) -> None:
    """Set the module's parameters from a saved model (see the module docstring)."""
    cfg = weights.config
    with torch.no_grad():
        model.embeddings.copy_(torch.from_numpy(weights.tensors["embeddings.weight"]))
        if "lower_bounds" in weights.tensors:
            model.lower_bounds.copy_(torch.from_numpy(weights.tensors["lower_bounds"]))
        model.norms["final"].copy_(torch.from_numpy(weights.tensors["norm.weight"]))
        for li in range(cfg.num_layers):
            for src, dst in (("attn_norm", "attn_norm"), ("mlp_norm", "mlp_norm"),
                             ("attn.g_norm", "attn_g_norm")):
                model.norms[f"{li}_{dst}"].copy_(
                    torch.from_numpy(weights.tensors[f"layers.{li}.{src}.weight"]))
        for name in cfg.ternary_layers():
            lin, q, tl = model.lin(name), cfg.quant[name], weights.linears[name]
            trits = torch.from_numpy(tl.trits.astype(np.float32))
            p = max(float((trits != 0).float().mean()), 1e-3)
            lin.weight.copy_(trits * (q.weight_scale / p))
            lin.norm_weight.copy_(torch.from_numpy(tl.norm_weight.astype(np.float32)))
            lin.theta.fill_(q.theta)
            lin.delta.fill_(q.delta)
            lin.D = q.D


@dataclass
class TrainSettings:
    """Everything that determines a training run (stored in the model card).

    Sparsity: ``firing_target`` (weighted firing rate r*, None = no sparsity term) with weight
    ``sparsity_weight`` (λ); with ``firing_ramp`` > 0 the target falls linearly from the rate of
    the first batch to r* over that many steps (the network adapts as it sparsifies);
    ``delta_mode`` ``fixed`` (δ = ``delta`` throughout), ``schedule``
    (δ ramps linearly from 0 to ``delta`` over the first ``delta_ramp`` steps) or ``learn`` (δ a
    parameter per layer, starting at ``delta``, learning rate ``delta_lr``). ``init``: a ``.nsllm``
    file to start from (its shapes, D per layer, θ and δ replace the shape settings).
    ``distill``: a teacher ``.nsllm`` (same vocabulary) whose next-byte distribution the loss
    also matches, with weight ``distill_weight`` (module docstring).
    """

    steps: int = 800
    seed: int = 0
    hidden_size: int = 192
    num_layers: int = 4
    batch: int = 16
    seq_len: int = 256
    lr: float = 3e-3
    theta_lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    D: int = DEFAULT_TIMESTEPS
    delta: float = 0.0
    delta_mode: str = "fixed"
    delta_lr: float = 3e-2
    delta_ramp: int = 200
    firing_target: float | None = None
    firing_ramp: int = 0
    sparsity_weight: float = 4.0
    init: str | None = None
    distill: str | None = None
    distill_weight: float = 0.5
    threads: int = 1
    eval_every: int = 250
    mixer: str = "mlgru"  #: "mlgru", "sla" or "hybrid" (SLA in every ``sla_every``-th layer)
    sla_every: int = 2
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Refuse settings that cannot train (messages name the option and the valid range)."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)

        for name in ("steps", "hidden_size", "num_layers", "batch", "seq_len", "threads",
                     "eval_every"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 1,
                 f"{name.replace('_', '-')} must be a positive integer, not "
                 f"{getattr(self, name)!r}")
        need(self.warmup >= 0 and self.delta_ramp >= 0 and self.firing_ramp >= 0,
             "warmup, delta-ramp and firing-ramp must be ≥ 0")
        for name in ("lr", "theta_lr", "delta_lr"):
            v = getattr(self, name)
            need(math.isfinite(v) and v > 0, f"{name.replace('_', '-')} must be > 0, not {v!r}")
        need(1 <= self.D <= 127, f"timesteps must be in [1, 127], not {self.D}")
        need(math.isfinite(self.delta) and self.delta >= 0, f"delta must be ≥ 0, not "
             f"{self.delta}")
        need(self.delta_mode in DELTA_MODES,
             f"delta-mode must be one of {', '.join(DELTA_MODES)}, not {self.delta_mode!r}")
        if self.firing_target is not None:
            need(0 < self.firing_target < 1,
                 f"firing-target must be in (0, 1), not {self.firing_target}")
        need(math.isfinite(self.sparsity_weight) and self.sparsity_weight >= 0,
             f"sparsity-weight must be ≥ 0, not {self.sparsity_weight}")
        need(0 <= self.distill_weight <= 1,
             f"distill-weight must be in [0, 1], not {self.distill_weight}")


MODEL_NAMES = {"mlgru": "nsllm-default", "hybrid": "nsllm-hybrid", "sla": "nsllm-sla"}


def layer_mixers(mixer: str, num_layers: int, sla_every: int = 2) -> list[str]:
    """Token mixer per layer: ``hybrid`` puts SLA in layers sla_every−1, 2·sla_every−1, …
    (every other layer by default: MLGRU first, so the SLA layers read a mixed context)."""
    if mixer in ("mlgru", "sla"):
        return [mixer] * num_layers
    if mixer != "hybrid":
        raise ValueError(f"mixer must be one of {', '.join(MODEL_NAMES)}, not {mixer!r}")
    if not isinstance(sla_every, int) or sla_every < 1:
        raise ValueError(f"sla_every must be a positive integer, not {sla_every!r}")
    return ["sla" if (li + 1) % sla_every == 0 else "mlgru" for li in range(num_layers)]


def model_config(s: TrainSettings) -> ModelConfig:
    mixers = layer_mixers(s.mixer, s.num_layers, s.sla_every)
    cfg = ModelConfig(name=MODEL_NAMES[s.mixer], vocab_size=256, hidden_size=s.hidden_size,
                      num_layers=s.num_layers,
                      intermediate_size=mlp_intermediate_size(s.hidden_size), tokenizer="byte",
                      token_mixer=mixers, use_lower_bound="mlgru" in mixers)
    return cfg.with_quant(D=s.D, delta=s.delta)


def _batches(data: np.ndarray, s: TrainSettings, rng: np.random.Generator):
    while True:
        starts = rng.integers(0, len(data) - s.seq_len - 1, size=s.batch)
        idx = starts[:, None] + np.arange(s.seq_len + 1)
        yield torch.from_numpy(data[idx].astype(np.int64))


@torch.no_grad()
def torch_heldout(model: QATModel, data: np.ndarray, seq_len: int = 512) -> tuple[float, float]:
    """Held-out ``(bits/byte, weighted firing rate)`` of the QAT module, windows of ``seq_len``
    from zero state."""
    was_training = model.training
    model.eval()
    n = (len(data) - 1) // seq_len
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)
    tok = torch.from_numpy(data[idx].astype(np.int64))
    total, fired = 0.0, 0.0
    for k in range(0, n, 8):
        b = tok[k:k + 8]
        logits = model(b[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1),
                                 reduction="sum").item()
        fired += model.hard_firing_rate() * len(b)
    model.train(was_training)
    return total / (n * seq_len) / math.log(2), fired / n


def torch_bits_per_byte(model: QATModel, data: np.ndarray, seq_len: int = 512) -> float:
    """Held-out bits/byte of the QAT module, windows of ``seq_len`` from zero state."""
    return torch_heldout(model, data, seq_len)[0]


class Progress:
    """One progress line: step, loss, firing rate, held-out bits/byte, ETA.

    On a terminal the line is redrawn in place; otherwise (a log file) a line is written every
    ``every`` steps and at each held-out evaluation.
    """

    def __init__(self, total: int, log=None, stream=None, every: int = 50):
        self.total, self.log, self.every = total, log, every
        self.stream = stream if stream is not None else sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.t0 = time.time()
        self.heldout = "—"

    def line(self, step: int, loss: float, firing: float) -> str:
        el = time.time() - self.t0
        eta = el / step * (self.total - step)
        width = 20
        done = int(width * step / self.total)
        return (f"[{'#' * done}{'.' * (width - done)}] step {step}/{self.total}  loss "
                f"{loss:.4f}  bpb {loss / math.log(2):.3f}  firing {firing:.3f}  held-out bpb "
                f"{self.heldout}  {el:6.0f}s (ETA {eta:4.0f}s)")

    def update(self, step: int, loss: float, firing: float, force: bool = False) -> None:
        text = self.line(step, loss, firing)
        if self.tty:
            self.stream.write("\r" + text)
            self.stream.flush()
        elif force or step % self.every == 0 or step == 1:
            (self.log or (lambda m: print(m, file=self.stream, flush=True)))(text)

    def message(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
        (self.log or (lambda m: print(m, file=self.stream, flush=True)))(text)

    def held_out(self, step: int, bpb: float, firing: float) -> None:
        self.heldout = f"{bpb:.4f} (firing {firing:.3f})"

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def target_at(s: TrainSettings, step: int, start: float) -> float:
    """The firing-rate target at a step: ``start`` → r* over ``firing_ramp`` steps."""
    if not s.firing_ramp:
        return s.firing_target
    k = min(1.0, step / s.firing_ramp)
    return max(s.firing_target, start + (s.firing_target - start) * k)


def delta_at(s: TrainSettings, step: int) -> float:
    """δ of the ``schedule`` mode at a step (linear ramp from 0 to ``s.delta``)."""
    if s.delta_ramp == 0:
        return s.delta
    return s.delta * min(1.0, step / s.delta_ramp)


def build_model(s: TrainSettings, init: ModelWeights | None = None) -> QATModel:
    """The QAT module of the settings (from ``s.init`` when given; ``init``: that model already
    in memory)."""
    learn = s.delta_mode == "learn"
    if s.init or init is not None:
        from ..model import load_model

        w = init if init is not None else load_model(s.init)
        if w.config.tokenizer != "byte" or w.config.vocab_size != 256:
            raise ValueError(f"{s.init}: training starts only from byte-vocabulary models")
        cfg = ModelConfig.from_dict(w.config.to_dict())
        if s.delta_mode != "fixed" or s.delta:
            for q in cfg.quant.values():
                q.delta = 0.0 if s.delta_mode == "schedule" else max(q.delta, s.delta)
        model = QATModel(cfg, learn_delta=learn)
        load_into(model, w)
        if s.delta_mode != "fixed" or s.delta:
            for name in cfg.ternary_layers():
                model.lin(name).delta.data.fill_(cfg.quant[name].delta)
        s.hidden_size, s.num_layers = cfg.hidden_size, cfg.num_layers
        return model
    cfg = model_config(s)
    if s.delta_mode == "schedule":
        cfg = cfg.with_quant(D=s.D, delta=0.0)
    return QATModel(cfg, learn_delta=learn)


def build_teacher(path: str, vocab_size: int) -> QATModel:
    """The distillation teacher: a saved model as the spiking module, frozen, in eval mode."""
    from ..model import load_model

    w = load_model(path)
    if w.config.vocab_size != vocab_size:
        raise ValueError(f"{path}: the distillation teacher has a vocabulary of "
                         f"{w.config.vocab_size}, the student {vocab_size}")
    teacher = QATModel(ModelConfig.from_dict(w.config.to_dict()))
    load_into(teacher, w)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def distill_kl(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean ``KL(p_teacher ‖ p_student)`` per predicted token (nats)."""
    V = logits.shape[-1]
    return F.kl_div(F.log_softmax(logits.reshape(-1, V), -1),
                    F.log_softmax(teacher_logits.reshape(-1, V), -1),
                    log_target=True, reduction="batchmean")


def train(s: TrainSettings, log=print, corpus: tuple[np.ndarray, np.ndarray] | None = None,
          init: ModelWeights | None = None) -> tuple[ModelWeights, dict]:
    """Train on the pydoc corpus (see :mod:`nsllm.data.corpus`), or on ``corpus`` = (training
    bytes, held-out bytes) as uint8 arrays; returns weights and a log. ``init``: the starting
    model in memory (``s.init`` then only names it)."""
    from ..data.corpus import pydoc_corpus

    s.validate()
    torch.manual_seed(s.seed)
    torch.set_num_threads(s.threads)
    rng = np.random.default_rng(s.seed)
    if corpus is None:
        train_text, held_text = pydoc_corpus()
        corpus = (np.frombuffer(train_text.encode("utf-8"), dtype=np.uint8),
                  np.frombuffer(held_text.encode("utf-8"), dtype=np.uint8))
    train_data, held_data = corpus
    model = build_model(s, init)
    teacher = build_teacher(s.distill, model.cfg.vocab_size) if s.distill else None
    thetas = [p for n, p in model.named_parameters() if n.endswith(".theta")]
    deltas = [p for n, p in model.named_parameters() if n.endswith(".delta")]
    decay = [p for n, p in model.named_parameters() if n.endswith(".weight")]
    other = [p for n, p in model.named_parameters()
             if not n.endswith((".theta", ".delta", ".weight"))]
    groups = [{"params": decay, "weight_decay": s.weight_decay, "lr": s.lr},
              {"params": other, "weight_decay": 0.0, "lr": s.lr},
              {"params": thetas, "weight_decay": 0.0, "lr": s.theta_lr}]
    if deltas:
        groups.append({"params": deltas, "weight_decay": 0.0, "lr": s.delta_lr})
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.95))
    base = [g["lr"] for g in opt.param_groups]
    history = []
    t0 = time.time()
    batches = _batches(train_data, s, rng)
    progress = Progress(s.steps, log=log)
    started = bool(s.init) or init is not None
    bpb, held_fire = torch_heldout(model, held_data) if started else (math.nan, math.nan)
    if started:
        history.append({"step": 0, "heldout_bpb_torch": round(bpb, 4),
                        "heldout_firing_torch": round(held_fire, 4), "seconds": 0.0})
        progress.held_out(0, bpb, held_fire)
    for step in range(1, s.steps + 1):
        # linear warmup, cosine decay to 10 %
        if step <= s.warmup:
            scale = step / s.warmup
        else:
            prog = (step - s.warmup) / max(1, s.steps - s.warmup)
            scale = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * prog))
        for g, b in zip(opt.param_groups, base, strict=True):
            g["lr"] = b * scale
        if s.delta_mode == "schedule":
            d = delta_at(s, step)
            for lin in model.linears.values():
                lin.delta.fill_(d)
        batch = next(batches)
        logits = model(batch[:, :-1])
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        loss = ce
        if teacher is not None and s.distill_weight > 0:
            with torch.no_grad():
                t_logits = teacher(batch[:, :-1])
            loss = (1 - s.distill_weight) * ce + s.distill_weight * distill_kl(logits, t_logits)
        if step == 1:
            start_rate = model.hard_firing_rate()
        if s.firing_target is not None and s.sparsity_weight > 0:
            target = target_at(s, step, start_rate)
            loss = loss + s.sparsity_weight * F.relu(model.soft_firing_rate() - target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for p in thetas:
                p.clamp_(min=1e-3)
            for p in deltas:
                p.clamp_(min=0.0)
        progress.update(step, ce.item(), model.hard_firing_rate())
        if step % s.eval_every == 0 or step == s.steps:
            bpb, held_fire = torch_heldout(model, held_data)
            history.append({"step": step, "heldout_bpb_torch": round(bpb, 4),
                            "heldout_firing_torch": round(held_fire, 4),
                            "train_firing": round(model.hard_firing_rate(), 4),
                            "seconds": round(time.time() - t0, 1)})
            progress.held_out(step, bpb, held_fire)
            progress.update(step, ce.item(), model.hard_firing_rate(), force=True)
    progress.close()
    weights = export_weights(model)
    report = {"settings": asdict(s), "history": history,
              "train_seconds": round(time.time() - t0, 1),
              "train_bytes": int(len(train_data)), "heldout_bytes": int(len(held_data))}
    return weights, report


def main_train(out: str, settings: TrainSettings, card: str | None = None, log=print) -> dict:
    """Train, save the model (and a JSON card with the training log)."""
    from ..model.fileformat import save_model
    from ..outputs import check_output, transaction, write_json

    check_output(out, "out")
    check_output(card, "card")
    weights, report = train(settings, log=log)
    with transaction():  # the model and its card appear together, or neither
        save_model(weights, out)
        if card:
            write_json(card, report, indent=2)
    return report
