"""Spike recordings from the golden model: content, storage round trip, cross-check."""

import numpy as np
import pytest

from nsllm.analysis.recording import SpikeRecording, record
from nsllm.model import IntegerModel, Trace
from nsllm.model.numerics import spike_train


@pytest.fixture(scope="module")
def model(tiny_weights):
    return IntegerModel(tiny_weights)


@pytest.fixture(scope="module")
def tokens():
    return np.frombuffer(b"The quick brown fox jumps over the lazy dog. 0123", dtype=np.uint8)


@pytest.fixture(scope="module")
def rec(model, tokens):
    return record(model, tokens, text=bytes(tokens).decode(), segment=16)


def test_record_holds_every_layer_input_for_every_token(rec, model, tokens):
    cfg = model.config
    assert rec.layers == cfg.ternary_layers()
    trace = Trace()
    model.prefill(tokens[None].astype(np.int64), None, trace)
    for name in rec.layers:
        assert rec[name].shape == (len(tokens), cfg.ternary_shape(name)[1])
        # recorded in segments of 16 with the state carried over = one prefill of the whole text
        np.testing.assert_array_equal(rec[name], trace[f"{name}.spikes"][0])
        assert rec.timesteps[name] == cfg.quant[name].D
    assert rec.meta["source"] == "golden"


def test_trains_expand_counts(rec):
    layer = rec.layers[3]
    tr = rec.train(layer)
    d = rec.timesteps[layer]
    assert tr.shape == (len(rec), d, rec[layer].shape[1]) and tr.dtype == np.int8
    np.testing.assert_array_equal(tr.sum(axis=1), rec[layer])
    np.testing.assert_array_equal(np.moveaxis(spike_train(rec[layer][:4], d), 0, 1),
                                  rec.train(layer, slice(0, 4)))


def test_save_load_round_trip(rec, tmp_path):
    path = rec.save(tmp_path / "r.npz")
    back = SpikeRecording.load(path)
    assert back.layers == rec.layers and back.text == rec.text and back.meta == rec.meta
    assert back.timesteps == rec.timesteps
    np.testing.assert_array_equal(back.tokens, rec.tokens)
    assert rec.compare(back) is None
    raw = sum(v.size for v in rec.counts.values())  # int8 counts
    assert path.stat().st_size < raw  # compressed


def test_load_rejects_other_npz(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a spike recording"):
        SpikeRecording.load(tmp_path / "x.npz")


def test_compare_names_first_differing_layer_token_neuron(rec):
    counts = {k: v.copy() for k, v in rec.counts.items()}
    layer = rec.layers[7]
    counts[layer][5, 9] += 1 if counts[layer][5, 9] < rec.timesteps[layer] else -1
    counts[rec.layers[9]][0, 0] = 0 if counts[rec.layers[9]][0, 0] else 1  # later: not reported
    other = SpikeRecording(counts, rec.tokens, rec.timesteps, meta={"source": "rtl"})
    m = rec.compare(other)
    assert (m.layer, m.token, m.neuron) == (layer, 5, 9)
    assert m.expected == int(rec[layer][5, 9]) and m.got == int(counts[layer][5, 9])
    assert f"{layer}, token 5, neuron 9" in str(m)


def test_compare_partial_and_token_mismatch(rec):
    part = SpikeRecording({k: rec[k] for k in rec.layers[:2]}, rec.tokens, rec.timesteps)
    assert rec.compare(part).reason == "missing"
    assert part.compare(rec) is None  # a partial readback checks the layers it has
    other = SpikeRecording(rec.counts, rec.tokens[::-1], rec.timesteps)
    assert "token ids differ" in str(rec.compare(other))


def test_from_trace_joins_segments(model, tokens):
    trace = Trace()
    state = None
    for s in range(0, len(tokens), 10):
        _, state = model.prefill(tokens[None, s:s + 10].astype(np.int64), state, trace)
    timesteps = {n: q.D for n, q in model.config.quant.items()}
    rec = SpikeRecording.from_trace(trace, tokens, timesteps)
    assert len(rec) == len(tokens) and rec.layers[-1] == "lm_head"
    with pytest.raises(ValueError, match="no spike counts"):
        SpikeRecording.from_trace(Trace(), tokens, timesteps)


def test_recording_validates_counts_and_layers(model, tokens):
    with pytest.raises(ValueError, match="exceeds D"):
        SpikeRecording({"a": np.full((2, 3), 9)}, [1, 2], {"a": 7})
    with pytest.raises(ValueError, match=r"\(tokens, neurons\)"):
        SpikeRecording({"a": np.zeros((3, 3))}, [1, 2], {"a": 7})
    with pytest.raises(ValueError, match="unknown layers"):
        record(model, tokens, layers=["layers.0.nope"])
    with pytest.raises(ValueError, match="empty"):
        record(model, [])
    only = record(model, tokens[:5], layers=["lm_head"])
    assert only.layers == ["lm_head"]
