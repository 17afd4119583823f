"""The MLGRU state unit: forget gate, input gate and recurrence of one channel per cycle.

Per channel it computes exactly ``IntegerArithmetic.forget_gate``, ``input_gate`` and ``recur``::

    f     = lb + shift_round((GATE_ONE - lb) * sigmoid_q(f_pre), GATE_FRAC)
    i     = shift_round(silu_q(i_pre) * (GATE_ONE - f), GATE_FRAC)
    h_new = saturate(shift_round(f * h, GATE_FRAC) + i)

A layer without a lower bound (the first one) is driven with ``lb = 0``, which gives ``f = σ``
exactly (``shift_round(GATE_ONE * σ, GATE_FRAC) = σ``).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nsllm.model import numerics as nx

from .fixed_point import (
    ACT_SHAPE,
    GATE_SHAPE,
    saturate,
    shift_round,
    sigmoid_index,
    sigmoid_memory,
    sigmoid_select,
)
from .gate import silu
from .registry import ComponentSpec

__all__ = ["MLGRUStateUnit", "MLGRU_IN", "MLGRU_OUT", "COMPONENTS"]

#: Per channel input: gate pre-activations, the layer's lower bound (Q1.15, in [0, 1]) and h_{t-1}.
MLGRU_IN = data.StructLayout({
    "f_pre": ACT_SHAPE, "i_pre": ACT_SHAPE, "lb": GATE_SHAPE, "h": ACT_SHAPE, "last": 1,
})
#: Per channel output: forget gate and input gate (Q1.15 / ACT_FRAC) and the new state h_t.
MLGRU_OUT = data.StructLayout({"f": GATE_SHAPE, "i": ACT_SHAPE, "h": ACT_SHAPE, "last": 1})


class MLGRUStateUnit(wiring.Component):
    """One MLGRU channel update per cycle, pipelined (latency 4), with a global stall.

    The lower bound is a payload field so one unit serves every layer (the sequencer streams the
    layer's ``lb`` vector beside the gate pre-activations). ``lb`` must lie in [0, GATE_ONE], which
    ``IntegerParams.lower_bounds`` guarantees (a cumulative softmax in [0, 1]); then
    ``f`` ∈ [0, GATE_ONE], ``|i| ≤ |silu(i_pre)|`` and every intermediate fits its register.

    Attributes
    ----------
    i_stream : In(stream.Signature(MLGRU_IN))
    o_stream : Out(stream.Signature(MLGRU_OUT))
    """

    #: Cycles from an element taken on ``i_stream`` to its result on ``o_stream``.
    latency = 4

    i_stream: In(stream.Signature(MLGRU_IN))
    o_stream: Out(stream.Signature(MLGRU_OUT))

    def elaborate(self, platform):
        m = Module()
        advance = Signal()
        m.d.comb += [advance.eq(~self.o_stream.valid | self.o_stream.ready),
                     self.i_stream.ready.eq(advance)]

        # one table, two read ports (a dual-port ROM): σ(f_pre) and σ(i_pre)
        m.submodules.sigmoid = rom = sigmoid_memory()
        rd_f = rom.read_port(domain="sync")
        rd_i = rom.read_port(domain="sync")
        p = self.i_stream.p
        addr_f, below_f, above_f = sigmoid_index(p.f_pre)
        addr_i, below_i, above_i = sigmoid_index(p.i_pre)
        m.d.comb += [rd_f.addr.eq(addr_f), rd_f.en.eq(advance),
                     rd_i.addr.eq(addr_i), rd_i.en.eq(advance)]

        # stage 1: both σ arrive from the ROM
        v1 = Signal()
        s1 = Signal(data.StructLayout({
            "i_pre": ACT_SHAPE, "lb": GATE_SHAPE, "h": ACT_SHAPE, "last": 1,
            "below_f": 1, "above_f": 1, "below_i": 1, "above_i": 1}))
        sig_f = sigmoid_select(rd_f.data, s1.below_f, s1.above_f)
        sig_i = sigmoid_select(rd_i.data, s1.below_i, s1.above_i)
        # stage 2: forget gate and silu(i_pre)
        v2 = Signal()
        s2 = Signal(data.StructLayout({
            "f": GATE_SHAPE, "silu": ACT_SHAPE, "h": ACT_SHAPE, "last": 1}))
        # stage 3: input gate and the decayed state
        v3 = Signal()
        s3 = Signal(data.StructLayout({
            "f": GATE_SHAPE, "i": ACT_SHAPE, "fh": ACT_SHAPE, "last": 1}))
        # stage 4: output register
        v4 = Signal()
        s4 = Signal(MLGRU_OUT)

        gate_one = nx.GATE_ONE
        with m.If(advance):
            m.d.sync += [
                v1.eq(self.i_stream.valid),
                s1.i_pre.eq(p.i_pre), s1.lb.eq(p.lb), s1.h.eq(p.h), s1.last.eq(p.last),
                s1.below_f.eq(below_f), s1.above_f.eq(above_f),
                s1.below_i.eq(below_i), s1.above_i.eq(above_i),

                v2.eq(v1),
                s2.f.eq(s1.lb + shift_round((gate_one - s1.lb) * sig_f, nx.GATE_FRAC)),
                s2.silu.eq(silu(s1.i_pre, sig_i)),
                s2.h.eq(s1.h), s2.last.eq(s1.last),

                v3.eq(v2),
                s3.f.eq(s2.f),
                s3.i.eq(shift_round(s2.silu * (gate_one - s2.f), nx.GATE_FRAC)),
                # |f·h| ≤ |h| because f ≤ GATE_ONE: fits the activation width
                s3.fh.eq(shift_round(s2.f * s2.h, nx.GATE_FRAC)),
                s3.last.eq(s2.last),

                v4.eq(v3),
                s4.f.eq(s3.f), s4.i.eq(s3.i),
                s4.h.eq(saturate(s3.fh + s3.i)),
                s4.last.eq(s3.last),
            ]
        m.d.comb += [self.o_stream.valid.eq(v4), self.o_stream.payload.eq(s4)]
        return m


COMPONENTS = {
    "MLGRUStateUnit": ComponentSpec(
        "MLGRUStateUnit", sim=MLGRUStateUnit, board=MLGRUStateUnit,
        summary="MLGRU forget/input gates and h = f*h + i per channel"),
}
