"""Model image and the descriptor-program interpreter (the sequencer's golden model)."""

import copy
import struct
from dataclasses import replace

import numpy as np
import pytest

from nsllm.host.image import ImageError, build_image, parse_image
from nsllm.host.program import Interpreter
from nsllm.isa import BuildLimits, scratch_layout
from nsllm.model import IntegerModel, ModelConfig, random_weights


def limits_for(img, **changes) -> BuildLimits:
    """A build that just fits ``img``."""
    fit = BuildLimits(port_bytes=img.port_bytes, max_vocab=img.vocab, max_hidden=img.hidden,
                      max_intermediate=img.intermediate, max_layers=img.layers,
                      max_D=img.max_D, scratch_entries=img.scratch_entries,
                      acc_bits=img.acc_bits, weight_ports=img.weight_ports,
                      packings=(img.packing,))
    return replace(fit, **changes)


def run_both(weights, tokens, port_bytes=32, packing="2bit", weight_ports=1):
    """Feed tokens to the interpreter and the golden model; return logits of both, and stats."""
    img = build_image(weights, port_bytes=port_bytes, packing=packing, weight_ports=weight_ports)
    it = Interpreter(img.raw, img.regions, limits_for(img))
    it.run(img.reset)
    lay = scratch_layout(weights.config)
    start, n = lay.regions["logits"]
    model = IntegerModel(weights)
    state = model.init_state()
    got, want, stats = [], [], []
    for tok in tokens:
        stats.append(it.run(img.token, token=tok))
        got.append(it.scratch[start:start + n].copy())
        logits, state = model.step(tok, state)
        want.append(logits[0])
        assert it.token == int(np.argmax(logits[0]))
    return np.array(got), np.array(want), stats


@pytest.mark.parametrize("port_bytes, packing, ports", [(8, "2bit", 1), (32, "2bit", 3),
                                                        (64, "base3", 1), (8, "base3", 2)])
def test_interpreter_equals_golden_model(tiny_weights, port_bytes, packing, ports):
    got, want, stats = run_both(tiny_weights, [84, 104, 101, 32, 0, 255], port_bytes, packing,
                                ports)
    assert np.array_equal(got, want)
    for st in stats:  # every weight byte is fetched through exactly one port
        assert sum(st.port_bytes) == st.weight_bytes and len(st.port_bytes) == ports


