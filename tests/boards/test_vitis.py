"""The Vitis project files: kernel.xml ↔ register map ↔ Verilog port list, package_kernel.tcl
under tclsh with Vivado's commands stubbed, link.cfg, and the Makefile's three steps with the
tools stubbed."""

import os
import re
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from nsllm.isa.registers import ADDRESS_SPACE, REGISTER_MAP

from .conftest import PORTS
from .verilog_ports import module_ports

HERE = Path(__file__).resolve().parent
TCLSH = shutil.which("tclsh")


def kernel_xml(project: Path) -> ET.Element:
    return ET.parse(project / "kernel.xml").getroot()  # raises on malformed XML


def verilog_interfaces(project: Path) -> dict[str, int]:
    """Interfaces of the kernel's Verilog: name → data bits (read off the port list)."""
    ports = module_ports((project / "rtl" / "nsllm_kernel.v").read_text(), "nsllm_kernel")
    masters = {p[: -len("_araddr")] for p in ports if p.startswith("m_axi_")
               and p.endswith("_araddr")}
    found = {m: ports[f"{m}_rdata"][1] for m in masters}
    found["s_axi_control"] = ports["s_axi_control_rdata"][1]
    assert 2 ** ports["s_axi_control_awaddr"][1] == ADDRESS_SPACE
    return found


