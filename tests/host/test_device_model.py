"""The host runtime on ModelDevice (the sequencer's golden model behind the core's registers).

The same runtime code drives SimDevice (tests/host/test_device_sim.py and, with the real core,
tests/host/test_device_core.py).
"""


import numpy as np
import pytest

from nsllm.host.device import DeviceError, ModelDevice, Reg, read_status
from nsllm.host.generator import Generator, ModelBackend
from nsllm.host.image import ImageError, build_image
from nsllm.host.program import Interpreter
from nsllm.host.runtime import CoreBackend, CoreRunner, load_image, read_build_limits
from nsllm.isa import DESCRIPTOR_BYTES
from nsllm.model import IntegerModel, ModelConfig, random_weights
from nsllm.model.tokenizer import ByteTokenizer

from .test_image import limits_for

PORT_BYTES = 8


@pytest.fixture(scope="module")
def image(tiny_weights):
    return build_image(tiny_weights, port_bytes=PORT_BYTES, weight_ports=2)


@pytest.fixture
def device(image):
    return ModelDevice(limits_for(image), mem_bytes=image.total_bytes + 0x4000)


def test_build_registers_round_trip(device, image):
    assert read_build_limits(device) == limits_for(image)


def test_generation_equals_golden_model(tiny_weights, image, device):
    tok = ByteTokenizer()
    golden = Generator(ModelBackend(IntegerModel(tiny_weights), "golden"), tok)
    backend = CoreBackend(CoreRunner(device, image))
    core = Generator(backend, tok)
    for prompt in ["The cat", "0123"]:
        want = golden.generate(prompt, 12).tokens
        got = core.generate(prompt, 12).tokens
        assert got == want
    summary = backend.summary.as_dict()
    assert backend.summary.tokens == len("0123") + 12
    assert summary["bytes_fetched_per_token"] > summary["weight_bytes_per_token"] > 0
    assert 0 < summary["firing_rate"] <= 1


def test_logits_and_counters_match_the_interpreter(tiny_weights, image, device):
    runner = CoreRunner(device, image)
    runner.reset()
    ref = Interpreter(image.raw, image.regions, limits_for(image))
    ref.run(image.reset)
    model = IntegerModel(tiny_weights)
    state = model.init_state()
    for tok in [72, 105, 33]:
        nxt, counters = runner.run_token(tok)
        stats = ref.run(image.token, token=tok)
        logits, state = model.step(tok, state)
        assert np.array_equal(runner.read_logits(), logits[0])
        assert nxt == ref.token == int(np.argmax(logits[0]))
        assert counters.weight_bytes == stats.weight_bytes
        assert counters.port_bytes == stats.port_bytes
        assert counters.spikes_nonzero == stats.spikes_nonzero
        assert counters.bus_bytes == (stats.weight_bytes + stats.table_bytes
                                      + len(image.token) * DESCRIPTOR_BYTES)


def test_sampling_reads_logits_and_matches_golden(tiny_weights, image, device):
    tok = ByteTokenizer()
    golden = Generator(ModelBackend(IntegerModel(tiny_weights), "golden"), tok,
                       temperature=0.8, seed=3)
    core = Generator(CoreBackend(CoreRunner(device, image), read_logits=True), tok,
                     temperature=0.8, seed=3)
    assert core.generate("ab", 8).tokens == golden.generate("ab", 8).tokens
    # the generator switches logit reads on for sampling and off for greedy decoding
    backend = CoreBackend(CoreRunner(device, image))
    Generator(backend, tok, temperature=0.8)
    assert backend.read_logits
    Generator(backend, tok)
    assert not backend.read_logits
    with pytest.raises(ValueError, match="read_logits=True"):  # used without a generator
        backend.to_float(backend.feed([1]))


def test_reset_clears_the_recurrent_state(image, device):
    runner = CoreRunner(device, image)
    runner.reset()
    first = [runner.run_token(t)[0] for t in (1, 2, 3)]
    runner.reset()
    assert [runner.run_token(t)[0] for t in (1, 2, 3)] == first


