"""The SLA state unit in amaranth.sim.

* ``SLAStateLanes`` (the arithmetic of one state word): decay, k·v and the read term against
  ``numerics.sla_update`` / ``count_times`` element by element, over the whole state range and
  every count and shift, with random valid gaps and back-pressure, and at full rate.
* ``SLAUnit`` on its own (scratchpad and table memory modelled by the testbench, one cycle of
  read latency): several tokens of SLA instructions on two state slots, with random idle gaps
  before each command, against ``numerics.sla_q`` — the read-out each token writes and so the
  state it carries; SLACLEAR; the busy cycles the cycle model assumes; counts and decay shifts
  out of range set the error flag.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.hdl import Value

from nsllm.hdl.core import CoreParams
from nsllm.hdl.core.sla import SLAUnit
from nsllm.hdl.sla import SLAStateLanes
from nsllm.isa import Instr, Op
from nsllm.model import numerics as nx
from nsllm.sim.streams import check_beats, run_amaranth_stream

from .sim import simulate

TOP = nx.SLA_MAX_COUNT
S_MIN, S_MAX = -(1 << (nx.SLA_STATE_BITS - 1)), (1 << (nx.SLA_STATE_BITS - 1)) - 1


# --- SLAStateLanes ------------------------------------------------------------------------------
def lane_beats(rng, lanes, n):
    beats = []
    for k in range(n):
        s = rng.integers(S_MIN, S_MAX + 1, lanes)
        if k % 5 == 0:
            s[: lanes // 2] = rng.integers(-4096, 4096, lanes // 2)  # small entries decay to 0
        beats.append({"s": s.tolist(), "v": rng.integers(-TOP, TOP + 1, lanes).tolist(),
                      "k": int(rng.integers(0, TOP + 1)), "q": int(rng.integers(0, TOP + 1)),
                      "shift": int(rng.integers(1, nx.SLA_MAX_DECAY_SHIFT + 1))})
    beats[0].update(s=[S_MAX] * lanes, v=[TOP] * lanes, k=TOP, q=TOP, shift=1)  # the corners
    beats[1].update(s=[S_MIN] * lanes, v=[-TOP] * lanes, k=TOP, q=TOP, shift=12)
    return beats


def lane_expected(beat):
    s = np.array(beat["s"])[None, None, None, :]  # (1 head, 1 row, lanes columns)
    new = nx.sla_update(s, np.array([[beat["k"]]]), np.array([beat["v"]]),
                        np.array([beat["shift"]]))[0, 0, 0]
    return {"s": new.tolist(), "t": nx.count_times(beat["q"], new, TOP).tolist()}


@pytest.mark.parametrize("lanes,valid,ready", [(4, 0.6, 0.6), (8, 1.0, 0.5), (1, 0.5, 1.0)])
def test_state_lanes_equal_the_update_and_read_kernels(lanes, valid, ready):
    rng = np.random.default_rng(lanes)
    beats = lane_beats(rng, lanes, 80)
    got = run_amaranth_stream(SLAStateLanes(lanes), beats, len(beats), seed=lanes,
                              valid_probability=valid, ready_probability=ready)
    check_beats("SLAStateLanes", got, [lane_expected(b) for b in beats])


def test_state_lanes_full_rate_latency_2():
    beats = lane_beats(np.random.default_rng(0), 2, 20)
    got = run_amaranth_stream(SLAStateLanes(2), beats, 20, valid_probability=1.0,
                              ready_probability=1.0)
    cycles = [c for c, _ in got]
    assert cycles == list(range(cycles[0], cycles[0] + 20))
    assert cycles[0] == SLAStateLanes.latency + 1  # taken at the first edge


# --- SLAUnit ------------------------------------------------------------------------------------
def micro(lanes, vector=4):
    return CoreParams(port_bytes=8, vector=vector, max_vocab=64, max_hidden=32,
                      max_intermediate=64, max_layers=2, max_sla_layers=2, max_head_dim=16,
                      sla_lanes=lanes)


class Memories:
    """The scratchpad and the table memory as the unit sees them: words of ``vector`` entries,
    data one cycle after ``en``."""

    def __init__(self, vector):
        self.E = vector
        self.scratch: dict[int, list[int]] = {}
        self.table: dict[int, list[int]] = {}

    def put(self, mem, start, values):
        for w in range(len(values) // self.E):
            mem[start // self.E + w] = [int(v) for v in values[w * self.E:(w + 1) * self.E]]

    def get(self, start, n):
        return np.concatenate([self.scratch[start // self.E + w] for w in range(n // self.E)])


def run_unit(p, steps, mem: Memories, *, gaps=0, seed=0):
    """Run ``steps`` — (scratchpad writes {start: values}, descriptor, table bank) — one after
    the other in one simulation (the unit keeps its state memory), with up to ``gaps`` idle
    cycles before each command. Returns per step (busy cycles from the command taken to done,
    the ``n`` entries at ``dst`` afterwards, the error flag)."""
    dut = SLAUnit(p)
    E = p.vector
    rng = random.Random(seed)
    results = []

    async def tb(ctx):
        reads = {}
        for writes, ins, bank in steps:
            for start, values in writes.items():
                mem.put(mem.scratch, start, values)
            for _ in range(rng.randint(0, gaps)):
                await ctx.tick()
            ctx.set(Value.cast(dut.cmd.p.desc), int.from_bytes(ins.pack(), "little"))
            ctx.set(dut.cmd.p.bank, bank)
            ctx.set(dut.cmd.valid, 1)
            taken = None
            for cycle in range(200_000):
                for port, word in reads.items():  # last cycle's reads arrive
                    source = mem.table if port == "t" else mem.scratch
                    for i in range(E):
                        ctx.set(getattr(dut, port).data[i], source.get(word, [0] * E)[i])
                if taken is None and ctx.get(dut.cmd.valid) and ctx.get(dut.cmd.ready):
                    taken = cycle
                reads = {port: ctx.get(getattr(dut, port).addr)
                         for port in ("r_q", "r_k", "r_v", "t") if ctx.get(getattr(dut, port).en)}
                if all(ctx.get(dut.w.en[i]) for i in range(E)):
                    mem.scratch[ctx.get(dut.w.addr)] = [ctx.get(dut.w.data[i]) for i in range(E)]
                done = ctx.get(dut.done)
                await ctx.tick()
                if taken is not None:
                    ctx.set(dut.cmd.valid, 0)
                if done:
                    break
            else:
                raise AssertionError("SLAUnit: no done")
            out = mem.get(ins.dst, ins.n) if ins.op == Op.SLA else None
            results.append((cycle - taken, out, ctx.get(dut.error)))

    simulate(dut, tb)
    return results


Q, K, V, O = 0, 32, 64, 96  # scratchpad regions of the test


def sla(n, m, slot, bank=0):
    return Instr(Op.SLA, n=n, m=m, src_a=Q, src_b=K, src_c=V, dst=O, slot=slot), bank


def tables(p, mem, shifts, m):
    """The decay-shift table (one entry per channel) in both table banks."""
    table = np.repeat(shifts, m)
    mem.put(mem.table, 0, table)
    mem.put(mem.table, p.table_bank_words * p.vector, table)


# one line per case: SLA lanes, vector, heads of 16, the counts' largest values (q, k, v), idle
# cycles before a command
UNIT_CASES = [(4, 4, 2, (2, 2, 4), 3), (16, 4, 1, (15, 15, 15), 0), (2, 8, 2, (1, 3, 7), 5),
              (8, 16, 2, (2, 2, 4), 2), (1, 4, 1, (15, 1, 15), 1)]


@pytest.mark.parametrize("lanes,vector,heads,D,gaps", UNIT_CASES)
def test_sla_unit_equals_sla_q_over_tokens_and_slots(lanes, vector, heads, D, gaps):
    p = micro(lanes, vector)
    rng = np.random.default_rng(lanes * vector + heads)
    m, n = 16, 16 * heads
    shifts = rng.integers(1, nx.SLA_MAX_DECAY_SHIFT + 1, heads)
    shifts[0] = 1  # the fastest decay
    mem = Memories(vector)
    tables(p, mem, shifts, m)
    state = {slot: np.zeros((heads, m, m), np.int64) for slot in (0, 1)}
    steps, want = [], []
    for token in range(4):
        for slot in (0, 1):  # two layers' states, kept apart in their slots
            q, k, v = (rng.integers(0, D[0] + 1, n), rng.integers(0, D[1] + 1, n),
                       rng.integers(-D[2], D[2] + 1, n))
            if token == 0 and slot == 0:  # the extremes of every count
                q[:], k[:], v[:] = D[0], D[1], -D[2]
            state[slot], o = nx.sla_q(state[slot], q, k, v, shifts)
            steps.append(({Q: q, K: k, V: v}, *sla(n, m, slot, bank=(token + slot) % 2)))
            want.append(o)
    results = run_unit(p, steps, mem, gaps=gaps, seed=lanes)
    for k, ((busy, got, error), o) in enumerate(zip(results, want, strict=True)):
        assert not error, f"step {k}: error flag"
        first = np.flatnonzero(got != o)
        assert first.size == 0, (f"step {k} (token {k // 2}, slot {k % 2}): dst[{first[0]}] "
                                 f"{got[first[0]]}, expected {o[first[0]]}")
        assert busy == heads * SLAUnit.head_cycles(p, m), busy


def test_sla_unit_read_out_is_pre_shifted_when_wide():
    """Saturating counts on a slow decay grow the read-out past 23 bits: the unit shifts each
    head by its own e (here the two heads differ), as head_preshift_q does."""
    p = micro(4)
    m, n = 16, 32
    shifts = np.array([9, 2])
    mem = Memories(4)
    tables(p, mem, shifts, m)
    state = np.zeros((2, m, m), np.int64)
    steps, want = [], []
    q, k, v = np.full(n, TOP), np.full(n, 7), np.full(n, 7)
    for _ in range(3):
        state, o = nx.sla_q(state, q, k, v, shifts)
        steps.append(({Q: q, K: k, V: v}, *sla(n, m, 0)))
        want.append(o)
    wide = nx.sla_read(state, q.reshape(2, m))
    assert np.abs(wide[0]).max() >= 1 << 23  # the case is the wide one
    results = run_unit(p, steps, mem)
    assert [r[1].tolist() for r in results] == [o.tolist() for o in want]


def test_slaclear_zeroes_its_slot_only():
    p = micro(4)
    m, n = 16, 32
    shifts = np.array([3, 5])
    mem = Memories(4)
    tables(p, mem, shifts, m)
    rng = np.random.default_rng(5)
    q, k, v = rng.integers(0, 3, n), rng.integers(0, 3, n), rng.integers(-4, 5, n)
    zero = np.zeros((2, m, m), np.int64)
    s1, _ = nx.sla_q(zero, q, k, v, shifts)
    _, after_clear = nx.sla_q(zero, q, k, v, shifts)  # slot 0 starts again from zero
    _, kept = nx.sla_q(s1, q, k, v, shifts)  # slot 1 keeps its token
    counts = {Q: q, K: k, V: v}
    steps = [(counts, *sla(n, m, 0)), (counts, *sla(n, m, 1)),
             ({}, Instr(Op.SLACLEAR, slot=0), 0), (counts, *sla(n, m, 0)),
             (counts, *sla(n, m, 1))]
    results = run_unit(p, steps, mem, gaps=2)
    assert results[2][0] == p.sla_slot_words  # one word cleared per cycle
    assert results[3][1].tolist() == after_clear.tolist()
    assert results[4][1].tolist() == kept.tolist()


@pytest.mark.parametrize("which,value", [("q", 16), ("q", -1), ("k", 16), ("v", 16), ("v", -16),
                                         ("shift", 0), ("shift", 13)])
def test_out_of_range_operands_set_the_error_flag(which, value):
    p = micro(4)
    m, n = 16, 32
    mem = Memories(4)
    shifts = np.array([3, 5])
    counts = {Q: np.ones(n, np.int64), K: np.ones(n, np.int64), V: np.ones(n, np.int64)}
    if which == "shift":
        shifts[1] = value
    else:
        counts[{"q": Q, "k": K, "v": V}[which]][n - 1] = value  # the last channel of head 1
    tables(p, mem, shifts, m)
    good = run_unit(p, [({Q: np.ones(n), K: np.ones(n), V: np.ones(n)}, *sla(n, m, 0))],
                    mem)
    assert good[0][2] == (which == "shift")  # the table is shared by both runs
    bad = run_unit(p, [(counts, *sla(n, m, 0))], mem)
    assert bad[0][2] == 1
