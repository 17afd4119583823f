"""The accumulator bank: ``acc[i] += Σ_j W[i, j] · s[j]`` with adders only, in a memory.

Each input beat carries one word of a weight column ``j`` — the trits of ``lanes`` output rows
(from :class:`~nsllm.hdl.trits.TritUnpacker`) — the spike count ``s[j]`` of that input, and the
word's index. Every lane adds, subtracts or skips the count: there is no multiplier anywhere.
The accumulators live in a memory of ``words`` words of ``lanes`` accumulators (the layer's
outputs, ``lanes`` rows per word), updated by read-modify-write at one beat per cycle; a read
port that is transparent to the write port makes back-to-back beats on the same word exact.
A beat with ``first`` set starts its word (writes the term instead of adding it), so no clearing
pass is needed between layers. The consumer (the requantiser) reads finished words through
``rd``, on the same memory port as the read-modify-write (a bank of the board build is 5760 bits
wide: a second read port would double its 80 block RAMs), so it reads only while no beat comes.

Overflow is impossible by construction: the accumulator width is
:func:`nsllm.model.numerics.accumulator_bits` ``(fan_in, max_D)``, which holds ``±fan_in·max_D``,
the largest sum of at most ``fan_in`` terms of magnitude at most ``max_D``. The premises are
checked in hardware: a count outside ``[−max_D, max_D]``, a trit of −2 or a word outside the
memory sets the sticky ``error`` output (and such a beat is dropped, so the accumulators still
cannot wrap). The sequencer limits a layer's fan-in to the build's ``fan_in``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nsllm.model import numerics as nx

from .registry import ComponentSpec
from .shared_memory import read_signature
from .trits import TRIT

__all__ = ["AccumulatorBank", "acc_word", "beat_layout", "count_shape", "COMPONENTS"]


def count_shape(max_D: int):
    """Signed shape of a spike count in ``[−max_D, max_D]``."""
    return signed(max_D.bit_length() + 1)


def acc_word(lanes: int, acc_bits: int) -> data.ArrayLayout:
    return data.ArrayLayout(signed(acc_bits), lanes)


def beat_layout(lanes: int, max_D: int, words: int) -> data.StructLayout:
    """One beat into the bank: trits, the column's spike count, the word, ``first``."""
    return data.StructLayout({"trits": data.ArrayLayout(TRIT, lanes), "count": count_shape(max_D),
                              "word": range(max(words, 2)), "first": 1})


class AccumulatorBank(wiring.Component):
    """``words × lanes`` accumulators in a memory, fed one column word per beat, full rate.

    Parameters
    ----------
    lanes : int
        Output rows per word (trits per beat).
    words : int
        Words of the memory (the most outputs ÷ lanes).
    fan_in : int
        Most columns accumulated into one output (sets the width).
    max_D : int
        Largest spike-count magnitude.

    Attributes
    ----------
    i_stream : In(stream.Signature(beat_layout(lanes, max_D, words)))
        Always ready.
    rd : In(read_signature) — ``addr``, ``en`` in; ``data`` (a word of accumulators) out,
        one cycle after ``en``; only while no beat arrives (a read during a beat is refused
        and sets ``error``).
    busy : Out(1)
        A beat is still being added (the memory is not final yet).
    error : Out(1)
        Sticky: a beat broke the contract that makes overflow impossible (module docstring).
    acc_bits : int
        Accumulator width, ``numerics.accumulator_bits(fan_in, max_D)``.
    """

    def __init__(self, lanes: int = 8, words: int = 4, fan_in: int = 64, max_D: int = 15):
        for name, value in (("lanes", lanes), ("words", words), ("fan_in", fan_in)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(max_D, int) or not 1 <= max_D <= nx.MAX_TIMESTEPS:
            raise ValueError(f"max_D must be an integer in [1, {nx.MAX_TIMESTEPS}], not {max_D!r}")
        self.lanes, self.words, self.fan_in, self.max_D = lanes, words, fan_in, max_D
        self.acc_bits = nx.accumulator_bits(fan_in, max_D)
        self.count_shape = count_shape(max_D)
        self.in_layout = beat_layout(lanes, max_D, words)
        self.word_layout = acc_word(lanes, self.acc_bits)
        super().__init__({
            "i_stream": In(stream.Signature(self.in_layout)),
            "rd": In(read_signature(self.word_layout, words)),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.i_stream.payload
        m.submodules.mem = mem = Memory(shape=self.word_layout, depth=self.words, init=[])
        wr = mem.write_port()
        rmw = mem.read_port(transparent_for=(wr,))  # shared by the beats and the consumer
        m.d.comb += [self.rd.data.eq(rmw.data), self.i_stream.ready.eq(1)]

        # contract checks: count range, trit range, word range
        c = p.count
        count_ok = (c >= -self.max_D) & (c <= self.max_D)
        trits = [p.trits[i] for i in range(self.lanes)]
        trit_ok = ~Cat(t == -2 for t in trits).any()
        word_ok = p.word < self.words
        beat_ok = Signal()
        m.d.comb += beat_ok.eq(count_ok & trit_ok & word_ok)
        take = self.i_stream.valid

        # stage 0: read the word, form each lane's term (the count, its negation, or 0)
        v1, first1 = Signal(), Signal()
        word1 = Signal.like(p.word)
        terms = Signal(data.ArrayLayout(signed(self.count_shape.width + 1), self.lanes))
        pos = Signal(self.count_shape)
        neg = Signal(signed(self.count_shape.width + 1))
        m.d.comb += [pos.eq(Mux(beat_ok, c, 0)), neg.eq(-pos),
                     rmw.addr.eq(Mux(take, p.word, self.rd.addr)), rmw.en.eq(take | self.rd.en)]
        m.d.sync += [v1.eq(take & beat_ok), first1.eq(p.first), word1.eq(p.word)]
        for i, t in enumerate(trits):
            # 01 → +1, 11 → −1, 00 → 0 (10 is refused by beat_ok)
            m.d.sync += terms[i].eq(Mux(t[1], neg, Mux(t[0], pos, 0)))
        with m.If((take & ~beat_ok) | (take & self.rd.en)):
            m.d.sync += self.error.eq(1)
        # stage 1: add (or start) and write back
        m.d.comb += [wr.addr.eq(word1), wr.en.eq(v1)]
        for i in range(self.lanes):
            m.d.comb += wr.data[i].eq(Mux(first1, 0, rmw.data[i]) + terms[i])
        m.d.comb += self.busy.eq(take | v1)
        return m


COMPONENTS = {
    "AccumulatorBank": ComponentSpec(
        "AccumulatorBank",
        sim=lambda: AccumulatorBank(lanes=32, words=32, fan_in=512, max_D=15),
        # one 512-bit word of base-3 trits (320 lanes); 125 words hold the 32000 logits of the
        # LM head at 256 lanes (2bit); fan-in 8192 covers the 2.7B model's MLP down projection
        board=lambda: AccumulatorBank(lanes=320, words=125, fan_in=8192, max_D=15),
        summary="multiplier-free ternary accumulate: lanes of add/subtract/skip, memory-backed",
    ),
}
