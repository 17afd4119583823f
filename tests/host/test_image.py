"""Model image and the descriptor-program interpreter (the sequencer's golden model)."""

import copy
import struct
from dataclasses import replace

import numpy as np
import pytest

from nsllm.host.image import BuildLimits, ImageError, build_image, parse_image
from nsllm.host.program import Interpreter, scratch_layout
from nsllm.model import IntegerModel, ModelConfig, random_weights


def run_both(weights, tokens, port_bytes=32, packing="2bit"):
    """Feed tokens to the interpreter and the golden model; return logits of both, and stats."""
    img = build_image(weights, port_bytes=port_bytes, packing=packing)
    it = Interpreter(img.raw, img.scratch_entries, img.packing)
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


@pytest.mark.parametrize("port_bytes, packing", [(8, "2bit"), (32, "2bit"), (64, "base3")])
def test_interpreter_equals_golden_model(tiny_weights, port_bytes, packing):
    got, want, _ = run_both(tiny_weights, [84, 104, 101, 32, 0, 255], port_bytes, packing)
    assert np.array_equal(got, want)


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
    again = parse_image(image.raw)
    assert [i.pack() for i in again.token] == [i.pack() for i in image.token]


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
    small = replace(ok, max_hidden=64, max_layers=2)
    with pytest.raises(ImageError, match=r"hidden size 128 > 64 \(rebuild with --max-hidden ≥ 128\)"
                                         r".*layers 4 > 2"):
        image.check_fits(small)
    with pytest.raises(ImageError, match="32-byte words, the core reads 64-byte words"):
        image.check_fits(replace(ok, port_bytes=64))