def test_image_larger_than_build(image):
    small = ModelDevice(limits_for(image, max_hidden=64, max_layers=2))
    with pytest.raises(ImageError, match=r"hidden size 128 > 64 \(rebuild the core with "
                                         r"--max-hidden"):
        load_image(small, image)
    wide = ModelDevice(limits_for(image, port_bytes=64))
    with pytest.raises(ImageError, match="8-byte words, the core reads 64-byte words"):
        load_image(wide, image)


def test_small_memory(image):
    tiny_mem = ModelDevice(limits_for(image), mem_bytes=4096)
    with pytest.raises(DeviceError, match="larger mem_bytes"):
        load_image(tiny_mem, image)


def damage_spots(image):
    """(label, region, offset) of a byte in each kind of image content."""
    from nsllm.host.image import CRC_OFFSET

    table = next(i.table for i in image.token if i.op.name == "NORM")
    return [("descriptor", "image", image.token_offset + 3 * 64 + 1),
            ("table", "image", table + 5), ("CRC field", "image", CRC_OFFSET),
            ("weight", 0, 1000), ("weight", 1, image.region_bytes - 1)]


@pytest.mark.parametrize("k", range(5))
def test_image_damaged_after_loading_is_reported(image, device, k):
    label, region, offset = damage_spots(image)[k]
    runner = CoreRunner(device, image)
    runner.verify_image()  # intact
    addr = runner.loaded.image_addr if region == "image" else runner.loaded.region_addrs[region]
    byte = device.read(addr + offset, 1)
    device.write(addr + offset, bytes([byte[0] ^ 0x10]))
    name = "image region" if region == "image" else f"weight region {region}"
    with pytest.raises(DeviceError, match=rf"damaged \({name} does not match its checksum"):
        runner.verify_image()
    device.write(addr + offset, byte)
    runner.verify_image()  # repaired


def test_unknown_opcode_is_a_device_error(image, device):
    runner = CoreRunner(device, image)
    bad = runner.loaded.image_addr + image.token_offset + 3 * DESCRIPTOR_BYTES
    device.write(bad, b"\x8e")  # all 8 bits are the opcode: 0x8e is not one
    with pytest.raises(DeviceError, match=r"descriptor 3 of the token program is LINEAR "
                                          r"\(layers.0.attn.i_proj\).*"
                                          r"pc=3 opcode=142 .* error=1: unknown opcode"):
        runner.run_token(5)


def test_ctrl_done_clears_on_read(image, device):
    runner = CoreRunner(device, image)
    runner.reset()
    device.start()
    assert device.reg_read(Reg.CTRL) & 0b1110 == 0b1110  # done, idle, ready
    assert device.reg_read(Reg.CTRL) & 0b1010 == 0
    assert read_status(device).pc == len(image.reset) - 1  # PROG_OFFSET still at reset


def test_other_shapes():
    cfg = ModelConfig(vocab_size=288, hidden_size=64, num_layers=2, intermediate_size=192,
                      tokenizer="byte")
    w = random_weights(cfg, seed=9)
    image = build_image(w, port_bytes=16)
    device = ModelDevice(limits_for(image), mem_bytes=image.total_bytes + 0x4000)
    runner = CoreRunner(device, image)
    runner.reset()
    model = IntegerModel(w)
    state = model.init_state()
    for tok in (0, 287, 17):
        nxt, _ = runner.run_token(tok)
        logits, state = model.step(tok, state)
        assert nxt == int(np.argmax(logits[0]))
    with pytest.raises(ValueError, match=r"token 288 is outside the model's vocabulary \[0, 288\)"):
        runner.run_token(288)


def test_program_longer_than_the_cache(image):
    small = ModelDevice(limits_for(image, max_ops=len(image.token) - 1))
    with pytest.raises(ImageError, match=rf"program descriptors {len(image.token)} > "
                                         rf"{len(image.token) - 1} \(rebuild the core with a "
                                         r"larger program cache"):
        load_image(small, image)


def test_bad_prog_ops_is_a_device_error(image, device):
    runner = CoreRunner(device, image)
    runner.loaded.token_ops = len(image.token) - 1  # END falls outside PROG_OPS
    with pytest.raises(DeviceError, match=r"error=3: bad program"):
        runner.run_token(1)