def test_kernel_xml_agrees_with_the_register_map_and_the_verilog(project):
    root = kernel_xml(project)
    assert (root.get("versionMajor"), root.get("versionMinor")) == ("1", "6")
    (kernel,) = root.findall("kernel")
    assert kernel.get("name") == "nsllm_kernel"
    assert kernel.get("hwControlProtocol") == "ap_ctrl_hs" and kernel.get("language") == "ip_c"
    ports = {p.get("name"): p for p in kernel.find("ports")}
    interfaces = verilog_interfaces(project)
    assert set(ports) == set(interfaces)
    for name, port in ports.items():
        assert int(port.get("dataWidth")) == interfaces[name]
        assert port.get("mode") == ("slave" if name == "s_axi_control" else "master")
    assert int(ports["s_axi_control"].get("range"), 16) == ADDRESS_SPACE

    args = list(kernel.find("args"))
    assert [int(a.get("id")) for a in args] == list(range(len(args)))
    expected = [r for r in REGISTER_MAP if r.arg is not None
                and not (isinstance(r.port, int) and r.port >= PORTS)]
    assert [a.get("name") for a in args] == [r.arg for r in expected]
    spans = []
    for a, reg in zip(args, expected, strict=True):
        offset, size = int(a.get("offset"), 16), int(a.get("size"), 16)
        assert (offset, size) == (reg.offset, reg.bits // 8), reg.name
        assert int(a.get("hostSize"), 16) == size
        pointer = a.get("addressQualifier") == "1"
        assert pointer == reg.pointer and size == (8 if pointer else 4)
        if pointer:
            master = "m_axi_ctl" if reg.port == "ctl" else f"m_axi_w{reg.port}"
            assert a.get("port") == master and master in interfaces
        else:
            assert a.get("port") == "s_axi_control"
        spans.append((offset, offset + size))
    spans.sort()
    assert spans[0][0] == 0x10 and all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert spans[-1][1] <= ADDRESS_SPACE


def _tcl_calls(project: Path, tmp_path: Path, xo: Path) -> list[list[str]]:
    calls = tmp_path / "calls.txt"
    result = subprocess.run([TCLSH, str(HERE / "vivado_stub.tcl"), str(calls),
                             str(project / "package_kernel.tcl"), str(xo)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [line.split("\x1f") for line in calls.read_text().splitlines()]


@pytest.mark.skipif(TCLSH is None, reason="tclsh is not installed")
def test_package_tcl_makes_the_expected_vivado_calls(project, tmp_path):
    xo = tmp_path / "out" / "nsllm_kernel.xo"
    calls = _tcl_calls(project, tmp_path, xo)
    by_cmd: dict[str, list[list[str]]] = {}
    for handle, cmd, *args in calls:
        by_cmd.setdefault(cmd, []).append([handle, *args])

    def args_of(cmd):
        (only,) = by_cmd[cmd]
        return only[1:]

    def option(args, flag):
        return args[args.index(flag) + 1]

    root = kernel_xml(project)
    kernel = root.find("kernel")
    vendor, library, name, version = kernel.get("vlnv").split(":")
    assert option(args_of("create_project"), "-part").startswith("xcvc1902")
    assert sorted(Path(p).name for p in args_of("add_files")[-1].split()) == [
        "nsllm_core.v", "nsllm_kernel.v"]
    pkg = args_of("ipx::package_project")
    assert (option(pkg, "-vendor"), option(pkg, "-library"), option(pkg, "-taxonomy")) == (
        vendor, library, "/KernelIP")
    assert name == "nsllm_kernel" and ["top", name] == [
        a for a in by_cmd["set_property"] if a[1] == "top"][0][1:3]
    core = by_cmd["ipx::current_core"][0][0]
    assert ["version", version, core] in [a[1:] for a in by_cmd["set_property"]]

    # every interface of kernel.xml on ap_clk; FREQ_HZ = the link clock
    busifs = [option(a[1:], "-busif") for a in by_cmd["ipx::associate_bus_interfaces"]]
    assert sorted(busifs) == sorted(p.get("name") for p in kernel.find("ports"))
    values = {a[-1]: a[2] for a in by_cmd["set_property"] if a[1] == "value"}
    params = {a[1]: a[0] for a in by_cmd["ipx::add_bus_parameter"]}
    freq = re.search(r"freqHz=(\d+):", (project / "link.cfg").read_text())[1]
    assert values[params["FREQ_HZ"]] == freq
    assert values[params["POLARITY"]] == "ACTIVE_LOW"
    assert values[params["ASSOCIATED_RESET"]] == "ap_rst_n"

    # the register map: ap_ctrl_hs and one register per kernel.xml argument, at its offset
    regs = {a[1]: a[0] for a in by_cmd["ipx::add_register"]}
    props = {}
    for _, prop, value, target in by_cmd["set_property"]:
        props.setdefault(target, {})[prop] = value
    busif_of = {a[2]: a[0] for a in by_cmd["ipx::add_register_parameter"]}  # reg → param
    for reg in ("CTRL", "GIE", "IER", "ISR"):
        assert int(props[regs[reg]]["address_offset"], 16) == next(
            r.offset for r in REGISTER_MAP if r.name == reg)
    for arg in kernel.find("args"):
        h = regs[arg.get("name")]
        assert int(props[h]["address_offset"], 16) == int(arg.get("offset"), 16)
        assert int(props[h]["size"]) == 8 * int(arg.get("size"), 16)
        if arg.get("addressQualifier") == "1":
            assert props[busif_of[h]]["value"] == arg.get("port")
        else:
            assert h not in busif_of
    mem_map = by_cmd["ipx::add_memory_map"][0]
    assert mem_map[1] == "s_axi_control"

    # Vitis kernel properties, the integrity check, then package_xo with our kernel.xml
    assert ["sdx_kernel", "true", core] in [a[1:] for a in by_cmd["set_property"]]
    assert ["sdx_kernel_type", "rtl", core] in [a[1:] for a in by_cmd["set_property"]]
    assert args_of("ipx::check_integrity") == ["-kernel", core]
    order = [c[1] for c in calls]
    assert order.index("ipx::check_integrity") < order.index("ipx::save_core") < order.index(
        "package_xo")
    xo_args = args_of("package_xo")
    assert option(xo_args, "-kernel_name") == "nsllm_kernel"
    assert Path(option(xo_args, "-kernel_xml")) == project / "kernel.xml"
    assert Path(option(xo_args, "-xo_path")) == xo
    ip_dir = Path(option(xo_args, "-ip_directory"))
    assert ip_dir == Path(option(pkg, "-root_dir")) and ip_dir not in xo.parents


def test_link_cfg_names_every_master_on_a_board_memory(project):
    from nsllm.boards import get_board

    text = (project / "link.cfg").read_text()
    sections = re.findall(r"^\[(\w+)\]", text, re.MULTILINE)
    assert sections == ["connectivity", "clock"]
    assert re.findall(r"^nk=(.*)$", text, re.MULTILINE) == ["nsllm_kernel:1:nsllm_kernel_1"]
    sp = dict(re.findall(r"^sp=nsllm_kernel_1\.(\w+):(\w+)$", text, re.MULTILINE))
    masters = {p.get("name") for p in kernel_xml(project).find("kernel").find("ports")} - {
        "s_axi_control"}
    assert set(sp) == masters and {f"m_axi_w{k}" for k in range(PORTS)} <= masters
    tags = {m["sp"] for m in get_board("vck190").memories}
    assert set(sp.values()) <= tags
    # three weight ports: both memories carry weights
    assert {sp[f"m_axi_w{k}"] for k in range(PORTS)} == tags
    assert re.findall(r"^freqHz=(\d+):nsllm_kernel_1\.ap_clk$", text, re.MULTILINE) == [
        "300000000"]


def _stub_tool(path: Path, body: str) -> Path:
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def stub_tools(tmp_path):
    """vivado and v++ stand-ins: log their arguments, create the file they are asked for."""
    log = tmp_path / "tools.log"
    vivado = _stub_tool(tmp_path / "vivado", f"""echo "vivado $*" >> {log}
while [ $# -gt 0 ]; do
  case "$1" in -log) shift; echo log > "$1";; -tclargs) shift; mkdir -p "$(dirname "$1")"; \
echo xo > "$1";; esac; shift; done
""")
    vpp = _stub_tool(tmp_path / "v++", f"""echo "v++ $*" >> {log}
while [ $# -gt 0 ]; do case "$1" in -o) shift; mkdir -p "$(dirname "$1")"; echo out > "$1";; \
esac; shift; done
echo "v++ ran"
""")
    common = tmp_path / "common"
    common.mkdir()
    (common / "rootfs.ext4").write_text("")
    (common / "Image").write_text("")
    return vivado, vpp, common, log


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_makefile_runs_package_xo_then_link_then_package(project, tmp_path, stub_tools):
    vivado, vpp, common, log = stub_tools
    work = tmp_path / "project"
    shutil.copytree(project, work, ignore=shutil.ignore_patterns("build", "logs"))
    env = dict(os.environ)
    result = subprocess.run(["make", "-C", str(work), f"VIVADO={vivado}", f"VPP={vpp}",
                             f"EDGE_COMMON_SW={common}"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    steps = log.read_text().splitlines()
    assert [s.split()[0] + " " + s.split()[1] for s in steps] == [
        "vivado -mode", "v++ -l", "v++ -p"]
    assert "-source package_kernel.tcl" in steps[0] and "build/nsllm_kernel.xo" in steps[0]
    assert "--platform xilinx_vck190_base_202320_1" in steps[1]
    assert "--config link.cfg" in steps[1] and steps[1].endswith("build/nsllm_kernel.xo")
    assert "--package.rootfs " + str(common / "rootfs.ext4") in steps[2]
    assert "--package.sd_dir host" in steps[2] and steps[2].endswith("build/nsllm.xsa")
    for f in ("build/nsllm_kernel.xo", "build/nsllm.xsa", "build/nsllm.xclbin",
              "logs/package_xo.log", "logs/link.log", "logs/package.log"):
        assert (work / f).is_file(), f
    assert "v++ ran" in (work / "logs" / "link.log").read_text()

    # the platform is a variable; packaging needs the common image; missing tools are named
    log.unlink()
    (work / "build" / "nsllm.xsa").touch()
    r = subprocess.run(["make", "-C", str(work), "xsa", "-B", f"VIVADO={vivado}", f"VPP={vpp}",
                        "PLATFORM=my_platform"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--platform my_platform" in log.read_text()
    r = subprocess.run(["make", "-C", str(work), "xclbin", "-B", f"VIVADO={vivado}",
                        f"VPP={vpp}"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "set EDGE_COMMON_SW to the unpacked Versal common image" in (
        r.stdout + r.stderr)
    r = subprocess.run(["make", "-C", str(work), "xo", "-B", "VIVADO=/nonexistent/vivado"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "/nonexistent/vivado not found: install Vivado 2023.2" in (
        r.stdout + r.stderr)
