"""RMSNorm in hardware: the unit-RMS normaliser and the per-channel norm-weight scaler.

``IntegerArithmetic.norm(x, w)`` is ``ChannelScale(RMSNormUnit(x))`` with the norm weight's
mantissas streamed beside the vector and its shift on a port; ``unit_norm`` is
:class:`RMSNormUnit` alone. Both equal the golden model bit for bit
(``numerics.rmsnorm_q``, ``Multipliers.apply`` + ``saturate``).
"""

import operator

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nsllm.model import numerics as nx

from .fixed_point import ACT_SHAPE, saturate, shift_round, shift_round_by
from .registry import ComponentSpec

__all__ = ["RMSNormUnit", "ChannelScale", "RsqrtFactor", "SumOfSquares", "ACT_ELEMENT", "SCALE_IN",
           "COMPONENTS", "factor_bits", "sum_sq_bits"]

#: One activation with its end-of-vector flag.
ACT_ELEMENT = data.StructLayout({"x": ACT_SHAPE, "last": 1})
#: ChannelScale input: the element and its channel's multiplier mantissa.
SCALE_IN = data.StructLayout({"x": ACT_SHAPE, "mant": signed(nx.MULT_BITS), "last": 1})


#: Widest run-time shift of :class:`ChannelScale` (its ``shift`` port is signed 7 bits).
SHIFT_BITS = 7


def sum_sq_bits(max_d: int) -> int:
    """Unsigned width of Σx² over ``max_d`` activations: exact, no overflow possible."""
    return (max_d * (1 << (2 * (nx.ACT_BITS - 1)))).bit_length()


