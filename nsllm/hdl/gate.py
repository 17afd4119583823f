"""Elementwise gating: the SiLU gate (GLU and MLGRU output gate) and the residual adder.

Both are pipelines with one global stall: every stage register advances when the output slot is
free or being taken (``advance = ~o_stream.valid | o_stream.ready``), and the input is accepted
exactly when the pipeline advances. This is full rate and correct under any pattern of input gaps
and output back-pressure. A ``last`` bit travels with each element so vectors stay framed.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nsllm.model import numerics as nx

from .fixed_point import (
    ACT_SHAPE,
    saturate,
    shift_round,
    sigmoid_index,
    sigmoid_memory,
    sigmoid_select,
)
from .registry import ComponentSpec

__all__ = ["SiluGateUnit", "ResidualAdder", "GATE_IN", "RESIDUAL_IN", "ACT_OUT", "COMPONENTS"]

#: SiLU gate input: ``value * silu(gated)``.
GATE_IN = data.StructLayout({"value": ACT_SHAPE, "gated": ACT_SHAPE, "last": 1})
#: Residual adder input: ``a + b``.
RESIDUAL_IN = data.StructLayout({"a": ACT_SHAPE, "b": ACT_SHAPE, "last": 1})
#: One activation with its end-of-vector flag.
ACT_OUT = data.StructLayout({"x": ACT_SHAPE, "last": 1})


def silu(x, sigma):
    """``numerics.silu_q`` given σ(x) in Q1.15: ``shift_round(x * σ, GATE_FRAC)``, ACT_SHAPE wide.

    |silu(x)| ≤ |x| (σ ≤ 1), so the result always fits the activation width.
    """
    return shift_round(x * sigma, nx.GATE_FRAC)[: nx.ACT_BITS].as_signed()


class SiluGateUnit(wiring.Component):
    """``saturate(shift_round(value * silu_q(gated), ACT_FRAC))`` per element.

    Serves the GLU (``z = mul(silu(gate), up)``: ``value = up``, ``gated = gate``) and the MLGRU
    output gate (``o_in = mul(gn, silu(h))``: ``value = gn``, ``gated = h``); ``mul`` is
    commutative, so the operand order does not change the result.

    Latency 3 cycles (σ ROM read, SiLU product, gate product); one element per cycle.

    Attributes
    ----------
    i_stream : In(stream.Signature(GATE_IN))
    o_stream : Out(stream.Signature(ACT_OUT))
    """

    #: Cycles from an element taken on ``i_stream`` to its result on ``o_stream``.
    latency = 3

    i_stream: In(stream.Signature(GATE_IN))
    o_stream: Out(stream.Signature(ACT_OUT))

    def elaborate(self, platform):
        m = Module()
        advance = Signal()
        m.d.comb += [advance.eq(~self.o_stream.valid | self.o_stream.ready),
                     self.i_stream.ready.eq(advance)]

        m.submodules.sigmoid = rom = sigmoid_memory()
        rd = rom.read_port(domain="sync")
        addr, below, above = sigmoid_index(self.i_stream.p.gated)
        m.d.comb += [rd.addr.eq(addr), rd.en.eq(advance)]

        # stage 1: σ(gated) arrives from the ROM
        v1 = Signal()
        s1 = Signal(data.StructLayout({"value": ACT_SHAPE, "gated": ACT_SHAPE, "below": 1,
                                       "above": 1, "last": 1}))
        # stage 2: silu(gated)
        v2 = Signal()
        s2 = Signal(data.StructLayout({"value": ACT_SHAPE, "silu": ACT_SHAPE, "last": 1}))
        # stage 3: the output register
        v3 = Signal()
        s3 = Signal(ACT_OUT)

        with m.If(advance):
            m.d.sync += [
                v1.eq(self.i_stream.valid),
                s1.value.eq(self.i_stream.p.value),
                s1.gated.eq(self.i_stream.p.gated),
                s1.below.eq(below),
                s1.above.eq(above),
                s1.last.eq(self.i_stream.p.last),
                v2.eq(v1),
                s2.value.eq(s1.value),
                s2.silu.eq(silu(s1.gated, sigmoid_select(rd.data, s1.below, s1.above))),
                s2.last.eq(s1.last),
                v3.eq(v2),
                s3.x.eq(saturate(shift_round(s2.value * s2.silu, nx.ACT_FRAC))),
                s3.last.eq(s2.last),
            ]
        m.d.comb += [self.o_stream.valid.eq(v3), self.o_stream.payload.eq(s3)]
        return m


class ResidualAdder(wiring.Component):
    """``saturate(a + b)`` per element (``IntegerArithmetic.add``); latency 1, full rate.

    Attributes
    ----------
    i_stream : In(stream.Signature(RESIDUAL_IN))
    o_stream : Out(stream.Signature(ACT_OUT))
    """

    #: Cycles from an element taken on ``i_stream`` to its result on ``o_stream``.
    latency = 1

    i_stream: In(stream.Signature(RESIDUAL_IN))
    o_stream: Out(stream.Signature(ACT_OUT))

    def elaborate(self, platform):
        m = Module()
        advance = Signal()
        m.d.comb += [advance.eq(~self.o_stream.valid | self.o_stream.ready),
                     self.i_stream.ready.eq(advance)]
        with m.If(advance):
            m.d.sync += [
                self.o_stream.valid.eq(self.i_stream.valid),
                self.o_stream.p.x.eq(saturate(self.i_stream.p.a + self.i_stream.p.b)),
                self.o_stream.p.last.eq(self.i_stream.p.last),
            ]
        return m


COMPONENTS = {
    "SiluGateUnit": ComponentSpec(
        "SiluGateUnit", sim=SiluGateUnit, board=SiluGateUnit,
        summary="value * silu(gated): GLU and MLGRU output gate"),
    "ResidualAdder": ComponentSpec(
        "ResidualAdder", sim=ResidualAdder, board=ResidualAdder,
        summary="saturating residual add"),
}
