"""``Sequencer``: fetch → issue → retire, with a program cache and table prefetch.

The sequencer reads the program (PROG_OPS descriptors at PROG_OFFSET of the image region) in one
burst into its program cache and keeps it until another program runs or CACHE_FLUSH is written.
Then, for every descriptor:

1. **fetch** it from the cache and **check** it (:func:`descriptor_error`, the RTL twin of
   :func:`nsllm.isa.check_instr`, same order, same codes);
2. while the previous instruction still executes, **prefetch** its table into the table bank the
   previous one does not use (the :class:`~nsllm.hdl.core.tables.TableLoader`);
3. when the previous instruction has **retired** (its unit pulsed ``done``) and the table is in,
   **issue** it to the unit that owns its opcode — the ``{unit: opcodes}`` dispatch table given at
   construction, one command stream and one ``done`` input per unit.

A failing check, a unit's datapath error, an AXI error or a spiking column outside its region
stops the run with the error code of :mod:`nsllm.isa.errors` in STATUS and the descriptor's
index in STATUS.pc.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nsllm.isa import (
    DESCRIPTOR_BITS,
    DESCRIPTOR_BYTES,
    DESCRIPTOR_FIELDS,
    MAX_SHIFT,
    TABLE_ALIGN,
    BuildLimits,
    ErrorCode,
    Op,
)
from nsllm.isa.layout import MAX_ROW_SHIFT, SCRATCH_OPERANDS, TABLE_ENTRY_BYTES, TABLE_OPS
from nsllm.isa.opcodes import FLAG_BASE3

from .axi import read_client_signature
from .tables import TABLE_COMMAND

__all__ = ["DESCRIPTOR", "Sequencer", "command_layout", "descriptor_error"]


def _descriptor_layout() -> data.StructLayout:
    members, used = {}, 0
    for f in DESCRIPTOR_FIELDS:
        members[f.name] = signed(f.bits) if f.signed else unsigned(f.bits)
        used += f.bits
    members["_tail"] = unsigned(DESCRIPTOR_BITS - used)
    return data.StructLayout(members)


#: The 512-bit descriptor, field for field from :data:`nsllm.isa.DESCRIPTOR_FIELDS`.
DESCRIPTOR = _descriptor_layout()


def command_layout() -> data.StructLayout:
    """What a unit receives when an instruction is issued: the descriptor, the table bank that
    holds its table, and the descriptor's index (for error reports)."""
    return data.StructLayout({"desc": DESCRIPTOR, "bank": 1})


