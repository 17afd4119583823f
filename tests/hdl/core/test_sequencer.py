"""``Sequencer`` in amaranth.sim with stand-in units: a program memory with random stalls, a
table loader that stays busy for a while after each command, and units (one per entry of the
dispatch table) that take a command, run for a number of cycles and pulse ``done``.

Checked: dispatch by the ``{unit: ops}`` table, the table of the next descriptor loading while
the current one runs (into the other bank), retire order (one instruction at a time, in program
order), the program cache (hit, miss on another program, flush), and every way a run stops
(END, each descriptor check, unknown opcodes, program errors, AXI / datapath / weight errors)
with its code and pc in STATUS. (``descriptor_error`` itself: test_descriptor_check.py.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from amaranth.hdl import Value

from nsllm.hdl.core import CoreParams
from nsllm.hdl.core.sequencer import Sequencer
from nsllm.isa import DESCRIPTOR_BYTES, ErrorCode, Instr, Op
from nsllm.isa.layout import TABLE_OPS

from .sim import get_payload, simulate

IMAGE = 0x1_0000_0000  # the image region's device address (above 4 GiB: 64-bit addresses)
IMAGE_BYTES, REGION_BYTES = 1 << 20, 1 << 16
DISPATCH = {"vector": (Op.EMBED, Op.NORM, Op.UNORM, Op.MLGRU, Op.SILUGATE, Op.ADD, Op.CLEAR,
                       Op.ARGMAX),
            "linear": (Op.LINEAR,)}


def limits(port_bytes=8):
    return CoreParams(port_bytes=port_bytes, vector=max(4, port_bytes // 4), max_vocab=64,
                      max_hidden=32,
                      max_intermediate=64, max_layers=1, max_ops=16).build_limits()


# descriptors that pass every check of the build (tables 64-byte aligned, in the image)
def embed(table=0x400, shift_b=7):
    return Instr(Op.EMBED, n=32, m=64, dst=0, table=table, shift_b=shift_b)


def norm(table=0x800):
    return Instr(Op.NORM, n=32, src_a=0, dst=32, table=table, shift_a=8, param=1448)


def linear(table=0xC00, stride=16):
    return Instr(Op.LINEAR, D=15, shift_a=20, shift_b=12, n=32, m=64, src_a=32, src_b=96,
                 dst=128, table=table, weight=0, stride=stride, wsize=512)


def add():
    return Instr(Op.ADD, n=32, src_a=0, src_b=32, dst=64)


def mlgru(table=0x1000):
    return Instr(Op.MLGRU, n=32, src_a=0, src_b=32, dst=64, table=table)


def end():
    return Instr(Op.END)


@dataclass
class Run:
    status: int = 0
    error_info: int = 0
    cycles: int = 0
    issued: list = field(default_factory=list)  # (cycle, unit, descriptor bytes, bank)
    retired: list = field(default_factory=list)  # (cycle, unit)
    tables: list = field(default_factory=list)  # (cycle, addr, n, bank)
    tables_done: list = field(default_factory=list)  # cycle the loader went idle after each
    prog_requests: list = field(default_factory=list)  # (addr, beats)
    protocol: list = field(default_factory=list)  # violations seen by the models

    @property
    def error(self):
        return ErrorCode(self.status >> 28)

    @property
    def pc(self):
        return self.status & 0xFFFF

    @property
    def opcode(self):
        return (self.status >> 16) & 0xFF


class Harness:
    """The stand-ins around one Sequencer; :meth:`run` plays one program to its done pulse."""

    def __init__(self, build, *, seed=0, stall=0.3, latency=None, table_cycles=(3, 9)):
        self.build = build
        self.dut = Sequencer(build, DISPATCH)
        self.rng = random.Random(seed)
        self.stall = stall
        self.latency = latency or {Op.LINEAR: (20, 40)}
        self.table_cycles = table_cycles
        self.memory = bytearray(IMAGE_BYTES)
        self.faults = {}  # unit → (op, error input, value): raised while that op runs

    def place(self, offset, program):
        raw = b"".join(i.pack() if isinstance(i, Instr) else i for i in program)
        self.memory[offset:offset + len(raw)] = raw
        return offset, len(program)

    async def run(self, ctx, offset, ops, token=0, *, flush=False, axi_error_beat=None,
                  budget=20_000):
        dut, rng, pb = self.dut, self.rng, self.build.port_bytes
        out = Run()
        ctx.set(dut.image, IMAGE)
        ctx.set(dut.image_bytes, IMAGE_BYTES)
        ctx.set(dut.region_bytes, REGION_BYTES)
        ctx.set(dut.prog_offset, offset)
        ctx.set(dut.prog_ops, ops)
        ctx.set(dut.token_in, token)
        for name in ("unit_errors", "axi_error", "weight_error", "table_busy"):
            ctx.set(getattr(dut, name), 0)
        if flush:
            ctx.set(dut.cache_flush, 1)
            await ctx.tick()
            ctx.set(dut.cache_flush, 0)
        ctx.set(dut.start, 1)
        early = ctx.get(dut.done)  # a program that fails its checks stops at once
        await ctx.tick()
        ctx.set(dut.start, 0)
        if early:
            out.status, out.error_info = ctx.get(dut.status), ctx.get(dut.error_info)
            return out
        prog_queue = []  # [addr, beats left]
        beat_no = 0
        table_left = 0
        units = {u: {"left": None, "op": None} for u in DISPATCH}
        for cycle in range(budget):
            # program memory
            ctx.set(dut.prog.req.ready, rng.random() >= self.stall)
            if ctx.get(dut.prog.req.valid) and ctx.get(dut.prog.req.ready):
                req = get_payload(ctx, dut.prog.req.p)
                out.prog_requests.append((req["addr"], req["beats"]))
                prog_queue.append([req["addr"], req["beats"]])
            beat = bool(prog_queue) and rng.random() >= self.stall
            if beat:
                a = prog_queue[0][0] - IMAGE
                ctx.set(dut.prog.data.p.data, int.from_bytes(self.memory[a:a + pb], "little"))
                ctx.set(dut.prog.data.p.error, beat_no == axi_error_beat)
            ctx.set(dut.prog.data.valid, beat)
            if beat and ctx.get(dut.prog.data.ready):
                beat_no += 1
                prog_queue[0][0] += pb
                prog_queue[0][1] -= 1
                if prog_queue[0][1] == 0:
                    prog_queue.pop(0)
            # table loader: busy for a while after each command
            ready = table_left == 0 and rng.random() >= self.stall
            ctx.set(dut.table_cmd.ready, ready)
            ctx.set(dut.table_busy, table_left > 0)
            if ready and ctx.get(dut.table_cmd.valid):
                t = get_payload(ctx, dut.table_cmd.p)
                out.tables.append((cycle, t["addr"], t["n"], t["bank"]))
                table_left = rng.randint(*self.table_cycles)
            elif table_left:
                table_left -= 1
                if table_left == 0:
                    out.tables_done.append(cycle + 1)  # table_busy is low from the next cycle
            # units: take a command when idle, run, pulse done
            for u, state in units.items():
                cmd = getattr(dut, f"{u}_cmd")
                done = state["left"] == 0
                ctx.set(getattr(dut, f"{u}_done"), done)
                if done:
                    out.retired.append((cycle, u))
                    state["left"] = None
                idle = state["left"] is None
                ready = idle and rng.random() >= self.stall
                ctx.set(cmd.ready, ready)
                if ready and ctx.get(cmd.valid):
                    desc = ctx.get(Value.cast(cmd.p.desc))
                    raw = desc.to_bytes(DESCRIPTOR_BYTES, "little")
                    out.issued.append((cycle, u, raw, ctx.get(cmd.p.bank)))
                    op = Op(raw[0])
                    state["left"] = rng.randint(*self.latency.get(op, (1, 6)))
                    state["op"] = op
                    if u in self.faults and self.faults[u][0] == op:
                        _, name, value = self.faults[u]
                        ctx.set(getattr(dut, name), value)
                elif state["left"]:
                    state["left"] -= 1
            if ctx.get(dut.done):
                await ctx.tick()
                out.status, out.error_info = ctx.get(dut.status), ctx.get(dut.error_info)
                out.cycles = cycle
                if ctx.get(dut.busy):
                    out.protocol.append("busy after done")
                return out
            await ctx.tick()
        raise AssertionError(f"Sequencer: no done after {budget} cycles; STATUS "
                             f"{ctx.get(dut.status):#x}")


def play(build, runs, **kw):
    """``runs``: list of (program, run keyword arguments); one Sequencer, the runs in order."""
    h = Harness(build, **kw)
    placed = []
    offset = 0x100
    for program, _ in runs:
        placed.append(h.place(offset, program))
        offset += 64 * (len(program) + 1)
    results = []

    async def tb(ctx):
        for (offset, ops), (_, kwargs) in zip(placed, runs, strict=True):
            results.append(await h.run(ctx, kwargs.pop("offset", offset),
                                       kwargs.pop("ops", ops), **kwargs))

    simulate(h.dut, tb)
    return results, placed


def program(port_bytes=8):
    stride = max(16, port_bytes)  # whole port words
    return [embed(), norm(), linear(stride=stride), add(), linear(0x1400, stride), mlgru(),
            Instr(Op.ARGMAX, n=32), end()]


PROGRAM = program()


@pytest.mark.parametrize("port_bytes,stall", [(8, 0.3), (64, 0.0), (16, 0.5)])
def test_dispatch_order_and_retire(port_bytes, stall):
    prog = program(port_bytes)
    (run,), _ = play(limits(port_bytes), [(prog, {"token": 5})], stall=stall,
                     seed=port_bytes)
    assert run.protocol == []
    assert (run.error, run.pc, run.opcode) == (ErrorCode.NONE, len(prog) - 1, Op.END)
    # every descriptor but END went to the unit that owns its opcode, in program order
    owner = {op: u for u, ops in DISPATCH.items() for op in ops}
    assert [(u, raw) for _, u, raw, _ in run.issued] == [
        (owner[i.op], i.pack()) for i in prog[:-1]]
    # one instruction at a time: each is issued after the previous one retired
    for (issued, _, _, _), (retired, _) in zip(run.issued[1:], run.retired, strict=False):
        assert issued > retired
    assert [u for _, u in run.retired] == [u for _, u, _, _ in run.issued]


def test_table_of_the_next_instruction_loads_while_the_current_one_runs():
    """Instructions run 15–30 cycles, table loads 3–9: every descriptor's table command is
    accepted before the instruction before it retires, into the other bank; a table is
    complete before its instruction is issued, which names the bank its table went to."""
    long = {op: (15, 30) for op in Op}  # every instruction outlasts a table load
    (run,), _ = play(limits(), [(PROGRAM, {"token": 5})], stall=0.0, seed=3, latency=long)
    with_table = [k for k, i in enumerate(PROGRAM) if i.op in TABLE_OPS]
    assert len(run.tables) == len(with_table)
    issued = {k: run.issued[k] for k in range(len(PROGRAM) - 1)}
    retired = {k: run.retired[k][0] for k in range(len(PROGRAM) - 1)}
    for (t_cycle, addr, n, bank), k in zip(run.tables, with_table, strict=True):
        i = PROGRAM[k]
        row = 5 << i.shift_b if i.op == Op.EMBED else 0
        assert (addr, n) == (IMAGE + i.table + row, i.n)
        assert issued[k][3] == bank  # the instruction reads the bank its table went to
        assert t_cycle < issued[k][0]
        if k > 0:
            assert t_cycle < retired[k - 1], f"descriptor {k}: table not prefetched"
    banks = [b for *_, b in run.tables]
    assert banks == [(k + 1) % 2 for k in range(len(banks))]  # alternating banks


def test_an_instruction_waits_for_its_table():
    """Table loads (20–40 cycles) outlast the instructions (1–6): each instruction with a table
    is issued only once the loader is idle again."""
    (run,), _ = play(limits(), [(PROGRAM, {"token": 5})], stall=0.0, seed=8,
                     table_cycles=(20, 40), latency={Op.LINEAR: (1, 6)})
    with_table = [k for k, i in enumerate(PROGRAM) if i.op in TABLE_OPS]
    assert len(run.tables_done) == len(with_table)
    for done, k in zip(run.tables_done, with_table, strict=True):
        assert run.issued[k][0] >= done, f"descriptor {k} issued before its table was in"


def test_program_cache_hit_miss_and_flush():
    other = [add(), end()]
    h = Harness(limits(), stall=0.2)
    a = h.place(0x100, PROGRAM)
    b = h.place(0x1000, other)
    results = []

    async def tb(ctx):
        for args, kwargs in [(a, {}), (a, {}), (b, {}), (a, {}), (a, {"flush": True}),
                             ((a[0], a[1] - 1), {})]:
            results.append(await h.run(ctx, *args, **kwargs))

    simulate(h.dut, tb)
    loads = [len(r.prog_requests) for r in results]
    assert loads == [1, 0, 1, 1, 1, 1]  # miss, hit, other, back, flushed, other length
    pb = h.build.port_bytes
    assert results[0].prog_requests == [(IMAGE + 0x100, len(PROGRAM) * 64 // pb)]
    assert [r.error for r in results[:5]] == [ErrorCode.NONE] * 5
    # the cached run issues the same instructions as the loading one
    assert [raw for _, _, raw, _ in results[1].issued] == [
        raw for _, _, raw, _ in results[0].issued]
    assert results[5].error == ErrorCode.PROGRAM  # PROGRAM minus its END runs off the end


# --- how a run stops ---------------------------------------------------------------------------
BAD_SCRATCH = Instr(Op.ADD, n=32, src_a=0, src_b=32, dst=700)
UNKNOWN = bytes([0x18]) + bytes(63)  # CLEAR's bit pattern in the low nibble: still unknown

# one line per case: program, run options, code, pc, opcode in STATUS, instructions issued
STOPS = [
    ([add(), end()], {}, ErrorCode.NONE, 1, Op.END, 1),
    ([end()], {}, ErrorCode.NONE, 0, Op.END, 0),
    ([add(), UNKNOWN, add(), end()], {}, ErrorCode.OPCODE, 1, 0x18, 1),
    ([bytes([0xFF]) + bytes(63), end()], {}, ErrorCode.OPCODE, 0, 0xFF, 0),
    ([add(), add(), BAD_SCRATCH, end()], {}, ErrorCode.SCRATCH, 2, Op.ADD, 2),
    ([embed(), end()], {"token": 64}, ErrorCode.TOKEN, 0, Op.EMBED, 0),
    ([add(), norm(table=IMAGE_BYTES - 64), end()], {}, ErrorCode.TABLE, 1, Op.NORM, 1),
    ([linear(), Instr(Op.LINEAR, D=15, shift_a=20, shift_b=12, n=32, m=64, src_a=32,
                      src_b=96, dst=128, table=0xC00, weight=REGION_BYTES, stride=16,
                      wsize=16), end()], {}, ErrorCode.WEIGHT, 1, Op.LINEAR, 1),
    ([Instr(Op.LINEAR, D=15, shift_a=20, shift_b=12, n=32, m=64, src_a=32, src_b=96, dst=128,
            table=0xC00, stride=16, wsize=512, flags=1), end()], {}, ErrorCode.PACKING, 0,
     Op.LINEAR, 0),
    ([norm(), Instr(Op.NORM, n=32, src_a=0, dst=32, table=0x800, shift_a=0)], {},
     ErrorCode.FIELD, 1, Op.NORM, 1),
    ([add(), add()], {}, ErrorCode.PROGRAM, 2, 0, 2),  # no END: runs off the end
    ([add(), end()], {"ops": 0}, ErrorCode.PROGRAM, 0, 0, 0),
    ([add(), end()], {"ops": 17}, ErrorCode.PROGRAM, 0, 0, 0),  # above max_ops
    ([add(), end()], {"offset": 0x120}, ErrorCode.PROGRAM, 0, 0, 0),  # not 64-byte aligned
    ([add(), end()], {"offset": IMAGE_BYTES - 64}, ErrorCode.PROGRAM, 0, 0, 0),  # past the end
    ([add(), end()], {"axi_error_beat": 3}, ErrorCode.AXI, 0, 0, 0),
]


@pytest.mark.parametrize("program,options,code,pc,opcode,issued", STOPS)
def test_run_stops_with_code_and_pc(program, options, code, pc, opcode, issued):
    (run,), _ = play(limits(), [(program, dict(options))], stall=0.2, seed=len(program))
    assert (run.error, run.pc, run.opcode) == (code, pc, opcode)
    assert len(run.issued) == issued


# one line per case: unit, the op during which it raises, the input, its value, code, info
FAULTS = [
    ("linear", Op.LINEAR, "unit_errors", 0b0010, ErrorCode.DATAPATH, 0b0010),
    ("vector", Op.ADD, "unit_errors", 0b1000, ErrorCode.DATAPATH, 0b1000),
    ("linear", Op.LINEAR, "axi_error", 1, ErrorCode.AXI, 0),
    ("linear", Op.LINEAR, "weight_error", 1, ErrorCode.WEIGHT, 0),
]


@pytest.mark.parametrize("unit,op,name,value,code,info", FAULTS)
def test_unit_errors_stop_the_run_after_the_instruction(unit, op, name, value, code, info):
    h = Harness(limits(), stall=0.1, seed=4)
    h.faults[unit] = (op, name, value)
    offset, ops = h.place(0x100, PROGRAM)
    results = []

    async def tb(ctx):
        results.append(await h.run(ctx, offset, ops, token=5))
        h.faults.clear()
        results.append(await h.run(ctx, offset, ops, token=5))  # a new run starts clean

    simulate(h.dut, tb)
    first = next(k for k, i in enumerate(PROGRAM) if i.op == op)
    run = results[0]
    assert (run.error, run.error_info, run.pc, run.opcode) == (code, info, first, op)
    assert len(run.issued) == first + 1  # nothing is issued after the failing instruction
    assert (results[1].error, results[1].error_info) == (ErrorCode.NONE, 0)
    assert len(results[1].issued) == len(PROGRAM) - 1


def test_dispatch_table_must_own_every_opcode_once():
    with pytest.raises(ValueError, match=r"^every opcode but END must have exactly one unit$"):
        Sequencer(limits(), {"a": (Op.ADD,), "b": (Op.ADD, Op.NORM)})
    with pytest.raises(ValueError, match=r"^every opcode but END must have exactly one unit$"):
        Sequencer(limits(), {"a": (Op.END,)})
