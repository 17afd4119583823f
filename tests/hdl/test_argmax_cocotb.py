"""Argmax on Verilator and Icarus (cocotb), against graph.greedy."""

import pytest

from nsllm.sim.cocotb_runner import simulator_params

from .cocotb_elementwise import run_elementwise


@pytest.mark.parametrize("simulator", simulator_params())
def test_argmax_cocotb(simulator):
    run_elementwise("tests.hdl.cocotb_argmax", simulator, vectors=12, seed=7)
