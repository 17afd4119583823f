"""``XrtDevice`` end to end without a board: through the XRT stand-in (same C functions as
libxrt_coreutil.so) on the Verilator simulation of the kernel that ``nsllm build`` wrote.

The shipped model generates the same 64 tokens as on ``SimDevice`` (driving the same kernel
simulation through the harness's own register and memory calls) and the golden model, with
each buffer in its argument's memory bank, every write synced to the device, arguments set at
the offsets of kernel.xml and the counters read from the kernel's registers. XRT failures
reach the user as ``DeviceError`` with XRT's status."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nsllm.boards.kernel import KERNEL_TOP
from nsllm.boards.xrt import XrtDevice, find_library, xrt_backend
from nsllm.host.device import DeviceError, DeviceTimeout, Reg
from nsllm.host.generator import Generator, ModelBackend
from nsllm.host.image import build_image
from nsllm.host.runtime import CoreBackend, CoreRunner
from nsllm.model import IntegerModel
from nsllm.model.tokenizer import ByteTokenizer
from nsllm.sim.verilator_device import SimDevice, core_verilog

from . import standin
from .conftest import PORTS

PROMPT = "The "
TOKENS = 64


def test_xrt_path_generates_the_same_tokens_as_simdevice(xclbin, xrt_library, project,
                                                         default_weights, kernel_library,
                                                         tmp_path):
    standin.clear_log(xrt_library)
    tok = ByteTokenizer()
    xrt = xrt_backend(default_weights, xclbin, library=xrt_library, timeout=120)
    got = Generator(xrt, tok).generate(PROMPT, TOKENS)
    source = tmp_path / "nsllm_kernel.v"
    source.write_text(standin.kernel_source(project))  # the same build as kernel_library
    image = build_image(default_weights, port_bytes=8, packing="2bit", weight_ports=PORTS)
    sim_device = SimDevice(source, top=KERNEL_TOP, mem_bytes=1 << 22, timeout=120)
    assert sim_device.build.library == kernel_library
    sim = CoreBackend(CoreRunner(sim_device, image), name="sim")
    want = Generator(sim, tok).generate(PROMPT, TOKENS)
    golden = Generator(ModelBackend(IntegerModel(default_weights), "golden"), tok).generate(
        PROMPT, TOKENS)
    assert len(got.tokens) == TOKENS
    assert got.tokens == want.tokens == golden.tokens
    # the kernel's counters, read over XRT, equal the core's in simulation, token by token
    a, b = xrt.summary.as_dict(), sim.summary.as_dict()
    assert a == b and len(a["weight_bytes_per_port"]) == PORTS

    # each buffer in the bank its master is linked to (link.cfg), weights in their own buffers
    device = xrt.runner.device
    sp = dict(re.findall(r"^sp=nsllm_kernel_1\.(\w+):(\w+)$", (project / "link.cfg").read_text(),
                         re.MULTILINE))
    banks = ["DDR", "LPDDR"]  # the stand-in platform's memory indices
    log = standin.standin_log(xrt_library)
    allocs = re.findall(r"^xrtBOAlloc (\d+) bank (\d+) \((\w+)\) -> (0x[0-9a-f]+)$", log,
                        re.MULTILINE)
    assert len(allocs) == 1 + PORTS
    port_of = {a.name: a.port for a in device.args if a.pointer}
    bank_bytes = 1 << 24
    for name, buf in device.buffers.items():
        tag = sp[port_of[name]]
        assert banks[buf.group & 0xFFFF] == tag
        assert buf.address // bank_bytes == banks.index(tag)
        assert (str(buf.size), str(banks.index(tag)), tag, hex(buf.address)) in allocs
    assert {sp[f"m_axi_w{k}"] for k in range(PORTS)} == set(banks)
    # every buffer was synced to the device whole, and read back (the CRC check)
    for buf in device.buffers.values():
        assert re.search(rf"^xrtBOSync to_device {hex(buf.address)} \+\d+$", log, re.MULTILINE)
        assert re.search(rf"^xrtBOSync from_device {hex(buf.address)} \+\d+$", log,
                         re.MULTILINE)
    # arguments went through xrtRunSetArg: pointers as their buffers, scalars by value
    assert re.search(rf"^xrtRunSetArg 0 image bo@{hex(device.buffers['image'].address)} ", log,
                     re.MULTILINE)
    assert len(re.findall(r"^xrtRunStart$", log, re.MULTILINE)) >= TOKENS
    assert "xrtKernelWriteRegister 0x4c 0x1" in log  # CACHE_FLUSH, not an argument
    device.close()
    sim.runner.device.close()


@pytest.fixture
def device(xclbin, xrt_library):
    with XrtDevice(xclbin, library=xrt_library, timeout=5) as dev:
        yield dev


def test_registers_and_arguments(device):
    assert device.reg_read(Reg.BUILD_ISA) >> 16 == 0x4E53
    assert device.reg_read(Reg.BUILD_WEIGHT_PORTS) == PORTS
    assert device.reg_read(Reg.CTRL) == 0x4  # idle, from the run state
    device.reg_write(Reg.TOKEN_IN, 7)  # an argument: kept until the next start
    assert device.reg_read(Reg.TOKEN_IN) == 7
    device.reg_write(Reg.SCRATCH_ADDR, 5)  # not an argument: straight to the register
    assert device.reg_read(Reg.SCRATCH_ADDR) == 5
    with pytest.raises(DeviceError, match=r"^register CTRL belongs to XRT's ap_ctrl_hs .*$"):
        device.reg_write(Reg.CTRL, 1)
    with pytest.raises(DeviceError, match=r"^kernel nsllm_kernel has no argument 'weights3' "):
        device.alloc(64, "weights3")
    with pytest.raises(DeviceError, match=r"is not inside a buffer of this device"):
        device.write(0x10, b"x")
    addr = device.alloc(100, "weights0")
    device.write(addr + 4, b"abcd")
    assert device.read(addr, 8) == b"\0\0\0\0abcd"
    with pytest.raises(DeviceError, match=r"^XRT xrtKernelReadRegister failed \(returned -1, "
                                          r"no errno set\): register 0x1000$"):
        device.reg_read(0x1000)


def test_timeout_is_a_device_timeout_with_xrt_state_and_status(tmp_path, project,
                                                               kernel_library, xrt_library,
                                                               default_weights):
    """A DRAM that never answers: the first run hangs on its program fetch."""
    x = standin.write_xclbin(tmp_path / "slow.xclbin", project, kernel_library,
                             latency=1 << 30)
    with XrtDevice(x, library=xrt_library, timeout=0.2) as dev:
        image = build_image(default_weights, port_bytes=8, packing="2bit", weight_ports=PORTS)
        addr = dev.alloc(image.image_bytes, "image")
        dev.write(addr, image.raw)
        for name, value in [("IMAGE_LO", addr), ("IMAGE_HI", 0), ("IMAGE_BYTES",
                            image.image_bytes), ("PROG_OFFSET", image.reset_offset),
                            ("PROG_OPS", len(image.reset))]:
            dev.reg_write(Reg[name], value)
        dev.start()
        with pytest.raises(DeviceTimeout) as err:
            dev.wait()
        text = str(err.value)
        assert "within 0.2 s (XRT run state ERT_CMD_STATE_TIMEOUT (8))" in text
        assert err.value.status is not None and err.value.status.busy
        assert "CTRL=0x1 (ap_start=1" in text and "busy=1" in text
        with pytest.raises(DeviceError, match=r"^start\(\) while the kernel is running"):
            dev.start()


@pytest.mark.parametrize("case, message", [
    ("no device", r"^XRT xrtDeviceOpen failed \(returned NULL, errno 19: No such device\): no "
                  r"XRT device 0 .*$"),
    ("bad xclbin", r"^XRT xrtDeviceLoadXclbinFile failed \(returned -1, errno 22: Invalid "
                   r"argument\): XRT could not load .*$"),
    ("missing xclbin", r"^xclbin .*nothing\.xclbin does not exist: build it with `nsllm build "
                       r"--board vck190 --out DIR` and `make -C DIR` \(docs/board\.md\)$"),
    ("missing XRT", r"^the XRT library /no/libxrt_coreutil\.so does not exist; install XRT "
                    r"2023\.2 .*$"),
    ("other kernel", r"^XRT xrtPLKernelOpenExclusive failed \(returned NULL, errno 2: No such "
                     r"file or directory\): the xclbin has no kernel other .*$"),
    ("offsets", r"^the xclbin puts kernel argument 4 \(image_bytes\) at offset 0x3c, the "
                r"register map at 0x38: rebuild the xclbin with this nsllm .*$"),
])
def test_xrt_errors_are_device_errors_with_the_xrt_status(case, message, tmp_path, project,
                                                         kernel_library, xrt_library,
                                                         monkeypatch):
    x = standin.write_xclbin(tmp_path / "k.xclbin", project, kernel_library)
    kwargs = {"library": xrt_library}
    if case == "no device":
        monkeypatch.setenv("NSLLM_XRT_STANDIN_DEVICES", "0")
    elif case == "bad xclbin":
        x.write_bytes(b"this is not an xclbin")
    elif case == "missing xclbin":
        x = tmp_path / "nothing.xclbin"
    elif case == "missing XRT":
        kwargs["library"] = "/no/libxrt_coreutil.so"
    elif case == "other kernel":
        kwargs["kernel"] = "other"
    elif case == "offsets":  # an xclbin from another register map: image_bytes moved
        other = tmp_path / "other"
        other.mkdir()
        xml = (project / "kernel.xml").read_text().replace('offset="0x38"', 'offset="0x3c"')
        (other / "kernel.xml").write_text(xml)
        (other / "link.cfg").write_text((project / "link.cfg").read_text())
        x = standin.write_xclbin(tmp_path / "k.xclbin", other, kernel_library)
    with pytest.raises(DeviceError, match=message):
        XrtDevice(x, **kwargs)


def test_find_library_reports_what_it_looked_for(monkeypatch):
    monkeypatch.delenv("NSLLM_XRT_LIBRARY", raising=False)
    monkeypatch.delenv("XILINX_XRT", raising=False)
    monkeypatch.setattr("ctypes.util.find_library", lambda name: None)
    if any(os.path.isfile(p) for p in ("/opt/xilinx/xrt/lib/libxrt_coreutil.so",
                                       "/usr/lib/libxrt_coreutil.so")):
        pytest.skip("XRT is installed here")
    with pytest.raises(DeviceError, match=r"^XRT is not installed \(libxrt_coreutil\.so not "
                                          r"found in /opt/xilinx/xrt/lib/.*, /usr/lib/.*\); "
                                          r"install XRT 2023\.2 .*$"):
        find_library()
    monkeypatch.setenv("NSLLM_XRT_LIBRARY", "/x/libxrt_coreutil.so")
    with pytest.raises(DeviceError, match=r"^the XRT library /x/libxrt_coreutil\.so does not "):
        find_library()


def _cli(*args, env):
    nsllm = str(Path(sys.executable).with_name("nsllm"))  # the installed command
    return subprocess.run([nsllm, *args], capture_output=True, text=True, timeout=600, env=env)


def test_cli_generate_on_the_xrt_backend(xclbin, xrt_library, default_weights):
    env = dict(os.environ, NSLLM_XRT_LIBRARY=str(xrt_library))
    r = _cli("generate", "--backend", "xrt", "--xclbin", str(xclbin), "--prompt", PROMPT,
             "-n", "8", "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    golden = Generator(ModelBackend(IntegerModel(default_weights), "golden"),
                       ByteTokenizer()).generate(PROMPT, 8)
    assert out["backend"] == "xrt" and out["tokens"] == golden.tokens
    assert out["weight_ports"] == PORTS and out["cycles_per_token"] > 0
    r = _cli("generate", "--backend", "xrt", "--prompt", PROMPT, env=env)
    assert r.returncode == 2 and "--backend xrt needs --xclbin FILE" in r.stderr
    r = _cli("generate", "--backend", "xrt", "--xclbin", str(xclbin), "--prompt", PROMPT,
             env=dict(env, NSLLM_XRT_STANDIN_DEVICES="0"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("nsllm: error: XRT xrtDeviceOpen failed (returned NULL, errno 19")


def test_run_script_of_the_host_folder(project, xclbin, xrt_library, default_weights):
    env = dict(os.environ, NSLLM_XRT_LIBRARY=str(xrt_library))
    r = subprocess.run([sys.executable, str(project / "host" / "run.py"), "--xclbin",
                        str(xclbin), "--prompt", PROMPT, "-n", "8", "--json"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    golden = Generator(ModelBackend(IntegerModel(default_weights), "golden"),
                       ByteTokenizer()).generate(PROMPT, 8)
    assert json.loads(r.stdout)["tokens"] == golden.tokens


def test_core_verilog_is_shared_with_the_kernel(project, sim_params):
    """rtl/nsllm_core.v is the core the simulator runs (one conversion, cached)."""
    assert (project / "rtl" / "nsllm_core.v").read_text() == core_verilog(sim_params).read_text()