def descriptor_error(d, build: BuildLimits, image_bytes, region_bytes, token):
    """The :class:`~nsllm.isa.ErrorCode` of the first check descriptor ``d`` fails (0: none).

    The same rules, in the same order, as :func:`nsllm.isa.check_instr`; ``build`` holds the
    build's constants, the others are run-time values.
    """
    op = d.op
    is_op = {o: op == o for o in Op}
    linear = is_op[Op.LINEAR]
    base3 = (d.flags & FLAG_BASE3).bool()

    def shift_bad(s):
        return (s < 1) | (s > MAX_SHIFT)

    packing_bad = linear & Mux(base3, "base3" not in build.packings,
                               "2bit" not in build.packings)
    head = d.m
    # a build without SLA state has no slot (a comparison with 0 would be constant: CMPCONST)
    slot_bad = d.slot >= build.max_sla_layers if build.max_sla_layers else Const(1)
    sla_bad = (slot_bad | (d.n > build.max_hidden) | (head == 0)
               | ((head & (head - 1)) != 0) | (head > build.max_head_dim)
               | (head < max(build.sla_lanes, build.align)) | ((d.n & (head - 1)) != 0))
    field_bad = (
        (linear & ((d.D < 1) | (d.D > build.max_D) | shift_bad(d.shift_a) | shift_bad(d.shift_b)
                   | (d.n > build.max_in) | (d.m > build.max_out)))
        | (is_op[Op.NORM] & (shift_bad(d.shift_a) | (d.n > build.max_in)))
        | ((is_op[Op.EMBED] | is_op[Op.MLGRU]) & (d.n > build.max_in))
        | (is_op[Op.EMBED] & (d.shift_b > MAX_ROW_SHIFT))
        | (is_op[Op.COUNT] & (Const(build.max_sla_layers == 0) | (d.D < 1)
                              | (d.D > build.max_D) | shift_bad(d.shift_a)
                              | (d.n > build.max_in)))
        | (is_op[Op.SLA] & sla_bad)
        | (is_op[Op.SLACLEAR] & slot_bad))
    scratch_terms = []
    for o, operands in SCRATCH_OPERANDS.items():
        for start_field, len_field in operands:
            start, n = getattr(d, start_field), getattr(d, len_field)
            bad = ((n == 0) | n[:(build.align - 1).bit_length()].any()
                   | start[:(build.align - 1).bit_length()].any()
                   | (start + n > build.scratch_entries))
            scratch_terms.append(is_op[o] & bad)
    scratch_bad = Cat(*scratch_terms).any()
    token_bad = is_op[Op.EMBED] & (token >= d.m)
    table_start = d.table + Mux(is_op[Op.EMBED], token << d.shift_b[:5], 0)
    has_table = Cat(*(is_op[o] for o in TABLE_OPS)).any()
    table_bad = has_table & (d.table[:(TABLE_ALIGN - 1).bit_length()].any()
                             | (table_start + (d.n << (TABLE_ENTRY_BYTES - 1).bit_length())
                                > image_bytes))
    lg = (build.port_bytes - 1).bit_length()
    stride_rows = Mux(base3, (d.stride << 2) + d.stride, d.stride << 2)
    weight_bad = linear & (
        (d.weight[:lg].any() if lg else Const(0)) | (d.stride[:lg].any() if lg else Const(0))
        | (d.stride == 0) | (stride_rows < d.m) | ((d.stride >> lg) > build.acc_words)
        | (d.weight + d.wsize > region_bytes))
    return Mux(packing_bad, ErrorCode.PACKING,
               Mux(field_bad, ErrorCode.FIELD,
                   Mux(scratch_bad, ErrorCode.SCRATCH,
                       Mux(token_bad, ErrorCode.TOKEN,
                           Mux(table_bad, ErrorCode.TABLE,
                               Mux(weight_bad, ErrorCode.WEIGHT, ErrorCode.NONE))))))