def factor_bits(max_d: int) -> int:
    """Width of the RMS factor ``r = shift_round(RSQRT[m] · sqrt_d, SQRTD_FRAC)`` for any
    ``sqrt_d`` port value of a unit built for ``max_d``."""
    sqrt_d_max = 2 ** nx.sqrt_d_const(max_d).bit_length() - 1
    return (int(nx.RSQRT_TABLE.max()) * sqrt_d_max // 2**nx.SQRTD_FRAC + 1).bit_length()


#: SumOfSquares output and RsqrtFactor input.
def sum_sq_layout(max_d: int) -> data.StructLayout:
    return data.StructLayout({"sum_sq": unsigned(sum_sq_bits(max_d))})


class SumOfSquares(wiring.Component):
    """Σx² of a vector streamed ``lanes`` elements per beat, exact (no overflow possible).

    Pipeline: squares (one multiply per lane), the sum of the beat's squares, the running sum;
    the total leaves on ``o_stream`` three cycles after the beat with ``last``. Global stall.

    Parameters
    ----------
    lanes : int
    max_d : int
        Longest vector (sets the width, :func:`sum_sq_bits`).

    Attributes
    ----------
    i_stream : In(stream.Signature(StructLayout({"x": ArrayLayout(ACT_SHAPE, lanes), "last": 1})))
    o_stream : Out(stream.Signature(sum_sq_layout(max_d)))
    """

    def __init__(self, lanes: int, max_d: int):
        if not isinstance(lanes, int) or lanes < 1 or not isinstance(max_d, int) or max_d < 1:
            self._MustUse__silence = True
            raise ValueError(f"lanes and max_d must be positive integers, not {lanes!r}, "
                             f"{max_d!r}")
        self.lanes, self.max_d = lanes, max_d
        self.ss_bits = sum_sq_bits(max_d)
        super().__init__({
            "i_stream": In(stream.Signature(data.StructLayout({
                "x": data.ArrayLayout(ACT_SHAPE, lanes), "last": 1}))),
            "o_stream": Out(stream.Signature(sum_sq_layout(max_d))),
        })

    def elaborate(self, platform):
        m = Module()
        advance = Signal()
        m.d.comb += [advance.eq(~self.o_stream.valid | self.o_stream.ready),
                     self.i_stream.ready.eq(advance)]
        sq_bits = 2 * nx.ACT_BITS - 1
        v1, last1 = Signal(), Signal()
        squares = [Signal(sq_bits, name=f"square{i}") for i in range(self.lanes)]
        v2, last2 = Signal(), Signal()
        beat_sum = Signal(sq_bits + (self.lanes - 1).bit_length())
        total = Signal(self.ss_bits)
        with m.If(advance):
            m.d.sync += [v1.eq(self.i_stream.valid), last1.eq(self.i_stream.p.last),
                         v2.eq(v1), last2.eq(last1), self.o_stream.valid.eq(v2 & last2)]
            for i in range(self.lanes):
                x = self.i_stream.p.x[i]
                m.d.sync += squares[i].eq(x * x)
            terms = list(squares)
            while len(terms) > 1:  # a balanced adder tree
                terms = [a + b for a, b in zip(terms[::2], terms[1::2], strict=False)] + (
                    [terms[-1]] if len(terms) % 2 else [])
            m.d.sync += beat_sum.eq(Mux(v1, terms[0], 0))
            with m.If(v2):
                with m.If(last2):
                    m.d.sync += [self.o_stream.p.sum_sq.eq(total + beat_sum), total.eq(0)]
                with m.Else():
                    m.d.sync += total.eq(total + beat_sum)
        return m


def factor_layout(max_d: int) -> data.StructLayout:
    """RsqrtFactor output: ``x · r >> shift`` normalises (``numerics.rsqrt_factor``)."""
    return data.StructLayout({"r": unsigned(factor_bits(max_d)), "shift": signed(SHIFT_BITS)})


class RsqrtFactor(wiring.Component):
    """``numerics.rsqrt_factor``: Σx² and sqrt_d → the RMS factor ``(r, shift)``.

    The bit length of Σx² gives the even shift ``e`` into the RSQRT table's mantissa range; the
    table entry times ``sqrt_d`` is ``r`` (the one multiply), ``RSQRT_FRAC + e/2 − ACT_FRAC``
    the shift. Four cycles per vector; a new input is taken when the previous result has left.

    Attributes
    ----------
    i_stream : In(stream.Signature({"sum_sq", "sqrt_d"}))
    o_stream : Out(stream.Signature(factor_layout(max_d)))
    """

    def __init__(self, max_d: int):
        if not isinstance(max_d, int) or max_d < 1:
            self._MustUse__silence = True
            raise ValueError(f"max_d must be a positive integer, not {max_d!r}")
        self.max_d = max_d
        self.ss_bits = sum_sq_bits(max_d)
        super().__init__({
            "i_stream": In(stream.Signature(data.StructLayout({
                "sum_sq": unsigned(self.ss_bits),
                "sqrt_d": unsigned(nx.sqrt_d_const(max_d).bit_length())}))),
            "o_stream": Out(stream.Signature(factor_layout(max_d))),
        })

    @property
    def max_shift(self) -> int:
        """Largest output shift ``RSQRT_FRAC + e/2 - ACT_FRAC`` this ``max_d`` can produce."""
        return nx.RSQRT_FRAC + (self.ss_bits - nx.RSQRT_M_BITS - 1) // 2 - nx.ACT_FRAC

    def elaborate(self, platform):
        m = Module()
        table = [int(v) for v in nx.RSQRT_TABLE]
        m.submodules.rsqrt = rsqrt = Memory(shape=unsigned(max(table).bit_length()),
                                            depth=len(table), init=table)
        rd = rsqrt.read_port(domain="sync")
        sum_sq = Signal(self.ss_bits)
        sqrt_d = Signal.like(self.i_stream.p.sqrt_d)
        nbits = Signal(range(self.ss_bits + 1))
        half_e = Signal(signed(max(8, self.ss_bits.bit_length() + 1)))  # e / 2
        m.d.comb += self.i_stream.ready.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i_stream.ready.eq(~self.o_stream.valid | self.o_stream.ready)
                with m.If(self.o_stream.ready):
                    m.d.sync += self.o_stream.valid.eq(0)
                with m.If(self.i_stream.valid & self.i_stream.ready):
                    m.d.sync += [sum_sq.eq(self.i_stream.p.sum_sq),
                                 sqrt_d.eq(self.i_stream.p.sqrt_d)]
                    m.next = "EXPONENT"
            with m.State("EXPONENT"):
                # bit length of max(Σx², 1); e = nbits - (M + 2) rounded up to even
                for b in range(self.ss_bits):
                    with m.If(sum_sq[b]):
                        m.d.comb += nbits.eq(b + 1)
                with m.If(sum_sq == 0):
                    m.d.comb += nbits.eq(1)
                m.d.sync += half_e.eq((nbits - (nx.RSQRT_M_BITS + 1)) >> 1)
                m.next = "LOOKUP"
            with m.State("LOOKUP"):
                mant = Signal(nx.RSQRT_M_BITS + 2)
                sum_sq_1 = Signal(self.ss_bits)
                m.d.comb += sum_sq_1.eq(sum_sq | (sum_sq == 0))
                with m.If(half_e >= 0):
                    m.d.comb += mant.eq(sum_sq_1 >> (half_e.as_unsigned() << 1))
                with m.Else():
                    m.d.comb += mant.eq(sum_sq_1 << ((-half_e).as_unsigned()[:4] << 1))
                m.d.comb += rd.addr.eq(mant - (1 << nx.RSQRT_M_BITS))
                m.next = "FACTOR"
            with m.State("FACTOR"):
                m.d.sync += [
                    self.o_stream.p.r.eq(shift_round(rd.data * sqrt_d, nx.SQRTD_FRAC)),
                    self.o_stream.p.shift.eq(nx.RSQRT_FRAC - nx.ACT_FRAC + half_e),
                    self.o_stream.valid.eq(1),
                ]
                m.next = "IDLE"
        return m


class RMSNormUnit(wiring.Component):
    """``numerics.rmsnorm_q``: normalise a vector to unit RMS (ACT_FRAC in and out, no weight).

    The vector streams in (``last`` marks its final element) and is buffered in a memory while
    :class:`SumOfSquares` adds its squares exactly; :class:`RsqrtFactor` forms the RMS factor
    ``(r, shift)``; then the buffered vector streams out through a :class:`ChannelScale` with
    mantissa ``r``: ``saturate(shift_round(x * r, shift))``. The core's vector unit uses the same
    three units, ``vector`` lanes wide, with the scratchpad as the buffer.

    One build serves every vector length d ≤ ``max_d``: the length comes from ``last`` and the
    matching constant ``numerics.sqrt_d_const(d)`` from the ``sqrt_d`` port. A vector longer than
    ``max_d`` is cut: element ``max_d`` is treated as the last one.

    The next vector loads while the previous one leaves (one buffer: an element is overwritten
    only after it has been read), so back-to-back vectors take about d + 7 cycles each.

    Parameters
    ----------
    max_d : int
        Largest vector length (buffer depth). Board: the intermediate size (5632); sim: 512.

    Attributes
    ----------
    i_stream : In(stream.Signature(ACT_ELEMENT))
    o_stream : Out(stream.Signature(ACT_ELEMENT))
    sqrt_d : In(unsigned)
        ``numerics.sqrt_d_const(d)`` of the vectors being normalised; read once per vector,
        after its last element arrived. Change it only between vectors.
    """

    def __init__(self, max_d: int):
        if not isinstance(max_d, int) or max_d < 1:
            self._MustUse__silence = True  # no "created but never used" warning
            raise ValueError(f"max_d must be a positive integer, not {max_d!r}")
        self.max_d = max_d
        self.ss_bits = sum_sq_bits(max_d)
        super().__init__({
            "i_stream": In(stream.Signature(ACT_ELEMENT)),
            "o_stream": Out(stream.Signature(ACT_ELEMENT)),
            "sqrt_d": In(unsigned(nx.sqrt_d_const(max_d).bit_length())),
        })

    def elaborate(self, platform):
        m = Module()
        max_d = self.max_d
        m.submodules.sum_sq = ssq = SumOfSquares(1, max_d)
        m.submodules.factor = factor = RsqrtFactor(max_d)
        m.submodules.scale = scale = ChannelScale(mant_bits=factor_bits(max_d) + 1)
        m.submodules.buffer = buffer = Memory(shape=ACT_SHAPE, depth=max_d, init=[])
        wr = buffer.write_port()
        rd = buffer.read_port(domain="sync")

        m.d.comb += [factor.i_stream.valid.eq(ssq.o_stream.valid),
                     factor.i_stream.p.sum_sq.eq(ssq.o_stream.p.sum_sq),
                     factor.i_stream.p.sqrt_d.eq(self.sqrt_d),
                     ssq.o_stream.ready.eq(factor.i_stream.ready)]

        # --- emitter: buffer → ChannelScale(r) → out. It runs while the next vector loads into
        # the same buffer: element k of the new vector is written only after element k of the
        # old one has been read (count < rd_ptr).
        count = Signal(range(max_d + 1))  # elements of the incoming vector received
        loaded = Signal(range(max_d + 1))  # length of the vector whose factor is on its way
        waiting = Signal()  # a vector is in, its factor on its way
        emitting = Signal()
        emit_n = Signal(range(max_d + 1))
        rd_ptr = Signal(range(max_d + 1))
        r = Signal.like(factor.o_stream.p.r)
        shift = Signal.like(factor.o_stream.p.shift)
        v1, last1 = Signal(), Signal()  # a buffer read is in flight
        issue = Signal()
        starting = Signal()  # the factor arrives: element 0 is read in the same cycle
        addr = Signal.like(rd_ptr)
        n = Signal.like(emit_n)
        m.d.comb += [
            starting.eq(factor.o_stream.valid & factor.o_stream.ready),
            addr.eq(Mux(starting, 0, rd_ptr)), n.eq(Mux(starting, loaded, emit_n)),
            issue.eq((starting | emitting) & (addr < n) & (~v1 | scale.i_stream.ready)),
            rd.addr.eq(addr), rd.en.eq(issue),
            scale.i_stream.valid.eq(v1), scale.i_stream.p.x.eq(rd.data),
            scale.i_stream.p.mant.eq(r), scale.i_stream.p.last.eq(last1), scale.shift.eq(shift),
        ]
        wiring.connect(m, scale.o_stream, wiring.flipped(self.o_stream))
        with m.If(scale.i_stream.valid & scale.i_stream.ready):
            m.d.sync += v1.eq(0)
        with m.If(self.o_stream.valid & self.o_stream.ready & self.o_stream.p.last):
            m.d.sync += emitting.eq(0)

        # --- loader ---------------------------------------------------------------------------
        take = Signal()
        # Continuous assignments: Icarus does not evaluate FSM-scoped `always @*` blocks until an
        # input changes, leaving ready at X.
        m.d.comb += [
            self.i_stream.ready.eq(~waiting & ssq.i_stream.ready
                                   & (~emitting | (count < rd_ptr))),
            take.eq(self.i_stream.valid & self.i_stream.ready),
            wr.addr.eq(count), wr.data.eq(self.i_stream.p.x), wr.en.eq(take),
            ssq.i_stream.valid.eq(take), ssq.i_stream.p.x[0].eq(self.i_stream.p.x),
            ssq.i_stream.p.last.eq(self.i_stream.p.last | (count == max_d - 1)),
        ]
        with m.If(take):
            m.d.sync += count.eq(count + 1)
            with m.If(self.i_stream.p.last | (count == max_d - 1)):
                m.d.sync += [waiting.eq(1), loaded.eq(count + 1)]
        # the factor starts the vector's emission once the previous one has left
        m.d.comb += factor.o_stream.ready.eq(~emitting)
        with m.If(starting):
            m.d.sync += [r.eq(factor.o_stream.p.r), shift.eq(factor.o_stream.p.shift),
                         emitting.eq(1), emit_n.eq(loaded), rd_ptr.eq(0), count.eq(0),
                         waiting.eq(0)]
        with m.If(issue):
            m.d.sync += [v1.eq(1), last1.eq(addr == n - 1), rd_ptr.eq(addr + 1)]
        return m




class ChannelScale(wiring.Component):
    """``saturate(shift_round(x * mant, shift))`` per element: applies per-channel multipliers.

    With the norm weight's ``numerics.quantize_multipliers`` mantissas on ``mant`` and its shift
    on ``shift`` this is ``IntegerArithmetic.norm`` after :class:`RMSNormUnit`; with the RMS
    factor of :class:`RsqrtFactor` on ``mant`` it is the normalisation itself. Pipelined
    (latency 2, one multiply), full rate, global stall.

    The ``shift`` port holds [-64, 63]; use :meth:`port_shift` to map any integer shift onto it:
    a right shift by at least the product's width always gives 0 (and products are at most 63
    bits wide: 40 by default, 52 in the board's requantiser) and a left shift of ≥ ACT_BITS
    always saturates, so the clamp is exact and every shift ``numerics`` can produce is supported
    (``quantize_multipliers`` gives at most 40, negative ones for multipliers ≥ 2**15).

    Parameters
    ----------
    mant_bits : int
        Signed width of the mantissa (default MULT_BITS, the norm weights' width).
    x_bits : int
        Signed width of ``x`` (default ACT_BITS; the requantiser feeds accumulator sums).

    Attributes
    ----------
    i_stream : In(stream.Signature(StructLayout({"x", "mant", "last"})))
    o_stream : Out(stream.Signature(ACT_ELEMENT))
    shift : In(signed(7))
        Applied to the element in the last stage; change it only while no element is in flight
        (e.g. between layers).
    """

    #: Product x·mant width (signed) of the default build.
    PRODUCT_BITS = nx.ACT_BITS + nx.MULT_BITS

    def __init__(self, mant_bits: int = nx.MULT_BITS, x_bits: int = nx.ACT_BITS):
        if not all(isinstance(b, int) and b >= 2 for b in (mant_bits, x_bits)):
            self._MustUse__silence = True
            raise ValueError(f"mant_bits and x_bits must be integers ≥ 2, not {mant_bits!r}, "
                             f"{x_bits!r}")
        self.mant_bits, self.x_bits = mant_bits, x_bits
        self.product_bits = x_bits + mant_bits
        self.in_layout = data.StructLayout({"x": signed(x_bits), "mant": signed(mant_bits),
                                            "last": 1})
        super().__init__({
            "i_stream": In(stream.Signature(self.in_layout)),
            "o_stream": Out(stream.Signature(ACT_ELEMENT)),
            "shift": In(signed(SHIFT_BITS)),
        })

    @classmethod
    def port_shift(cls, shift: int) -> int:
        """The ``shift`` port value that gives exactly ``shift_round(x * mant, shift)``."""
        try:
            shift = operator.index(shift)
        except TypeError:
            raise TypeError(f"shift must be an integer, not {shift!r}") from None
        # clamped to the port's largest right shift, not the default build's product width: a
        # wider build (x_bits, mant_bits) needs right shifts beyond ACT_BITS + MULT_BITS + 1
        return max(-nx.ACT_BITS, min(shift, 2 ** (SHIFT_BITS - 1) - 1))

    def elaborate(self, platform):
        m = Module()
        advance = Signal()
        m.d.comb += [advance.eq(~self.o_stream.valid | self.o_stream.ready),
                     self.i_stream.ready.eq(advance)]
        max_right = 2 ** (SHIFT_BITS - 1) - 1
        max_left = nx.ACT_BITS  # a larger left shift saturates just the same

        v1 = Signal()
        last1 = Signal()
        product = Signal(signed(self.product_bits))
        right = shift_round_by(product, self.shift.as_unsigned(), max_right)
        left_by = Signal(range(max_left + 1))
        m.d.comb += left_by.eq(Mux(-self.shift > max_left, max_left, -self.shift))
        left = product << left_by
        with m.If(advance):
            m.d.sync += [
                v1.eq(self.i_stream.valid), last1.eq(self.i_stream.p.last),
                product.eq(self.i_stream.p.x * self.i_stream.p.mant),
                self.o_stream.valid.eq(v1), self.o_stream.p.last.eq(last1),
            ]
            with m.If(self.shift > 0):
                m.d.sync += self.o_stream.p.x.eq(saturate(right))
            with m.Else():
                m.d.sync += self.o_stream.p.x.eq(saturate(left))
        return m


#: Sizes: ``sim`` = the tiny preset (vectors up to its intermediate size 512), ``board`` = the
#: VCK190 core's largest vector (intermediate size 5632 of the 2048-wide model).
COMPONENTS = {
    "RMSNormUnit": ComponentSpec(
        "RMSNormUnit", sim=lambda: RMSNormUnit(max_d=512), board=lambda: RMSNormUnit(max_d=5632),
        summary="unit-RMS normalisation of a vector (Σx², rsqrt table, buffered)"),
    "ChannelScale": ComponentSpec(
        "ChannelScale", sim=ChannelScale, board=ChannelScale,
        summary="per-channel multiplier with run-time shift (applies norm weights)"),
}
