"""The numerics contract: fixed-point formats, rounding, tables and integer primitives.

This module is the single source of truth for every number the hardware computes. The integer
golden model (:mod:`nsllm.model.integer`), the HDL generators, the testbenches and the performance
model import these constants and functions instead of repeating them. ``docs/numerics.md``
explains each of them.

Conventions
-----------
* Activations between units are signed integers of ``ACT_BITS`` bits with ``ACT_FRAC``
  fractional bits (value = integer / 2**ACT_FRAC), saturated at each unit's output.
* Gates (sigmoid outputs, forget gates, lower bounds) are unsigned Q1.15 (``GATE_ONE`` = 1.0).
* Spike counts are signed integers in ``[-D, D]``.
* Every right shift rounds half up: ``(x + 2**(s-1)) >> s`` (arithmetic shift, so -2.5 → -2).
  :func:`shift_round` is the only rounding primitive; a negative shift is an exact left shift.
* Per-channel real multipliers are represented as integer mantissas of at most ``MULT_BITS``
  signed bits sharing one per-layer shift (:func:`quantize_multipliers`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# --- formats ----------------------------------------------------------------------------------
ACT_BITS = 24  #: signed width of every activation between units
ACT_FRAC = 10  #: fractional bits of activations (resolution 2**-10, range ±8192)
ACT_MAX = (1 << (ACT_BITS - 1)) - 1
ACT_MIN = -(1 << (ACT_BITS - 1))

GATE_FRAC = 15  #: sigmoid / forget-gate / lower-bound format: unsigned Q1.15
GATE_ONE = 1 << GATE_FRAC

U_FRAC = 8  #: fractional bits of the I-LIF membrane potential u = x / theta
DELTA_BITS = 16  #: unsigned width of δ in U_FRAC fixed point (descriptor field, spike-unit port)
MAX_DELTA = ((1 << DELTA_BITS) - 1) / (1 << U_FRAC)  #: largest δ the formats hold (255.996)

MULT_BITS = 16  #: signed width of per-channel multiplier mantissas (norm weights, 1/theta, scales)

# Sigmoid / SiLU table: indexed by the activation at SIG_IN_FRAC fractional bits on [-8, 8).
SIG_IN_FRAC = 6
SIG_RANGE = 8
SIG_ENTRIES = 2 * SIG_RANGE << SIG_IN_FRAC  # 1024
SIG_IDX_MIN = -(SIG_RANGE << SIG_IN_FRAC)  # -512
SIG_IDX_MAX = (SIG_RANGE << SIG_IN_FRAC) - 1  # 511

# Reciprocal square root table for RMSNorm: the sum of squares is normalised by an even shift to a
# mantissa m in [2**RSQRT_M_BITS, 2**(RSQRT_M_BITS + 2)); the table holds round(2**RSQRT_FRAC/√m).
RSQRT_M_BITS = 10
RSQRT_FRAC = 20
RSQRT_ENTRIES = 3 << RSQRT_M_BITS  # 3072 entries, index m - 2**RSQRT_M_BITS
SQRTD_FRAC = 8  #: fractional bits of the per-layer constant sqrt(d)

#: Largest number of spike-count-times-trit products whose sum is exact in float32 (|sum| < 2**24).
FLOAT32_EXACT = 1 << 24

TRIT_VALUES = (-1, 0, 1)
SPIKE_COUNT_SET = (1, 3, 7, 15)  #: the documented timestep choices for mixed-timestep allocation
MAX_TIMESTEPS = 127  #: largest D the formats allow (count fits in 8 signed bits)


# --- rounding and saturation ------------------------------------------------------------------
def shift_round(x, s: int):
    """Round-half-up arithmetic right shift by ``s`` bits (left shift when ``s`` < 0).

    Works on Python ints and int64 arrays; the caller guarantees no int64 overflow.
    """
    if s > 0:
        return (x + (1 << (s - 1))) >> s
    if s == 0:
        return x
    return x << (-s)


def shift_round_array(x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """:func:`shift_round` with a per-element shift (used by RMSNorm, whose shift is per vector)."""
    x = np.asarray(x, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    pos = np.maximum(s, 0)
    half = np.where(pos > 0, np.left_shift(np.int64(1), np.maximum(pos - 1, 0)), 0)
    right = (x + half) >> pos
    return np.where(s >= 0, right, x << np.maximum(-s, 0))


def saturate(x, bits: int = ACT_BITS):
    """Clamp to the signed range of ``bits`` bits."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(x, lo, hi)


