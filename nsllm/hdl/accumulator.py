"""Ternary accumulator array: ``acc[b][i] = Σ_j W[i, j] · s_b[j]`` with adders only.

Each input beat carries one weight column ``j`` restricted to ``lanes`` output rows (trits from
:class:`~nsllm.hdl.trits.TritUnpacker`) and the spike counts ``s_b[j]`` of the same input
neuron for each of ``batch`` sequences, so one weight fetch serves the whole batch. Every lane
adds, subtracts or skips the count: there is no multiplier anywhere. ``first`` clears the
accumulators before the beat is added; ``last`` emits them after it.

Overflow is impossible by construction: the accumulator width is
:func:`nsllm.model.numerics.accumulator_bits` ``(fan_in, max_D)``, which holds ``±fan_in·max_D``,
the largest sum of at most ``fan_in`` terms of magnitude at most ``max_D``. The two premises
are checked in hardware: a count outside ``[−max_D, max_D]``, a trit of −2, or more than
``fan_in`` beats in one group set the sticky ``error`` output (and such a beat's out-of-contract
term is dropped, so the accumulators still cannot wrap).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nsllm.model import numerics as nx

from .registry import ComponentSpec
from .trits import TRIT

__all__ = ["TernaryAccumulatorArray", "count_shape", "COMPONENTS"]


def count_shape(max_D: int):
    """Signed shape of a spike count in ``[−max_D, max_D]``."""
    return signed(max_D.bit_length() + 1)


class TernaryAccumulatorArray(wiring.Component):
    """``batch × lanes`` accumulators fed one weight column per beat, full rate.

    Parameters
    ----------
    lanes : int
        Output rows handled in parallel (trits per beat).
    batch : int
        Sequences sharing each weight column.
    fan_in : int
        Most beats (input columns) in one accumulation group.
    max_D : int
        Largest spike-count magnitude (the layer's D, or the largest D the build serves).

    Attributes
    ----------
    i_stream : In(stream.Signature(in_layout))
        ``trits``: ``lanes`` trits of the column; ``counts``: ``batch`` spike counts;
        ``first`` / ``last``: the beat starts / ends an accumulation group.
    o_stream : Out(stream.Signature(out_layout))
        ``acc[b][i]``: the finished sums, one beat per group.
    error : Out(1)
        Sticky: an input broke the contract that makes overflow impossible (see module doc).
    acc_bits : int
        Accumulator width, ``numerics.accumulator_bits(fan_in, max_D)``.

    The result appears one cycle after the ``last`` beat is accepted; while it waits for the
    consumer the input is stalled, otherwise one beat is accepted per cycle.
    """

    def __init__(self, lanes: int = 8, batch: int = 2, fan_in: int = 64, max_D: int = 15):
        for name, value in (("lanes", lanes), ("batch", batch), ("fan_in", fan_in)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(max_D, int) or not 1 <= max_D <= nx.MAX_TIMESTEPS:
            raise ValueError(f"max_D must be an integer in [1, {nx.MAX_TIMESTEPS}], not {max_D!r}")
        self.lanes, self.batch, self.fan_in, self.max_D = lanes, batch, fan_in, max_D
        self.acc_bits = nx.accumulator_bits(fan_in, max_D)
        self.count_shape = count_shape(max_D)
        self.in_layout = data.StructLayout({
            "trits": data.ArrayLayout(TRIT, lanes),
            "counts": data.ArrayLayout(self.count_shape, batch),
            "first": 1,
            "last": 1,
        })
        self.out_layout = data.StructLayout({
            "acc": data.ArrayLayout(data.ArrayLayout(signed(self.acc_bits), lanes), batch),
        })
        super().__init__({
            "i_stream": In(stream.Signature(self.in_layout)),
            "o_stream": Out(stream.Signature(self.out_layout)),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.i_stream.payload
        # lanes as plain Values, taken once (each view access builds a new view object)
        trits = [p.trits[i] for i in range(self.lanes)]
        counts = [p.counts[b] for b in range(self.batch)]
        # one register per accumulator (not slices of the wide payload signal, which makes
        # elaboration quadratic in its width); the output reads them directly
        acc = [[Signal(signed(self.acc_bits), name=f"acc_{b}_{i}") for i in range(self.lanes)]
               for b in range(self.batch)]
        m.d.comb += Value.cast(self.o_stream.payload.acc).eq(Cat(a for row in acc for a in row))

        take = Signal()
        m.d.comb += [
            self.i_stream.ready.eq(~self.o_stream.valid | self.o_stream.ready),
            take.eq(self.i_stream.valid & self.i_stream.ready),
        ]

        # contract checks: count range, trit range, group length
        beats = Signal(range(self.fan_in + 2))  # beats in the current group, saturating
        beats_now = Mux(p.first, 0, beats) + 1
        count_ok = Signal(self.batch)
        for b in range(self.batch):
            c = counts[b]
            m.d.comb += count_ok[b].eq((c >= -self.max_D) & (c <= self.max_D))
        trit_ok = Signal()
        m.d.comb += trit_ok.eq(~Cat(t == -2 for t in trits).any())
        group_ok = beats_now <= self.fan_in
        beat_ok = Signal()
        m.d.comb += beat_ok.eq(count_ok.all() & trit_ok & group_ok)

        with m.If(take):
            m.d.sync += beats.eq(Mux(beats_now > self.fan_in, self.fan_in + 1, beats_now))
            with m.If(~beat_ok):
                m.d.sync += self.error.eq(1)
            for b in range(self.batch):
                # per batch row: the count (zero for an out-of-contract beat) and its negation
                pos = Signal(self.count_shape, name=f"pos_count_{b}")
                neg = Signal(signed(self.count_shape.width + 1), name=f"neg_count_{b}")
                m.d.comb += [pos.eq(Mux(beat_ok, counts[b], 0)), neg.eq(-pos)]
                for i in range(self.lanes):
                    t = trits[i]  # 01 → +1, 11 → −1, 00 → 0 (10 is refused by beat_ok)
                    # add, subtract or skip: the only arithmetic is one adder per accumulator
                    term = Mux(t[1], neg, Mux(t[0], pos, 0))
                    base = Mux(p.first, 0, acc[b][i])
                    m.d.sync += acc[b][i].eq(base + term)

        with m.If(take & p.last):
            m.d.sync += self.o_stream.valid.eq(1)
        with m.Elif(self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        return m


COMPONENTS = {
    "TernaryAccumulatorArray": ComponentSpec(
        "TernaryAccumulatorArray",
        sim=lambda: TernaryAccumulatorArray(lanes=8, batch=2, fan_in=64, max_D=15),
        # 256 lanes = one 512-bit word of 2-bit trits; fan-in 8192 covers the 2.7B model's
        # 6912-wide MLP down projection; D up to 15, the largest of numerics.SPIKE_COUNT_SET
        board=lambda: TernaryAccumulatorArray(lanes=256, batch=4, fan_in=8192, max_D=15),
        summary="multiplier-free ternary accumulate: lanes × batch add/subtract/skip",
    ),
}
