"""The integer LIF spike encoder and its neighbours.

The golden model (:meth:`nsllm.model.integer.IntegerArithmetic.spikes`) computes, per input
channel ``j`` of a ternary layer::

    u = shift_round(xn * enc.mant[j], enc_shift)      # membrane potential, U_FRAC bits
    s = spike_count(u, D, delta_q)                     # sign(u)·clip(⌊|u| − δ + ½⌋, 0, D)

The hardware splits this in two so that the spike encoder itself has no multiplier:

* :class:`MembraneScale` — the per-channel product ``xn · mant`` (a multiplier is fine here: it
  is O(d), one per channel, not O(d²));
* :class:`SpikeEncoder` — the rounding shift, the δ shift, the clip to ±D and the sign: adders,
  comparators and a barrel shifter only. ``D``, ``delta_q`` and ``shift`` are input ports, so
  one build serves every layer.

Then :class:`SpikeIndexFilter` keeps only the inputs that fired (non-zero counts), which is
what the weight streamer needs to fetch only their columns, and :class:`SpikeTrainEmitter`
expands counts into the D timesteps of ternary spikes (``numerics.spike_train``) for the
spike-train form of the datapath.
"""

from __future__ import annotations

import inspect

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nsllm.model import numerics as nx

from .accumulator import count_shape
from .registry import ComponentSpec
from .trits import TRIT

__all__ = [
    "EncoderArray", "MembraneScale", "SpikeEncoder", "SpikeTrainEmitter", "SpikeIndexFilter",
    "ACT_SHAPE", "MULT_SHAPE", "POTENTIAL_SHAPE", "COMPONENTS",
]

ACT_SHAPE = signed(nx.ACT_BITS)
MULT_SHAPE = signed(nx.MULT_BITS)
#: The exact product of an activation and a multiplier mantissa.
POTENTIAL_SHAPE = signed(nx.ACT_BITS + nx.MULT_BITS)
#: Largest rounding shift the encoder must support: the largest multiplier shift
#: quantize_multipliers chooses (its max_shift default) plus ACT_FRAC - U_FRAC, as in
#: LinearParams.enc_shift.
ENC_SHIFT_MAX = (inspect.signature(nx.quantize_multipliers).parameters["max_shift"].default
                 + nx.ACT_FRAC - nx.U_FRAC)


def _check_positive(**values):
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")


def _check_max_D(max_D):
    if not isinstance(max_D, int) or not 1 <= max_D <= nx.MAX_TIMESTEPS:
        raise ValueError(f"max_D must be an integer in [1, {nx.MAX_TIMESTEPS}], not {max_D!r}")


