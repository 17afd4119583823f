import pytest

from nsllm.model.config import PRESETS, ConfigError, ModelConfig, SpikeQuant, preset


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip_through_json(name):
    cfg = preset(name)
    cfg.quant["lm_head"] = SpikeQuant(D=7, theta=0.5, delta=0.25, weight_scale=0.01)
    back = ModelConfig.from_json(cfg.to_json())
    assert back == cfg
    assert back.quant["lm_head"].D == 7


@pytest.mark.parametrize(
    "name, layers, d, inter, ternary_b",
    [("mmfree-370m", 24, 1024, 2816, 0.336), ("mmfree-1.3b", 24, 2048, 5632, 1.298),
     ("mmfree-2.7b", 32, 2560, 6912, 2.62), ("nsllm-1.5b", 28, 2048, 5632, 1.505)],
)
def test_preset_shapes(name, layers, d, inter, ternary_b):
    cfg = preset(name)
    assert (cfg.num_layers, cfg.hidden_size, cfg.intermediate_size) == (layers, d, inter)
    assert cfg.num_ternary_weights() / 1e9 == pytest.approx(ternary_b, abs=0.01)


def test_ternary_layers_are_in_execution_order():
    cfg = preset("tiny")
    names = cfg.ternary_layers()
    assert names[:6] == ["layers.0.attn.i_proj", "layers.0.attn.f_proj", "layers.0.attn.g_proj",
                         "layers.0.attn.o_proj", "layers.0.mlp.gate_proj", "layers.0.mlp.down_proj"]
    assert names[-1] == "lm_head" and len(names) == 6 * cfg.num_layers + 1
    assert cfg.ternary_shape("layers.1.mlp.gate_proj") == (2 * cfg.intermediate_size, 128)


@pytest.mark.parametrize(
    "change, message",
    [({"hidden_size": 0}, "hidden_size must be a positive integer"),
     ({"token_mixer": "transformer"}, "token_mixer 'transformer' is not supported"),
     ({"tokenizer": "byte", "vocab_size": 100}, "byte tokenizer needs vocab_size"),
     ({"nonsense": 1}, "unknown config fields")],
)
def test_bad_config_is_named(change, message):
    data = preset("tiny").to_dict() | change
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict(data)


@pytest.mark.parametrize(
    "field, value, message",
    [("D", 0, "D must be an integer"), ("D", 500, "D must be an integer"),
     ("theta", -1.0, "theta must be a positive"), ("delta", -0.5, "delta must be a number"),
     ("weight_scale", 0.0, "weight_scale must be a positive")],
)
def test_bad_spike_quant_is_named(field, value, message):
    cfg = preset("tiny")
    setattr(cfg.quant["layers.2.mlp.down_proj"], field, value)
    with pytest.raises(ConfigError, match=f"layers.2.mlp.down_proj: {message}"):
        cfg.validate()


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'huge'; choose from tiny"):
        preset("huge")
