"""Trit unpacker on Verilator and Icarus (cocotb), against the golden packing."""

import pytest

from nsllm.sim.cocotb_runner import run_cocotb, simulator_params


@pytest.mark.parametrize("simulator", simulator_params())
@pytest.mark.parametrize("component", ["TritUnpacker", "TritUnpacker2bit"])
def test_trit_unpacker_cocotb(component, simulator):
    run_cocotb(component, "tests.hdl.cocotb_trits", simulator,
               parameters={"beats": 600, "seed": 3})
