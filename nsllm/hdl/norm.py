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

__all__ = ["RMSNormUnit", "ChannelScale", "ACT_ELEMENT", "SCALE_IN", "COMPONENTS"]

#: One activation with its end-of-vector flag.
ACT_ELEMENT = data.StructLayout({"x": ACT_SHAPE, "last": 1})
#: ChannelScale input: the element and its channel's multiplier mantissa.
SCALE_IN = data.StructLayout({"x": ACT_SHAPE, "mant": signed(nx.MULT_BITS), "last": 1})


def sum_sq_bits(max_d: int) -> int:
    """Unsigned width of Σx² over ``max_d`` activations: exact, no overflow possible."""
    return (max_d * (1 << (2 * (nx.ACT_BITS - 1)))).bit_length()


class RMSNormUnit(wiring.Component):
    """``numerics.rmsnorm_q``: normalise a vector to unit RMS (ACT_FRAC in and out, no weight).

    The vector streams in (``last`` marks its final element) and is buffered in a memory while Σx²
    accumulates exactly; then the RMS factor is formed as in ``numerics.rsqrt_factor`` (bit length
    of Σx², even shift into the RSQRT table's mantissa range, table lookup, times ``sqrt_d``) and
    the buffered vector streams out as ``saturate(shift_round(x * r, shift))``.

    One build serves every vector length d ≤ ``max_d``: the length comes from ``last`` and the
    matching constant ``numerics.sqrt_d_const(d)`` from the ``sqrt_d`` port. A vector longer than
    ``max_d`` is cut: element ``max_d`` is treated as the last one.

    Timing: d input cycles, then 4 cycles for the factor, then d output cycles (plus 3 cycles
    latency). The next vector loads while the previous one leaves (one buffer: an element is
    overwritten only after it has been read), so back-to-back vectors take d + 7 cycles each.

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

    @property
    def max_shift(self) -> int:
        """Largest output shift ``RSQRT_FRAC + e/2 - ACT_FRAC`` this ``max_d`` can produce."""
        return nx.RSQRT_FRAC + (self.ss_bits - nx.RSQRT_M_BITS - 1) // 2 - nx.ACT_FRAC

    def elaborate(self, platform):
        m = Module()
        max_d = self.max_d

        m.submodules.buffer = buffer = Memory(shape=ACT_SHAPE, depth=max_d, init=[])
        wr = buffer.write_port()
        rd = buffer.read_port(domain="sync")
        table = [int(v) for v in nx.RSQRT_TABLE]
        m.submodules.rsqrt = rsqrt = Memory(shape=unsigned(max(table).bit_length()),
                                            depth=len(table), init=table)
        rsqrt_rd = rsqrt.read_port(domain="sync")

        count = Signal(range(max_d + 1))  # elements of the incoming vector received
        square = Signal(2 * nx.ACT_BITS - 1)  # registered x², added one cycle later
        square_valid = Signal()
        sum_sq = Signal(self.ss_bits)
        nbits = Signal(range(self.ss_bits + 1))
        half_e = Signal(signed(max(8, self.ss_bits.bit_length() + 1)))  # e / 2
        # sized for any value the sqrt_d port can hold, not only sqrt_d_const(max_d)
        r = Signal(range(int(nx.RSQRT_TABLE.max()) * (2 ** len(self.sqrt_d) - 1)
                         // 2**nx.SQRTD_FRAC + 2))
        out_shift = Signal(range(self.max_shift + 1))

        m.d.sync += square_valid.eq(0)
        with m.If(square_valid):
            m.d.sync += sum_sq.eq(sum_sq + square)

        # --- emitter: buffer read → x·r → shift, round, saturate (global-stall pipeline) -------
        # It runs while the next vector loads into the same buffer: element k of the new vector
        # is written only after element k of the old one has been read (count < rd_ptr).
        emitting = Signal()
        emit_n = Signal(range(max_d + 1))
        advance = Signal()
        rd_ptr = Signal(range(max_d + 1))
        issue = Signal()
        v1, v2, v3 = Signal(), Signal(), Signal()
        last1, last2 = Signal(), Signal()
        product = Signal(signed(nx.ACT_BITS + len(r) + 1))
        m.d.comb += [
            advance.eq(~v3 | self.o_stream.ready),
            issue.eq(emitting & (rd_ptr < emit_n)),
            rd.addr.eq(rd_ptr),
            rd.en.eq(advance),
            self.o_stream.valid.eq(v3),
        ]
        with m.If(advance):
            m.d.sync += [
                v1.eq(issue), last1.eq(rd_ptr == emit_n - 1),
                v2.eq(v1), last2.eq(last1), product.eq(rd.data * r),
                v3.eq(v2), self.o_stream.p.last.eq(last2),
                self.o_stream.p.x.eq(saturate(shift_round_by(product, out_shift, self.max_shift))),
            ]
            with m.If(issue):
                m.d.sync += rd_ptr.eq(rd_ptr + 1)
        with m.If(self.o_stream.valid & self.o_stream.ready & self.o_stream.p.last):
            m.d.sync += emitting.eq(0)

        # --- loader and factor ----------------------------------------------------------------
        loading = Signal()
        # Continuous assignments rather than FSM-scoped ones: Icarus does not evaluate the
        # `always @*` blocks of the latter until an input changes, leaving ready at X.
        m.d.comb += [
            self.i_stream.ready.eq(loading & (~emitting | (count < rd_ptr))),
            wr.addr.eq(count), wr.data.eq(self.i_stream.p.x),
            wr.en.eq(self.i_stream.valid & self.i_stream.ready),
        ]
        with m.FSM() as fsm:
            m.d.comb += loading.eq(fsm.ongoing("LOAD"))
            with m.State("LOAD"):
                with m.If(self.i_stream.valid & self.i_stream.ready):
                    m.d.sync += [count.eq(count + 1), square_valid.eq(1),
                                 square.eq(self.i_stream.p.x * self.i_stream.p.x)]
                    with m.If(self.i_stream.p.last | (count == max_d - 1)):
                        m.next = "SUM"
            with m.State("SUM"):  # the last square is being added
                m.next = "WAIT"
            with m.State("WAIT"):  # r and the shift belong to the vector still leaving
                with m.If(~emitting):
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
                m.d.comb += [rsqrt_rd.addr.eq(mant - (1 << nx.RSQRT_M_BITS))]
                m.next = "FACTOR"
            with m.State("FACTOR"):
                m.d.sync += [
                    r.eq(shift_round(rsqrt_rd.data * self.sqrt_d, nx.SQRTD_FRAC)),
                    out_shift.eq(nx.RSQRT_FRAC - nx.ACT_FRAC + half_e),
                    emitting.eq(1), emit_n.eq(count), rd_ptr.eq(0),
                    count.eq(0), sum_sq.eq(0),
                ]
                m.next = "LOAD"
        return m


#: Widest run-time shift of :class:`ChannelScale` (its ``shift`` port is signed 7 bits).
SHIFT_BITS = 7


class ChannelScale(wiring.Component):
    """``saturate(shift_round(x * mant, shift))`` per element: applies per-channel multipliers.

    With the norm weight's ``numerics.quantize_multipliers`` mantissas on ``mant`` and its shift
    on ``shift`` this is ``IntegerArithmetic.norm`` after :class:`RMSNormUnit`. Pipelined
    (latency 2), full rate, global stall.

    The ``shift`` port holds [-64, 63]; use :meth:`port_shift` to map any integer shift onto it:
    beyond the product's width a right shift always gives 0 and a left shift of ≥ ACT_BITS always
    saturates, so the clamp is exact and every shift ``numerics`` can produce is supported
    (``quantize_multipliers`` gives at most 40, negative ones for multipliers ≥ 2**15).

    Attributes
    ----------
    i_stream : In(stream.Signature(SCALE_IN))
    o_stream : Out(stream.Signature(ACT_ELEMENT))
    shift : In(signed(7))
        Applied to the element in the last stage; change it only while no element is in flight
        (e.g. between layers).
    """

    #: Product x·mant width (signed).
    PRODUCT_BITS = nx.ACT_BITS + nx.MULT_BITS

    i_stream: In(stream.Signature(SCALE_IN))
    o_stream: Out(stream.Signature(ACT_ELEMENT))
    shift: In(signed(SHIFT_BITS))

    @classmethod
    def port_shift(cls, shift: int) -> int:
        """The ``shift`` port value that gives exactly ``shift_round(x * mant, shift)``."""
        try:
            shift = operator.index(shift)
        except TypeError:
            raise TypeError(f"shift must be an integer, not {shift!r}") from None
        return max(-nx.ACT_BITS, min(shift, cls.PRODUCT_BITS + 1))

    def elaborate(self, platform):
        m = Module()
        advance = Signal()
        m.d.comb += [advance.eq(~self.o_stream.valid | self.o_stream.ready),
                     self.i_stream.ready.eq(advance)]
        max_right = 2 ** (SHIFT_BITS - 1) - 1
        max_left = nx.ACT_BITS  # a larger left shift saturates just the same

        v1 = Signal()
        last1 = Signal()
        product = Signal(signed(self.PRODUCT_BITS))
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
