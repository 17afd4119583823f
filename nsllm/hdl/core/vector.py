"""``VectorUnit``: the elementwise instructions, ``vector`` lanes of the pipelined units.

Each lane is an instance of the standalone units of :mod:`nsllm.hdl` — :class:`ChannelScale`
(the RMS factor, then the norm weight), :class:`MLGRUStateUnit`, :class:`SiluGateUnit`,
:class:`ResidualAdder` — and the whole vector shares one :class:`SumOfSquares`,
:class:`RsqrtFactor` and :class:`Argmax`, so every rule exists once in RTL and once in
:mod:`nsllm.model.numerics`. An instruction streams its operands from the scratchpad (and its
table) one word of ``vector`` elements per cycle into the lanes of its opcode and writes the
lanes' results back in order; RMSNorm is two passes (Σx², then the scaled output).

==========  ==================================================================================
EMBED       dst = sat(table) (the embedding row the table loader fetched)
NORM        dst = ChannelScale(ChannelScale(src_a; r, shift); table, shift_a), after Σx² → r
UNORM       dst = ChannelScale(src_a; r, shift), after Σx² → r
MLGRU       dst = MLGRUStateUnit(i = src_a, f = src_b, lb = table, h = dst)
SILUGATE    dst = SiluGateUnit(value = src_a, gated = src_b)
ADD         dst = ResidualAdder(src_a, src_b)
CLEAR       dst = 0
ARGMAX      TOKEN_OUT = Argmax(src_a)
COUNT       dst = EncoderArray(src_a; table, shift_a, D, delta_q, unsigned_counts = flags bit 1)
==========  ==================================================================================

COUNT's :class:`~nsllm.hdl.spike.EncoderArray` is the LINEAR's encoder (``vector`` lanes of
MembraneScale → SpikeEncoder), its counts written as activations: SLA's q, k and v. It is built
with the SLA unit only (``CoreParams.max_sla_layers`` > 0); elsewhere COUNT is a FIELD error.
"""

from __future__ import annotations

from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nsllm.isa import MAX_SHIFT, Op
from nsllm.isa.opcodes import FLAG_UNSIGNED
from nsllm.model import numerics as nx

from ..argmax import Argmax
from ..fixed_point import ACT_SHAPE, saturate
from ..gate import ResidualAdder, SiluGateUnit
from ..mlgru import MLGRUStateUnit
from ..norm import ChannelScale, RsqrtFactor, SumOfSquares, factor_bits
from ..shared_memory import read_signature, write_signature
from ..spike import EncoderArray
from .params import CoreParams
from .sequencer import command_layout
from .tables import table_word

__all__ = ["VectorUnit", "act_word", "VECTOR_OPS"]

#: The opcodes this unit runs (its row of the sequencer's dispatch table).
VECTOR_OPS = (Op.EMBED, Op.NORM, Op.UNORM, Op.MLGRU, Op.SILUGATE, Op.ADD, Op.CLEAR, Op.ARGMAX,
              Op.COUNT)


def act_word(vector: int) -> data.ArrayLayout:
    """A scratchpad word: ``vector`` activations."""
    return data.ArrayLayout(ACT_SHAPE, vector)