def test_regions_interleave_the_columns(tiny_weights):
    """Column j of every layer lives in region j mod N, slot j div N: gathering the slots back
    gives the one-region image's columns."""
    one = build_image(tiny_weights, port_bytes=8)
    three = build_image(tiny_weights, port_bytes=8, weight_ports=3)
    for a, b in zip(one.token, three.token, strict=True):
        if a.op.name != "LINEAR":
            continue
        cols = np.frombuffer(one.regions[0], np.uint8)[a.weight: a.weight + a.n * a.stride]
        cols = cols.reshape(a.n, a.stride)
        for j in (0, 1, 2, a.n - 1):
            off = b.weight + (j // 3) * b.stride
            got = np.frombuffer(three.regions[j % 3], np.uint8)[off: off + b.stride]
            assert np.array_equal(got, cols[j]), (a.name, j)
    assert three.region_bytes * 3 >= one.region_bytes


def test_interpreter_on_other_shapes_with_mixed_timesteps():
    cfg = ModelConfig(vocab_size=320, hidden_size=96, num_layers=3, intermediate_size=256,
                      tokenizer="byte")
    for k, name in enumerate(cfg.ternary_layers()):
        cfg.quant[name].D = (1, 3, 7, 15)[k % 4]
        cfg.quant[name].delta = (0.0, 0.75)[k % 2]
    w = random_weights(cfg, seed=5)
    w.tensors["lower_bounds"] = np.random.default_rng(0).standard_normal(
        w.tensors["lower_bounds"].shape).astype(np.float32)
    got, want, _ = run_both(w, [1, 319, 7, 7])
    assert np.array_equal(got, want)


def test_bytes_fetched_track_the_firing_rate(tiny_weights):
    _, _, full = run_both(tiny_weights, [65, 66, 67])
    half = copy.deepcopy(tiny_weights)
    for lin in half.linears.values():  # silence every other input neuron of every layer
        lin.norm_weight[1::2] = 0.0
    _, _, halved = run_both(half, [65, 66, 67])
    for a, b in zip(full, halved, strict=True):
        assert b.spikes_nonzero == pytest.approx(a.spikes_nonzero / 2, rel=0.1)
        assert b.weight_bytes == pytest.approx(a.weight_bytes / 2, rel=0.1)
        assert a.dense_weight_bytes == b.dense_weight_bytes


@pytest.fixture
def image(tiny_weights):
    return build_image(tiny_weights, port_bytes=32)


def test_round_trip(image):
    again = parse_image(image.raw, image.regions)
    assert [i.pack() for i in again.token] == [i.pack() for i in image.token]
    assert again.regions == image.regions


def test_damaged_weight_region(image):
    region = bytearray(image.regions[0])
    region[100] ^= 1
    with pytest.raises(ImageError, match=r"^weight region 0 is corrupt or truncated"):
        parse_image(image.raw, [bytes(region)])


def test_bad_checksum(image):
    raw = bytearray(image.raw)
    raw[-3] ^= 0x40
    with pytest.raises(ImageError, match="checksum mismatch .* corrupt"):
        parse_image(bytes(raw))


def test_wrong_version(image):
    raw = bytearray(image.raw)
    raw[8:12] = struct.pack("<I", 7)
    with pytest.raises(ImageError, match="image version 7 is not supported"):
        parse_image(bytes(raw))


def test_truncated(image):
    with pytest.raises(ImageError, match="truncated"):
        parse_image(image.raw[:-64])
    with pytest.raises(ImageError, match="not an nsllm model image"):
        parse_image(b"\0" * 4096)


def test_model_larger_than_build(image):
    ok = BuildLimits(port_bytes=32, max_vocab=256, max_hidden=128, max_intermediate=512,
                     max_layers=4, max_D=15, scratch_entries=image.scratch_entries, acc_bits=14)
    image.check_fits(ok)
    with pytest.raises(ImageError, match="1 weight regions, the core has 3 weight ports"):
        image.check_fits(replace(ok, weight_ports=3))
    with pytest.raises(ImageError, match="packing 2bit is not decoded by this build"):
        image.check_fits(replace(ok, packings=("base3",)))
    small = replace(ok, max_hidden=64, max_layers=2)
    with pytest.raises(ImageError, match=r"hidden size 128 > 64 \(rebuild the core with "
                                         r"--max-hidden ≥ 128\).*layers 4 > 2"):
        image.check_fits(small)
    with pytest.raises(ImageError, match="32-byte words, the core reads 64-byte words"):
        image.check_fits(replace(ok, port_bytes=64))


def test_hybrid_model_larger_than_the_builds_sla_unit():
    from nsllm.model.config import SLAParams

    cfg = ModelConfig(vocab_size=64, hidden_size=64, num_layers=2, intermediate_size=64,
                      tokenizer="hf", token_mixer=["sla", "sla"],
                      sla={f"layers.{li}.attn": SLAParams(head_dim=32, decay_shifts=[9, 2])
                           for li in (0, 1)})
    image = build_image(random_weights(cfg, 1), port_bytes=8)
    assert image.sla_layers == 2 and image.sla_head_dims == {32}
    ok = replace(limits_for(image), max_sla_layers=2, max_head_dim=32, sla_lanes=8)
    image.check_fits(ok)
    with pytest.raises(ImageError, match=r"the model has 2 SLA layers, the core has no SLA unit "
                                         r"\(rebuild the core with CoreParams.max_sla_layers ≥ 2 "
                                         r"and max_head_dim ≥ 32\)"):
        image.check_fits(limits_for(image))
    with pytest.raises(ImageError, match=r"SLA layers 2 > 1 .*SLA head size 32 > 16"):
        image.check_fits(replace(ok, max_sla_layers=1, max_head_dim=16))
    with pytest.raises(ImageError, match="SLA head size 32 below the build's 64"):
        image.check_fits(replace(ok, max_head_dim=64, sla_lanes=64))