class Sequencer(wiring.Component):
    """Program cache, descriptor checks, table prefetch and dispatch (see the module docstring).

    Parameters
    ----------
    build : BuildLimits
        The build's limits (checks, program cache size ``max_ops``).
    dispatch : dict
        ``{unit name: opcodes}``: which unit runs which opcodes. Each unit ``u`` gets the ports
        ``<u>_cmd`` (out: :func:`command_layout` stream) and ``<u>_done`` (in: one-cycle pulse).
    table_depth : int
        Words per table bank (the banks are ``bank · table_depth + word``).

    Attributes
    ----------
    unit_errors : In(n)
        Sticky datapath errors of the units (ERROR_INFO bits); any stops the run.
    axi_error, weight_error : In(1)
        Sticky: a read answered with an error / a spiking column outside its region.
    """

    #: Timing of the state machine (the cycle model, :mod:`nsllm.perf.cycles`, reads these):
    #: LOAD_REQ before the program burst; FETCH, DECODE, CHECK from a descriptor's fetch to its
    #: RETIRE; TABLE for a descriptor with a table; ``running`` clears the cycle after the unit's
    #: ``done``; ISSUE hands the command to the unit.
    load_request_cycles, decode_cycles, table_cycles, retire_cycles, issue_cycles = 1, 3, 1, 1, 1

    def __init__(self, build: BuildLimits, dispatch: dict[str, tuple[Op, ...]], *,
                 unit_error_bits: int = 4):
        owners = [op for ops in dispatch.values() for op in ops]
        if len(owners) != len(set(owners)) or Op.END in owners:
            raise ValueError("every opcode but END must have exactly one unit")
        self.build = build
        self.dispatch = {u: tuple(ops) for u, ops in dispatch.items()}
        self.unit_error_bits = unit_error_bits
        pb = build.port_bytes
        members = {
            "start": In(1), "busy": Out(1), "done": Out(1),
            "image": In(64), "image_bytes": In(32), "region_bytes": In(32),
            "prog_offset": In(32), "prog_ops": In(32), "token_in": In(32), "cache_flush": In(1),
            "status": Out(32), "error_info": Out(32),
            "prog": Out(read_client_signature(pb)),
            "table_cmd": Out(stream.Signature(TABLE_COMMAND)), "table_busy": In(1),
            "unit_errors": In(unit_error_bits), "axi_error": In(1), "weight_error": In(1),
        }
        for u in self.dispatch:
            members[f"{u}_cmd"] = Out(stream.Signature(command_layout()))
            members[f"{u}_done"] = In(1)
        super().__init__(members)

    def elaborate(self, platform):  # noqa: C901 — one state machine, read top to bottom
        m = Module()
        b, pb = self.build, self.build.port_bytes
        beats_per_desc = max(1, DESCRIPTOR_BYTES // pb)
        ops = b.max_ops
        m.submodules.cache = cache = Memory(shape=unsigned(DESCRIPTOR_BITS), depth=ops, init=[])
        c_wr, c_rd = cache.write_port(), cache.read_port()

        cached = Signal()
        cached_offset = Signal(32)
        cached_ops = Signal(32)
        pc = Signal(16)  # next descriptor to fetch
        cur_pc = Signal(16)  # descriptor executing (or failed)
        cur_op = Signal(8)
        running = Signal()  # an issued instruction has not retired yet
        running_unit = Signal(range(max(len(self.dispatch), 2)))
        error = Signal(4)
        error_info = Signal(32)
        nd = Signal(DESCRIPTOR)  # the fetched next descriptor
        nd_err = Signal(4)
        table_bank = Signal()  # bank of the latest table load
        nd_bank = Signal()

        m.d.comb += [
            self.status.eq(Cat(cur_pc, cur_op, self.busy, Const(0, 3), error)),
            self.error_info.eq(error_info),
        ]
        with m.If(self.cache_flush):
            m.d.sync += cached.eq(0)

        # retirement of the running instruction
        unit_names = list(self.dispatch)
        dones = Cat(*(getattr(self, f"{u}_done") for u in unit_names))
        with m.If(running & dones.bit_select(running_unit, 1)):
            m.d.sync += running.eq(0)

        def stop(code, at_pc=None, info=None):
            m.d.sync += [self.busy.eq(0), error.eq(code)]
            m.d.comb += self.done.eq(1)
            if at_pc is not None:
                m.d.sync += cur_pc.eq(at_pc)
            if info is not None:
                m.d.sync += error_info.eq(info)

        # program load: one burst, assembled into descriptors
        asm = Signal(DESCRIPTOR_BITS)
        desc_beat = Signal(range(beats_per_desc + 1))
        load_op = Signal(16)
        load_err = Signal()

        def_err = descriptor_error(nd, b, self.image_bytes, self.region_bytes, self.token_in)
        needs_table = Cat(*(nd.op == o for o in TABLE_OPS)).any()
        cmd_valid = Signal()

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), pc.eq(0), cur_pc.eq(0), cur_op.eq(0),
                                 error.eq(0), error_info.eq(0), running.eq(0)]
                    bad = ((self.prog_ops == 0) | (self.prog_ops > ops)
                           | self.prog_offset[:(TABLE_ALIGN - 1).bit_length()].any()
                           | (self.prog_offset + (self.prog_ops << 6) > self.image_bytes))
                    with m.If(bad):
                        stop(ErrorCode.PROGRAM)
                    with m.Elif(cached & (cached_offset == self.prog_offset)
                                & (cached_ops == self.prog_ops)):
                        m.next = "FETCH"
                    with m.Else():
                        m.d.sync += [cached.eq(0), load_op.eq(0), desc_beat.eq(0),
                                     load_err.eq(0)]
                        m.next = "LOAD_REQ"
            with m.State("LOAD_REQ"):
                m.d.comb += [self.prog.req.valid.eq(1),
                             self.prog.req.p.addr.eq(self.image + self.prog_offset),
                             self.prog.req.p.beats.eq(self.prog_ops * beats_per_desc
                                                      if beats_per_desc > 1 else self.prog_ops)]
                with m.If(self.prog.req.ready):
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.prog.data.ready.eq(1)
                with m.If(self.prog.data.valid):
                    whole = Signal(DESCRIPTOR_BITS)
                    m.d.comb += whole.eq(asm)
                    for k in range(beats_per_desc):
                        with m.If(desc_beat == k):
                            m.d.comb += whole[8 * pb * k: 8 * pb * (k + 1)].eq(
                                self.prog.data.p.data)
                    m.d.sync += [asm.eq(whole), desc_beat.eq(desc_beat + 1),
                                 load_err.eq(load_err | self.prog.data.p.error)]
                    with m.If(desc_beat + 1 == beats_per_desc):
                        m.d.comb += [c_wr.addr.eq(load_op), c_wr.data.eq(whole), c_wr.en.eq(1)]
                        m.d.sync += [desc_beat.eq(0), load_op.eq(load_op + 1)]
                        with m.If(load_op + 1 == self.prog_ops):
                            with m.If(load_err | self.prog.data.p.error):
                                stop(ErrorCode.AXI)
                                m.next = "IDLE"
                            with m.Else():
                                m.d.sync += [cached.eq(1), cached_offset.eq(self.prog_offset),
                                             cached_ops.eq(self.prog_ops)]
                                m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(pc >= self.prog_ops):
                    # ran off the end of the program (no END): fails like a bad descriptor
                    m.d.sync += [nd.op.eq(0), nd_err.eq(ErrorCode.PROGRAM)]
                    m.next = "RETIRE"
                with m.Else():
                    m.d.comb += [c_rd.addr.eq(pc), c_rd.en.eq(1)]
                    m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += nd.eq(c_rd.data)
                m.next = "CHECK"
            with m.State("CHECK"):
                # the checks of the fetched descriptor; its table load, if it passes, now
                known = Cat(*(nd.op == o for o in Op)).any()
                code = Mux(known, def_err, ErrorCode.OPCODE)
                m.d.sync += [nd_err.eq(code), nd_bank.eq(~table_bank)]
                with m.If((code == 0) & needs_table):
                    m.next = "TABLE"
                with m.Else():
                    m.next = "RETIRE"
            with m.State("TABLE"):
                embed = nd.op == Op.EMBED
                row = Mux(embed, self.token_in << nd.shift_b[:5], 0)
                m.d.comb += [self.table_cmd.valid.eq(1),
                             self.table_cmd.p.addr.eq(self.image + nd.table + row),
                             self.table_cmd.p.n.eq(nd.n), self.table_cmd.p.bank.eq(nd_bank)]
                with m.If(self.table_cmd.ready):
                    m.d.sync += table_bank.eq(nd_bank)
                    m.next = "RETIRE"
            with m.State("RETIRE"):
                # wait for the running instruction and the next one's table
                with m.If(~running & ~self.table_busy):
                    with m.If(self.axi_error):
                        stop(ErrorCode.AXI)
                        m.next = "IDLE"
                    with m.Elif(self.unit_errors.any()):
                        stop(ErrorCode.DATAPATH, info=self.unit_errors)
                        m.next = "IDLE"
                    with m.Elif(self.weight_error):
                        stop(ErrorCode.WEIGHT)
                        m.next = "IDLE"
                    with m.Elif(nd_err != 0):
                        stop(nd_err, at_pc=pc)
                        m.d.sync += cur_op.eq(nd.op)
                        m.next = "IDLE"
                    with m.Elif(nd.op == Op.END):
                        stop(ErrorCode.NONE, at_pc=pc)
                        m.d.sync += cur_op.eq(nd.op)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [cur_pc.eq(pc), cur_op.eq(nd.op), pc.eq(pc + 1)]
                        m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += cmd_valid.eq(1)
                issued = Signal()
                for k, (u, uops) in enumerate(self.dispatch.items()):
                    cmd = getattr(self, f"{u}_cmd")
                    mine = Cat(*(nd.op == o for o in uops)).any()
                    m.d.comb += [cmd.p.desc.eq(nd), cmd.p.bank.eq(nd_bank),
                                 cmd.valid.eq(mine)]
                    with m.If(mine & cmd.ready):
                        m.d.comb += issued.eq(1)
                        m.d.sync += [running.eq(1), running_unit.eq(k)]
                with m.If(issued):
                    m.next = "FETCH"
        return m