class VectorUnit(wiring.Component):
    """The elementwise instructions (see the module docstring).

    Attributes
    ----------
    cmd : In(stream.Signature(command_layout()))
        Taken when idle.
    done : Out(1)
        One cycle when the instruction's last result is written.
    token_out : Out(32)
        The last ARGMAX result.
    error : Out(1)
        Sticky: COUNT's encoders saw D or a shift out of range (ERROR_INFO's encoder bit);
        ``clear_errors`` (the run's start) clears it.
    r_a, r_b, r_c, w : scratchpad read clients (src_a, src_b, dst) and write client.
    t : table-memory read client.
    """

    #: Lane pipeline of each opcode (the units' ``latency`` attributes time them); EMBED's
    #: saturating register takes ``EMBED_LATENCY``; a second pass (NORM, UNORM) starts reading
    #: ``RESTART_CYCLES`` after the RMS factor arrives.
    LANES = {Op.NORM: (ChannelScale, ChannelScale), Op.UNORM: (ChannelScale,),
             Op.MLGRU: (MLGRUStateUnit,), Op.SILUGATE: (SiluGateUnit,), Op.ADD: (ResidualAdder,),
             Op.COUNT: (EncoderArray,)}
    EMBED_LATENCY, RESTART_CYCLES = 1, 1

    def __init__(self, params: CoreParams):
        self.params = params
        E = params.vector
        sw, tw = params.scratch_words, 2 * params.table_bank_words
        super().__init__({
            "cmd": In(stream.Signature(command_layout())),
            "done": Out(1),
            "token_out": Out(32),
            "error": Out(1),
            "clear_errors": In(1),
            "r_a": Out(read_signature(act_word(E), sw)),
            "r_b": Out(read_signature(act_word(E), sw)),
            "r_c": Out(read_signature(act_word(E), sw)),
            "w": Out(write_signature(act_word(E), sw)),
            "t": Out(read_signature(table_word(E), tw)),
        })

    def elaborate(self, platform):  # noqa: C901 — one pass engine, read top to bottom
        m = Module()
        p = self.params
        E = p.vector
        lg_e = (E - 1).bit_length()
        lg_bank = (p.table_bank_words - 1).bit_length()
        max_d = p.max_in

        # ---- units: the shared reducers and E lanes of each elementwise unit
        m.submodules.sum_sq = ssq = SumOfSquares(E, max(max_d, p.max_vocab))
        m.submodules.factor = factor = RsqrtFactor(max(max_d, p.max_vocab))
        m.submodules.argmax = argmax = Argmax(p.max_vocab, lanes=E)
        count = p.max_sla_layers > 0  # COUNT exists for SLA layers only (no encoders otherwise)
        if count:
            enc = EncoderArray(E, p.max_D, shift_max=MAX_SHIFT, index_bits=1)
            m.submodules.encoders = ResetInserter(self.clear_errors)(enc)  # error: per run
        r_bits = factor_bits(factor.max_d) + 1
        lanes = []
        for i in range(E):
            lane = {
                "rscale": ChannelScale(mant_bits=r_bits), "wscale": ChannelScale(),
                "mlgru": MLGRUStateUnit(), "gate": SiluGateUnit(), "add": ResidualAdder(),
            }
            for name, unit in lane.items():
                m.submodules[f"{name}{i}"] = unit
                m.d.comb += unit.o_stream.ready.eq(1)  # results are always written at once
            lanes.append(lane)

        # ---- the instruction
        d = Signal.like(self.cmd.p.desc)
        bank = Signal()
        busy = Signal()
        kind = Signal(8)  # the pass being run (SUMSQ passes run with kind = UNORM, sumsq = 1)
        sumsq = Signal()
        words = Signal(32)
        m.d.comb += self.cmd.ready.eq(~busy)

        # ---- read stage: word iw of src_a, src_b, dst and the table, every cycle of a pass
        reading = Signal()
        iw = Signal(32)
        m.d.comb += [
            self.r_a.addr.eq((d.src_a >> lg_e) + iw), self.r_b.addr.eq((d.src_b >> lg_e) + iw),
            self.r_c.addr.eq((d.dst >> lg_e) + iw),
            self.t.addr.eq((bank << lg_bank) | iw),
            self.r_a.en.eq(reading), self.r_b.en.eq(reading), self.r_c.en.eq(reading),
            self.t.en.eq(reading),
        ]
        v_rd, last_rd = Signal(), Signal()
        m.d.sync += [v_rd.eq(reading), last_rd.eq(reading & (iw + 1 == words))]
        with m.If(reading):
            m.d.sync += iw.eq(iw + 1)
            with m.If(iw + 1 == words):
                m.d.sync += reading.eq(0)
        a, b, c, t = self.r_a.data, self.r_b.data, self.r_c.data, self.t.data

        # ---- feed the lanes of the running kind
        is_kind = {op: (kind == op) & ~sumsq for op in Op}
        m.d.comb += [ssq.i_stream.valid.eq(v_rd & sumsq), ssq.i_stream.p.last.eq(last_rd),
                     argmax.i_stream.valid.eq(v_rd & is_kind[Op.ARGMAX]),
                     argmax.i_stream.p.last.eq(last_rd), argmax.o_stream.ready.eq(1)]
        r = Signal.like(factor.o_stream.p.r)
        r_shift = Signal.like(factor.o_stream.p.shift)
        t_d1, t_d2 = Signal.like(t), Signal.like(t)  # the norm weights, aligned with rscale's out
        m.d.sync += [t_d1.eq(t), t_d2.eq(t_d1)]
        norm_pass = is_kind[Op.NORM] | is_kind[Op.UNORM]
        for i, lane in enumerate(lanes):
            m.d.comb += [ssq.i_stream.p.x[i].eq(a[i]), argmax.i_stream.p.x[i].eq(a[i])]
            rs, ws = lane["rscale"], lane["wscale"]
            m.d.comb += [rs.i_stream.valid.eq(v_rd & norm_pass), rs.i_stream.p.x.eq(a[i]),
                         rs.i_stream.p.mant.eq(r), rs.i_stream.p.last.eq(last_rd),
                         rs.shift.eq(r_shift),
                         ws.i_stream.valid.eq(rs.o_stream.valid & is_kind[Op.NORM]),
                         ws.i_stream.p.x.eq(rs.o_stream.p.x),
                         ws.i_stream.p.mant.eq(t_d2[i][:nx.MULT_BITS]),
                         ws.i_stream.p.last.eq(rs.o_stream.p.last), ws.shift.eq(d.shift_a)]
            g = lane["mlgru"]
            m.d.comb += [g.i_stream.valid.eq(v_rd & is_kind[Op.MLGRU]),
                         g.i_stream.p.i_pre.eq(a[i]), g.i_stream.p.f_pre.eq(b[i]),
                         g.i_stream.p.lb.eq(t[i][:nx.GATE_FRAC + 1]), g.i_stream.p.h.eq(c[i]),
                         g.i_stream.p.last.eq(last_rd)]
            s = lane["gate"]
            m.d.comb += [s.i_stream.valid.eq(v_rd & is_kind[Op.SILUGATE]),
                         s.i_stream.p.value.eq(a[i]), s.i_stream.p.gated.eq(b[i]),
                         s.i_stream.p.last.eq(last_rd)]
            ad = lane["add"]
            m.d.comb += [ad.i_stream.valid.eq(v_rd & is_kind[Op.ADD]),
                         ad.i_stream.p.a.eq(a[i]), ad.i_stream.p.b.eq(b[i]),
                         ad.i_stream.p.last.eq(last_rd)]
        if count:
            m.d.comb += [enc.i_stream.valid.eq(v_rd & is_kind[Op.COUNT]),
                         enc.i_stream.p.last.eq(last_rd), enc.o_stream.ready.eq(1),
                         enc.D.eq(d.D), enc.delta_q.eq(d.delta_q), enc.shift.eq(d.shift_a),
                         enc.unsigned_counts.eq((d.flags & FLAG_UNSIGNED).bool()),
                         self.error.eq(enc.error)]
            for i in range(E):
                m.d.comb += [enc.i_stream.p.x[i].eq(a[i]), enc.i_stream.p.mant[i].eq(t[i])]
        embed_v = Signal()
        embed_x = Signal(act_word(E))
        m.d.sync += embed_v.eq(v_rd & is_kind[Op.EMBED])
        for i in range(E):
            m.d.sync += embed_x[i].eq(saturate(t[i]))

        # ---- write stage: the running kind's results, in order, from dst on
        outputs = {
            Op.NORM: [lane["wscale"].o_stream for lane in lanes],
            Op.UNORM: [lane["rscale"].o_stream for lane in lanes],
            Op.MLGRU: [lane["mlgru"].o_stream for lane in lanes],
            Op.SILUGATE: [lane["gate"].o_stream for lane in lanes],
            Op.ADD: [lane["add"].o_stream for lane in lanes],
        }
        ow = Signal(32)
        clearing = Signal()
        w_valid = Signal()
        for op, streams in outputs.items():
            with m.If(is_kind[op] & streams[0].valid):
                m.d.comb += w_valid.eq(1)
                for i, st in enumerate(streams):
                    field = st.p.h if op == Op.MLGRU else st.p.x
                    m.d.comb += self.w.data[i].eq(field)
        with m.If(is_kind[Op.EMBED] & embed_v):
            m.d.comb += [w_valid.eq(1), self.w.data.eq(embed_x)]
        if count:
            with m.If(is_kind[Op.COUNT] & enc.o_stream.valid):
                m.d.comb += w_valid.eq(1)
                for i in range(E):
                    m.d.comb += self.w.data[i].eq(enc.o_stream.p.counts[i])
        with m.If(clearing):
            m.d.comb += w_valid.eq(1)  # data stays 0
        m.d.comb += [self.w.addr.eq((d.dst >> lg_e) + ow),
                     self.w.en.eq(w_valid.replicate(E))]
        finish = Signal()
        with m.If(w_valid):
            m.d.sync += ow.eq(ow + 1)
            with m.If(ow + 1 == words):
                m.d.comb += finish.eq(1)
                m.d.sync += clearing.eq(0)

        # ---- the reductions: Σx² → RMS factor → second pass; ARGMAX → TOKEN_OUT
        m.d.comb += [factor.i_stream.valid.eq(ssq.o_stream.valid),
                     factor.i_stream.p.sum_sq.eq(ssq.o_stream.p.sum_sq),
                     factor.i_stream.p.sqrt_d.eq(d.param),
                     ssq.o_stream.ready.eq(factor.i_stream.ready),
                     factor.o_stream.ready.eq(1)]
        with m.If(factor.o_stream.valid):
            m.d.sync += [r.eq(factor.o_stream.p.r), r_shift.eq(factor.o_stream.p.shift),
                         sumsq.eq(0), reading.eq(1), iw.eq(0)]
        with m.If(argmax.o_stream.valid):
            m.d.sync += self.token_out.eq(argmax.o_stream.p.index)
            m.d.comb += finish.eq(1)

        with m.If(finish):
            m.d.sync += busy.eq(0)
            m.d.comb += self.done.eq(1)

        # ---- start an instruction
        with m.If(self.cmd.valid & self.cmd.ready):
            desc = self.cmd.p.desc
            op = desc.op
            m.d.sync += [d.eq(desc), bank.eq(self.cmd.p.bank), busy.eq(1), iw.eq(0), ow.eq(0),
                         words.eq(desc.n >> lg_e), kind.eq(op),
                         sumsq.eq((op == Op.NORM) | (op == Op.UNORM)),
                         reading.eq(op != Op.CLEAR), clearing.eq(op == Op.CLEAR)]
        return m
