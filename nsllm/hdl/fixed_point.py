"""Fixed-point building blocks shared by the elementwise units (RMSNorm, MLGRU, gates).

Each helper is the hardware twin of one primitive of :mod:`nsllm.model.numerics` and is tested
against it: :func:`shift_round` / :func:`shift_round_by` ↔ ``numerics.shift_round``,
:func:`saturate` ↔ ``numerics.saturate``, the sigmoid helpers ↔ ``numerics.sigmoid_q``.
"""

from __future__ import annotations

from amaranth.hdl import Const, Mux, Value, signed, unsigned
from amaranth.lib.memory import Memory

from nsllm.model import numerics as nx

__all__ = [
    "GATE_SHAPE",
    "ACT_SHAPE",
    "saturate",
    "shift_round",
    "shift_round_by",
    "sigmoid_memory",
    "sigmoid_index",
    "sigmoid_select",
]

#: An activation between units: signed ACT_BITS with ACT_FRAC fractional bits.
ACT_SHAPE = signed(nx.ACT_BITS)
#: A gate value in [0, GATE_ONE] (Q1.15 including 1.0 itself).
GATE_SHAPE = unsigned(nx.GATE_FRAC + 1)


def shift_round(value, s: int) -> Value:
    """``numerics.shift_round`` by a constant: round-half-up arithmetic shift (left if < 0)."""
    value = Value.cast(value)
    if s > 0:
        return (value + Const(1 << (s - 1), s)) >> s
    if s == 0:
        return value
    return value << -s


def shift_round_by(value, s: Value, max_shift: int) -> Value:
    """``numerics.shift_round`` by a run-time amount ``s`` in [0, max_shift] (unsigned ``s``).

    Uses ``((value >> (s - 1)) + 1) >> 1``, equal to ``(value + 2**(s-1)) >> s`` for s ≥ 1, which
    avoids building the wide constant ``2**(s-1)``; ``s = 0`` passes ``value`` through.
    Negative (left) shifts are the caller's business (see ``norm.ChannelScale``).
    """
    value = Value.cast(value)
    s = Value.cast(s)
    s_minus_1 = Value.cast(s - 1)[: max(1, (max_shift - 1).bit_length())]
    return Mux(s == 0, value, ((value >> s_minus_1) + 1) >> 1)


def saturate(value, bits: int = nx.ACT_BITS) -> Value:
    """``numerics.saturate``: clamp a signed value to ``bits`` signed bits."""
    value = Value.cast(value)
    hi, lo = (1 << (bits - 1)) - 1, -(1 << (bits - 1))
    clamped = Mux(value > hi, hi, Mux(value < lo, lo, value))
    return clamped[:bits].as_signed()


# --- sigmoid table ------------------------------------------------------------------------------
def sigmoid_memory() -> Memory:
    """A ROM holding ``numerics.SIGMOID_TABLE`` (``SIG_ENTRIES`` entries, unsigned)."""
    table = [int(v) for v in nx.SIGMOID_TABLE]
    return Memory(shape=unsigned(max(table).bit_length()), depth=len(table), init=table)


def sigmoid_index(x) -> tuple[Value, Value, Value]:
    """Table address and saturation flags of ``sigmoid_q(x)`` for an ACT_FRAC activation ``x``.

    Returns ``(address, below, above)``: ``below`` when the index is under -8 (σ = 0), ``above``
    when it is at or over +8 (σ = GATE_ONE); otherwise the ROM entry at ``address`` is σ.
    """
    idx = shift_round(x, nx.ACT_FRAC - nx.SIG_IN_FRAC)
    below = idx < nx.SIG_IDX_MIN
    above = idx > nx.SIG_IDX_MAX
    addr = (idx - nx.SIG_IDX_MIN)[: (nx.SIG_ENTRIES - 1).bit_length()]
    return addr, below, above


def sigmoid_select(entry, below, above) -> Value:
    """σ in Q1.15 from the ROM entry and the flags of :func:`sigmoid_index` (GATE_SHAPE wide)."""
    return Mux(below, 0, Mux(above, nx.GATE_ONE, entry))[: GATE_SHAPE.width]
