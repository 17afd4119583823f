"""The fixed-point helpers against their numerics twins, exhaustively over shifts (amaranth.sim)."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from nsllm.hdl.fixed_point import saturate, shift_round, shift_round_by, sigmoid_index
from nsllm.model import numerics as nx

VALUES = [0, 1, -1, 2, -2, 3, -3, 5, -5, 6, -6, 7, -7, 8, -8, (1 << 39) - 1, -(1 << 39),
          123456789, -123456789, 1 << 20, -(1 << 20), (1 << 20) + (1 << 19), -(1 << 19)]


def evaluate(build, inputs):
    """Drive the combinational ``build(m, *signals) -> expr`` with each input tuple."""
    m = Module()
    shapes = [signed(40), unsigned(7)]
    ins = [Signal(shape) for shape in shapes[: len(inputs[0])]]
    out = Signal(signed(64))
    m.d.comb += out.eq(build(*ins))
    results = []

    async def tb(ctx):
        for values in inputs:
            for sig, v in zip(ins, values, strict=True):
                ctx.set(sig, v)
            results.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    return results


@pytest.mark.parametrize("max_shift", [40, 63])
def test_shift_round_by_every_shift(max_shift):
    cases = [(v, s) for v in VALUES for s in range(max_shift + 1)]
    got = evaluate(lambda v, s: shift_round_by(v, s, max_shift), cases)
    assert got == [nx.shift_round(v, s) for v, s in cases]


@pytest.mark.parametrize("s", [-5, 0, 1, 4, 15, 30])
def test_shift_round_constant(s):
    got = evaluate(lambda v: shift_round(v, s), [(v,) for v in VALUES])
    assert got == [nx.shift_round(v, s) for v in VALUES]


def test_saturate():
    got = evaluate(lambda v: saturate(v), [(v,) for v in VALUES])
    assert got == [int(nx.saturate(v)) for v in VALUES]


def test_sigmoid_index_flags_match_the_table_rule():
    xs = list(range(-(9 << nx.ACT_FRAC), 9 << nx.ACT_FRAC, 7)) + [nx.ACT_MAX, nx.ACT_MIN]
    table = [int(t) for t in nx.SIGMOID_TABLE]

    def sigma(addr, below, above):
        return 0 if below else nx.GATE_ONE if above else table[addr]

    parts = [evaluate(lambda v, k=k: sigmoid_index(v)[k], [(x,) for x in xs]) for k in range(3)]
    got = [sigma(a & 0x3FF, b & 1, c & 1) for a, b, c in zip(*parts, strict=True)]
    assert got == [int(v) for v in nx.sigmoid_q(np.array(xs))]
