"""Locating the first instruction where a device departs from the golden sequencer."""

import numpy as np

from nsllm.host.device import ModelDevice
from nsllm.host.image import build_image
from nsllm.host.runtime import CoreRunner, locate_divergence
from tests.hdl.test_core import micro_model


def _runner(weights):
    from nsllm.hdl.core import CoreParams

    params = CoreParams(port_bytes=8, vector=4, max_vocab=64, max_hidden=32,
                        max_intermediate=64, max_layers=2)
    image = build_image(weights, port_bytes=8)
    device = ModelDevice(params.build_limits(), mem_bytes=image.total_bytes + 0x4000)
    return CoreRunner(device, image), image


def test_agreeing_device_has_no_divergence():
    runner, _ = _runner(micro_model(seed=2, layers=2))
    assert locate_divergence(runner, [3, 4]) is None


def test_corrupted_weights_are_located_by_layer_and_unit():
    w = micro_model(seed=2, layers=2)
    runner, image = _runner(w)
    # layer 1's o_proj weights are negated in device DRAM, behind the host's back
    ins = next(i for i in image.token if i.name == "layers.1.attn.o_proj")
    addr = runner.loaded.region_addrs[0] + ins.weight
    cols = np.frombuffer(runner.device.read(addr, ins.wsize), dtype=np.uint8)
    negated = ((cols & 0x55) << 1) | ((cols & 0xAA) >> 1)  # 2-bit codes 1 <-> 2
    runner.device.write(addr, negated.astype(np.uint8).tobytes())
    found = locate_divergence(runner, [3, 4])
    assert found is not None
    assert found.name == "layers.1.attn.o_proj" and found.op == "LINEAR"
    assert str(found).startswith("token 0: layer 1, attn.o_proj (LINEAR, descriptor")
    assert f"index {found.index}: expected {found.expected}, got {found.got}" in str(found)

