"""Spike-based linear attention (SLA) in PyTorch for quantization-aware training.

The module mirrors the SLA mixer of :mod:`nsllm.model.graph` (ARCHITECTURE §3):

* count encoders with a learned per-channel θ (LSQ style, straight-through rounding):
  ``q = clip(round(q̃/θ_q − δ_q), 0, D_q)``, ``k`` likewise (unsigned), and
  ``v = sign(ṽ)·clip(round(|ṽ/θ_v| − δ_v), 0, D_v)``;
* per head the recurrence ``S_t = γ S_{t−1} + k_tᵀ v_t``, ``o_t = q_t S_t`` with the static
  decay ``γ_h = 1 − 2**−b_h``, evaluated in **chunked parallel form** (:func:`sla_chunked`):
  within a chunk of C tokens ``o = ((Q Kᵀ) ⊙ Γ) V + γ^(t+1) Q S_0`` with ``Γ_ts = γ^(t−s)`` for
  s ≤ t, and the state is carried from chunk to chunk — a loop over T / C chunks, not over time.
  :func:`sla_recurrent` is the token-by-token form it is tested against;
* per-head RMSNorm of o times its weight, gated by SiLU(g̃), into the o_proj BitLinear.

The ternary projections are the model's ordinary spiking BitLinears
(:class:`nsllm.quant.train.SpikeBitLinear`); this module holds only what SLA adds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model.config import SLAParams
from ..model.weights import SLA_COUNTS, SLA_INITIAL_THETA

DEFAULT_CHUNK = 64


def _ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return x + (q - x).detach()


class CountEncoder(nn.Module):
    """One SLA count encoder: learned per-channel θ, fixed D and δ, unsigned or signed."""

    def __init__(self, d: int, D: int, delta: float, signed: bool, theta: float):
        super().__init__()
        self.theta = nn.Parameter(torch.full((d,), float(theta)))
        self.D, self.delta, self.signed = D, delta, signed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x / self.theta
        if self.signed:
            mag = (u.abs() - self.delta).clamp(0, self.D)
            return torch.sign(u) * _ste(mag, mag.round())
        pos = (u - self.delta).clamp(0, self.D)
        return _ste(pos, pos.round())


def decay_factors(shifts, dtype=torch.float32) -> torch.Tensor:
    """γ_h = 1 − 2**−b_h for every head."""
    b = torch.as_tensor(list(shifts), dtype=torch.float64)
    return (1.0 - 2.0 ** -b).to(dtype)


def sla_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gamma: torch.Tensor,
                  state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-by-token form. ``q, k, v`` (B, T, H, d_h), ``gamma`` (H,), ``state``
    (B, H, d_h, d_h) or None; returns (o (B, T, H, d_h), last state)."""
    B, T, H, dh = q.shape
    S = q.new_zeros(B, H, dh, dh) if state is None else state
    g = gamma.to(q.dtype)[None, :, None, None]
    outs = []
    for t in range(T):
        S = g * S + k[:, t, :, :, None] * v[:, t, :, None, :]
        outs.append(torch.einsum("bhi,bhij->bhj", q[:, t], S))
    return torch.stack(outs, 1), S


def sla_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gamma: torch.Tensor,
                state: torch.Tensor | None = None, chunk: int = DEFAULT_CHUNK
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same result as :func:`sla_recurrent`, chunk by chunk (see the module docstring).

    For token t of a chunk (t = 0 … C−1) with the state S_0 left by the previous chunk:
    ``o_t = γ^(t+1) q_t S_0 + Σ_{s≤t} γ^(t−s) (q_t·k_s) v_s``, and the chunk leaves
    ``S = γ^C S_0 + Σ_s γ^(C−1−s) k_sᵀ v_s``. Every decay power has an exponent ≤ C, so nothing
    over- or underflows whatever the sequence length.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of tokens, not {chunk}")
    B, T, H, dh = q.shape
    qh, kh, vh = (x.transpose(1, 2) for x in (q, k, v))  # (B, H, T, d_h)
    S = q.new_zeros(B, H, dh, dh) if state is None else state
    log_g = torch.log(gamma.to(q.dtype))[:, None]  # (H, 1)
    outs = []
    for c0 in range(0, T, chunk):
        qc, kc, vc = (x[:, :, c0:c0 + chunk] for x in (qh, kh, vh))
        C = qc.shape[2]
        idx = torch.arange(C, dtype=q.dtype, device=q.device)
        diff = idx[:, None] - idx[None, :]  # t − s
        causal = diff >= 0
        decay = torch.where(causal, torch.exp(diff.clamp(min=0) * log_g[:, :, None]),
                            torch.zeros((), dtype=q.dtype))  # (H, C, C)
        intra = ((qc @ kc.transpose(-1, -2)) * decay) @ vc
        inter = torch.exp((idx + 1) * log_g)[:, :, None] * (qc @ S)  # γ^(t+1) q_t S_0
        outs.append(intra + inter)
        k_w = kc * torch.exp((C - 1 - idx) * log_g)[:, :, None]  # γ^(C−1−s) k_s
        S = torch.exp(C * log_g)[:, :, None] * S + k_w.transpose(-1, -2) @ vc
    return torch.cat(outs, 2).transpose(1, 2), S


def head_rms(o: torch.Tensor, heads: int, eps: float) -> torch.Tensor:
    """RMSNorm of each head of (…, H·d_h), no weight."""
    oh = o.unflatten(-1, (heads, -1))
    return (oh * torch.rsqrt(oh.pow(2).mean(-1, keepdim=True) + eps)).flatten(-2)


class SLAState(nn.Module):
    """What one SLA layer adds to its five ternary projections: three count encoders (learned
    per-channel θ), the per-head RMSNorm weight and the static decays."""

    def __init__(self, d: int, params: SLAParams):
        super().__init__()
        self.params = params
        self.q, self.k, self.v = (
            CountEncoder(d, getattr(params, f"D_{c}"), getattr(params, f"delta_{c}"),
                         signed=c == "v", theta=SLA_INITIAL_THETA[c]) for c in SLA_COUNTS)
        self.o_norm = nn.Parameter(torch.ones(d))
        self.register_buffer("gamma", decay_factors(params.decay_shifts), persistent=False)

    def forward(self, q_pre: torch.Tensor, k_pre: torch.Tensor, v_pre: torch.Tensor,
                g: torch.Tensor, eps: float, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
        """The o_proj input ``RMSNorm_head(q S) · w ⊙ SiLU(g)`` of (B, T, d) projections."""
        p = self.params
        shape = q_pre.shape[:-1] + (p.heads, p.head_dim)
        o, _ = sla_chunked(self.q(q_pre).reshape(shape), self.k(k_pre).reshape(shape),
                           self.v(v_pre).reshape(shape), self.gamma, chunk=chunk)
        on = head_rms(o.flatten(-2), p.heads, eps) * self.o_norm
        return on * F.silu(g)
