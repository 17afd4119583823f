"""SiluGateUnit and ResidualAdder on Verilator and Icarus (cocotb), against the golden model."""

import pytest

from nsllm.sim.cocotb_runner import simulator_params

from .cocotb_elementwise import run_elementwise


@pytest.mark.parametrize("simulator", simulator_params())
def test_gate_cocotb(simulator):
    run_elementwise("tests.hdl.cocotb_gate", simulator, beats=1000, seed=5)
