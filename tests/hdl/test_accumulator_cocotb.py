"""Ternary accumulator array on Verilator and Icarus (cocotb), against the golden model."""

import pytest

from nsllm.sim.cocotb_runner import run_cocotb, simulator_params


@pytest.mark.parametrize("simulator", simulator_params())
def test_ternary_accumulator_array_cocotb(simulator):
    # sim size: 8 lanes × 2 batch, fan-in 64: 40 groups ≈ 1300 beats, ≈ 2500 cycles with stalls
    run_cocotb("TernaryAccumulatorArray", "tests.hdl.cocotb_accumulator", simulator,
               parameters={"groups": 40, "seed": 11})
