"""cocotb testbench of the ternary accumulator array (run by test_accumulator_cocotb.py)."""

import cocotb
import numpy as np

from nsllm.model import numerics as nx
from nsllm.sim.streams import TB, dut_component, test_parameters


def groups(model, n_groups, rng, max_len=None):
    beats, expected = [], []
    for _ in range(n_groups):
        n = int(rng.integers(1, (max_len or model.fan_in) + 1))
        trits = rng.integers(-1, 2, size=(model.lanes, n))
        counts = rng.integers(-model.max_D, model.max_D + 1, size=(model.batch, n))
        counts[rng.random(counts.shape) > 0.5] = 0
        beats += [{"trits": trits[:, j].tolist(), "counts": counts[:, j].tolist(),
                   "first": int(j == 0), "last": int(j == n - 1)} for j in range(n)]
        expected.append({"acc": nx.ternary_accumulate(trits, counts).tolist()})
    return beats, expected


@cocotb.test()
async def random_groups_with_stalls(dut):
    """Random groups (length ≤ fan_in), random valid gaps and back-pressure."""
    params = test_parameters()
    model = dut_component()
    tb = TB(dut, "TernaryAccumulatorArray", seed=params.get("seed", 0))
    source = tb.source("i_stream", model.in_layout, valid_probability=0.7)
    sink = tb.sink("o_stream", model.out_layout, ready_probability=0.5)
    await tb.reset()
    beats, expected = groups(model, params.get("groups", 40),
                             np.random.default_rng(params.get("seed", 0)),
                             max_len=params.get("max_len"))
    if "corrupt" in params:  # self-test of the checker: one wrong expected lane
        beat, b, lane = params["corrupt"]
        expected[beat]["acc"][b][lane] += 1
    sink.expect(expected)
    source.send(beats)
    await sink.wait_for(len(expected), timeout_cycles=10 * len(beats) + 100)
    await sink.wait_quiet()
    assert int(dut.error.value) == 0, "TernaryAccumulatorArray: error raised on legal input"


@cocotb.test()
async def worst_case_reaches_fan_in_times_D(dut):
    """fan_in beats of ±max_D with all trits ±1 give exactly ±fan_in·max_D (no overflow)."""
    model = dut_component()
    tb = TB(dut, "TernaryAccumulatorArray")
    source = tb.source("i_stream", model.in_layout, valid_probability=1.0)
    sink = tb.sink("o_stream", model.out_layout, ready_probability=1.0)
    await tb.reset()
    D, n = model.max_D, model.fan_in
    trits = [1 if i % 2 == 0 else -1 for i in range(model.lanes)]
    counts = [D if b % 2 == 0 else -D for b in range(model.batch)]
    sink.expect([{"acc": [[t * c * n for t in trits] for c in counts]}])
    source.send({"trits": trits, "counts": counts, "first": int(j == 0),
                 "last": int(j == n - 1)} for j in range(n))
    await sink.wait_for(1, timeout_cycles=n + 50)
    assert int(dut.error.value) == 0
