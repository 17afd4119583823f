"""The spiking linear chain's own units in amaranth.sim.

* ``Requantizer``: Σ over the banks, then ``numerics.requant_q`` per lane, at full rate and
  under back-pressure, for the widest sums and mantissas.
* ``LinearUnit`` on its own (scratchpad, table memory and weight ports modelled by the
  testbench): one LINEAR against ``encode_q`` → ``ternary_accumulate`` → ``requant_q`` for
  spike patterns chosen to stress when the unit decides the ports have drained.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.hdl import Value

from nsllm.hdl.core import CoreParams
from nsllm.hdl.core.linear import LinearUnit, Requantizer
from nsllm.isa import Instr, Op
from nsllm.model import numerics as nx
from nsllm.model.packing import pack_trits
from nsllm.sim.streams import check_beats, run_amaranth_stream

from .sim import simulate


# --- Requantizer ------------------------------------------------------------------------------
def requant_beats(rng, lanes, banks, acc_bits, n):
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    acc = rng.integers(lo, hi + 1, (n, banks, lanes))
    acc[0] = hi  # the largest sum of every bank
    acc[1] = lo
    return acc


# one line per case: lanes, banks, accumulator bits, param, shift
REQUANT_CASES = [(4, 1, 11, 1 << 10, 4), (8, 3, 18, -(1 << 31), 40), (2, 2, 12, (1 << 31) - 1, 63),
                 (4, 4, 20, 12345, 1), (1, 1, 8, -1, 7), (16, 3, 16, 3, 20)]


@pytest.mark.parametrize("lanes,banks,acc_bits,param,shift", REQUANT_CASES)
def test_requantizer_equals_requant_q_of_the_bank_sum(lanes, banks, acc_bits, param, shift):
    dut = Requantizer(lanes, banks, acc_bits)
    rng = np.random.default_rng(lanes * banks + shift)
    acc = requant_beats(rng, lanes, banks, acc_bits, 60)
    beats = [{"acc": a.tolist(), "last": int(k % 7 == 6)} for k, a in enumerate(acc)]
    # Python integers: sum · param exceeds int64 for the widest cases
    want = [{"x": [int(nx.saturate(nx.shift_round(int(v) * param, shift)))
                   for v in a.astype(object).sum(axis=0)], "last": int(k % 7 == 6)}
            for k, a in enumerate(acc)]

    def setup(ctx):
        ctx.set(dut.param, param)
        ctx.set(dut.shift, shift)

    got = run_amaranth_stream(dut, beats, len(beats), setup=setup, seed=shift)
    check_beats("Requantizer", got, want)


def test_requantizer_full_rate_latency_3():
    dut = Requantizer(2, 2, 10)
    beats = [{"acc": [[k, -k], [2 * k, 1]], "last": 0} for k in range(30)]
    got = run_amaranth_stream(dut, beats, 30, valid_probability=1.0, ready_probability=1.0,
                              setup=lambda ctx: (ctx.set(dut.param, 3), ctx.set(dut.shift, 1)))
    cycles = [c for c, _ in got]
    assert cycles == list(range(4, 34))  # taken at the first edge, out after the fourth
    assert [v["x"] for _, v in got] == [
        nx.requant_q(np.array([3 * k, 1 - k]), 3, 1).tolist() for k in range(30)]


# --- LinearUnit ----------------------------------------------------------------------------------
def micro(ports):
    return CoreParams(port_bytes=8, vector=4, max_vocab=64, max_hidden=32, max_intermediate=64,
                      max_layers=1, weight_ports=ports)


def run_linear(p, x, mant, trits, *, D=15, shift_a=14, shift_b=4, param=1 << 10, stall=0.0,
               seed=0):
    """One LINEAR on its own; returns the outputs written to dst and the spike copy."""
    dut = LinearUnit(p)
    E, pb, N = p.vector, p.port_bytes, p.weight_ports
    n, m = len(x), trits.shape[0]
    stride = m // 4  # 2bit: 4 rows per byte
    slots = -(-n // N)
    regions = [bytearray(slots * stride) for _ in range(N)]
    packed = pack_trits(trits, "2bit")
    for j in range(n):
        regions[j % N][(j // N) * stride:(j // N + 1) * stride] = packed[j].tobytes()
    src_a, src_b, dst = 0, 64, 128
    desc = Instr(Op.LINEAR, D=D, shift_a=shift_a, shift_b=shift_b, n=n, m=m, src_a=src_a,
                 src_b=src_b, dst=dst, param=param, weight=0, stride=stride,
                 wsize=slots * stride)
    rng = random.Random(seed)
    written = {}

    async def tb(ctx):
        for k in range(N):
            ctx.set(dut.bases[k], 0)
        ctx.set(Value.cast(dut.cmd.p.desc), int.from_bytes(desc.pack(), "little"))
        ctx.set(dut.cmd.valid, 1)
        await ctx.tick()
        ctx.set(dut.cmd.valid, 0)
        queues = [[] for _ in range(N)]
        read_a = read_t = None
        for _ in range(5000):
            if read_a is not None:  # the scratchpad and table memory: one cycle of latency
                for i in range(E):
                    ctx.set(dut.r_a.data[i], int(x[read_a * E + i]))
            if read_t is not None:
                for i in range(E):
                    ctx.set(dut.t.data[i], int(mant[read_t * E + i]))
            for k in range(N):  # the weight ports: in order, random gaps
                port = dut.ports[k]
                ctx.set(port.req.ready, rng.random() >= stall)
                if ctx.get(port.req.valid) and ctx.get(port.req.ready):
                    queues[k].append([ctx.get(port.req.p.addr), ctx.get(port.req.p.beats)])
                beat = bool(queues[k]) and rng.random() >= stall
                if beat:
                    a = queues[k][0][0]
                    ctx.set(port.data.p.data, int.from_bytes(regions[k][a:a + pb], "little"))
                ctx.set(port.data.valid, beat)
                if beat and ctx.get(port.data.ready):
                    queues[k][0][0] += pb
                    queues[k][0][1] -= 1
                    if queues[k][0][1] == 0:
                        queues[k].pop(0)
            read_a = ctx.get(dut.r_a.addr) - src_a // E if ctx.get(dut.r_a.en) else None
            read_t = ctx.get(dut.t.addr) if ctx.get(dut.t.en) else None
            for port in (dut.w_out, dut.w_spikes):
                if ctx.get(port.en):
                    written[ctx.get(port.addr)] = [ctx.get(port.data[i]) for i in range(E)]
            if ctx.get(dut.done):
                break
            await ctx.tick()
        else:
            raise AssertionError("LinearUnit: no done")

    simulate(dut, tb)
    out = np.concatenate([written.get(dst // E + w, [None] * E) for w in range(m // E)])
    spikes = np.concatenate([written.get(src_b // E + w, [None] * E) for w in range(n // E)])
    return out, spikes


def golden_linear(x, mant, trits, D=15, shift_a=14, shift_b=4, param=1 << 10):
    counts = nx.encode_q(np.asarray(x), np.asarray(mant), shift_a, D, 0)
    return nx.requant_q(nx.ternary_accumulate(trits, counts), param, shift_b), counts


def pattern(name, n):
    x = np.zeros(n, np.int64)
    spiking = {"all": range(n), "first": [0], "none": [], "every-third": range(0, n, 3),
               "last": [n - 1], "last-two": [n - 2, n - 1], "middle": [n // 2]}[name]
    x[list(spiking)] = 5 << nx.ACT_FRAC
    return x


# one line per case: spike pattern, weight ports, port stall probability
LINEAR_CASES = [
    ("all", 1, 0.0), ("all", 2, 0.3), ("first", 1, 0.0), ("none", 1, 0.0),
    ("every-third", 3, 0.2), ("middle", 1, 0.0),
    ("last", 1, 0.0), ("last", 2, 0.0),  # the last column arrives at idle ports
    ("last-two", 1, 0.0),
]


@pytest.mark.parametrize("spikes,ports,stall", LINEAR_CASES)
def test_linear_unit_equals_the_golden_layer(spikes, ports, stall):
    rng = np.random.default_rng(ports)
    n, m = 16, 32
    trits = rng.integers(-1, 2, (m, n))
    x = pattern(spikes, n)
    mant = np.full(n, 1 << 12)
    out, copy = run_linear(micro(ports), x, mant, trits, stall=stall, seed=ports)
    want, counts = golden_linear(x, mant, trits)
    assert copy.tolist() == counts.tolist()  # the spike copy in src_b
    assert out.tolist() == want.tolist()
