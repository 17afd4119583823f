"""On-device greedy decoding: the index of the first maximum of a logit vector."""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .fixed_point import ACT_SHAPE
from .registry import ComponentSpec

__all__ = ["Argmax", "LOGIT_IN", "argmax_layout", "COMPONENTS"]

#: One logit (ACT_FRAC fixed point) with its end-of-vector flag.
LOGIT_IN = data.StructLayout({"x": ACT_SHAPE, "last": 1})


def argmax_layout(vocab_max: int) -> data.StructLayout:
    """Result layout: the token index and the maximum logit."""
    return data.StructLayout({"index": unsigned(max(1, (vocab_max - 1).bit_length())),
                              "value": ACT_SHAPE})


class Argmax(wiring.Component):
    """``graph.greedy``: index of the first maximum logit (ties go to the lowest index).

    Logits stream in one per cycle; ``last`` closes the vector and the result (index and value)
    is offered on ``o_stream`` one cycle later. Input is held off only while an unaccepted result
    is waiting. A vector longer than ``vocab_max`` is cut: logit ``vocab_max`` is treated as the
    last one (its index would not fit the result).

    Parameters
    ----------
    vocab_max : int
        Largest vocabulary; sets the index width. Board: 32000; sim: 256.

    Attributes
    ----------
    i_stream : In(stream.Signature(LOGIT_IN))
    o_stream : Out(stream.Signature(argmax_layout(vocab_max)))
    """

    def __init__(self, vocab_max: int):
        if not isinstance(vocab_max, int) or vocab_max < 1:
            self._MustUse__silence = True  # no "created but never used" warning
            raise ValueError(f"vocab_max must be a positive integer, not {vocab_max!r}")
        self.vocab_max = vocab_max
        super().__init__({
            "i_stream": In(stream.Signature(LOGIT_IN)),
            "o_stream": Out(stream.Signature(argmax_layout(vocab_max))),
        })

    def elaborate(self, platform):
        m = Module()
        index = Signal(range(self.vocab_max))  # index of the incoming logit
        best = Signal(ACT_SHAPE)
        best_index = Signal.like(index)
        x = self.i_stream.p.x

        m.d.comb += self.i_stream.ready.eq(~self.o_stream.valid)
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)

        with m.If(self.i_stream.valid & self.i_stream.ready):
            first = index == 0
            # strictly greater keeps the earliest of equal maxima
            take = first | (x > best)
            with m.If(take):
                m.d.sync += [best.eq(x), best_index.eq(index)]
            with m.If(self.i_stream.p.last | (index == self.vocab_max - 1)):
                m.d.sync += [
                    index.eq(0),
                    self.o_stream.valid.eq(1),
                    self.o_stream.p.index.eq(best_index),
                    self.o_stream.p.value.eq(best),
                ]
                with m.If(take):
                    m.d.sync += [self.o_stream.p.index.eq(index), self.o_stream.p.value.eq(x)]
            with m.Else():
                m.d.sync += index.eq(index + 1)
        return m


COMPONENTS = {
    "Argmax": ComponentSpec(
        "Argmax", sim=lambda: Argmax(256), board=lambda: Argmax(32000),
        summary="index of the first maximum logit (greedy decoding)"),
}
