"""amaranth.sim tests of the SiLU gate unit and the residual adder against the golden model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from nsllm.hdl.fixed_point import sigmoid_memory
from nsllm.hdl.gate import ResidualAdder, SiluGateUnit
from nsllm.model import numerics as nx

from .amaranth_stream_tb import run_stream

A_MAX, A_MIN = nx.ACT_MAX, nx.ACT_MIN
EDGE = 8 << nx.ACT_FRAC  # σ saturates at ±8

# (value, gated): saturation, the ±8 sigmoid edges, rounding ties, extremes
GATE_CASES = [
    (0, 0), (1024, 1024), (-1024, 1024), (A_MAX, A_MAX), (A_MIN, A_MAX), (A_MAX, A_MIN),
    (A_MIN, A_MIN), (1024, EDGE), (1024, EDGE - 1), (1024, EDGE - 8), (1024, EDGE - 9),
    (1024, -EDGE), (1024, -EDGE - 1), (1024, -EDGE - 8), (1024, -EDGE - 9), (1024, -EDGE + 8),
    (A_MAX, 4 << nx.ACT_FRAC), (A_MIN, 100 << nx.ACT_FRAC), (-1, -1), (512, 1), (3, -1279),
]


def golden_gate(value, gated):
    value, gated = np.asarray(value, np.int64), np.asarray(gated, np.int64)
    return nx.saturate(nx.shift_round(value * nx.silu_q(gated), nx.ACT_FRAC))


def random_acts(rng, n):
    """A mix of small values near the sigmoid range and full-range ones."""
    small = rng.integers(-12 << nx.ACT_FRAC, 12 << nx.ACT_FRAC, n)
    full = rng.integers(A_MIN, A_MAX + 1, n)
    return np.where(rng.random(n) < 0.8, small, full)


def check_stream(name, got, expect, lasts):
    assert len(got) == len(expect)
    for k, (r, e, last) in enumerate(zip(got, expect, lasts, strict=True)):
        assert r.payload.x == e and r.payload.last == last, (
            f"{name}: element {k} (cycle {r.cycle}): got {r.payload.x} last={r.payload.last}, "
            f"expected {e} last={last}")


@pytest.mark.parametrize("gap,stall", [(0.0, 0.0), (0.4, 0.5)])
def test_silu_gate_corners(gap, stall):
    value, gated = (np.array(c) for c in zip(*GATE_CASES, strict=True))
    lasts = [k == len(value) - 1 for k in range(len(value))]
    items = [{"value": int(v), "gated": int(g), "last": int(la)}
             for v, g, la in zip(value, gated, lasts, strict=True)]
    got = run_stream(SiluGateUnit(), items, len(items), gap=gap, stall=stall, seed=1)
    check_stream("SiluGateUnit", got, golden_gate(value, gated), lasts)


def test_silu_gate_random():
    rng = np.random.default_rng(7)
    n = 400
    value, gated = random_acts(rng, n), random_acts(rng, n)
    lasts = rng.random(n) < 0.1
    items = [{"value": int(v), "gated": int(g), "last": int(la)}
             for v, g, la in zip(value, gated, lasts, strict=True)]
    got = run_stream(SiluGateUnit(), items, n, gap=0.3, stall=0.3, seed=2)
    check_stream("SiluGateUnit", got, golden_gate(value, gated), lasts)


def test_silu_gate_full_rate():
    """Without gaps or stalls one element leaves per cycle after the 3-cycle latency."""
    items = [{"value": k, "gated": 1000 * k, "last": 0} for k in range(50)]
    got = run_stream(SiluGateUnit(), items, 50, gap=0.0, stall=0.0)
    cycles = [r.cycle for r in got]
    assert cycles == list(range(cycles[0], cycles[0] + 50))


@pytest.mark.parametrize("gap,stall", [(0.0, 0.0), (0.3, 0.4)])
def test_residual_adder(gap, stall):
    rng = np.random.default_rng(3)
    corners = [(A_MAX, 1), (A_MIN, -1), (A_MAX, A_MAX), (A_MIN, A_MIN), (A_MAX, A_MIN), (0, 0)]
    a = np.concatenate([[c[0] for c in corners], random_acts(rng, 200)])
    b = np.concatenate([[c[1] for c in corners], random_acts(rng, 200)])
    lasts = rng.random(len(a)) < 0.2
    items = [{"a": int(x), "b": int(y), "last": int(la)}
             for x, y, la in zip(a, b, lasts, strict=True)]
    got = run_stream(ResidualAdder(), items, len(a), gap=gap, stall=stall, seed=4)
    check_stream("ResidualAdder", got, nx.saturate(a.astype(np.int64) + b), lasts)


def test_sigmoid_rom_read_in_hardware_is_sigma():
    """Every entry of the ROM the units instantiate, read through a port in simulation, is
    σ of its input index — by the definition (round(GATE_ONE · σ(k / 2**SIG_IN_FRAC))) and as
    numerics.sigmoid_q gives it for the activation that maps to that index."""
    m = Module()
    m.submodules.rom = rom = sigmoid_memory()
    port = rom.read_port(domain="comb")
    got = []

    async def tb(ctx):
        for addr in range(nx.SIG_ENTRIES):
            ctx.set(port.addr, addr)
            got.append(ctx.get(port.data))

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    k = np.arange(nx.SIG_ENTRIES) + nx.SIG_IDX_MIN
    sigma = [math.floor(nx.GATE_ONE / (1 + math.exp(-int(i) / (1 << nx.SIG_IN_FRAC))) + 0.5)
             for i in k]
    assert got == sigma
    assert got == nx.sigmoid_q(k << (nx.ACT_FRAC - nx.SIG_IN_FRAC)).tolist()
    assert got[-nx.SIG_IDX_MIN] == nx.GATE_ONE // 2  # σ(0)
