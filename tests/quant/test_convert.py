import json

import numpy as np
import pytest

from nsllm.model import IntegerModel, load_model, save_model
from nsllm.model.config import preset
from nsllm.quant.convert import ConversionError, convert_checkpoint
from nsllm.quant.ternary import absmean_ternarize

from .checkpoints import bf16_round, hf_config, hf_tensors, write_checkpoint


def test_converts_every_tensor_to_its_place(tmp_path):
    cfg, t = write_checkpoint(tmp_path / "ckpt")
    w = convert_checkpoint(tmp_path / "ckpt")
    c = w.config
    assert (c.vocab_size, c.hidden_size, c.num_layers) == (256, 32, 2)
    assert c.intermediate_size == 256  # 256 * ceil(32 * 4 * 2/3 / 256)
    np.testing.assert_array_equal(w.tensors["embeddings.weight"], t["model.embeddings.weight"])
    np.testing.assert_array_equal(w.tensors["lower_bounds"], t["model.lower_bounds"])
    np.testing.assert_array_equal(w.tensors["layers.1.attn.g_norm.weight"],
                                  t["model.layers.1.attn.g_norm.weight"])
    for name, src in [("layers.0.attn.f_proj", "model.layers.0.attn.f_proj"),
                      ("layers.1.mlp.gate_proj", "model.layers.1.mlp.gate_proj"),
                      ("lm_head", "lm_head")]:
        latent = t[f"{src}.weight"]
        beta = np.abs(latent).mean()
        want = np.clip(np.round(latent / beta), -1, 1)
        np.testing.assert_array_equal(w.linears[name].trits, want)
        assert c.quant[name].weight_scale == pytest.approx(beta, rel=1e-6)
        np.testing.assert_array_equal(w.linears[name].norm_weight, t[f"{src}.norm.weight"])


def test_converted_model_runs_and_round_trips(tmp_path):
    write_checkpoint(tmp_path / "ckpt")
    w = convert_checkpoint(tmp_path / "ckpt")
    path = save_model(w, tmp_path / "m.nsllm")
    back = load_model(path)
    tokens = np.arange(0, 40) % 256
    a, _ = IntegerModel(w).prefill(tokens)
    b, _ = IntegerModel(back).prefill(tokens)
    np.testing.assert_array_equal(a, b)
    assert np.any(a != a[..., :1])  # logits are not all equal


def test_bf16_checkpoint_reads_the_rounded_values(tmp_path):
    cfg, t = write_checkpoint(tmp_path / "ckpt", dtype="bf16")
    w = convert_checkpoint(tmp_path / "ckpt")
    np.testing.assert_array_equal(w.tensors["norm.weight"], bf16_round(t["model.norm.weight"]))
    trits, _ = absmean_ternarize(bf16_round(t["model.layers.0.attn.o_proj.weight"]))
    np.testing.assert_array_equal(w.linears["layers.0.attn.o_proj"].trits, trits)


def test_tied_embeddings_use_the_embedding_as_lm_head(tmp_path):
    cfg = hf_config(tie_word_embeddings=True)
    t = hf_tensors(cfg)
    del t["lm_head.weight"]
    write_checkpoint(tmp_path / "ckpt", cfg, t)
    w = convert_checkpoint(tmp_path / "ckpt")
    trits, _ = absmean_ternarize(t["model.embeddings.weight"])
    np.testing.assert_array_equal(w.linears["lm_head"].trits, trits)


def test_tokenizer_json_is_copied_and_selected(tmp_path):
    from tokenizers import Tokenizer, models

    from nsllm.quant.convert import copy_tokenizer

    write_checkpoint(tmp_path / "ckpt", hf_config(vocab=300))
    text = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]")).to_str()
    (tmp_path / "ckpt" / "tokenizer.json").write_text(text)
    w = convert_checkpoint(tmp_path / "ckpt")
    assert w.config.tokenizer == "hf"
    dst = copy_tokenizer(tmp_path / "ckpt", tmp_path / "out" / "m.nsllm")
    assert dst.read_text() == text


def test_checkpoint_without_tokenizer_json_converts(tmp_path):
    """No tokenizer.json: the model converts (it runs on token ids); text needs one beside it."""
    from nsllm.quant.convert import copy_tokenizer

    write_checkpoint(tmp_path / "ckpt", hf_config(vocab=300))
    w = convert_checkpoint(tmp_path / "ckpt")
    assert w.config.vocab_size == 300 and w.config.tokenizer == "hf"
    assert copy_tokenizer(tmp_path / "ckpt", tmp_path / "out" / "m.nsllm") is None


def _bad(tmp_path, cfg_changes=None, drop=None, reshape=None):
    cfg = hf_config(**(cfg_changes or {}))
    t = hf_tensors(hf_config())
    if drop:
        del t[drop]
    if reshape:
        t[reshape] = t[reshape][:-1]
    write_checkpoint(tmp_path / "ckpt", cfg, t)
    with pytest.raises(ConversionError) as e:
        convert_checkpoint(tmp_path / "ckpt")
    return str(e.value)


