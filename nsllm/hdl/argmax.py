"""On-device greedy decoding: the index of the first maximum of a logit vector."""

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .fixed_point import ACT_SHAPE
from .registry import ComponentSpec

__all__ = ["Argmax", "LOGIT_IN", "argmax_layout", "logit_beat", "COMPONENTS"]

#: One logit (ACT_FRAC fixed point) with its end-of-vector flag.
LOGIT_IN = data.StructLayout({"x": ACT_SHAPE, "last": 1})


def argmax_layout(vocab_max: int) -> data.StructLayout:
    """Result layout: the token index and the maximum logit."""
    return data.StructLayout({"index": unsigned(max(1, (vocab_max - 1).bit_length())),
                              "value": ACT_SHAPE})


def logit_beat(lanes: int) -> data.StructLayout:
    """``lanes`` logits per beat (one logit: :data:`LOGIT_IN`)."""
    return LOGIT_IN if lanes == 1 else data.StructLayout({
        "x": data.ArrayLayout(ACT_SHAPE, lanes), "last": 1})


class Argmax(wiring.Component):
    """``graph.greedy``: index of the first maximum logit (ties go to the lowest index).

    Logits stream in ``lanes`` per beat; ``last`` closes the vector. A beat's first maximum is
    found by a tree of comparisons (a lane to the right wins only when strictly greater) and
    registered; the running maximum is replaced only by a strictly greater beat maximum, so the
    earliest of equal maxima wins. The result (index and value) is offered on ``o_stream`` two
    cycles after the ``last`` beat (one with ``lanes == 1``). Input is held off only while an
    unaccepted result is waiting. A vector longer than ``vocab_max`` is cut: the beat holding
    logit ``vocab_max − 1`` is treated as the last one.

    Parameters
    ----------
    vocab_max : int
        Largest vocabulary; sets the index width. Board: 32000; sim: 256.
    lanes : int
        Logits per beat (the core's vector width).

    Attributes
    ----------
    i_stream : In(stream.Signature(logit_beat(lanes)))
    o_stream : Out(stream.Signature(argmax_layout(vocab_max)))
    """

    def __init__(self, vocab_max: int, lanes: int = 1):
        if not isinstance(vocab_max, int) or vocab_max < 1:
            self._MustUse__silence = True  # no "created but never used" warning
            raise ValueError(f"vocab_max must be a positive integer, not {vocab_max!r}")
        if not isinstance(lanes, int) or lanes < 1 or lanes & (lanes - 1):
            self._MustUse__silence = True
            raise ValueError(f"lanes must be a power of two, not {lanes!r}")
        self.vocab_max, self.lanes = vocab_max, lanes
        super().__init__({
            "i_stream": In(stream.Signature(logit_beat(lanes))),
            "o_stream": Out(stream.Signature(argmax_layout(vocab_max))),
        })

    @staticmethod
    def latency_of(lanes: int) -> int:
        """Cycles from the beat with ``last`` taken to the result on ``o_stream``."""
        return 2 if lanes > 1 else 1

    @property
    def latency(self) -> int:
        return self.latency_of(self.lanes)

    def elaborate(self, platform):
        m = Module()
        L = self.lanes
        beats_max = -(-self.vocab_max // L)
        lane_bits = max(1, (L - 1).bit_length())
        index_w = max(1, (self.vocab_max - 1).bit_length())
        beat = Signal(range(beats_max))  # index of the incoming beat
        take_in = self.i_stream.valid & self.i_stream.ready
        closes = self.i_stream.p.last | (beat == beats_max - 1)

        # stage 1: the beat's first maximum (a lane to the right wins only when strictly greater)
        if L == 1:
            v1, bval, bidx, blast = take_in, self.i_stream.p.x, beat, closes
        else:
            v1, blast = Signal(), Signal()
            bval = Signal(ACT_SHAPE)
            bidx = Signal(index_w)
            cand = [(self.i_stream.p.x[i], i) for i in range(L)]
            level = [(x, Const(i, lane_bits)) for x, i in cand]
            while len(level) > 1:
                nxt = []
                for (xa, ia), (xb, ib) in zip(level[::2], level[1::2], strict=True):
                    right = xb > xa
                    nxt.append((Mux(right, xb, xa), Mux(right, ib, ia)))
                level = nxt
            m.d.sync += v1.eq(take_in)
            with m.If(take_in):
                m.d.sync += [bval.eq(level[0][0]), bidx.eq((beat << lane_bits) | level[0][1]),
                             blast.eq(closes)]

        best = Signal(ACT_SHAPE)
        best_index = Signal(index_w)
        started = Signal()  # a beat of the current vector has been compared
        pending = Signal()  # the last beat is in stage 1 (lanes > 1)
        m.d.comb += self.i_stream.ready.eq(~self.o_stream.valid & ~pending)
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        with m.If(take_in):
            with m.If(closes):
                m.d.sync += beat.eq(0)
                if L > 1:
                    m.d.sync += pending.eq(1)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)

        with m.If(v1):
            # strictly greater keeps the earliest of equal maxima
            take = ~started | (bval > best)
            with m.If(take):
                m.d.sync += [best.eq(bval), best_index.eq(bidx)]
            m.d.sync += started.eq(~blast)
            with m.If(blast):
                m.d.sync += [self.o_stream.valid.eq(1), pending.eq(0),
                             self.o_stream.p.index.eq(Mux(take, bidx, best_index)),
                             self.o_stream.p.value.eq(Mux(take, bval, best))]
        return m


COMPONENTS = {
    "Argmax": ComponentSpec(
        "Argmax", sim=lambda: Argmax(256, lanes=8), board=lambda: Argmax(32000, lanes=16),
        summary="index of the first maximum logit (greedy decoding)"),
}
