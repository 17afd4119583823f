"""`verilator --lint-only -Wall` on every registered component, with only the documented
waivers (nsllm.sim.cocotb_runner.VERILATOR_WAIVERS, explained in docs/hardware.md)."""

import pytest

from nsllm.hdl import registry
from nsllm.sim import toolchain
from nsllm.sim.cocotb_runner import VERILATOR_WAIVERS


def test_every_component_module_is_present():
    specs = registry.components(strict=True)
    assert registry.missing_modules() == []
    for module in registry.COMPONENT_MODULES:
        assert any(spec.sim().__class__.__module__.startswith(f"nsllm.hdl.{module}")
                   for spec in specs.values()), f"nsllm.hdl.{module} registers no component"


@pytest.mark.parametrize("name", list(registry.components()))
def test_lint_wall_clean(name, tmp_path):
    path = registry.write_verilog(name, "sim", tmp_path)
    waivers = [f"-Wno-{w}" for w in VERILATOR_WAIVERS]
    result = toolchain.run_verilator(["--lint-only", "-Wall", *waivers, "--top-module", name,
                                      str(path)], timeout=120)
    assert result.returncode == 0 and "%Warning" not in result.stderr, \
        f"{name}: verilator -Wall:\n{result.stderr[:3000]}"


@pytest.mark.slow
def test_board_size_core_lint_wall_clean():
    """The core as it ships to the VCK190 (CoreParams.board(): 512-bit ports, vector 16, three
    weight ports, both packings, nsllm-1.5b maxima): -Wall with the documented waivers only.
    Converting it takes minutes (cached by core_verilog); the lint itself ≈ 40 s here."""
    from nsllm.hdl.core import CoreParams
    from nsllm.sim.verilator_device import core_verilog

    path = core_verilog(CoreParams.board())
    waivers = [f"-Wno-{w}" for w in VERILATOR_WAIVERS]
    result = toolchain.run_verilator(["--lint-only", "-Wall", *waivers, "--top-module",
                                      "nsllm_core", str(path)], timeout=1800)
    assert result.returncode == 0 and "%Warning" not in result.stderr, \
        f"board-size NSLLMCore: verilator -Wall:\n{result.stderr[:3000]}"


def test_a_lint_warning_fails(tmp_path):
    """Positive control: the same command reports a real warning (a multiply-driven signal)."""
    path = tmp_path / "Bad.v"
    path.write_text("module Bad(input clk, input a, output reg q);\n"
                    "  always @(posedge clk) q <= a;\n  always @(negedge clk) q <= ~a;\n"
                    "endmodule\n")
    result = toolchain.run_verilator(["--lint-only", "-Wall",
                                      *[f"-Wno-{w}" for w in VERILATOR_WAIVERS],
                                      "--top-module", "Bad", str(path)], timeout=60)
    assert result.returncode != 0 and "MULTIDRIVEN" in result.stderr
