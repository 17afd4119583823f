"""Spike path components on Verilator and Icarus (cocotb), against the golden numerics."""

import pytest

from nsllm.sim.cocotb_runner import run_cocotb, simulator_params


@pytest.mark.parametrize("simulator", simulator_params())
@pytest.mark.parametrize("component", [
    "MembraneScale", "SpikeEncoder", "SpikeTrainEmitter", "SpikeIndexFilter"])
def test_spike_path_cocotb(component, simulator):
    run_cocotb(component, "tests.hdl.cocotb_spike", simulator, parameters={"seed": 5})
