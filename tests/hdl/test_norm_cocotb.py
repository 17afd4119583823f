"""RMSNormUnit and ChannelScale on Verilator and Icarus (cocotb), against the golden model."""

import pytest

from nsllm.sim.cocotb_runner import simulator_params

from .cocotb_elementwise import run_elementwise


@pytest.mark.parametrize("simulator", simulator_params())
def test_norm_cocotb(simulator):
    run_elementwise("tests.hdl.cocotb_norm", simulator, lengths=[128, 512, 37], vectors=3,
                    beats=60, seed=8)
