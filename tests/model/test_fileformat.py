import json
import struct

import numpy as np
import pytest

from nsllm.model import IntegerModel, load_model, save_model
from nsllm.model.fileformat import ModelFileError, encode_file, read_header
from nsllm.model.packing import packed_bytes


def _same(a, b):
    assert a.config == b.config
    assert a.tensors.keys() == b.tensors.keys()
    for k in a.tensors:
        assert np.array_equal(a.tensors[k], b.tensors[k]), k
    for k in a.linears:
        assert np.array_equal(a.linears[k].trits, b.linears[k].trits), k
        assert np.array_equal(a.linears[k].norm_weight, b.linears[k].norm_weight), k


@pytest.mark.parametrize("packing", ["2bit", "base3"])
def test_round_trip_is_lossless(tiny_weights, tmp_path, packing):
    path = save_model(tiny_weights, tmp_path / "m.nsllm", packing=packing)
    back = load_model(path)
    _same(tiny_weights, back)
    tokens = np.array([[1, 2, 3, 250]])
    assert np.array_equal(IntegerModel(tiny_weights).prefill(tokens)[0],
                          IntegerModel(back).prefill(tokens)[0])


def test_base3_is_smaller(tiny_weights, tmp_path):
    a = save_model(tiny_weights, tmp_path / "a.nsllm", packing="2bit").stat().st_size
    b = save_model(tiny_weights, tmp_path / "b.nsllm", packing="base3").stat().st_size
    cfg = tiny_weights.config
    shapes = [cfg.ternary_shape(n) for n in cfg.ternary_layers()]
    assert a - b == packed_bytes(shapes, "2bit") - packed_bytes(shapes, "base3")
    assert packed_bytes(shapes, "base3") < 0.81 * packed_bytes(shapes, "2bit")


def _rewrite_header(path, edit):
    """Rewrite a safetensors header in place (keeps the data section)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    edit(header)
    new = json.dumps(header).encode()
    new += b" " * ((8 - len(new) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])


def _reseal(path, edit_meta=None, edit_tensors=None):
    """Change a file's metadata or tensors and write it with valid checksums again, so that the
    checks behind the checksums are reached."""
    from safetensors.numpy import load

    meta = {k: v for k, v in read_header(path)["__metadata__"].items()
            if not k.startswith("crc32")}
    tensors = load(path.read_bytes())
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    path.write_bytes(encode_file(tensors, meta))


@pytest.fixture
def model_file(tiny_weights, tmp_path):
    return save_model(tiny_weights, tmp_path / "m.nsllm", packing="2bit")


def test_truncated_file(model_file):
    model_file.write_bytes(model_file.read_bytes()[:-1000])
    with pytest.raises(ModelFileError, match=r"m.nsllm: truncated: the tensors need \d+ bytes"):
        load_model(model_file)


def test_truncated_header(model_file):
    model_file.write_bytes(model_file.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="truncated or not a .nsllm file"):
        load_model(model_file)


def test_not_a_model(tmp_path):
    p = tmp_path / "x.nsllm"
    p.write_bytes(b"hello")
    with pytest.raises(ModelFileError, match="too short to be a .nsllm file"):
        load_model(p)
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "missing.nsllm")


def test_wrong_version(model_file):
    _rewrite_header(model_file, lambda h: h["__metadata__"].update(format_version="99"))
    with pytest.raises(ModelFileError, match="format version '99' is not supported"):
        load_model(model_file)


def test_wrong_format(model_file):
    _rewrite_header(model_file, lambda h: h["__metadata__"].update(format="gguf"))
    with pytest.raises(ModelFileError, match="not a .nsllm file"):
        load_model(model_file)


def test_shape_mismatch(model_file):
    def shrink(meta):
        cfg = json.loads(meta["config"])
        cfg["hidden_size"] = 64
        meta["config"] = json.dumps(cfg)

    _reseal(model_file, shrink)
    with pytest.raises(ModelFileError, match=r"tensor \S+ is .* the config needs .*shape mismatch"):
        load_model(model_file)


def test_trit_code_out_of_range(model_file):
    def bad_byte(tensors):
        tensors["layers.1.attn.f_proj.trits"].reshape(-1)[5] = 0xFF  # code 3 in every slot

    _reseal(model_file, edit_tensors=bad_byte)
    with pytest.raises(ModelFileError, match="layers.1.attn.f_proj.trits: trit code out of range"):
        load_model(model_file)


def test_missing_tensor(model_file):
    _reseal(model_file, edit_tensors=lambda t: t.pop("norm.weight"))
    with pytest.raises(ModelFileError, match="missing tensors: norm.weight"):
        load_model(model_file)


def test_bad_config_in_file(model_file):
    _reseal(model_file, lambda meta: meta.update(config="{not json"))
    with pytest.raises(ModelFileError, match="bad model config: model config is not valid JSON"):
        load_model(model_file)