@pytest.mark.parametrize("changes, message", [
    ({"model_type": "llama"}, "unknown model_type 'llama'"),
    ({"use_short_conv": True}, "use_short_conv = True is not supported"),
    ({"expand_ratio": 2}, "expand_ratio = 2 is not supported"),
    ({"num_heads": 4}, "num_heads = 4 is not supported"),
    ({"hidden_size": 0}, "hidden_size must be a positive integer"),
    ({"num_hidden_layers": 3}, "missing"),  # a third layer's tensors are absent
    ({"intermediate_size": 512}, "shape mismatch for model.layers.0.mlp.gate_proj.weight"),
])
def test_bad_config_is_named(tmp_path, changes, message):
    assert message in _bad(tmp_path, cfg_changes=changes)


def test_missing_key_is_named(tmp_path):
    msg = _bad(tmp_path, drop="model.layers.1.attn.g_proj.norm.weight")
    assert "missing 1 tensor(s): model.layers.1.attn.g_proj.norm.weight" in msg


def test_shape_mismatch_is_named(tmp_path):
    msg = _bad(tmp_path, reshape="model.layers.0.attn.i_proj.weight")
    assert "shape mismatch for model.layers.0.attn.i_proj.weight" in msg
    assert "[31, 32]" in msg and "[32, 32]" in msg


def test_missing_files_are_named(tmp_path):
    with pytest.raises(ConversionError, match="not a folder"):
        convert_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match="no config.json"):
        convert_checkpoint(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text(json.dumps(hf_config()))
    with pytest.raises(ConversionError, match="no model.safetensors"):
        convert_checkpoint(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("{not json")
    with pytest.raises(ConversionError, match="not valid JSON"):
        convert_checkpoint(tmp_path / "empty")


def test_pytorch_bin_checkpoint(tmp_path):
    torch = pytest.importorskip("torch", reason="reading pytorch_model.bin needs PyTorch")
    cfg = hf_config()
    t = hf_tensors(cfg)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(cfg))
    torch.save({k: torch.from_numpy(v) for k, v in t.items()},
               tmp_path / "ckpt" / "pytorch_model.bin")
    w = convert_checkpoint(tmp_path / "ckpt")
    np.testing.assert_array_equal(w.tensors["norm.weight"], t["model.norm.weight"])


def test_convert_command(tmp_path):
    from nsllm.cli import main

    write_checkpoint(tmp_path / "ckpt")
    calib = tmp_path / "calib.txt"
    calib.write_text("The quick brown fox jumps over the lazy dog. " * 8)
    out = tmp_path / "m.nsllm"
    assert main(["convert", str(tmp_path / "ckpt"), "--out", str(out), "--calib", str(calib)]) == 0
    w = load_model(out)
    thetas = {q.theta for q in w.config.quant.values()}
    assert len(thetas) > 1  # calibrated per layer, not the single default
    assert main(["convert", str(tmp_path / "nowhere"), "--out", str(out)]) == 2


@pytest.mark.slow
def test_full_size_mmfree_370m_checkpoint(tmp_path):
    """A synthetic checkpoint at the public 370M shape (bf16, ~0.75 GB) converts in bounded time."""
    import time

    p = preset("mmfree-370m")
    cfg = hf_config(vocab=p.vocab_size, hidden=p.hidden_size, layers=p.num_layers)
    rng = np.random.default_rng(0)
    t = {}
    d, inter, V = p.hidden_size, p.intermediate_size, p.vocab_size
    t["model.embeddings.weight"] = rng.standard_normal((V, d), dtype=np.float32)
    t["model.norm.weight"] = np.ones(d, np.float32)
    t["model.lower_bounds"] = np.zeros((p.num_layers, d), np.float32)
    for i in range(p.num_layers):
        q = f"model.layers.{i}"
        for n in ("attn_norm", "mlp_norm", "attn.g_norm"):
            t[f"{q}.{n}.weight"] = np.ones(d, np.float32)
        for n in ("i_proj", "f_proj", "g_proj", "o_proj"):
            t[f"{q}.attn.{n}.weight"] = rng.standard_normal((d, d), dtype=np.float32) * 0.02
            t[f"{q}.attn.{n}.norm.weight"] = np.ones(d, np.float32)
        t[f"{q}.mlp.gate_proj.weight"] = rng.standard_normal((2 * inter, d), dtype=np.float32)
        t[f"{q}.mlp.gate_proj.norm.weight"] = np.ones(d, np.float32)
        t[f"{q}.mlp.down_proj.weight"] = rng.standard_normal((d, inter), dtype=np.float32)
        t[f"{q}.mlp.down_proj.norm.weight"] = np.ones(inter, np.float32)
    t["lm_head.weight"] = rng.standard_normal((V, d), dtype=np.float32)
    t["lm_head.norm.weight"] = np.ones(d, np.float32)
    write_checkpoint(tmp_path / "ckpt", cfg, t, dtype="bf16")
    del t
    start = time.time()
    w = convert_checkpoint(tmp_path / "ckpt")
    assert w.config.num_ternary_weights() == preset("mmfree-370m").num_ternary_weights()
    path = save_model(w, tmp_path / "m.nsllm")
    assert time.time() - start < 300
    # float32 embedding + 1.6 bits per trit + norms; only the JSON header on top
    from nsllm.quant.evaluation import tensor_bytes

    assert 0 < path.stat().st_size - tensor_bytes(w)["base3"] < 1 << 20
    assert path.stat().st_size < 0.3 * (tmp_path / "ckpt" / "model.safetensors").stat().st_size
