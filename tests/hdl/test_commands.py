"""`nsllm verilog` and the registry's Verilog generation."""

import argparse

import pytest

from nsllm.hdl import commands, registry


def parse(argv):
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_verilog_writes_one_module_per_component(tmp_path, capsys):
    args = parse(["verilog", "--out", str(tmp_path / "v"), "--component", "SpikeEncoder",
                  "--component", "TritUnpacker2bit"])
    assert args.func(args) == 0
    for name in ("SpikeEncoder", "TritUnpacker2bit"):
        text = (tmp_path / "v" / f"{name}.v").read_text()
        assert f"module {name}(" in text and "i_stream__payload" in text
    assert "SpikeEncoder.v" in capsys.readouterr().out


def test_verilog_unknown_component_is_an_error(tmp_path):
    from nsllm.cli import CommandError

    args = parse(["verilog", "--out", str(tmp_path), "--component", "FluxCapacitor"])
    with pytest.raises(CommandError, match=r"^unknown component.*FluxCapacitor"):
        args.func(args)


def test_board_size_is_larger_than_sim():
    sim = registry.build("AccumulatorBank", "sim")
    board = registry.build("AccumulatorBank", "board")
    assert board.lanes * board.words > sim.lanes * sim.words
    assert registry.build("TritUnpacker", "board").word_bytes == 64  # a 512-bit AXI word
    core = registry.build("NSLLMCore", "board").params
    assert (core.port_bytes, core.vector, core.weight_ports) == (64, 16, 3)
    assert core.max_hidden == 2048 and core.max_layers == 28  # nsllm-1.5b


def test_verilog_writes_the_core(tmp_path):
    """The product is in the registry: `nsllm verilog --component NSLLMCore` writes it, with
    its image port and one AXI master per weight port."""
    args = parse(["verilog", "--out", str(tmp_path), "--component", "NSLLMCore"])
    assert args.func(args) == 0
    text = (tmp_path / "NSLLMCore.v").read_text()
    assert "module NSLLMCore(" in text
    for port in ("m_axi_ctl__araddr", "m_axi_w0__araddr", "m_axi_w1__araddr", "s_axil__awaddr"):
        assert port in text, port
    assert "m_axi_w2__araddr" not in text  # the sim build has two weight ports


def test_unknown_size_and_name_are_rejected():
    with pytest.raises(ValueError, match=r"^size must be one of \('sim', 'board'\), not 'huge'$"):
        registry.build("SpikeEncoder", "huge")
    with pytest.raises(KeyError, match=r"^\"no component named 'FluxCapacitor'; registered: "
                                       r"TritUnpacker, "):
        registry.get("FluxCapacitor")
