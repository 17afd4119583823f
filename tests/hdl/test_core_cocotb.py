"""The core under cocotb with cocotbext-axi's AxiLiteMaster and AxiRamRead (random stalls)."""

import pytest

from nsllm.hdl.core import CoreParams, NSLLMCore
from nsllm.model import save_model
from nsllm.sim.cocotb_runner import run_cocotb, simulator_params

from .test_core import micro_model


@pytest.mark.parametrize("simulator", simulator_params())
def test_core_with_cocotbext_axi(simulator, tmp_path):
    path = save_model(micro_model(seed=3, D=(15, 7), delta=(0.0, 0.25)), tmp_path / "m.nsllm")
    params = CoreParams(port_bytes=8, vector=4, max_vocab=64, max_hidden=32,
                        max_intermediate=64, max_layers=1)
    run_cocotb(NSLLMCore(params), "tests.hdl.cocotb_core", simulator, name="nsllm_core",
               parameters={"model": str(path), "port_bytes": 8, "tokens": 2, "first_token": 9})