class MembraneScale(wiring.Component):
    """``potential = x · mant``: the per-channel scale in front of the spike encoder.

    Parameters
    ----------
    index_bits : int
        Width of the channel index carried along (with ``last``) for the stages downstream.

    Attributes
    ----------
    i_stream : In(stream.Signature(StructLayout({"x", "mant", "index", "last"})))
        ``x``: the unit-normalised activation (ACT_BITS signed, ACT_FRAC); ``mant``: the
        channel's multiplier mantissa (``LinearParams.enc.mant[j]``, MULT_BITS signed).
    o_stream : Out(stream.Signature(StructLayout({"potential", "index", "last"})))
        ``potential``: the exact product, ACT_BITS + MULT_BITS signed.

    One register stage, full rate.
    """

    def __init__(self, index_bits: int = 16):
        _check_positive(index_bits=index_bits)
        self.index_bits = index_bits
        self.in_layout = data.StructLayout({
            "x": ACT_SHAPE, "mant": MULT_SHAPE, "index": unsigned(index_bits), "last": 1})
        self.out_layout = data.StructLayout({
            "potential": POTENTIAL_SHAPE, "index": unsigned(index_bits), "last": 1})
        super().__init__({
            "i_stream": In(stream.Signature(self.in_layout)),
            "o_stream": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        advance = ~o.valid | o.ready
        m.d.comb += i.ready.eq(advance)
        with m.If(advance):
            m.d.sync += o.valid.eq(i.valid)
            with m.If(i.valid):
                m.d.sync += [
                    o.payload.potential.eq(i.payload.x * i.payload.mant),
                    o.payload.index.eq(i.payload.index),
                    o.payload.last.eq(i.payload.last),
                ]
        return m


class SpikeEncoder(wiring.Component):
    """I-LIF count: ``spike_count(shift_round(potential, shift), D, delta_q)``, no multiplier;
    with ``unsigned_counts`` set, ``spike_count_unsigned`` (a negative potential gives 0: SLA's
    q, k).

    Parameters
    ----------
    max_D : int
        Largest D the build serves; sets the count width.
    shift_min, shift_max : int
        Range of the runtime rounding shift (``LinearParams.enc_shift``); a negative shift is an
        exact left shift, as in ``numerics.shift_round``.
    delta_bits : int
        Width of the unsigned ``delta_q`` port (δ in U_FRAC fixed point).
    index_bits : int
        Width of the channel index carried along.

    Attributes
    ----------
    D : In(range(max_D + 1))
    delta_q : In(unsigned(delta_bits))
    shift : In(signed)
    unsigned_counts : In(1)
        Runtime configuration, held constant while a layer streams through.
    i_stream : In(stream.Signature(StructLayout({"potential", "index", "last"})))
        The output of :class:`MembraneScale`.
    o_stream : Out(stream.Signature(StructLayout({"count", "index", "last"})))
        ``count`` in ``[−D, D]`` (``[0, D]`` when unsigned).
    error : Out(1)
        Sticky: ``D > max_D`` or ``shift`` outside ``[shift_min, shift_max]`` was used.

    One register stage, full rate.
    """

    def __init__(self, max_D: int = max(nx.SPIKE_COUNT_SET), *, shift_min: int = -8,
                 shift_max: int = ENC_SHIFT_MAX, delta_bits: int = nx.U_FRAC + 8,
                 index_bits: int = 16):
        _check_max_D(max_D)
        _check_positive(delta_bits=delta_bits, index_bits=index_bits)
        if not isinstance(shift_min, int) or not isinstance(shift_max, int) or shift_min > 0 \
                or shift_max < 1:
            raise ValueError(f"need integers shift_min <= 0 < shift_max, not {shift_min!r}, "
                             f"{shift_max!r}")
        self.max_D, self.shift_min, self.shift_max = max_D, shift_min, shift_max
        self.delta_bits, self.index_bits = delta_bits, index_bits
        self.count_shape = count_shape(max_D)
        shift_shape = signed(max(shift_max, -shift_min).bit_length() + 1)
        self.in_layout = data.StructLayout({
            "potential": POTENTIAL_SHAPE, "index": unsigned(index_bits), "last": 1})
        self.out_layout = data.StructLayout({
            "count": self.count_shape, "index": unsigned(index_bits), "last": 1})
        super().__init__({
            "D": In(range(max_D + 1)),
            "delta_q": In(unsigned(delta_bits)),
            "shift": In(shift_shape),
            "unsigned_counts": In(1),
            "i_stream": In(stream.Signature(self.in_layout)),
            "o_stream": Out(stream.Signature(self.out_layout)),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        p = i.payload.potential
        shift = self.shift

        # u = shift_round(p, shift): for s > 0, ⌊(p + 2^(s−1)) / 2^s⌋ = ⌊(⌊p / 2^(s−1)⌋ + 1) / 2⌋,
        # which needs no wide "half" constant; for s ≤ 0 an exact left shift.
        right = Signal(range(max(self.shift_max, 1)))
        m.d.comb += right.eq(Mux(shift > 0, shift - 1, 0))
        u = Signal(signed(len(p) + 1 - self.shift_min))
        if self.shift_min < 0:  # (with shift_min = 0 a `left` of zero width: [-1:0] in Verilog)
            left = Signal(range(-self.shift_min + 1))
            m.d.comb += left.eq(Mux(shift < 0, -shift, 0))
            unshifted = p << left
        else:
            unshifted = p
        with m.If(shift > 0):
            m.d.comb += u.eq(((p >> right) + 1) >> 1)
        with m.Else():
            m.d.comb += u.eq(unshifted)

        # count = sign(u) · min(max((|u| − δ + ½) >> U_FRAC, 0), D); unsigned: 0 for u < 0
        r = Signal(signed(len(u) + 2))  # unsigned − unsigned is signed in Amaranth: r may be < 0
        m.d.comb += r.eq(abs(u) - self.delta_q + (1 << (nx.U_FRAC - 1)))
        q = Signal(unsigned(len(r)))
        m.d.comb += q.eq(Mux(r < 0, 0, r >> nx.U_FRAC))
        mag = Signal(range(self.max_D + 1))
        m.d.comb += mag.eq(Mux(q > self.D, self.D, q))
        count = Mux(u < 0, Mux(self.unsigned_counts, 0, -mag), mag)

        advance = ~o.valid | o.ready
        m.d.comb += i.ready.eq(advance)
        with m.If(advance):
            m.d.sync += o.valid.eq(i.valid)
            with m.If(i.valid):
                m.d.sync += [
                    o.payload.count.eq(count),
                    o.payload.index.eq(i.payload.index),
                    o.payload.last.eq(i.payload.last),
                ]
                # only the comparisons a port's width does not already rule out (Verilator
                # rejects constant comparisons, CMPCONST)
                checks = []
                if self.max_D + 1 < 2 ** len(self.D):
                    checks.append(self.D > self.max_D)
                if self.shift_min > -(2 ** (len(shift) - 1)):
                    checks.append(shift < self.shift_min)
                if self.shift_max < 2 ** (len(shift) - 1) - 1:
                    checks.append(shift > self.shift_max)
                with m.If(Cat(*checks).any() if checks else 0):
                    m.d.sync += self.error.eq(1)
        return m


class SpikeTrainEmitter(wiring.Component):
    """Counts → D beats of ternary spikes: ``|s|`` beats of ``sign(s)``, then zeros.

    Equal to ``numerics.spike_train(counts, D)``, one timestep per output beat.

    Parameters
    ----------
    lanes : int
        Counts per input beat (and spikes per output beat).
    max_D : int
        Largest D the build serves.

    Attributes
    ----------
    D : In(range(max_D + 1))
        Timesteps per count vector (D = 0 consumes the input and emits nothing).
    i_stream : In(stream.Signature(StructLayout({"counts": ArrayLayout(count, lanes)})))
    o_stream : Out(stream.Signature(StructLayout({"spikes", "t", "last"})))
        ``spikes``: ``lanes`` trits of timestep ``t``; ``last`` marks ``t = D − 1``.

    A new count vector is taken in the cycle the previous one's last timestep leaves, so the
    output runs at one timestep per cycle without gaps.
    """

    def __init__(self, lanes: int = 8, max_D: int = max(nx.SPIKE_COUNT_SET)):
        _check_positive(lanes=lanes)
        _check_max_D(max_D)
        self.lanes, self.max_D = lanes, max_D
        self.count_shape = count_shape(max_D)
        self.in_layout = data.StructLayout({
            "counts": data.ArrayLayout(self.count_shape, lanes)})
        self.out_layout = data.StructLayout({
            "spikes": data.ArrayLayout(TRIT, lanes), "t": range(max_D), "last": 1})
        super().__init__({
            "D": In(range(max_D + 1)),
            "i_stream": In(stream.Signature(self.in_layout)),
            "o_stream": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        held = Signal(data.ArrayLayout(self.count_shape, self.lanes))
        t = Signal(range(self.max_D))
        last = Signal()
        m.d.comb += [last.eq(t + 1 >= self.D), o.payload.t.eq(t), o.payload.last.eq(last)]
        for k in range(self.lanes):
            c = held[k]
            m.d.comb += o.payload.spikes[k].eq(Mux(abs(c) > t, Mux(c < 0, -1, 1), 0))

        finishing = o.valid & o.ready & last
        m.d.comb += i.ready.eq(~o.valid | finishing)
        with m.If(o.valid & o.ready & ~last):
            m.d.sync += t.eq(t + 1)
        with m.If(i.ready):
            m.d.sync += [o.valid.eq(i.valid & (self.D != 0)), t.eq(0)]
            with m.If(i.valid):
                m.d.sync += held.eq(i.payload.counts)
        return m


class SpikeIndexFilter(wiring.Component):
    """Beats of spike counts → one (index, count) per cycle for the non-zero ones: the inputs
    that fired, which is what the weight streamer fetches columns for.

    With ``lanes = 1`` a beat is one (index, count, last); with more, a beat holds ``lanes``
    counts of the inputs ``index … index + lanes − 1`` and the filter emits the non-zero ones in
    order, one per cycle (the lowest lane first), so a beat takes as many cycles as it has
    spikes (at least one). The last item of the beat with ``last`` set carries ``last``; if that
    beat has no spikes left, a zero-count item with ``last`` is emitted so that every group
    still ends with exactly one ``last`` — a consumer skips zero counts. ``side`` (optional) is
    carried from each beat to its items.

    Parameters
    ----------
    max_D : int
    index_bits : int
    lanes : int
    side : shape, optional

    Attributes
    ----------
    i_stream : stream of ``{index, count, last}`` (lanes = 1) or ``{index, counts[lanes], last}``
    o_stream : stream of ``{index, count, last}`` (plus ``side``)

    One register stage, full rate (lanes = 1).
    """

    #: Cycles from a beat taken to its first item on ``o_stream``; a beat then occupies the
    #: filter for max(1, non-zero counts) cycles.
    latency = 1

    def __init__(self, max_D: int = max(nx.SPIKE_COUNT_SET), index_bits: int = 16,
                 lanes: int = 1, side=None):
        _check_max_D(max_D)
        _check_positive(index_bits=index_bits, lanes=lanes)
        self.max_D, self.index_bits, self.lanes = max_D, index_bits, lanes
        out = {"index": unsigned(index_bits), "count": count_shape(max_D), "last": 1}
        if side is not None:
            out["side"] = side
        self.out_layout = data.StructLayout(out)
        if lanes == 1:
            self.in_layout = self.out_layout
        else:
            inp = {"index": unsigned(index_bits),
                   "counts": data.ArrayLayout(count_shape(max_D), lanes), "last": 1}
            if side is not None:
                inp["side"] = side
            self.in_layout = data.StructLayout(inp)
        self.layout = self.out_layout
        super().__init__({
            "i_stream": In(stream.Signature(self.in_layout)),
            "o_stream": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        has_side = "side" in self.out_layout.members
        if self.lanes == 1:
            advance = ~o.valid | o.ready
            m.d.comb += i.ready.eq(advance)
            fired = i.payload.count.any() | i.payload.last
            with m.If(advance):
                m.d.sync += o.valid.eq(i.valid & fired)
                with m.If(i.valid):
                    m.d.sync += o.payload.eq(i.payload)
            return m

        L = self.lanes
        held = Signal(self.in_layout)
        held_valid = Signal()
        mask = Signal(L)  # lanes of the held beat still to emit
        lowest = Signal(range(L))
        for k in reversed(range(L)):
            with m.If(mask[k]):
                m.d.comb += lowest.eq(k)
        single = Signal()  # exactly one lane left
        m.d.comb += single.eq((mask & (mask - 1)) == 0)
        # an item: the lowest lane left, or the zero-count closing item of a spike-less last beat
        m.d.comb += [
            o.valid.eq(held_valid & (mask.any() | held.last)),
            o.payload.index.eq(held.index + Mux(mask.any(), lowest, 0)),
            # an Array mux: indexing the view by a Value would multiply the index by the width
            o.payload.count.eq(Mux(mask.any(), Array(held.counts[k] for k in range(L))[lowest],
                                   0)),
            o.payload.last.eq(held.last & (single | ~mask.any())),
        ]
        if has_side:
            m.d.comb += o.payload.side.eq(held.side)
        final = o.valid & o.ready & (single | ~mask.any())
        free = ~held_valid | (~mask.any() & ~held.last) | final
        m.d.comb += i.ready.eq(free)
        with m.If(o.valid & o.ready):
            m.d.sync += mask.eq(mask & ~(1 << lowest))
        with m.If(free):
            m.d.sync += held_valid.eq(i.valid)
            with m.If(i.valid):
                m.d.sync += [held.eq(i.payload),
                             mask.eq(Cat(i.payload.counts[k] != 0 for k in range(L)))]
        return m


class EncoderArray(wiring.Component):
    """``lanes`` I-LIF encoders in lockstep: a word of activations and of encoder mantissas →
    a word of spike counts (``numerics.encode_q``, signed or unsigned), one word per cycle.

    Each lane is a :class:`MembraneScale` (``x · mant``, the one multiply) followed by a
    :class:`SpikeEncoder` (shift, δ, clip to ±D); ``D``, ``delta_q`` and ``shift`` are shared.
    Latency 2, global stall.

    Attributes
    ----------
    i_stream : In(stream({"x": ArrayLayout(ACT, lanes), "mant": ArrayLayout(signed(32), lanes),
        "index", "last"}))
        ``mant`` is a table word (int32 entries; the low MULT_BITS are the mantissa).
    o_stream : Out(stream({"counts": ArrayLayout(count, lanes), "index", "last"}))
    D, delta_q, shift, unsigned_counts : In
    error : Out(1)
        Sticky: some lane's encoder saw D or shift out of range.
    """

    #: Cycles from a word taken on ``i_stream`` to its counts on ``o_stream``.
    latency = 2

    def __init__(self, lanes: int, max_D: int, *, shift_max: int = ENC_SHIFT_MAX,
                 index_bits: int = 16):
        _check_positive(lanes=lanes, index_bits=index_bits)
        _check_max_D(max_D)
        self.lanes, self.max_D, self.index_bits = lanes, max_D, index_bits
        self.shift_max = shift_max
        probe = SpikeEncoder(max_D, shift_min=0, shift_max=shift_max, index_bits=index_bits)
        probe._MustUse__silence = True
        self.count_shape = probe.count_shape
        self.in_layout = data.StructLayout({
            "x": data.ArrayLayout(ACT_SHAPE, lanes), "mant": data.ArrayLayout(signed(32), lanes),
            "index": unsigned(index_bits), "last": 1})
        self.out_layout = data.StructLayout({
            "counts": data.ArrayLayout(self.count_shape, lanes), "index": unsigned(index_bits),
            "last": 1})
        super().__init__({
            "i_stream": In(stream.Signature(self.in_layout)),
            "o_stream": Out(stream.Signature(self.out_layout)),
            "D": In(range(max_D + 1)),
            "delta_q": In(unsigned(probe.delta_bits)),
            "shift": In(len(probe.shift)),
            "unsigned_counts": In(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        errors = []
        for k in range(self.lanes):
            scale = m.submodules[f"scale{k}"] = MembraneScale(index_bits=self.index_bits)
            enc = m.submodules[f"encoder{k}"] = SpikeEncoder(
                self.max_D, shift_min=0, shift_max=self.shift_max, index_bits=self.index_bits)
            wiring.connect(m, scale.o_stream, enc.i_stream)
            m.d.comb += [
                scale.i_stream.valid.eq(i.valid), scale.i_stream.p.x.eq(i.p.x[k]),
                scale.i_stream.p.mant.eq(i.p.mant[k][:nx.MULT_BITS]),
                scale.i_stream.p.index.eq(i.p.index), scale.i_stream.p.last.eq(i.p.last),
                enc.D.eq(self.D), enc.delta_q.eq(self.delta_q), enc.shift.eq(self.shift),
                enc.unsigned_counts.eq(self.unsigned_counts),
                enc.o_stream.ready.eq(o.ready), o.p.counts[k].eq(enc.o_stream.p.count),
            ]
            errors.append(enc.error)
            if k == 0:  # the lanes run in lockstep: lane 0 speaks for all
                m.d.comb += [i.ready.eq(scale.i_stream.ready), o.valid.eq(enc.o_stream.valid),
                             o.p.index.eq(enc.o_stream.p.index), o.p.last.eq(enc.o_stream.p.last)]
        m.d.comb += self.error.eq(Cat(*errors).any())
        return m


_D_BOARD = max(nx.SPIKE_COUNT_SET)

COMPONENTS = {
    "MembraneScale": ComponentSpec(
        "MembraneScale",
        sim=lambda: MembraneScale(index_bits=8),
        board=lambda: MembraneScale(index_bits=16),
        summary="per-channel x·mant in front of the spike encoder (the one multiplier)",
    ),
    "SpikeEncoder": ComponentSpec(
        "SpikeEncoder",
        sim=lambda: SpikeEncoder(_D_BOARD, index_bits=8),
        board=lambda: SpikeEncoder(_D_BOARD, index_bits=16),
        summary="I-LIF: rounding shift, δ, clip to ±D (runtime D, δ, shift); no multiplier",
    ),
    "SpikeTrainEmitter": ComponentSpec(
        "SpikeTrainEmitter",
        sim=lambda: SpikeTrainEmitter(lanes=8, max_D=_D_BOARD),
        board=lambda: SpikeTrainEmitter(lanes=256, max_D=_D_BOARD),
        summary="spike counts → D timesteps of ternary spikes",
    ),
    "SpikeIndexFilter": ComponentSpec(
        "SpikeIndexFilter",
        sim=lambda: SpikeIndexFilter(_D_BOARD, index_bits=8, lanes=8),
        board=lambda: SpikeIndexFilter(_D_BOARD, index_bits=16, lanes=16),
        summary="words of counts → (index, count) of the fired inputs, one per cycle",
    ),
    "EncoderArray": ComponentSpec(
        "EncoderArray",
        sim=lambda: EncoderArray(8, _D_BOARD, index_bits=8),
        board=lambda: EncoderArray(16, _D_BOARD, index_bits=16),
        summary="lanes of x·mant → I-LIF spike counts (the core's encoder)",
    ),
}