def to_fixed(x, frac: int = ACT_FRAC, bits: int = ACT_BITS) -> np.ndarray:
    """Real → fixed point: round half away from zero to ``frac`` bits, then saturate."""
    x = np.asarray(x, dtype=np.float64)
    q = np.sign(x) * np.floor(np.abs(x) * (1 << frac) + 0.5)
    return saturate(q.astype(np.int64), bits)


def from_fixed(q, frac: int = ACT_FRAC) -> np.ndarray:
    """Fixed point → float64."""
    return np.asarray(q, dtype=np.float64) / (1 << frac)


# --- multipliers ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Multipliers:
    """Real factors ``v`` represented as ``mant * 2**-shift`` with one shift for all of them."""

    mant: np.ndarray  #: int64, |mant| < 2**(MULT_BITS - 1)
    shift: int

    def apply(self, x: np.ndarray, extra_shift: int = 0) -> np.ndarray:
        """``x * v`` as ``shift_round(x * mant, shift + extra_shift)`` (int64 in and out)."""
        return shift_round(np.asarray(x, dtype=np.int64) * self.mant, self.shift + extra_shift)

    def real(self) -> np.ndarray:
        return self.mant.astype(np.float64) / 2.0**self.shift


def quantize_multipliers(values, bits: int = MULT_BITS, max_shift: int = 40) -> Multipliers:
    """The largest shift such that every ``round(v * 2**shift)`` fits in ``bits`` signed bits.

    All-zero input gives mantissas of zero and shift 0.
    """
    v = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if not np.all(np.isfinite(v)):
        raise ValueError("multiplier values must be finite")
    peak = float(np.max(np.abs(v))) if v.size else 0.0
    limit = (1 << (bits - 1)) - 1
    if peak == 0.0:
        return Multipliers(np.zeros(v.shape, dtype=np.int64), 0)
    shift = min(int(math.floor(math.log2(limit) - math.log2(peak))), max_shift)
    while True:
        mant = np.sign(v) * np.floor(np.abs(v) * 2.0**shift + 0.5)
        if np.max(np.abs(mant)) <= limit:
            break
        shift -= 1
    return Multipliers(mant.astype(np.int64), shift)


# --- tables -------------------------------------------------------------------------------------
def sigmoid_table() -> np.ndarray:
    """``SIG[k] = round(σ((k + SIG_IDX_MIN) / 2**SIG_IN_FRAC) * GATE_ONE)`` for k < SIG_ENTRIES."""
    k = np.arange(SIG_IDX_MIN, SIG_IDX_MAX + 1, dtype=np.float64)
    return np.floor(GATE_ONE / (1.0 + np.exp(-k / (1 << SIG_IN_FRAC))) + 0.5).astype(np.int64)


def rsqrt_table() -> np.ndarray:
    """``RSQRT[m - 2**RSQRT_M_BITS] = round(2**RSQRT_FRAC / sqrt(m))`` for m in [2**M, 2**(M+2))."""
    m = np.arange(1 << RSQRT_M_BITS, 4 << RSQRT_M_BITS, dtype=np.float64)
    return np.floor((1 << RSQRT_FRAC) / np.sqrt(m) + 0.5).astype(np.int64)


SIGMOID_TABLE = sigmoid_table()
RSQRT_TABLE = rsqrt_table()


def sigmoid_q(x: np.ndarray) -> np.ndarray:
    """σ of an activation (ACT_FRAC) as Q1.15.

    The table index is ``shift_round(x, ACT_FRAC - SIG_IN_FRAC)``; below the table (index < -512,
    i.e. x < -8.0078) σ is 0, above it (index > 511, i.e. x ≥ 7.9922) σ is 1.0.
    """
    idx = shift_round(np.asarray(x, dtype=np.int64), ACT_FRAC - SIG_IN_FRAC)
    inside = SIGMOID_TABLE[np.clip(idx, SIG_IDX_MIN, SIG_IDX_MAX) - SIG_IDX_MIN]
    return np.where(idx < SIG_IDX_MIN, 0, np.where(idx > SIG_IDX_MAX, GATE_ONE, inside))


def silu_q(x: np.ndarray) -> np.ndarray:
    """SiLU of an activation: ``x * σ(x)`` rounded back to ACT_FRAC (no saturation needed)."""
    x = np.asarray(x, dtype=np.int64)
    return shift_round(x * sigmoid_q(x), GATE_FRAC)


