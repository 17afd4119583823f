"""Accumulator bank on Verilator and Icarus (cocotb), against the golden model."""

import pytest

from nsllm.sim.cocotb_runner import run_cocotb, simulator_params


@pytest.mark.parametrize("simulator", simulator_params())
def test_accumulator_bank_cocotb(simulator):
    # sim size: 32 lanes × 32 words, fan-in 512: 6 layers of ≤ 24 columns ≈ 1700 beats, and
    # the worst case (512 columns on 2 words); Icarus runs ≈ 400 cycles/s on this design
    run_cocotb("AccumulatorBank", "tests.hdl.cocotb_accumulator", simulator,
               parameters={"layers": 6, "max_columns": 24, "seed": 11})
