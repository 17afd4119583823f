"""The spike-based linear attention (SLA) state lanes: one state row's entries per beat.

For ``lanes`` entries ``S_ij`` of row i of a head's state (``numerics.sla_update`` and
``numerics.sla_read``, element by element)::

    S'_ij = wrap24(S_ij − shift_round(S_ij, b) + (count_times(k_i, v_j) << SLA_STATE_FRAC))
    t_ij  = count_times(q_i, S'_ij)                 # row i's term of the read-out o_j

``count_times(c, x)`` is the product of an unsigned count and ``x`` as masked shift-adds over
the count's bits (``numerics.count_times``): no multiplier touches q, k, v or S. The decay is
the one rounding rule (``shift_round``) by a run-time shift — a barrel shifter, a subtraction.
The state needs no saturation (``numerics.sla_state_bound``); it is kept in 24 bits, the width
of a state entry, as the state memory does (``numerics.wrap``).

The core's :class:`~nsllm.hdl.core.sla.SLAUnit` streams every row of every head through these
lanes once per token and sums the ``t`` terms into its read-out accumulators.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nsllm.model import numerics as nx

from .fixed_point import shift_round_by
from .registry import ComponentSpec

__all__ = ["COMPONENTS", "COUNT_BITS", "SLAStateLanes", "STATE_SHAPE", "count_times",
           "read_term_bits"]

#: An SLA state entry.
STATE_SHAPE = signed(nx.SLA_STATE_BITS)
#: Bits of a q or k count (unsigned) and of |v|: counts are at most SLA_MAX_COUNT.
COUNT_BITS = nx.SLA_MAX_COUNT.bit_length()
#: Width of the decay shift b (1 … SLA_MAX_DECAY_SHIFT).
SHIFT_BITS = nx.SLA_MAX_DECAY_SHIFT.bit_length()


def read_term_bits() -> int:
    """Signed width of ``count_times(q, S)`` for a count of COUNT_BITS bits and a state entry."""
    return nx.SLA_STATE_BITS + COUNT_BITS


def count_times(c, x, bits: int = COUNT_BITS) -> Value:
    """``numerics.count_times`` in gates: ``Σ_b [bit b of c] · (x << b)`` over ``bits`` bits of
    the unsigned count ``c`` — masked shift-adds, no multiplier."""
    c, x = Value.cast(c), Value.cast(x)
    terms = [Mux(c[b], x << b, 0) for b in range(bits)]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


class SLAStateLanes(wiring.Component):
    """``lanes`` entries of one SLA state row per beat: decay, ``k_i·v_j`` added, the read term
    ``q_i·S'_ij`` (see the module docstring). Pipelined (latency 2), full rate, global stall.

    Attributes
    ----------
    i_stream : In(stream.Signature(StructLayout({"s", "v", "k", "q", "shift"})))
        ``s``: the row's entries (STATE_SHAPE × lanes); ``v``: v_j of their columns (signed
        counts); ``k``, ``q``: the row's counts k_i, q_i (unsigned); ``shift``: the head's b.
    o_stream : Out(stream.Signature(StructLayout({"s", "t"})))
        ``s``: the updated entries S'; ``t``: ``count_times(q_i, S'_ij)`` per lane.
    """

    #: Cycles from a beat taken on ``i_stream`` to its results on ``o_stream``.
    latency = 2

    def __init__(self, lanes: int):
        if not isinstance(lanes, int) or lanes < 1:
            self._MustUse__silence = True
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self.lanes = lanes
        self.in_layout = data.StructLayout({
            "s": data.ArrayLayout(STATE_SHAPE, lanes),
            "v": data.ArrayLayout(signed(COUNT_BITS + 1), lanes),
            "k": unsigned(COUNT_BITS), "q": unsigned(COUNT_BITS), "shift": unsigned(SHIFT_BITS)})
        self.out_layout = data.StructLayout({
            "s": data.ArrayLayout(STATE_SHAPE, lanes),
            "t": data.ArrayLayout(signed(read_term_bits()), lanes)})
        super().__init__({
            "i_stream": In(stream.Signature(self.in_layout)),
            "o_stream": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        advance = Signal()
        m.d.comb += [advance.eq(~o.valid | o.ready), i.ready.eq(advance)]
        v1 = Signal()
        q1 = Signal(unsigned(COUNT_BITS))
        s1 = Signal(data.ArrayLayout(STATE_SHAPE, self.lanes))
        with m.If(advance):
            m.d.sync += [v1.eq(i.valid), q1.eq(i.p.q), o.valid.eq(v1)]
            for lane in range(self.lanes):
                s = i.p.s[lane]
                decayed = s - shift_round_by(s, i.p.shift, nx.SLA_MAX_DECAY_SHIFT)
                kv = count_times(i.p.k, i.p.v[lane])
                new = decayed + (kv << nx.SLA_STATE_FRAC)
                m.d.sync += [s1[lane].eq(new[:nx.SLA_STATE_BITS].as_signed()),
                             o.p.s[lane].eq(s1[lane]),
                             o.p.t[lane].eq(count_times(q1, s1[lane]))]
        return m


COMPONENTS = {
    "SLAStateLanes": ComponentSpec(
        "SLAStateLanes", sim=lambda: SLAStateLanes(8), board=lambda: SLAStateLanes(32),
        summary="SLA state row lanes: decay by shift-subtract, k·v and q·S by masked "
                "shift-adds; no multiplier"),
}
