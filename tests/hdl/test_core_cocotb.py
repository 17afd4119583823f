"""The core under cocotb with cocotbext-axi's AxiLiteMaster and one AxiRamRead (random stalls)
per AXI port — the image port and two weight ports, base-3 weights — on Verilator and Icarus.

Slow tier (``make test-slow``, run by CI): the core's cocotb builds and runs take ≈ 3–4 min of a
fresh ``make test``; the default tier drives the same core through ``SimDevice`` (tests/host)."""

import pytest

from nsllm.model import save_model
from nsllm.sim.cocotb_runner import run_cocotb, simulator_params

from .test_core import micro_model, micro_params


@pytest.mark.slow
@pytest.mark.parametrize("simulator", simulator_params())
def test_core_with_cocotbext_axi(simulator, tmp_path):
    from nsllm.hdl.core import NSLLMCore

    path = save_model(micro_model(seed=3, D=(15, 7), delta=(0.0, 0.25)), tmp_path / "m.nsllm")
    params = micro_params(port_bytes=8, vector=4, weight_ports=2, packings=("2bit", "base3"))
    run_cocotb(NSLLMCore(params), "tests.hdl.cocotb_core", simulator, name="nsllm_core",
               parameters={"model": str(path), "port_bytes": 8, "weight_ports": 2,
                           "packing": "base3", "tokens": 2, "first_token": 9})
