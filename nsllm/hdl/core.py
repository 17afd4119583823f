"""``NSLLMCore``: the whole spiking LM on one AXI read port, driven by descriptor programs.

The core executes the instruction set of :mod:`nsllm.host.program` (read its docstring first):
a sequencer fetches 64-byte descriptors from DRAM and runs each on

* a **scratchpad** of activations (``ACT_BITS`` signed, ``vector`` entries per word) holding the
  residual stream, projections, GLU vectors, logits and every layer's recurrent state;
* a **vector unit** doing ``vector`` elements per cycle of RMSNorm (sum of squares, the rsqrt
  table, scale), MLGRU state update, SiLU gate, residual add, copy and argmax, with the sigmoid and
  rsqrt tables of :mod:`nsllm.model.numerics`;
* the **spiking linear unit**: the I-LIF encoder turns ``vector`` inputs per cycle into spike
  counts and queues only the non-zero ones; the **weight streamer** issues one AXI burst per
  queued column (column-major packed trits, ``col_stride`` bytes apart), so bytes fetched fall
  with the firing rate; the **accumulator** adds, subtracts or skips each count into ``lanes``
  accumulators per beat (read-modify-write on a memory, no multiplier); a requantization pass
  writes the layer output back to the scratchpad.

Ports and registers: see ``docs/runtime.md`` (Vitis ``ap_ctrl_hs`` map, AXI4-Lite slave
``s_axil``, AXI4 read master ``m_axi``).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nsllm.host.program import MAX_SHIFT, Op, scratch_layout
from nsllm.model import numerics as nx
from nsllm.model.config import ModelConfig

from .fixed_point import saturate, shift_round, shift_round_by, sigmoid_index, sigmoid_memory

__all__ = ["CoreParams", "NSLLMCore", "REGISTERS"]

#: Register byte offsets (AXI4-Lite, 32-bit). 0x00–0x0C follow Vitis ``ap_ctrl_hs``.
REGISTERS = {
    "CTRL": 0x00, "GIE": 0x04, "IER": 0x08, "ISR": 0x0C,
    "PROG_ADDR_LO": 0x10, "PROG_ADDR_HI": 0x14, "TOKEN_IN": 0x18, "TOKEN_OUT": 0x1C,
    "CYCLES_LO": 0x20, "CYCLES_HI": 0x24, "WEIGHT_BYTES": 0x28, "BUS_BYTES": 0x2C,
    "SPIKES_NONZERO": 0x30, "SPIKES_TOTAL": 0x34, "STATUS": 0x38,
    "SCRATCH_ADDR": 0x3C, "SCRATCH_DATA": 0x40,
    "BUILD_PORT_BYTES": 0x44, "BUILD_SCRATCH": 0x48, "BUILD_MAX_D": 0x4C, "BUILD_ACC_BITS": 0x50,
    "BUILD_MAX_VOCAB": 0x54, "BUILD_MAX_HIDDEN": 0x58, "BUILD_MAX_INTER": 0x5C,
    "BUILD_MAX_LAYERS": 0x60, "PROG_OPS": 0x64, "BUILD_MAX_OPS": 0x68, "CACHE_FLUSH": 0x6C,
}
ERR_OPCODE, ERR_AXI, ERR_PROGRAM = 1, 2, 3


@dataclass(frozen=True)
class CoreParams:
    """Generator parameters of one core build.

    ``port_bytes`` is the AXI data width in bytes (64 = 512 bits on the board); ``vector`` the
    elements per cycle of the vector unit and the encoder. One build runs every model within the
    maxima (``nsllm.host.image.ModelImage.check_fits``).
    """

    port_bytes: int = 8
    vector: int = 8
    max_vocab: int = 256
    max_hidden: int = 128
    max_intermediate: int = 512
    max_layers: int = 4
    max_D: int = 15
    fifo_depth: int = 64
    max_ops: int = 0  #: program cache size in descriptors (0: enough for max_layers)

    def __post_init__(self):
        pb, v = self.port_bytes, self.vector
        if pb not in (4, 8, 16, 32, 64):
            raise ValueError(f"port_bytes must be 4, 8, 16, 32 or 64, not {pb}")
        if v not in (1, 2, 4, 8, 16) or v < pb // 4 or (4 * pb) % v:
            raise ValueError(f"vector must be a power of two ≤ 16 with port_bytes/4 ≤ vector ≤ "
                             f"4·port_bytes (tables arrive port_bytes/4 entries per beat, weights "
                             f"4·port_bytes trits per beat), not {v} with port_bytes {pb}")
        for name in ("max_vocab", "max_hidden", "max_intermediate"):
            if getattr(self, name) % 16:
                raise ValueError(f"{name} must be a multiple of 16")

    @classmethod
    def for_model(cls, cfg, port_bytes: int = 8, vector: int = 8, **overrides) -> CoreParams:
        """The smallest build that runs a model of this config (maxima = its shapes)."""
        values = dict(port_bytes=port_bytes, vector=vector, max_vocab=cfg.vocab_size,
                      max_hidden=cfg.hidden_size, max_intermediate=cfg.intermediate_size,
                      max_layers=cfg.num_layers, max_D=max(q.D for q in cfg.quant.values()))
        values.update(overrides)
        return cls(**values)

    @property
    def program_ops(self) -> int:
        """Descriptors the program cache holds (the longest program of a max-size model)."""
        return self.max_ops or 18 * self.max_layers + 8

    @property
    def lanes(self) -> int:
        """Trits (accumulator lanes) per weight beat: 2 bits per trit."""
        return 4 * self.port_bytes

    @property
    def max_out(self) -> int:
        return max(2 * self.max_intermediate, self.max_vocab, self.max_hidden)

    @property
    def max_in(self) -> int:
        return max(self.max_hidden, self.max_intermediate)

    @property
    def acc_bits(self) -> int:
        return nx.accumulator_bits(self.max_in, self.max_D)

    @property
    def scratch_entries(self) -> int:
        cfg = ModelConfig(vocab_size=self.max_vocab, hidden_size=self.max_hidden,
                          num_layers=self.max_layers, intermediate_size=self.max_intermediate,
                          tokenizer="byte" if self.max_vocab >= 256 else "hf")
        return scratch_layout(cfg).size

    def build_limits(self):
        from nsllm.host.image import BuildLimits

        return BuildLimits(port_bytes=self.port_bytes, max_vocab=self.max_vocab,
                           max_hidden=self.max_hidden, max_intermediate=self.max_intermediate,
                           max_layers=self.max_layers, max_D=self.max_D,
                           scratch_entries=self.scratch_entries, acc_bits=self.acc_bits)


def axil_signature():
    """AXI4-Lite, seen from the master (the core's ``s_axil`` port is its flip)."""
    return wiring.Signature({
        "awaddr": Out(12), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(12), "arvalid": Out(1), "arready": In(1),
        "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


def axi_read_signature(port_bytes: int):
    """AXI4 read channels (AR, R), seen from the master."""
    return wiring.Signature({
        "arid": Out(1), "araddr": Out(64), "arlen": Out(8), "arsize": Out(3), "arburst": Out(2),
        "arvalid": Out(1), "arready": In(1),
        "rid": In(1), "rdata": In(8 * port_bytes), "rresp": In(2), "rlast": In(1),
        "rvalid": In(1), "rready": Out(1),
    })


def _lowest_set(mask: Signal, width: int):
    """(any, index) of the lowest set bit, as a priority chain."""
    idx = Const(0, max(1, (width - 1).bit_length()))
    for i in reversed(range(width)):
        idx = Mux(mask[i], i, idx)
    return mask.any(), idx


def _bit_length(value: Signal, width: int):
    """Number of significant bits of an unsigned value (0 for 0): how many 2**i it reaches."""
    terms = [value[i:].any() for i in range(width)]
    while len(terms) > 1:  # balanced adder tree
        terms = [a + b for a, b in zip(terms[::2], terms[1::2], strict=False)] + (
            [terms[-1]] if len(terms) % 2 else [])
    return terms[0]


class NSLLMCore(wiring.Component):
    """The NSLLM core (see the module docstring).

    Parameters
    ----------
    params : CoreParams
    """

    def __init__(self, params: CoreParams = CoreParams()):
        self.params = params
        super().__init__({
            "s_axil": In(axil_signature()),
            "m_axi": Out(axi_read_signature(params.port_bytes)),
            "irq": Out(1),
        })

    def elaborate(self, platform):  # noqa: C901 — one sequencer, read top to bottom
        p = self.params
        E, P, PB = p.vector, p.lanes, p.port_bytes
        Q = PB // 4  # table entries per beat
        m = Module()
        act = signed(nx.ACT_BITS)
        scratch_words = -(-p.scratch_entries // E)
        table_words = -(-(p.max_in + Q) // E) + 1
        acc_words = -(-p.max_out // P)
        acc_shape = signed(p.acc_bits)
        cnt_shape = signed(p.max_D.bit_length() + 1)
        sw = max(1, (scratch_words - 1).bit_length())

        # ---------------------------------------------------------------- memories
        m.submodules.scratch = scratch = Memory(
            shape=data.ArrayLayout(act, E), depth=scratch_words, init=[])
        s_wr = scratch.write_port()
        s_ra, s_rb, s_rc = scratch.read_port(), scratch.read_port(), scratch.read_port()
        s_dbg = scratch.read_port()
        m.submodules.table = table = Memory(
            shape=data.ArrayLayout(signed(32), E), depth=table_words, init=[])
        t_wr = table.write_port(granularity=1)
        t_rd = table.read_port()
        m.submodules.acc = accm = Memory(
            shape=data.ArrayLayout(acc_shape, P), depth=acc_words, init=[])
        a_wr = accm.write_port()
        a_rd = accm.read_port(transparent_for=(a_wr,))
        sig_roms = []
        for k in range(2 * E):
            rom = sigmoid_memory()
            m.submodules[f"sigmoid{k}"] = rom
            sig_roms.append(rom.read_port())
        rsq_table = [int(v) for v in nx.RSQRT_TABLE]
        m.submodules.program = prog_mem = Memory(shape=unsigned(512), depth=p.program_ops,
                                                 init=[])
        p_wr = prog_mem.write_port()
        p_rd = prog_mem.read_port()
        m.submodules.rsqrt = rsq_rom = Memory(
            shape=unsigned(max(rsq_table).bit_length()), depth=len(rsq_table), init=rsq_table)
        rsq_rd = rsq_rom.read_port()

        # ---------------------------------------------------------------- registers
        prog_addr = Signal(64)
        prog_ops = Signal(16)
        cached_addr = Signal(64)
        cached_ops = Signal(16)
        cached = Signal()
        token_in = Signal(32)
        token_out = Signal(32)
        cycles = Signal(64)
        weight_bytes = Signal(32)
        bus_bytes = Signal(32)
        spikes_nz = Signal(32)
        spikes_total = Signal(32)
        gie, ier, isr = Signal(), Signal(), Signal()
        busy = Signal()
        done_flag = Signal()
        start = Signal()
        pc = Signal(16)
        error = Signal(4)
        scratch_addr = Signal(32)

        # ---------------------------------------------------------------- descriptor
        desc = p_rd.data  # the current descriptor, held by the program cache's read port
        d_op = desc[0:8]
        d_D = desc[8:16]
        d_shift_a = desc[16:24]
        d_shift_b = desc[24:32]
        d_delta = desc[32:48]
        d_n = desc[64:96]
        d_m = desc[96:128]
        d_src_a = desc[128:160]
        d_src_b = desc[160:192]
        d_dst = desc[192:224]
        d_param = desc[224:256].as_signed()
        d_table = desc[256:320]
        d_weight = desc[320:384]
        d_stride = desc[384:416]
        opcode = Signal(4)
        m.d.comb += opcode.eq(d_op[:4])

        # ---------------------------------------------------------------- AXI-Lite slave
        ax = self.s_axil
        # a write is taken when address and data are both valid (one cycle), answered with B
        m.d.comb += [ax.awready.eq(~ax.bvalid & ax.wvalid), ax.wready.eq(~ax.bvalid & ax.awvalid),
                     ax.bresp.eq(0), ax.rresp.eq(0)]
        wr_fire = ax.awvalid & ax.wvalid & ~ax.bvalid
        with m.If(ax.bvalid & ax.bready):
            m.d.sync += ax.bvalid.eq(0)
        m.d.comb += start.eq(0)
        with m.If(wr_fire):
            m.d.sync += ax.bvalid.eq(1)
            with m.Switch(ax.awaddr):
                with m.Case(REGISTERS["CTRL"]):
                    m.d.comb += start.eq(ax.wdata[0] & ~busy)
                with m.Case(REGISTERS["GIE"]):
                    m.d.sync += gie.eq(ax.wdata[0])
                with m.Case(REGISTERS["IER"]):
                    m.d.sync += ier.eq(ax.wdata[0])
                with m.Case(REGISTERS["ISR"]):
                    m.d.sync += isr.eq(isr ^ ax.wdata[0])
                with m.Case(REGISTERS["PROG_ADDR_LO"]):
                    m.d.sync += prog_addr[:32].eq(ax.wdata)
                with m.Case(REGISTERS["PROG_ADDR_HI"]):
                    m.d.sync += prog_addr[32:].eq(ax.wdata)
                with m.Case(REGISTERS["TOKEN_IN"]):
                    m.d.sync += token_in.eq(ax.wdata)
                with m.Case(REGISTERS["SCRATCH_ADDR"]):
                    m.d.sync += scratch_addr.eq(ax.wdata)
                with m.Case(REGISTERS["PROG_OPS"]):
                    m.d.sync += prog_ops.eq(ax.wdata)
                with m.Case(REGISTERS["CACHE_FLUSH"]):  # the program in DRAM was rewritten
                    m.d.sync += cached.eq(0)
        m.d.comb += self.irq.eq(isr & gie & ier)

        # reads: one cycle to address the debug scratch port, answer on the next
        rd_pending = Signal()
        rd_addr = Signal(12)
        m.d.comb += ax.arready.eq(~ax.rvalid & ~rd_pending)
        m.d.comb += [s_dbg.addr.eq(scratch_addr // E), s_dbg.en.eq(1)]
        dbg_lane = Signal(range(E)) if E > 1 else Const(0, 1)
        if E > 1:
            m.d.comb += dbg_lane.eq(scratch_addr % E)
        with m.If(ax.arvalid & ax.arready):
            m.d.sync += [rd_pending.eq(1), rd_addr.eq(ax.araddr)]
        with m.If(rd_pending):
            m.d.sync += [rd_pending.eq(0), ax.rvalid.eq(1)]
            ctrl = Cat(busy, done_flag, ~busy, done_flag)
            regs = {
                "CTRL": ctrl, "GIE": gie, "IER": ier, "ISR": isr,
                "PROG_ADDR_LO": prog_addr[:32], "PROG_ADDR_HI": prog_addr[32:],
                "TOKEN_IN": token_in, "TOKEN_OUT": token_out,
                "CYCLES_LO": cycles[:32], "CYCLES_HI": cycles[32:],
                "WEIGHT_BYTES": weight_bytes, "BUS_BYTES": bus_bytes,
                "SPIKES_NONZERO": spikes_nz, "SPIKES_TOTAL": spikes_total,
                "STATUS": Cat(pc, opcode, Const(0, 4), busy, Const(0, 3), error),
                "SCRATCH_ADDR": scratch_addr,
                "SCRATCH_DATA": Array(s_dbg.data[i] for i in range(E))[dbg_lane].as_signed(),
                "BUILD_PORT_BYTES": Const(PB, 32), "BUILD_SCRATCH": Const(p.scratch_entries, 32),
                "BUILD_MAX_D": Const(p.max_D, 32), "BUILD_ACC_BITS": Const(p.acc_bits, 32),
                "BUILD_MAX_VOCAB": Const(p.max_vocab, 32),
                "BUILD_MAX_HIDDEN": Const(p.max_hidden, 32),
                "BUILD_MAX_INTER": Const(p.max_intermediate, 32),
                "BUILD_MAX_LAYERS": Const(p.max_layers, 32),
                "PROG_OPS": prog_ops, "BUILD_MAX_OPS": Const(p.program_ops, 32),
            }
            m.d.sync += ax.rdata.eq(0)
            with m.Switch(rd_addr):
                for name, value in regs.items():
                    with m.Case(REGISTERS[name]):
                        m.d.sync += ax.rdata.eq(value)
                        if name == "CTRL":  # ap_done / ap_ready clear on read
                            m.d.sync += done_flag.eq(0)
        with m.If(ax.rvalid & ax.rready):
            m.d.sync += ax.rvalid.eq(0)

        # ---------------------------------------------------------------- AXI read requests
        # One request (address, beats) at a time, split at 4 KiB boundaries and 256 beats.
        axi = self.m_axi
        req_valid = Signal()
        req_addr = Signal(64)
        req_beats = Signal(32)
        req_take = Signal()  # the requester may present a new request
        cur_addr = Signal(64)
        cur_beats = Signal(32)
        beats_to_4k = Signal(13)
        burst = Signal(9)
        capped = Mux(cur_beats < 256, cur_beats, 256)
        m.d.comb += [
            axi.arsize.eq(Const((PB - 1).bit_length(), 3)), axi.arburst.eq(1),
            beats_to_4k.eq((4096 - cur_addr[:12]) >> (PB - 1).bit_length()),
            burst.eq(Mux(beats_to_4k < capped, beats_to_4k, capped)),
        ]
        m.d.comb += [axi.araddr.eq(cur_addr), axi.arlen.eq(burst - 1),
                     axi.arvalid.eq(cur_beats != 0), req_take.eq(cur_beats == 0)]
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += [cur_addr.eq(cur_addr + (burst << (PB - 1).bit_length())),
                         cur_beats.eq(cur_beats - burst)]
        with m.Elif(req_take & req_valid):
            m.d.sync += [cur_addr.eq(req_addr), cur_beats.eq(req_beats)]

        m.d.comb += axi.rready.eq(1)
        beat = axi.rvalid  # every beat is accepted
        with m.If(busy & beat):
            m.d.sync += bus_bytes.eq(bus_bytes + PB)
            with m.If(axi.rresp[1]):
                m.d.sync += error.eq(ERR_AXI)

        # ---------------------------------------------------------------- table loader
        load_active = Signal()
        load_idx = Signal(range(table_words * E + 1))  # next entry index
        with m.If(load_active & beat):
            m.d.comb += [t_wr.addr.eq(load_idx // E if E > 1 else load_idx)]
            for q in range(Q):
                lane = (load_idx % E + q) if E > 1 else Const(0, 1)
                for lane_i in range(E):
                    with m.If(lane == lane_i):
                        m.d.comb += [t_wr.data[lane_i].eq(axi.rdata[32 * q: 32 * q + 32]),
                                     t_wr.en[lane_i].eq(1)]
            m.d.sync += load_idx.eq(load_idx + Q)

        # ---------------------------------------------------------------- vector unit
        # Stage 0: read word w of src_a, src_b, dst (scratch) and of the table.
        # Stage 1: data valid; sigmoid table addresses issued.  Stage 2: results, write-back.
        vec_run = Signal()
        vec_kind = Signal(4)  # the Op being executed (SUMSQ uses Op.UNORM with vec_sumsq)
        vec_sumsq = Signal()
        vec_w = Signal(sw + 1)
        vec_words = Signal(sw + 1)
        v1_valid, v2_valid = Signal(), Signal()
        v1_w, v2_w = Signal(sw + 1), Signal(sw + 1)
        m.d.comb += [
            s_ra.addr.eq((d_src_a // E) + vec_w), s_rb.addr.eq((d_src_b // E) + vec_w),
            s_rc.addr.eq((d_dst // E) + vec_w), t_rd.addr.eq(vec_w),
            s_ra.en.eq(1), s_rb.en.eq(1), s_rc.en.eq(1), t_rd.en.eq(1),
        ]
        m.d.sync += [v1_valid.eq(vec_run), v1_w.eq(vec_w), v2_valid.eq(v1_valid), v2_w.eq(v1_w)]
        a2 = Signal(data.ArrayLayout(act, E))
        b2 = Signal(data.ArrayLayout(act, E))
        c2 = Signal(data.ArrayLayout(act, E))
        t2 = Signal(data.ArrayLayout(signed(32), E))
        below_a, above_a = Signal(E), Signal(E)
        below_b, above_b = Signal(E), Signal(E)
        m.d.sync += [a2.eq(s_ra.data), b2.eq(s_rb.data), c2.eq(s_rc.data), t2.eq(t_rd.data)]
        for i in range(E):
            addr_a, bl_a, ab_a = sigmoid_index(s_ra.data[i])
            addr_b, bl_b, ab_b = sigmoid_index(s_rb.data[i])
            m.d.comb += [sig_roms[2 * i].addr.eq(addr_a), sig_roms[2 * i + 1].addr.eq(addr_b),
                         sig_roms[2 * i].en.eq(1), sig_roms[2 * i + 1].en.eq(1)]
            m.d.sync += [below_a[i].eq(bl_a), above_a[i].eq(ab_a),
                         below_b[i].eq(bl_b), above_b[i].eq(ab_b)]

        def sig(k, below, above, i):
            return Mux(below[i], 0, Mux(above[i], nx.GATE_ONE, sig_roms[k].data))

        # RMSNorm factor (set after the sum-of-squares pass)
        sumsq = Signal(64)
        norm_r = Signal(32)
        norm_s = Signal(7)
        # argmax state
        best_val = Signal(act)
        best_idx = Signal(32)
        best_any = Signal()
        word_best_val = Signal(act)
        word_best_lane = Signal(range(E)) if E > 1 else Const(0, 1)
        # the word's first maximum: scan from the top lane down, lower lanes win ties
        wv, wl = a2[E - 1], Const(E - 1, max(1, (E - 1).bit_length()))
        for i in reversed(range(E - 1)):
            take = a2[i] >= wv
            wv, wl = Mux(take, a2[i], wv), Mux(take, i, wl)
        m.d.comb += word_best_val.eq(wv)
        if E > 1:
            m.d.comb += word_best_lane.eq(wl)

        one = nx.GATE_ONE
        ssq_word = Signal(64)
        ssq_terms = [a2[i] * a2[i] for i in range(E)]
        total = ssq_terms[0]
        for t in ssq_terms[1:]:
            total = total + t
        m.d.comb += ssq_word.eq(total)
        with m.If(v2_valid):
            with m.If(vec_sumsq):
                m.d.sync += sumsq.eq(sumsq + ssq_word)
            with m.Elif(vec_kind == Op.ARGMAX):
                idx = v2_w * E + word_best_lane
                with m.If(~best_any | (word_best_val > best_val)):
                    m.d.sync += [best_val.eq(word_best_val), best_idx.eq(idx), best_any.eq(1)]
            with m.Else():
                m.d.comb += [s_wr.addr.eq((d_dst // E) + v2_w), s_wr.en.eq(1)]
                for i in range(E):
                    a, b, c, t = a2[i], b2[i], c2[i], t2[i]
                    sa = sig(2 * i, below_a, above_a, i)
                    sb = sig(2 * i + 1, below_b, above_b, i)
                    xhat = saturate(shift_round_by(a * norm_r, norm_s, 64))
                    f = t + shift_round((one - t) * sb, nx.GATE_FRAC)
                    silu_a = shift_round(a * sa, nx.GATE_FRAC)
                    i_gate = shift_round(silu_a * (one - f), nx.GATE_FRAC)
                    h_new = saturate(shift_round(f * c, nx.GATE_FRAC) + i_gate)
                    silu_b = shift_round(b * sb, nx.GATE_FRAC)
                    results = {
                        Op.NORM: saturate(shift_round_by(xhat * t, d_shift_a, MAX_SHIFT)),
                        Op.UNORM: xhat,
                        Op.MLGRU: h_new,
                        Op.SILUGATE: saturate(shift_round(a * silu_b, nx.ACT_FRAC)),
                        Op.ADD: saturate(a + b),
                        Op.CLEAR: Const(0, act),
                        Op.EMBED: saturate(t),
                    }
                    with m.Switch(vec_kind):
                        for op, value in results.items():
                            with m.Case(op):
                                m.d.comb += s_wr.data[i].eq(value)
        vec_drained = ~vec_run & ~v1_valid & ~v2_valid

        # ---------------------------------------------------------------- spiking linear unit
        m.submodules.col_fifo = col_fifo = SyncFIFOBuffered(width=64, depth=p.fifo_depth)
        m.submodules.cnt_fifo = cnt_fifo = SyncFIFOBuffered(width=cnt_shape.width,
                                                            depth=p.fifo_depth)
        enc_run = Signal()  # groups still to read
        enc_w = Signal(sw + 1)
        enc_words = Signal(sw + 1)
        enc_n_valid = Signal()  # group data at the read-port outputs
        grp_mask = Signal(E)
        grp_counts = Signal(data.ArrayLayout(cnt_shape, E))
        grp_base = Signal(64)  # column address of lane 0 of the group in grp_*
        next_base = Signal(64)
        lane_off = Signal(data.ArrayLayout(unsigned(40), E))
        stride_e = Signal(40)
        enc_addr_a = Signal(sw + 1)
        # counts of the group at the read ports
        n_counts = Signal(data.ArrayLayout(cnt_shape, E))
        for i in range(E):
            u = shift_round_by(s_ra.data[i] * t_rd.data[i], d_shift_a, MAX_SHIFT)
            mag_u = Mux(u < 0, -u, u)
            mag = (mag_u - d_delta + (1 << (nx.U_FRAC - 1))) >> nx.U_FRAC
            mag_c = Signal(signed(mag.shape().width + 1), name=f"enc_mag{i}")
            m.d.comb += mag_c.eq(mag)
            clipped = Mux(mag_c < 0, 0, Mux(mag_c > d_D, d_D, mag_c))
            m.d.comb += n_counts[i].eq(Mux(u < 0, -clipped, clipped))
        any_left, lane = _lowest_set(grp_mask, E)
        push = any_left & col_fifo.w_rdy & cnt_fifo.w_rdy
        m.d.comb += [
            col_fifo.w_data.eq(grp_base + Array(lane_off[i] for i in range(E))[lane]),
            cnt_fifo.w_data.eq(Array(grp_counts[i] for i in range(E))[lane]),
            col_fifo.w_en.eq(push), cnt_fifo.w_en.eq(push),
        ]
        with m.If(push):
            m.d.sync += [grp_mask.eq(grp_mask & ~(1 << lane)), spikes_nz.eq(spikes_nz + 1)]
        load_group = Signal()
        grp_w = Signal(sw + 1)  # groups loaded so far in this LINEAR
        m.d.comb += load_group.eq(enc_n_valid & ~any_left)
        with m.If(load_group):
            # every group's counts also go to the scratchpad's spike region (src_b): a debug
            # readback of the spikes, free because the write port is idle while encoding
            m.d.comb += [s_wr.addr.eq((d_src_b // E) + grp_w), s_wr.en.eq(1)]
            m.d.comb += [s_wr.data[i].eq(n_counts[i]) for i in range(E)]
            m.d.sync += grp_w.eq(grp_w + 1)
            m.d.sync += [grp_counts.eq(n_counts),
                         grp_mask.eq(Cat(n_counts[i] != 0 for i in range(E))),
                         grp_base.eq(next_base), next_base.eq(next_base + stride_e),
                         spikes_total.eq(spikes_total + E), enc_n_valid.eq(0)]
        # read the next group when the read-port outputs are free (or being consumed)
        enc_read = Signal()
        m.d.comb += enc_read.eq(enc_run & (~enc_n_valid | load_group))
        with m.If(enc_read):
            m.d.sync += [enc_w.eq(enc_w + 1), enc_n_valid.eq(1)]
            with m.If(enc_w + 1 == enc_words):
                m.d.sync += enc_run.eq(0)
        m.d.comb += enc_addr_a.eq((d_src_a // E) + enc_w)

        # weight streamer: columns in FIFO order, beats in order
        wpc = Signal(32)  # words per column
        col_beat = Signal(32)
        lin_fetch = Signal()  # LINEAR weight phase: the request channel belongs to columns
        col_req = Signal()
        m.d.comb += col_req.eq(lin_fetch & col_fifo.r_rdy)
        # accumulate: one beat per cycle, read-modify-write through a transparent read port
        acc_clear = Signal()
        acc_clear_w = Signal(range(acc_words + 1))
        rmw_valid = Signal()
        rmw_word = Signal(range(acc_words + 1))
        rmw_delta = Signal(data.ArrayLayout(signed(cnt_shape.width + 1), P))
        lin_beat = lin_fetch & beat
        count_now = cnt_fifo.r_data.as_signed()
        deltas = []
        for i in range(P):
            code = axi.rdata[2 * i: 2 * i + 2]
            deltas.append(Mux(code == 1, count_now, Mux(code == 2, -count_now, 0)))
        m.d.sync += [rmw_valid.eq(lin_beat), rmw_word.eq(col_beat)]
        m.d.sync += [rmw_delta[i].eq(deltas[i]) for i in range(P)]
        with m.If(lin_beat):
            with m.If(col_beat + 1 == wpc):
                m.d.sync += col_beat.eq(0)
                m.d.comb += cnt_fifo.r_en.eq(1)
            with m.Else():
                m.d.sync += col_beat.eq(col_beat + 1)
            m.d.sync += weight_bytes.eq(weight_bytes + PB)

        # requantisation pass: acc → scratch, `vector` elements per cycle
        rq_run = Signal()
        rq_w = Signal(sw + 1)
        rq_words = Signal(sw + 1)
        rq1_valid = Signal()
        rq1_w = Signal(sw + 1)
        per_acc = P // E
        m.d.sync += [rq1_valid.eq(rq_run), rq1_w.eq(rq_w)]

        with m.If(acc_clear):
            m.d.comb += [a_wr.addr.eq(acc_clear_w), a_wr.en.eq(1)]
            for i in range(P):
                m.d.comb += a_wr.data[i].eq(0)
        with m.Elif(rmw_valid):
            m.d.comb += [a_wr.addr.eq(rmw_word), a_wr.en.eq(1)]
            for i in range(P):
                m.d.comb += a_wr.data[i].eq(a_rd.data[i] + rmw_delta[i])
        with m.If(lin_fetch):
            m.d.comb += [a_rd.addr.eq(col_beat), a_rd.en.eq(lin_beat)]
        with m.Else():
            m.d.comb += [a_rd.addr.eq(rq_w // per_acc if per_acc > 1 else rq_w), a_rd.en.eq(1)]
        with m.If(rq1_valid):
            m.d.comb += [s_wr.addr.eq((d_dst // E) + rq1_w), s_wr.en.eq(1)]
            sub = rq1_w % per_acc if per_acc > 1 else Const(0, 1)
            for i in range(E):
                sel = Array(a_rd.data[k * E + i] for k in range(per_acc))[sub]
                y = saturate(shift_round_by(sel * d_param, d_shift_b, MAX_SHIFT))
                m.d.comb += s_wr.data[i].eq(y)

        # ---------------------------------------------------------------- sequencer
        beats_per_desc = max(1, 64 // PB)
        desc_beat = Signal(range(beats_per_desc + 1))
        load_op = Signal(16)
        asm = Signal(512)  # descriptor being assembled from beats
        m.d.comb += p_rd.en.eq(0)
        emb_mul = Signal(64)
        m.d.comb += emb_mul.eq(token_in * d_param.as_unsigned())
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)

        def words(n):
            return (n + (E - 1)) // E if E > 1 else n

        def table_request(addr, entries):
            m.d.comb += [req_valid.eq(1), req_addr.eq(addr),
                         req_beats.eq((entries + (Q - 1)) // Q if Q > 1 else entries)]

        def start_vec(kind, n, sumsq=False):
            m.d.sync += [vec_run.eq(1), vec_kind.eq(kind), vec_sumsq.eq(int(sumsq)),
                         vec_w.eq(0), vec_words.eq(words(n))]

        with m.If(vec_run):
            m.d.sync += vec_w.eq(vec_w + 1)
            with m.If(vec_w + 1 == vec_words):
                m.d.sync += vec_run.eq(0)
        with m.If(rq_run):
            m.d.sync += rq_w.eq(rq_w + 1)
            with m.If(rq_w + 1 == rq_words):
                m.d.sync += rq_run.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(start):
                    m.d.sync += [busy.eq(1), pc.eq(0), cycles.eq(0), weight_bytes.eq(0),
                                 bus_bytes.eq(0), spikes_nz.eq(0), spikes_total.eq(0),
                                 error.eq(0), done_flag.eq(0)]
                    with m.If((prog_ops == 0) | (prog_ops > p.program_ops)):
                        m.d.sync += [error.eq(ERR_PROGRAM), busy.eq(0), done_flag.eq(1),
                                     isr.eq(1)]
                    with m.Elif(cached & (cached_addr == prog_addr) & (cached_ops == prog_ops)):
                        m.next = "FETCH"
                    with m.Else():
                        m.d.sync += [cached.eq(0), load_op.eq(0), desc_beat.eq(0)]
                        m.next = "LOAD_REQ"
            # the program cache: a program is read in one burst and kept until another is run
            with m.State("LOAD_REQ"):
                m.d.comb += [req_valid.eq(1), req_addr.eq(prog_addr),
                             req_beats.eq(prog_ops * beats_per_desc)]
                with m.If(req_take):
                    m.next = "LOAD"
            with m.State("LOAD"):
                with m.If(beat):
                    whole = Signal(512)
                    m.d.comb += whole.eq(asm)
                    for k in range(beats_per_desc):
                        with m.If(desc_beat == k):
                            m.d.comb += whole[8 * PB * k: 8 * PB * (k + 1)].eq(axi.rdata)
                    m.d.sync += [asm.eq(whole), desc_beat.eq(desc_beat + 1)]
                    with m.If(desc_beat + 1 == beats_per_desc):
                        m.d.comb += [p_wr.addr.eq(load_op), p_wr.data.eq(whole), p_wr.en.eq(1)]
                        m.d.sync += [desc_beat.eq(0), load_op.eq(load_op + 1)]
                        with m.If(load_op + 1 == prog_ops):
                            m.d.sync += [cached.eq(1), cached_addr.eq(prog_addr),
                                         cached_ops.eq(prog_ops)]
                            m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(pc >= prog_ops):  # ran off the end: the program lacks END
                    m.d.sync += [error.eq(ERR_PROGRAM), busy.eq(0), done_flag.eq(1), isr.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [p_rd.addr.eq(pc), p_rd.en.eq(1)]
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):
                m.d.sync += [load_idx.eq(0), sumsq.eq(0)]
                with m.Switch(opcode):
                    with m.Case(Op.END):
                        m.d.sync += [busy.eq(0), done_flag.eq(1), isr.eq(1)]
                        m.next = "IDLE"
                    with m.Case(Op.CLEAR, Op.ADD, Op.SILUGATE):
                        start_vec(opcode, d_n)
                        m.next = "VEC"
                    with m.Case(Op.ARGMAX):
                        m.d.sync += best_any.eq(0)
                        start_vec(opcode, d_n)
                        m.next = "VEC"
                    with m.Case(Op.EMBED, Op.NORM, Op.MLGRU, Op.LINEAR):
                        m.d.sync += load_active.eq(1)
                        m.next = "TABLE_REQ"
                    with m.Case(Op.UNORM):
                        start_vec(Op.UNORM, d_n, sumsq=True)
                        m.next = "SUMSQ"
                    with m.Default():
                        m.d.sync += [error.eq(ERR_OPCODE), busy.eq(0), done_flag.eq(1),
                                     isr.eq(1)]
                        m.next = "IDLE"
            with m.State("TABLE_REQ"):
                with m.If(opcode == Op.EMBED):
                    table_request(d_table + emb_mul, d_n)
                with m.Else():
                    table_request(d_table, d_n)
                with m.If(req_take):
                    m.next = "TABLE"
            with m.State("TABLE"):
                with m.If(load_idx >= d_n):
                    m.d.sync += load_active.eq(0)
                    with m.Switch(opcode):
                        with m.Case(Op.NORM):
                            start_vec(Op.UNORM, d_n, sumsq=True)
                            m.next = "SUMSQ"
                        with m.Case(Op.LINEAR):
                            m.d.sync += [acc_clear.eq(1), acc_clear_w.eq(0),
                                         wpc.eq(d_stride >> (PB - 1).bit_length()),
                                         stride_e.eq(d_stride * E), next_base.eq(d_weight)]
                            for i in range(E):
                                m.d.sync += lane_off[i].eq(d_stride * i)
                            m.next = "ACC_CLEAR"
                        with m.Default():
                            start_vec(opcode, d_n)
                            m.next = "VEC"
            with m.State("SUMSQ"):
                with m.If(vec_drained):
                    m.next = "RSQRT0"
            with m.State("RSQRT0"):
                # even shift e so that m = sumsq >> e lies in [2**M, 2**(M+2))
                ss = Mux(sumsq == 0, 1, sumsq)
                nbits = _bit_length(ss, 64)
                e = Signal(signed(8))
                m.d.comb += e.eq(nbits - (nx.RSQRT_M_BITS + 2))
                e_even = Signal(signed(8))
                m.d.comb += e_even.eq(e + e[0])
                mant = Signal(64)
                with m.If(e_even >= 0):
                    m.d.comb += mant.eq(ss >> e_even.as_unsigned()[:6])
                with m.Else():
                    m.d.comb += mant.eq(ss << (-e_even).as_unsigned()[:6])
                m.d.comb += [rsq_rd.addr.eq(mant - (1 << nx.RSQRT_M_BITS)), rsq_rd.en.eq(1)]
                m.d.sync += norm_s.eq(nx.RSQRT_FRAC - nx.ACT_FRAC + (e_even >> 1))
                m.next = "RSQRT1"
            with m.State("RSQRT1"):
                m.d.sync += norm_r.eq(shift_round(rsq_rd.data * d_param[:24], nx.SQRTD_FRAC))
                m.next = "NORM_OUT"
            with m.State("NORM_OUT"):
                with m.If(opcode == Op.NORM):
                    start_vec(Op.NORM, d_n)
                with m.Else():
                    start_vec(Op.UNORM, d_n)
                m.next = "VEC"
            with m.State("VEC"):
                with m.If(vec_drained & ~vec_run):
                    with m.If(opcode == Op.ARGMAX):
                        m.d.sync += token_out.eq(best_idx)
                    m.next = "NEXT"
            with m.State("ACC_CLEAR"):
                m.d.sync += acc_clear_w.eq(acc_clear_w + 1)
                with m.If(acc_clear_w + 1 >= (d_m + (P - 1)) // P):
                    m.d.sync += [acc_clear.eq(0), enc_run.eq(1), enc_w.eq(0), grp_w.eq(0),
                                 enc_words.eq(words(d_n)), lin_fetch.eq(1), col_beat.eq(0)]
                    m.next = "LINEAR"
            with m.State("LINEAR"):
                with m.If(~enc_run & ~enc_n_valid & ~any_left & (col_fifo.level == 0)
                          & (cnt_fifo.level == 0) & (cur_beats == 0) & ~rmw_valid):
                    m.d.sync += [lin_fetch.eq(0), rq_run.eq(1), rq_w.eq(0),
                                 rq_words.eq(words(d_m))]
                    m.next = "REQUANT"
            with m.State("REQUANT"):
                with m.If(~rq_run & ~rq1_valid):
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.d.sync += pc.eq(pc + 1)
                m.next = "FETCH"

        # column requests own the request channel during the weight phase
        with m.If(col_req):
            m.d.comb += [req_valid.eq(1), req_addr.eq(col_fifo.r_data), req_beats.eq(wpc),
                         col_fifo.r_en.eq(req_take)]
        # during LINEAR the encoder owns the scratch/table read ports
        with m.If(lin_fetch):
            m.d.comb += [s_ra.addr.eq(enc_addr_a), t_rd.addr.eq(enc_w), s_ra.en.eq(enc_read),
                         t_rd.en.eq(enc_read)]
        return m