def sqrt_d_const(d: int) -> int:
    """The per-layer RMSNorm constant ``round(sqrt(d) * 2**SQRTD_FRAC)``."""
    return int(math.floor(math.sqrt(d) * (1 << SQRTD_FRAC) + 0.5))


def rsqrt_factor(sum_sq: np.ndarray, d: int, sqrt_d: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """RMSNorm factor for each vector: ``(r, shift)`` with ``x * r >> shift ≈ x * sqrt(d/sum_sq)``.

    ``sum_sq`` is Σx² of ACT_FRAC integers (so it carries 2·ACT_FRAC fractional bits); zero is
    treated as one. The mantissa ``m`` is the sum of squares shifted by an even amount ``e`` into
    [2**RSQRT_M_BITS, 2**(RSQRT_M_BITS+2)) (truncating), looked up, and multiplied by sqrt(d):
    ``r = shift_round(RSQRT[m] * SQRTD, SQRTD_FRAC)``, ``shift = RSQRT_FRAC + e/2 - ACT_FRAC``.
    The output of :func:`rmsnorm_q` then carries ACT_FRAC fractional bits.
    """
    ss = np.maximum(np.asarray(sum_sq, dtype=np.int64), 1)
    nbits = _bit_length(ss)
    e = nbits - (RSQRT_M_BITS + 2)
    e = e + (e & 1)  # round the shift up to even so that sqrt(2**e) is a whole shift
    m = np.where(e >= 0, ss >> np.maximum(e, 0), ss << np.maximum(-e, 0))
    sqrt_d = sqrt_d_const(d) if sqrt_d is None else int(sqrt_d)
    r = shift_round(RSQRT_TABLE[m - (1 << RSQRT_M_BITS)] * sqrt_d, SQRTD_FRAC)
    return r, RSQRT_FRAC + e // 2 - ACT_FRAC


def _bit_length(x: np.ndarray) -> np.ndarray:
    """Bit length of positive int64 values (exact, no float rounding)."""
    x = np.asarray(x, dtype=np.int64)
    n = np.zeros(x.shape, dtype=np.int64)
    for step in (32, 16, 8, 4, 2, 1):
        big = (x >> step) > 0
        n = np.where(big, n + step, n)
        x = np.where(big, x >> step, x)
    return n + (x > 0)


def rmsnorm_q(x: np.ndarray, sqrt_d: int | None = None) -> np.ndarray:
    """Normalise each vector (last axis) to unit RMS, without the weight: ACT_FRAC in and out.

    ``sqrt_d`` is the length constant :func:`sqrt_d_const` of the vectors (default: that of
    their length; the core takes it from its descriptor)."""
    x = np.asarray(x, dtype=np.int64)
    ss = np.sum(x * x, axis=-1, keepdims=True)
    r, s = rsqrt_factor(ss, x.shape[-1], sqrt_d)
    return saturate(shift_round_array(x * r, s))


# --- spikes -------------------------------------------------------------------------------------
def spike_count(u: np.ndarray, D: int, delta_q: int) -> np.ndarray:
    """Integer LIF: membrane potential ``u`` (U_FRAC bits) → signed spike count in [-D, D].

    ``count = sign(u) * clip(floor(|u| - delta + 1/2), 0, D)``: round half up on the magnitude
    after the sparsification shift ``delta_q`` (U_FRAC bits, ≥ 0), so δ moves counts toward zero
    for both signs.
    """
    u = np.asarray(u, dtype=np.int64)
    mag = np.clip((np.abs(u) - delta_q + (1 << (U_FRAC - 1))) >> U_FRAC, 0, D)
    return np.where(u < 0, -mag, mag)


def spike_train(counts: np.ndarray, D: int) -> np.ndarray:
    """Expand counts into D timesteps of ternary spikes: |s| ones of sign(s), then zeros.

    Returns an int8 array of shape ``(D,) + counts.shape``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    t = np.arange(D).reshape((D,) + (1,) * counts.ndim)
    return (np.sign(counts) * (t < np.abs(counts))).astype(np.int8)


def ternary_accumulate(trits: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Count form: ``acc = W @ s`` exactly (int64); ``trits`` is (out, in), counts (..., in)."""
    return np.asarray(counts, dtype=np.int64) @ np.asarray(trits, dtype=np.int64).T


def ternary_accumulate_train(trits: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Spike-train form: Σ over timesteps of ``W @ spike_t``, adding or subtracting weights only."""
    w = np.asarray(trits, dtype=np.int64)
    acc = 0
    for spikes in train:
        acc = acc + np.asarray(spikes, dtype=np.int64) @ w.T
    return np.asarray(acc, dtype=np.int64)


def accumulator_bits(fan_in: int, D: int) -> int:
    """Signed accumulator width that cannot overflow: |Σ W s| ≤ fan_in · D."""
    return int(fan_in * D).bit_length() + 1


def float32_exact(fan_in: int, D: int) -> bool:
    """True when a float32 dot product of trits and counts is exact for every summation order.

    Every partial sum is an integer of magnitude ≤ fan_in · D; float32 represents all integers
    below 2**24 exactly, so no rounding can happen anywhere in the sum.
    """
    return fan_in * D < FLOAT32_EXACT


# --- operation kernels ----------------------------------------------------------------------------
# One kernel per instruction of the core (nsllm.isa.opcodes): the integer model
# (nsllm.model.integer) and the core's interpreter (nsllm.host.program) both call these, and the
# RTL units implement exactly these formulas.
def norm_q(x: np.ndarray, mant: np.ndarray, shift: int, sqrt_d: int | None = None
           ) -> np.ndarray:
    """RMSNorm with a weight: ``sat(shift_round(rmsnorm_q(x) · mant, shift))`` (NORM)."""
    return saturate(shift_round(rmsnorm_q(x, sqrt_d) * np.asarray(mant, dtype=np.int64),
                                shift))


def encode_q(xn: np.ndarray, mant: np.ndarray, shift: int, D: int, delta_q: int, *,
             unsigned: bool = False) -> np.ndarray:
    """The I-LIF encoder: membrane ``shift_round(xn · mant, shift)`` (U_FRAC bits) →
    :func:`spike_count` (LINEAR, first half; COUNT of SLA's v) or, with ``unsigned``,
    :func:`spike_count_unsigned` (COUNT of SLA's q and k)."""
    u = shift_round(np.asarray(xn, dtype=np.int64) * np.asarray(mant, dtype=np.int64), shift)
    return spike_count_unsigned(u, D, delta_q) if unsigned else spike_count(u, D, delta_q)


def requant_q(acc: np.ndarray, mant: int, shift: int) -> np.ndarray:
    """Accumulator → activation: ``sat(shift_round(acc · mant, shift))`` (LINEAR, second half)."""
    return saturate(shift_round(np.asarray(acc, dtype=np.int64) * int(mant), shift))


def forget_gate_q(f_pre: np.ndarray, lb) -> np.ndarray:
    """MLGRU forget gate ``lb + shift_round((1 − lb)·σ(f_pre), GATE_FRAC)`` (Q1.15).

    ``lb`` is the layer's lower bound (Q1.15) or ``None`` (σ alone; equal to ``lb = 0``)."""
    sig = sigmoid_q(f_pre)
    if lb is None:
        return sig
    lb = np.asarray(lb, dtype=np.int64)
    return lb + shift_round((GATE_ONE - lb) * sig, GATE_FRAC)


def input_gate_q(i_pre: np.ndarray, f: np.ndarray) -> np.ndarray:
    """MLGRU input ``shift_round(silu(i_pre)·(1 − f), GATE_FRAC)``."""
    return shift_round(silu_q(i_pre) * (GATE_ONE - np.asarray(f, dtype=np.int64)), GATE_FRAC)


def recur_q(f: np.ndarray, h: np.ndarray, i: np.ndarray) -> np.ndarray:
    """MLGRU state ``sat(shift_round(f·h, GATE_FRAC) + i)``."""
    return saturate(shift_round(np.asarray(f, dtype=np.int64) * h, GATE_FRAC) + i)


def mlgru_q(i_pre: np.ndarray, f_pre: np.ndarray, lb, h: np.ndarray) -> np.ndarray:
    """One MLGRU state update (MLGRU): the three kernels above in order."""
    f = forget_gate_q(f_pre, lb)
    return recur_q(f, h, input_gate_q(i_pre, f))


def mul_q(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise product of two activations: ``sat(shift_round(a·b, ACT_FRAC))``."""
    return saturate(shift_round(np.asarray(a, dtype=np.int64) * b, ACT_FRAC))


def silu_gate_q(value: np.ndarray, gated: np.ndarray) -> np.ndarray:
    """``mul_q(value, silu_q(gated))`` (SILUGATE: the GLU and the MLGRU output gate)."""
    return mul_q(value, silu_q(gated))


def add_q(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Residual add ``sat(a + b)`` (ADD)."""
    return saturate(np.asarray(a, dtype=np.int64) + b)


def argmax_q(x: np.ndarray) -> int:
    """Greedy decoding: the first index of the maximum (ARGMAX; ties go to the lowest index)."""
    return int(np.argmax(np.asarray(x)))


# --- spike-based linear attention (SLA) ----------------------------------------------------------
# Per head h of size d_h: unsigned counts q, k ∈ [0, D_q], [0, D_k], signed v ∈ [−D_v, D_v];
# state S (d_h × d_h) of SLA_STATE_BITS signed integers with SLA_STATE_FRAC fractional bits;
# S ← S − shift_round(S, b_h) + ((k_i·v_j) << SLA_STATE_FRAC); o_j = Σ_i q_i·S_ij.
SLA_STATE_BITS = 24  #: signed width of one state entry: three entries fill a 72-bit URAM word
SLA_STATE_FRAC = 10  #: fractional bits of a state entry (one k·v count product = 2**10)
SLA_STATE_MAX = (1 << (SLA_STATE_BITS - 1)) - 1
SLA_MAX_COUNT = 15  #: largest D of a q, k or v count (a count is at most 4 bits: 4 shift-adds)
SLA_MAX_DECAY_SHIFT = 12  #: largest decay shift b (γ = 1 − 2**−b); the state bound limits it too


def spike_count_unsigned(u: np.ndarray, D: int, delta_q: int) -> np.ndarray:
    """Unsigned I-LIF (SLA's q and k): ``clip(floor(u − δ + 1/2), 0, D)``, negative u → 0.

    For u ≥ 0 this is the magnitude of :func:`spike_count` (same round half up after the shift
    ``delta_q``, U_FRAC bits); a negative membrane potential gives no spike instead of a negative
    count, so every product with the count is a masked add.
    """
    u = np.asarray(u, dtype=np.int64)
    return np.clip((u - delta_q + (1 << (U_FRAC - 1))) >> U_FRAC, 0, D)


def count_times(c: np.ndarray, x: np.ndarray, D: int) -> np.ndarray:
    """``c · x`` for an unsigned count ``c ∈ [0, D]`` as the hardware forms it, multiplier-free:
    ``Σ_b [bit b of c] · (x << b)`` over the ``D.bit_length()`` bits of the count (D = 1: a mask;
    D = 2 or 3: two masked shift-adds). ``c`` and ``x`` broadcast against each other."""
    c = np.asarray(c, dtype=np.int64)
    x = np.asarray(x, dtype=np.int64)
    out = np.zeros(np.broadcast_shapes(c.shape, x.shape), dtype=np.int64)
    for b in range(int(D).bit_length()):
        out += np.where((c >> b) & 1, x << b, 0)
    return out


def sla_state_bound(D_k: int, D_v: int, b: int) -> int:
    """Largest |S| the update can reach from S = 0 with |k| ≤ D_k, |v| ≤ D_v and decay shift b.

    With P = D_k·D_v·2**SLA_STATE_FRAC and ``|S − shift_round(S, b)| ≤ (1 − 2**−b)·|S| + 1/2``,
    induction gives ``|S_t| ≤ P·2**b + 2**(b−1)`` (docs/numerics.md, "SLA state bound").
    """
    return (D_k * D_v << (SLA_STATE_FRAC + b)) + (1 << (b - 1))


def sla_read_bits(head_dim: int, D_q: int) -> int:
    """Signed width of a read-out ``o_j = Σ_i q_i S_ij`` that cannot overflow:
    ``|o| ≤ d_h · D_q · SLA_STATE_MAX``."""
    return int(head_dim * D_q * SLA_STATE_MAX).bit_length() + 1


def wrap(x, bits: int):
    """``x`` kept in ``bits``-bit two's complement (what a register of that width holds)."""
    half = 1 << (bits - 1)
    return ((np.asarray(x, dtype=np.int64) + half) & ((1 << bits) - 1)) - half


def sla_update(S: np.ndarray, k: np.ndarray, v: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """One token's state update of every head: ``S − shift_round(S, b_h) + ((k_i v_j) << F)``.

    ``S`` is (..., H, d_h, d_h) int64, ``k`` (..., H, d_h) unsigned counts, ``v`` (..., H, d_h)
    signed counts, ``shifts`` (H,) the decay shifts b_h. Row i of the state gets ``k_i·v`` at
    weight 2**F — in hardware the masked shift-adds of :func:`count_times` (equal to the product,
    test ``test_count_times_is_the_product_by_shift_and_add``). No saturation: the configuration
    guarantees :func:`sla_state_bound` ≤ SLA_STATE_MAX, so the result is kept in SLA_STATE_BITS
    by :func:`wrap` — the identity for every model, and what the core's 24-bit state memory does
    for a program that breaks the bound (so core and interpreter agree on any input).
    """
    S = np.array(S, dtype=np.int64)  # a copy: the caller's state is not modified
    for h, b in enumerate(np.asarray(shifts, dtype=np.int64).tolist()):
        S[..., h, :, :] -= shift_round(S[..., h, :, :], b)
    kv = np.asarray(k, dtype=np.int64)[..., :, None] * np.asarray(v, dtype=np.int64)[..., None, :]
    return wrap(S + (kv << SLA_STATE_FRAC), SLA_STATE_BITS)


def sla_read(S: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Read-out of every head: ``o_j = Σ_i q_i·S_ij`` — in hardware, for each bit b of the count,
    the sum of the rows of S where that bit of q is set, shifted by b (:func:`count_times`).

    ``S`` is (..., H, d_h, d_h), ``q`` (..., H, d_h) unsigned counts; result (..., H, d_h) int64
    of at most :func:`sla_read_bits` bits, SLA_STATE_FRAC fractional bits. Computed as a float64
    product, exact: every partial sum is an integer below d_h·D_q·2**23 < 2**53.
    """
    S = np.asarray(S)
    q = np.asarray(q)
    o = np.matmul(q.astype(np.float64)[..., None, :], S.astype(np.float64))[..., 0, :]
    return o.astype(np.int64)


def head_preshift_q(o: np.ndarray, heads: int) -> np.ndarray:
    """Each head of a wide read-out (…, H·d_h) brought into activation range, scale-free.

    A read-out has up to :func:`sla_read_bits` bits, too wide for :func:`rmsnorm_q`'s exact sum of
    squares. Each head is shifted by the amount found from the bit length of the OR of its
    magnitudes (= that of the largest): ``e = max(0, bits − (ACT_BITS − 2))``,
    ``o' = shift_round(o, e)`` (|o'| ≤ 2**(ACT_BITS−2)). What the core's SLA instruction writes.
    """
    o = np.asarray(o, dtype=np.int64)
    shape = o.shape
    oh = o.reshape(shape[:-1] + (heads, shape[-1] // heads))
    mag = np.bitwise_or.reduce(np.abs(oh), axis=-1, keepdims=True)
    e = np.maximum(_bit_length(mag) - (ACT_BITS - 2), 0)
    return shift_round_array(oh, np.broadcast_to(e, oh.shape)).reshape(shape)


def head_rmsnorm_q(o: np.ndarray, heads: int) -> np.ndarray:
    """Unit-RMS normalisation of each head of a wide read-out (…, H·d_h) → ACT_FRAC activations:
    :func:`head_preshift_q`, then :func:`rmsnorm_q` over each head. RMSNorm is scale-free, so the
    shift changes only the rounding, never the scale; a head that fits already (e = 0) is
    normalised exactly as an activation vector. (The core: SLA, then one NORM per head.)
    """
    o = np.asarray(o)
    heads_last = o.shape[:-1] + (heads, o.shape[-1] // heads)
    return rmsnorm_q(head_preshift_q(o, heads).reshape(heads_last)).reshape(o.shape)


def sla_q(S: np.ndarray, q: np.ndarray, k: np.ndarray, v: np.ndarray, shifts: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """The SLA instruction on one token: :func:`sla_update` of the state (H, d_h, d_h) with the
    counts (H·d_h,) of k and v, :func:`sla_read` with q, :func:`head_preshift_q` of the read-out.
    Returns (new state, pre-shifted read-out (H·d_h,))."""
    heads, dh = np.shape(S)[-3], np.shape(S)[-1]
    qh, kh, vh = (np.asarray(c, dtype=np.int64).reshape(heads, dh) for c in (q, k, v))
    S = sla_update(S, kh, vh, shifts)
    return S, head_preshift_q(sla_read(S, qh).reshape(-1), heads)
