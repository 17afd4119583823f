"""``LinearUnit``: the spiking linear chain of the core, for the LINEAR instruction.

::

    scratch src_a ─┐                 ┌─► scratch src_b (a copy of the counts)
    table (mants) ─┴► EncoderArray ──┤
                                     └─► SpikeIndexFilter ─► route ─► port k FIFO ─► Streamer k
                                         (the spike queue)   (j mod N)               │ (unpacker)
                                                                                     ▼
    scratch dst ◄── Requantizer ◄── Σ over the N AccumulatorBanks ◄──────────── AccumulatorBank k

1. The :class:`~nsllm.hdl.spike.EncoderArray` turns ``vector`` inputs per cycle into I-LIF
   spike counts (their copy goes to the scratchpad's spike region).
2. The :class:`~nsllm.hdl.spike.SpikeIndexFilter` emits only the non-zero counts, one per
   cycle, with their input index ``j``: the spike queue all ports share.
3. The route stage sends column ``j`` to port ``j mod N`` at ``weight + (j div N) · stride`` in
   that port's region (:mod:`nsllm.isa.layout`) — computed without a multiplier: per word, a
   running slot address and phase; per lane, small constant tables and multiples of the stride
   added up when the instruction starts — and checks that the slot lies inside ``wsize``.
4. Each port's :class:`~nsllm.hdl.core.streamer.WeightStreamer` fetches its columns (one burst
   each) and feeds its :class:`~nsllm.hdl.accumulator.AccumulatorBank`.
5. When every port has drained, the :class:`Requantizer` sums the banks and writes
   ``sat(shift_round(acc · param, shift_b))`` to ``dst``, ``vector`` outputs per cycle.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from nsllm.isa import MAX_SHIFT, Op
from nsllm.isa.opcodes import FLAG_BASE3
from nsllm.model import numerics as nx

from ..accumulator import AccumulatorBank, count_shape
from ..norm import ChannelScale
from ..shared_memory import read_signature, write_signature
from ..spike import EncoderArray, SpikeIndexFilter
from .axi import read_client_signature
from .params import CoreParams
from .sequencer import command_layout
from .streamer import WeightStreamer
from .tables import table_word
from .vector import act_word

__all__ = ["LINEAR_OPS", "LinearUnit", "Requantizer"]

LINEAR_OPS = (Op.LINEAR,)


class Requantizer(wiring.Component):
    """Σ of ``banks`` accumulator words → ``sat(shift_round(Σ · param, shift))``, ``lanes`` a beat.

    A sum stage, then a :class:`~nsllm.hdl.norm.ChannelScale` per lane (the one multiply and the
    rounding shift, the same rule as every other scale of the core). Latency 3, full rate.

    Attributes
    ----------
    i_stream : In(stream({"acc": ArrayLayout(ArrayLayout(signed(acc_bits), lanes), banks),
        "last"}))
    o_stream : Out(stream({"x": ArrayLayout(ACT, lanes), "last"}))
    param : In(signed(32)); shift : In(signed(7))
    """

    def __init__(self, lanes: int, banks: int, acc_bits: int):
        self.lanes, self.banks, self.acc_bits = lanes, banks, acc_bits
        self.sum_bits = acc_bits + (banks - 1).bit_length()
        super().__init__({
            "i_stream": In(stream.Signature(data.StructLayout({
                "acc": data.ArrayLayout(data.ArrayLayout(signed(acc_bits), lanes), banks),
                "last": 1}))),
            "o_stream": Out(stream.Signature(data.StructLayout({
                "x": data.ArrayLayout(signed(nx.ACT_BITS), lanes), "last": 1}))),
            "param": In(signed(32)),
            "shift": In(signed(7)),
        })

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        scales = [ChannelScale(mant_bits=32, x_bits=self.sum_bits) for _ in range(self.lanes)]
        v1, last1 = Signal(), Signal()
        sums = [Signal(signed(self.sum_bits), name=f"sum{k}") for k in range(self.lanes)]
        advance = scales[0].i_stream.ready | ~v1
        m.d.comb += i.ready.eq(advance)
        with m.If(advance):
            m.d.sync += [v1.eq(i.valid), last1.eq(i.p.last)]
            for k in range(self.lanes):
                total = i.p.acc[0][k]
                for b in range(1, self.banks):
                    total = total + i.p.acc[b][k]
                m.d.sync += sums[k].eq(total)
        for k, sc in enumerate(scales):
            m.submodules[f"scale{k}"] = sc
            m.d.comb += [sc.i_stream.valid.eq(v1), sc.i_stream.p.x.eq(sums[k]),
                         sc.i_stream.p.mant.eq(self.param), sc.i_stream.p.last.eq(last1),
                         sc.shift.eq(self.shift), sc.o_stream.ready.eq(o.ready),
                         o.p.x[k].eq(sc.o_stream.p.x)]
        m.d.comb += [o.valid.eq(scales[0].o_stream.valid), o.p.last.eq(scales[0].o_stream.p.last)]
        return m


class LinearUnit(wiring.Component):
    """The LINEAR instruction (see the module docstring).

    Attributes
    ----------
    cmd : In(stream.Signature(command_layout())); done : Out(1)
    r_a : scratchpad read client (src_a); w_spikes, w_out : scratchpad write clients.
    t : table-memory read client.
    ports[k] : Out(read_client_signature(port_bytes)) — weight port k's requests and beats.
    bases[k] : In(64) — W<k>.
    spikes_nonzero, spikes_total : Out — increments this cycle (for the counters).
    port_beats : Out(N) — a weight beat arrived on port k this cycle.
    errors : Out(3) — sticky: bit 0 invalid trit code, bit 1 accumulator contract,
        bit 2 encoder range (ERROR_INFO bits).
    weight_error, axi_error : Out(1) — sticky: a column outside its slot range; an AXI error.
    """

    def __init__(self, params: CoreParams):
        self.params = params
        E, N = params.vector, params.weight_ports
        sw, tw = params.scratch_words, 2 * params.table_bank_words
        super().__init__({
            "cmd": In(stream.Signature(command_layout())),
            "done": Out(1),
            "r_a": Out(read_signature(act_word(E), sw)),
            "w_spikes": Out(write_signature(act_word(E), sw)),
            "w_out": Out(write_signature(act_word(E), sw)),
            "t": Out(read_signature(table_word(E), tw)),
            "ports": Out(read_client_signature(params.port_bytes)).array(N),
            "bases": In(64).array(N),
            "spikes_nonzero": Out(1), "spikes_total": Out(range(E + 1)),
            "port_beats": Out(N),
            "errors": Out(3), "weight_error": Out(1), "axi_error": Out(1),
        })

    def elaborate(self, platform):  # noqa: C901 — the chain, stage by stage
        m = Module()
        p = self.params
        E, N, pb = p.vector, p.weight_ports, p.port_bytes
        lg_e, lg_pb = (E - 1).bit_length(), (pb - 1).bit_length()
        lg_bank = (p.table_bank_words - 1).bit_length()
        index_bits = max(1, p.max_in.bit_length())
        cnt = count_shape(p.max_D)

        d = Signal.like(self.cmd.p.desc)
        bank = Signal()
        busy = Signal()
        base3 = Signal()
        m.d.comb += [self.cmd.ready.eq(~busy), base3.eq((d.flags & FLAG_BASE3).bool())]

        # ---- multiples of the stride, added up when the instruction starts (no multiplier)
        k_max = max((N - 1 + E - 1) // N, E // N + 1) + 1
        mult = Array(Signal(32, name=f"stride_x{k}") for k in range(k_max))
        setup_k = Signal(range(k_max + 1))

        # ---- 1. fetch src_a and the encoder mantissas, into a skid FIFO, into the encoders
        words = Signal(32)
        iw = Signal(32)
        fetching = Signal()
        v_rd = Signal()
        fetch_item = data.StructLayout({"x": act_word(E), "mant": data.ArrayLayout(
            signed(nx.MULT_BITS), E), "index": unsigned(index_bits), "last": 1})
        m.submodules.fetch = fetch = SyncFIFOBuffered(width=fetch_item.size, depth=4)
        issue = fetching & (iw < words) & (fetch.level < 2)
        m.d.comb += [self.r_a.addr.eq((d.src_a >> lg_e) + iw), self.r_a.en.eq(issue),
                     self.t.addr.eq((bank << lg_bank) | iw), self.t.en.eq(issue)]
        rd_index, rd_last = Signal(index_bits), Signal()
        m.d.sync += v_rd.eq(issue)
        with m.If(issue):
            m.d.sync += [iw.eq(iw + 1), rd_index.eq(iw << lg_e), rd_last.eq(iw + 1 == words)]
        item = Signal(fetch_item)
        m.d.comb += [item.x.eq(self.r_a.data), item.index.eq(rd_index), item.last.eq(rd_last)]
        for k in range(E):
            m.d.comb += item.mant[k].eq(self.t.data[k][:nx.MULT_BITS])
        m.d.comb += [fetch.w_data.eq(item), fetch.w_en.eq(v_rd)]

        m.submodules.encoders = enc = EncoderArray(E, p.max_D, shift_max=MAX_SHIFT,
                                                   index_bits=index_bits)
        head = Signal(fetch_item)
        m.d.comb += [head.eq(fetch.r_data), enc.i_stream.valid.eq(fetch.r_rdy),
                     fetch.r_en.eq(enc.i_stream.ready), enc.i_stream.p.index.eq(head.index),
                     enc.i_stream.p.last.eq(head.last), enc.D.eq(d.D), enc.delta_q.eq(d.delta_q),
                     enc.shift.eq(d.shift_a)]
        for k in range(E):
            m.d.comb += [enc.i_stream.p.x[k].eq(head.x[k]),
                         enc.i_stream.p.mant[k].eq(head.mant[k])]

        # ---- 2. the spike copy and the non-zero queue, with each word's slot address and phase
        side = data.StructLayout({"slot": unsigned(32), "phase": range(max(N, 2))})
        m.submodules.queue = queue = SpikeIndexFilter(p.max_D, index_bits=index_bits, lanes=E,
                                                      side=side)
        slot = Signal(32)  # offset of the slot of the word's lane 0: weight + (j0 div N)·stride
        phase = Signal(range(max(N, 2)))  # j0 mod N
        e_div, e_mod = divmod(E, N)
        word_fire = enc.o_stream.valid & queue.i_stream.ready
        m.d.comb += [queue.i_stream.valid.eq(enc.o_stream.valid),
                     enc.o_stream.ready.eq(queue.i_stream.ready),
                     queue.i_stream.p.index.eq(enc.o_stream.p.index),
                     queue.i_stream.p.last.eq(enc.o_stream.p.last),
                     queue.i_stream.p.side.slot.eq(slot), queue.i_stream.p.side.phase.eq(phase),
                     self.w_spikes.addr.eq((d.src_b >> lg_e) + (enc.o_stream.p.index >> lg_e)),
                     self.w_spikes.en.eq(word_fire.replicate(E))]
        for k in range(E):
            m.d.comb += [queue.i_stream.p.counts[k].eq(enc.o_stream.p.counts[k]),
                         self.w_spikes.data[k].eq(enc.o_stream.p.counts[k])]
        with m.If(word_fire):
            m.d.comb += self.spikes_total.eq(E)
            if N == 1:
                m.d.sync += slot.eq(slot + mult[E])
            else:
                carry = phase + e_mod >= N
                m.d.sync += [slot.eq(slot + mult[e_div + carry]),
                             phase.eq(Mux(carry, phase + e_mod - N, phase + e_mod))]

        # ---- 3. route: column j → port j mod N at slot + ((phase + lane) div N)·stride
        q = queue.o_stream
        lane = q.p.index[:lg_e] if lg_e else Const(0, 1)
        key = (q.p.side.phase << lg_e) | lane if lg_e else q.p.side.phase
        port_of = Array(Const((ph + ln) % N, range(max(N, 2))) for ph in range(1 << max(
            1, (N - 1).bit_length())) for ln in range(1 << lg_e))
        ds_of = Array(Const((ph + ln) // N, range(k_max)) for ph in range(1 << max(
            1, (N - 1).bit_length())) for ln in range(1 << lg_e))
        if N == 1:
            port = Const(0, 1)
            ds = lane
        else:
            port = Signal(range(N))
            ds = Signal(range(k_max))
            m.d.comb += [port.eq(port_of[key]), ds.eq(ds_of[key])]
        offset = Signal(32)
        m.d.comb += offset.eq(q.p.side.slot + mult[ds])
        inside = Signal()
        m.d.comb += inside.eq(Cat(offset, Const(0, 1)) + d.stride <= Cat(d.weight, Const(0, 1))
                              + d.wsize)
        fifos = []
        for k in range(N):
            f = SyncFIFOBuffered(width=32 + cnt.width, depth=4)
            m.submodules[f"route{k}"] = f
            fifos.append(f)
            m.d.comb += f.w_data.eq(Cat(offset, q.p.count))
        spiking = q.p.count != 0
        ready = Signal()
        m.d.comb += ready.eq(~spiking | ~inside | Array(f.w_rdy for f in fifos)[port])
        encode_done = Signal()
        m.d.comb += q.ready.eq(busy & ready)
        with m.If(q.valid & q.ready):
            with m.If(spiking):
                m.d.comb += self.spikes_nonzero.eq(1)
                with m.If(inside):
                    for k, f in enumerate(fifos):
                        m.d.comb += f.w_en.eq(port == k)
                with m.Else():  # not fetched: the run stops with ErrorCode.WEIGHT
                    m.d.sync += self.weight_error.eq(1)
            with m.If(q.p.last):
                m.d.sync += encode_done.eq(1)

        # ---- 4. per port: streamer → accumulator bank
        begin = Signal()
        banks, streamers = [], []
        for k in range(N):
            st = WeightStreamer(p)
            bk = AccumulatorBank(p.lanes, p.acc_words, p.max_in, p.max_D)
            m.submodules[f"streamer{k}"] = st
            m.submodules[f"bank{k}"] = bk
            streamers.append(st)
            banks.append(bk)
            f = fifos[k]
            m.d.comb += [st.i_col.valid.eq(f.r_rdy), f.r_en.eq(st.i_col.ready),
                         st.i_col.p.offset.eq(f.r_data[:32]), st.i_col.p.count.eq(f.r_data[32:]),
                         st.base.eq(self.bases[k]), st.beats.eq(d.stride >> lg_pb),
                         st.base3.eq(base3), st.begin.eq(begin), self.port_beats[k].eq(st.beat)]
            wiring.connect(m, st.read, wiring.flipped(self.ports[k]))
            wiring.connect(m, st.o_beat, bk.i_stream)
        drained = Signal()
        # FIFO levels, not r_rdy: an entry shows at the read side a cycle after it is written
        m.d.comb += drained.eq(encode_done & ~Cat(*(f.level != 0 for f in fifos)).any()
                               & ~Cat(*(s.busy for s in streamers)).any()
                               & ~Cat(*(b.busy for b in banks)).any())
        m.d.comb += [
            self.errors[0].eq(Cat(*(s.error for s in streamers)).any()),
            self.errors[1].eq(Cat(*(b.error for b in banks)).any()),
            self.errors[2].eq(enc.error),
            self.axi_error.eq(Cat(*(s.axi_error for s in streamers)).any()),
        ]

        # ---- 5. requantise: Σ over the banks' words, vector outputs per cycle, to dst
        m.submodules.requant = rq = Requantizer(E, N, banks[0].acc_bits)
        subs_max = p.lanes // E
        subs = Signal(range(subs_max + 1))  # chunks of E outputs per accumulator word
        lanes_2bit = 4 * pb
        m.d.comb += subs.eq(Mux(base3, (5 * pb) // E, lanes_2bit // E))
        chunks = Signal(32)
        rq_word, rq_sub = Signal(range(p.acc_words + 1)), Signal(range(subs_max + 1))
        rq_issued = Signal(32)
        requant = Signal()
        rq_issue = requant & (rq_issued < chunks) & rq.i_stream.ready
        v_acc, sub_d, last_d = Signal(), Signal.like(rq_sub), Signal()
        with m.If(rq.i_stream.ready):
            m.d.sync += [v_acc.eq(rq_issue), sub_d.eq(rq_sub), last_d.eq(rq_issued + 1 == chunks)]
        for k, bk in enumerate(banks):
            m.d.comb += [bk.rd.addr.eq(rq_word), bk.rd.en.eq(rq_issue)]
            used = streamers[k].used
            for i in range(E):
                pick = Array(bk.rd.data[s * E + i] for s in range(subs_max))[sub_d]
                m.d.comb += rq.i_stream.p.acc[k][i].eq(Mux(used, pick, 0))
        m.d.comb += [rq.i_stream.valid.eq(v_acc), rq.i_stream.p.last.eq(last_d),
                     rq.param.eq(d.param), rq.shift.eq(d.shift_b), rq.o_stream.ready.eq(1)]
        with m.If(rq_issue):
            m.d.sync += rq_issued.eq(rq_issued + 1)
            with m.If(rq_sub + 1 == subs):
                m.d.sync += [rq_sub.eq(0), rq_word.eq(rq_word + 1)]
            with m.Else():
                m.d.sync += rq_sub.eq(rq_sub + 1)
        ow = Signal(32)
        m.d.comb += [self.w_out.addr.eq((d.dst >> lg_e) + ow),
                     self.w_out.en.eq(rq.o_stream.valid.replicate(E))]
        for i in range(E):
            m.d.comb += self.w_out.data[i].eq(rq.o_stream.p.x[i])

        # ---- sequencing of one instruction
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.cmd.valid):
                    desc = self.cmd.p.desc
                    m.d.sync += [d.eq(desc), bank.eq(self.cmd.p.bank), busy.eq(1),
                                 mult[0].eq(0), setup_k.eq(1), iw.eq(0),
                                 words.eq(desc.n >> lg_e), chunks.eq(desc.m >> lg_e),
                                 slot.eq(desc.weight), phase.eq(0), encode_done.eq(0),
                                 rq_word.eq(0), rq_sub.eq(0), rq_issued.eq(0), ow.eq(0)]
                    m.d.comb += begin.eq(1)
                    m.next = "SETUP"
            with m.State("SETUP"):  # mult[k] = k · stride, one addition per cycle
                with m.If(setup_k < k_max):
                    m.d.sync += [mult[setup_k].eq(mult[setup_k - 1] + d.stride),
                                 setup_k.eq(setup_k + 1)]
                with m.Else():
                    m.d.sync += fetching.eq(1)
                    m.next = "ENCODE"
            with m.State("ENCODE"):
                with m.If(drained):
                    m.d.sync += [fetching.eq(0), requant.eq(1)]
                    m.next = "REQUANT"
            with m.State("REQUANT"):
                with m.If(rq.o_stream.valid):
                    m.d.sync += ow.eq(ow + 1)
                    with m.If(ow + 1 == chunks):
                        m.d.sync += [requant.eq(0), busy.eq(0)]
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
        return m
