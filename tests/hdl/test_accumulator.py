"""Ternary accumulator array in amaranth.sim against numerics.ternary_accumulate."""

import re

import numpy as np
import pytest
from amaranth.sim import Simulator

from nsllm.hdl.accumulator import TernaryAccumulatorArray
from nsllm.hdl.registry import verilog_text
from nsllm.model import numerics as nx
from nsllm.sim.streams import check_beats, run_amaranth_stream


def random_groups(dut, n_groups, seed, density=0.6):
    """Beats for ``n_groups`` groups of random length ≤ fan_in, and the golden sums."""
    rng = np.random.default_rng(seed)
    beats, expected = [], []
    for _ in range(n_groups):
        n = int(rng.integers(1, dut.fan_in + 1))
        trits = rng.integers(-1, 2, size=(dut.lanes, n))  # (out rows, in columns)
        counts = rng.integers(-dut.max_D, dut.max_D + 1, size=(dut.batch, n))
        counts[rng.random(counts.shape) > density] = 0
        for j in range(n):
            beats.append({"trits": trits[:, j].tolist(), "counts": counts[:, j].tolist(),
                          "first": int(j == 0), "last": int(j == n - 1)})
        expected.append({"acc": nx.ternary_accumulate(trits, counts).tolist()})
    return beats, expected


@pytest.mark.parametrize("lanes,batch,fan_in,max_D", [(4, 1, 8, 1), (8, 2, 20, 15), (3, 3, 5, 7)])
def test_random_groups_with_stalls(lanes, batch, fan_in, max_D):
    dut = TernaryAccumulatorArray(lanes, batch, fan_in, max_D)
    beats, expected = random_groups(dut, 25, seed=lanes * fan_in)
    got = run_amaranth_stream(dut, beats, len(expected), seed=max_D)
    check_beats("TernaryAccumulatorArray", got, expected)


def test_full_rate():
    dut = TernaryAccumulatorArray(4, 2, 6, 3)
    beats, expected = random_groups(dut, 20, seed=9)
    got = run_amaranth_stream(dut, beats, len(expected), valid_probability=1.0,
                              ready_probability=1.0)
    check_beats("TernaryAccumulatorArray", got, expected)
    # the last group's sum leaves one cycle after its last beat: no stall anywhere
    assert got[-1][0] - got[0][0] == len(beats) - len(beats_of_first(beats))


def beats_of_first(beats):
    n = next(k for k, b in enumerate(beats) if b["last"]) + 1
    return beats[:n]


@pytest.mark.parametrize("fan_in,D", [(1, 1), (17, 15), (64, 15), (2048, 7), (8192, 15), (3, 127)])
def test_width_is_derived_from_fan_in_and_D(fan_in, D):
    dut = TernaryAccumulatorArray(2, 1, fan_in, D)
    assert dut.acc_bits == nx.accumulator_bits(fan_in, D)
    # the worst case fits and the width is the smallest that does
    assert fan_in * D <= (1 << (dut.acc_bits - 1)) - 1
    assert fan_in * D > (1 << (dut.acc_bits - 2)) - 1


def output_width(dut):
    text = verilog_text(dut, "T")
    return int(re.search(r"output \[(\d+):0\] o_stream__payload;", text)[1]) + 1


def test_changing_fan_in_or_D_changes_the_generated_width():
    base = TernaryAccumulatorArray(4, 2, 64, 7)
    wider_fan_in = TernaryAccumulatorArray(4, 2, 4096, 7)
    wider_D = TernaryAccumulatorArray(4, 2, 64, 127)
    assert output_width(base) == 4 * 2 * nx.accumulator_bits(64, 7)
    assert output_width(wider_fan_in) == 4 * 2 * nx.accumulator_bits(4096, 7)
    assert output_width(wider_D) == 4 * 2 * nx.accumulator_bits(64, 127)
    assert len({output_width(base), output_width(wider_fan_in), output_width(wider_D)}) == 3


@pytest.mark.parametrize("fan_in,D", [(17, 15), (64, 15), (31, 1), (9, 127)])
def test_worst_case_inputs_reach_exactly_fan_in_times_D_without_overflow(fan_in, D):
    """fan_in beats of ±D with every trit ±1: the extremes ±fan_in·D come out exactly."""
    dut = TernaryAccumulatorArray(4, 2, fan_in, D)
    trits = [1, -1, 1, -1]
    beats = [{"trits": trits, "counts": [D, -D], "first": int(j == 0),
              "last": int(j == fan_in - 1)} for j in range(fan_in)]
    peak = fan_in * D
    expected = [{"acc": [[peak, -peak, peak, -peak], [-peak, peak, -peak, peak]]}]
    got = run_amaranth_stream(dut, beats, 1, seed=1)
    check_beats("TernaryAccumulatorArray", got, expected)
    lo, hi = -(1 << (dut.acc_bits - 1)), (1 << (dut.acc_bits - 1)) - 1
    assert lo <= -peak and peak <= hi


def error_after(dut, beats):
    """Feed beats at full rate; return the sticky error flag after them."""
    async def tb(ctx):
        ctx.set(dut.o_stream.ready, 1)
        for beat in beats:
            for name, value in beat.items():
                ctx.set(getattr(dut.i_stream.payload, name), value)
            ctx.set(dut.i_stream.valid, 1)
            await ctx.tick()
        ctx.set(dut.i_stream.valid, 0)
        await ctx.tick()
        result.append(ctx.get(dut.error))

    result = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return result[0]


def beat(counts, trits=(1, 1), first=0, last=0):
    return {"trits": list(trits), "counts": list(counts), "first": first, "last": last}


@pytest.mark.parametrize("beats,error", [
    ([beat([15], first=1, last=1)], 0),
    ([beat([-15], first=1, last=1)], 0),
    ([beat([-16], first=1, last=1)], 1),  # representable in 5 bits, but beyond max_D
    ([beat([3], trits=(1, -2), first=1, last=1)], 1),  # -2 is not a trit
    ([beat([1], first=1)] + [beat([1])] * 3 + [beat([1], last=1)], 1),  # 5 beats > fan_in 4
    ([beat([1], first=1)] + [beat([1])] * 2 + [beat([1], last=1)] * 1, 0),
    ([beat([1], first=1, last=1)] * 6, 0),  # many groups, each short
])
def test_contract_violations_raise_error(beats, error):
    dut = TernaryAccumulatorArray(2, 1, fan_in=4, max_D=15)
    assert error_after(dut, beats) == error


@pytest.mark.parametrize("kwargs,message", [
    ({"lanes": 0}, "lanes must be a positive integer"),
    ({"batch": -1}, "batch must be a positive integer"),
    ({"fan_in": 0}, "fan_in must be a positive integer"),
    ({"max_D": 0}, "max_D must be an integer in"),
    ({"max_D": nx.MAX_TIMESTEPS + 1}, "max_D must be an integer in"),
])
def test_init_wrong_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TernaryAccumulatorArray(**kwargs)
