"""``SLAUnit``: the spike-based linear attention state unit, for SLA and SLACLEAR.

::

    scratch src_a/src_b/src_c ─► count registers q, k, v of the head (LOAD, range-checked)
    table (decay shifts)      ─► b_h
    state memory (slot) ─► SLAStateLanes (decay, + k_i·v, q_i·S') ─► state memory (same word)
                                                 └─► read-out accumulators o += q_i·S'_i
    o ─► |o| OR → e (MAG, EXP) ─► shift_round(o, e) ─► scratch dst (WRITE)

The state of every SLA layer stays on chip: ``max_sla_layers`` *slots* of
``max_hidden · max_head_dim`` 24-bit entries in one memory of ``sla_lanes`` entries a word
(URAM-friendly: 24-bit entries pack three to a 72-bit URAM word, and the word is a whole number
of entries). A layer's heads lie at the start of its slot, head after head, row-major, so one
token's pass visits the layer's state words in address order, one word per cycle.

Per head h of size m (= d_h) the SLA instruction runs

1. **LOAD** (m / vector cycles): the head's q, k, v counts from the scratchpad into registers,
   each checked against the unit's count range (q, k ∈ [0, 15], v ∈ [−15, 15]); the head's
   decay shift b_h from the table (entry h·m), checked against [1, 12].
2. **ROWS** (m · m / sla_lanes cycles): for every row i and every chunk of ``sla_lanes``
   columns, read the state word, pass it through the lanes with k_i, q_i, v_chunk and b_h,
   write the updated word back, and add the read terms into the chunk's read-out accumulators
   (signed, wide enough for d_h · 15 · 2**23: no overflow).
3. **DRAIN** (the pipeline empties), **MAG** (m / sla_lanes cycles: the OR of |o_j|), **EXP**
   (one cycle: e = max(0, bitlen − (ACT_BITS − 2))).
4. **WRITE** (m / vector cycles): ``shift_round(o_j, e)`` (|·| ≤ 2**22) to ``dst``.

That is ``numerics.sla_q``; the NORM instructions after it finish ``head_rmsnorm_q``. SLACLEAR
writes zeros over its slot, one word per cycle. A count or a shift out of range sets the sticky
``error`` (ERROR_INFO bit 4) and the instruction completes.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nsllm.isa import Op
from nsllm.model import numerics as nx

from ..fixed_point import shift_round_by
from ..shared_memory import SharedMemory, read_signature, write_signature
from ..sla import COUNT_BITS, SHIFT_BITS, STATE_SHAPE, SLAStateLanes
from .params import CoreParams
from .sequencer import command_layout
from .tables import table_word
from .vector import act_word

__all__ = ["SLA_OPS", "SLAUnit", "read_out_bits"]

SLA_OPS = (Op.SLA, Op.SLACLEAR)


def read_out_bits(head_dim: int) -> int:
    """Signed width of a read-out accumulator: |o| ≤ d_h · SLA_MAX_COUNT · 2**23 (the state is
    24-bit two's complement, so |S| ≤ 2**23)."""
    return (head_dim * nx.SLA_MAX_COUNT << (nx.SLA_STATE_BITS - 1)).bit_length() + 1


class SLAUnit(wiring.Component):
    """The SLA and SLACLEAR instructions (see the module docstring).

    Attributes
    ----------
    cmd : In(stream.Signature(command_layout())); done : Out(1)
    r_q, r_k, r_v : scratchpad read clients (src_a, src_b, src_c); w : write client (dst).
    t : table-memory read client.
    error : Out(1)
        Sticky: a count or a decay shift outside the unit's range.
    """

    #: Cycles from the last state read of a head to its read-out complete (the state memory's
    #: read latency and the lanes' pipeline), and of the exponent step; the cycle model adds up
    #: the phases of the module docstring with these.
    drain_cycles = SharedMemory.read_latency + SLAStateLanes.latency
    exponent_cycles = 1

    def __init__(self, params: CoreParams):
        if params.max_sla_layers < 1:
            raise ValueError("the SLA unit needs CoreParams.max_sla_layers ≥ 1")
        self.params = params
        E = params.vector
        sw, tw = params.scratch_words, 2 * params.table_bank_words
        super().__init__({
            "cmd": In(stream.Signature(command_layout())),
            "done": Out(1),
            "r_q": Out(read_signature(act_word(E), sw)),
            "r_k": Out(read_signature(act_word(E), sw)),
            "r_v": Out(read_signature(act_word(E), sw)),
            "w": Out(write_signature(act_word(E), sw)),
            "t": Out(read_signature(table_word(E), tw)),
            "error": Out(1),
        })

    @staticmethod
    def head_cycles(params: CoreParams, m: int) -> int:
        """Cycles of one head of size ``m``: LOAD, ROWS, DRAIN, MAG, EXP, WRITE."""
        words, chunks = m // params.vector, m // params.sla_lanes
        return (2 * words + m * chunks + SLAUnit.drain_cycles + chunks
                + SLAUnit.exponent_cycles)

    def elaborate(self, platform):  # noqa: C901 — one state machine, read top to bottom
        m = Module()
        p = self.params
        E, L, DH = p.vector, p.sla_lanes, p.max_head_dim
        lg_e, lg_l = (E - 1).bit_length(), (L - 1).bit_length()
        lg_bank = (p.table_bank_words - 1).bit_length()
        slot_words = p.sla_slot_words
        depth = p.max_sla_layers * slot_words
        chunks_max, words_max = DH // L, DH // E
        rb = read_out_bits(DH)

        m.submodules.state = state = Memory(
            shape=data.ArrayLayout(STATE_SHAPE, L), depth=depth, init=[])
        st_rd, st_wr = state.read_port(), state.write_port()
        m.submodules.lanes = lanes = SLAStateLanes(L)
        m.d.comb += lanes.o_stream.ready.eq(1)  # never stalls: results are written at once

        d = Signal.like(self.cmd.p.desc)
        bank = Signal()
        busy = Signal()
        m.d.comb += self.cmd.ready.eq(~busy)
        words = Signal(range(words_max + 1))  # scratch words per head: m / E
        chunks = Signal(range(chunks_max + 1))  # state words per row: m / L
        n_words = Signal(32)  # scratch words of all heads: n / E
        head_w = Signal(32)  # first scratch word of the head, relative to each operand
        sa = Signal(range(depth + 1))  # state word being read (ROWS) or cleared (CLEAR)
        sa_end = Signal.like(sa)  # the end of the slot (CLEAR)
        base = Array(Const(s * slot_words, range(depth + 1)) for s in range(p.max_sla_layers))

        # ---- the head's counts, its decay shift, its read-out accumulators
        qr = Signal(data.ArrayLayout(unsigned(COUNT_BITS), DH))
        kr = Signal(data.ArrayLayout(unsigned(COUNT_BITS), DH))
        vr = Signal(data.ArrayLayout(signed(COUNT_BITS + 1), DH))
        b = Signal(SHIFT_BITS)
        o = [Signal(signed(rb), name=f"o{j}") for j in range(DH)]
        mag = Signal(rb)
        e = Signal(range(rb))

        # ---- LOAD: word lw of q, k, v (and the table word of the head's first channel)
        lw = Signal(range(words_max + 1))
        loading = Signal()
        ld_valid, ld_w, ld_first = Signal(), Signal(range(words_max)), Signal()
        m.d.comb += [
            self.r_q.addr.eq((d.src_a >> lg_e) + head_w + lw),
            self.r_k.addr.eq((d.src_b >> lg_e) + head_w + lw),
            self.r_v.addr.eq((d.src_c >> lg_e) + head_w + lw),
            self.t.addr.eq((bank << lg_bank) | head_w),
            self.r_q.en.eq(loading), self.r_k.en.eq(loading), self.r_v.en.eq(loading),
            self.t.en.eq(loading),
        ]
        m.d.sync += [ld_valid.eq(loading), ld_w.eq(lw), ld_first.eq(lw == 0)]
        top = nx.SLA_MAX_COUNT
        with m.If(ld_valid):
            bad = []
            with m.Switch(ld_w):
                for w in range(words_max):
                    with m.Case(w):
                        for lane in range(E):
                            j = w * E + lane
                            m.d.sync += [qr[j].eq(self.r_q.data[lane]),
                                         kr[j].eq(self.r_k.data[lane]),
                                         vr[j].eq(self.r_v.data[lane])]
            for lane in range(E):
                qv, kv, vv = self.r_q.data[lane], self.r_k.data[lane], self.r_v.data[lane]
                bad += [(qv < 0) | (qv > top), (kv < 0) | (kv > top), (vv < -top) | (vv > top)]
            shift = self.t.data[0]
            bad.append(ld_first & ((shift < 1) | (shift > nx.SLA_MAX_DECAY_SHIFT)))
            with m.If(ld_first):
                m.d.sync += b.eq(shift[:SHIFT_BITS])
            with m.If(Cat(*bad).any()):
                m.d.sync += self.error.eq(1)

        # ---- ROWS: one state word per cycle through the lanes and back
        row, ch = Signal(range(DH)), Signal(range(max(chunks_max, 2)))
        reading = Signal()
        r_valid, r_row, r_ch, r_addr = Signal(), Signal.like(row), Signal.like(ch), Signal.like(sa)
        m.d.comb += [st_rd.addr.eq(sa), st_rd.en.eq(reading)]
        m.d.sync += [r_valid.eq(reading), r_row.eq(row), r_ch.eq(ch), r_addr.eq(sa)]
        v_chunks = [Array(vr[c * L + lane] for c in range(chunks_max)) for lane in range(L)]
        m.d.comb += [lanes.i_stream.valid.eq(r_valid),
                     lanes.i_stream.p.k.eq(Array(kr[j] for j in range(DH))[r_row]),
                     lanes.i_stream.p.q.eq(Array(qr[j] for j in range(DH))[r_row]),
                     lanes.i_stream.p.shift.eq(b)]
        for lane in range(L):
            m.d.comb += [lanes.i_stream.p.s[lane].eq(st_rd.data[lane]),
                         lanes.i_stream.p.v[lane].eq(v_chunks[lane][r_ch])]
        # the word's address and chunk, alongside the lanes' pipeline
        addr_line = [Signal.like(sa, name=f"addr_d{k}") for k in range(SLAStateLanes.latency)]
        ch_line = [Signal.like(ch, name=f"ch_d{k}") for k in range(SLAStateLanes.latency)]
        m.d.sync += [addr_line[0].eq(r_addr), ch_line[0].eq(r_ch)]
        for k in range(1, SLAStateLanes.latency):
            m.d.sync += [addr_line[k].eq(addr_line[k - 1]), ch_line[k].eq(ch_line[k - 1])]
        out = lanes.o_stream
        clearing = Signal()
        with m.If(out.valid):
            m.d.comb += [st_wr.addr.eq(addr_line[-1]), st_wr.data.eq(out.p.s), st_wr.en.eq(1)]
        with m.Elif(clearing):
            m.d.comb += [st_wr.addr.eq(sa), st_wr.en.eq(1)]  # data stays 0
        for lane in range(L):  # o[chunk] += t, one adder per lane shared by the chunks
            acc = Array(o[c * L + lane] for c in range(chunks_max))[ch_line[-1]]
            total = Signal(signed(rb), name=f"o_next{lane}")
            m.d.comb += total.eq(acc + out.p.t[lane])
            for c in range(chunks_max):
                with m.If(out.valid & (ch_line[-1] == c)):
                    m.d.sync += o[c * L + lane].eq(total)

        # ---- MAG and WRITE: the pre-shift of the read-out
        mc = Signal(range(chunks_max + 1))
        drain = Signal(range(self.drain_cycles + 1))
        ww = Signal(range(words_max + 1))
        chunk_mag = 0
        for lane in range(L):
            chunk_mag = chunk_mag | abs(Array(o[c * L + lane] for c in range(chunks_max))[mc])
        nbits = Signal(range(rb + 1))
        for bit in range(rb):
            with m.If(mag[bit]):
                m.d.comb += nbits.eq(bit + 1)
        keep = nx.ACT_BITS - 2  # |o'| ≤ 2**(ACT_BITS − 2) after the shift
        writing = Signal()
        m.d.comb += [self.w.addr.eq((d.dst >> lg_e) + head_w + ww),
                     self.w.en.eq(writing.replicate(E))]
        for lane in range(E):
            value = Array(o[x * E + lane] for x in range(words_max))[ww]
            m.d.comb += self.w.data[lane].eq(shift_round_by(value, e, rb - keep)[:nx.ACT_BITS])

        def start_head():
            m.d.sync += [lw.eq(0), mag.eq(0), *(x.eq(0) for x in o)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.cmd.valid):
                    desc = self.cmd.p.desc
                    slot = desc.slot[:max(1, (p.max_sla_layers - 1).bit_length())]
                    m.d.sync += [d.eq(desc), bank.eq(self.cmd.p.bank), busy.eq(1),
                                 words.eq(desc.m >> lg_e), chunks.eq(desc.m >> lg_l),
                                 n_words.eq(desc.n >> lg_e), head_w.eq(0),
                                 sa.eq(base[slot]), sa_end.eq(base[slot] + slot_words)]
                    start_head()
                    with m.If(desc.op == Op.SLACLEAR):
                        m.next = "CLEAR"
                    with m.Else():
                        m.next = "LOAD"
            with m.State("CLEAR"):
                m.d.comb += clearing.eq(1)
                m.d.sync += sa.eq(sa + 1)
                with m.If(sa + 1 == sa_end):
                    m.d.sync += busy.eq(0)
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
            with m.State("LOAD"):
                m.d.comb += loading.eq(1)
                m.d.sync += lw.eq(lw + 1)
                with m.If(lw + 1 == words):
                    m.d.sync += [row.eq(0), ch.eq(0)]
                    m.next = "ROWS"
            with m.State("ROWS"):
                m.d.comb += reading.eq(1)
                m.d.sync += sa.eq(sa + 1)
                with m.If(ch + 1 == chunks):
                    m.d.sync += [ch.eq(0), row.eq(row + 1)]
                    with m.If(row + 1 == d.m):
                        m.d.sync += drain.eq(self.drain_cycles)
                        m.next = "DRAIN"
                with m.Else():
                    m.d.sync += ch.eq(ch + 1)
            with m.State("DRAIN"):  # the last words still in the memory read and the lanes
                m.d.sync += [drain.eq(drain - 1), mc.eq(0)]
                with m.If(drain == 1):
                    m.next = "MAG"
            with m.State("MAG"):
                m.d.sync += [mag.eq(mag | chunk_mag), mc.eq(mc + 1)]
                with m.If(mc + 1 == chunks):
                    m.next = "EXP"
            with m.State("EXP"):
                m.d.sync += [e.eq(Mux(nbits > keep, nbits - keep, 0)), ww.eq(0)]
                m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += writing.eq(1)
                m.d.sync += ww.eq(ww + 1)
                with m.If(ww + 1 == words):
                    with m.If(head_w + words == n_words):
                        m.d.sync += busy.eq(0)
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += head_w.eq(head_w + words)
                        start_head()
                        m.next = "LOAD"
        return m
