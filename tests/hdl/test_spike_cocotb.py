"""Spike path components on Verilator and Icarus (cocotb), against the golden numerics: each
component's build runs only its own test of tests/hdl/cocotb_spike.py."""

import pytest

from nsllm.sim.cocotb_runner import run_cocotb, simulator_params

from .cocotb_spike import TESTS


@pytest.mark.parametrize("simulator", simulator_params())
@pytest.mark.parametrize("component", list(TESTS))
def test_spike_path_cocotb(component, simulator):
    run = run_cocotb(component, "tests.hdl.cocotb_spike", simulator, parameters={"seed": 5},
                     testcase=TESTS[component])
    assert run.tests == [TESTS[component]]
