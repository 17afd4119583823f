"""Input symbols and per-layer measures on a recording with a planted code."""

import numpy as np
import pytest

from nsllm.analysis.layers import (
    TOKEN_CLASSES,
    input_symbols,
    measure_recording,
    short_name,
    token_class,
)
from nsllm.analysis.recording import SpikeRecording
from nsllm.model.tokenizer import ByteTokenizer


@pytest.mark.parametrize("text, cls", [(" ", "space"), ("\n", "newline"), ("a", "lower"),
                                       ("Q", "upper"), ("7", "digit"), (",", "punct"),
                                       ("\ufffd", "other"), ("é", "lower"), ("", "other")])
def test_token_class(text, cls):
    assert TOKEN_CLASSES[token_class(text)] == cls


def test_input_symbols_class_and_token():
    tok = ByteTokenizer()
    ids = tok.encode("ab A1.\n")
    sym, names = input_symbols("class", tok, ids)
    assert [names[s] for s in sym] == ["lower", "lower", "space", "upper", "digit", "punct",
                                       "newline"]
    sym, names = input_symbols("token", tok, ids)
    assert len(set(sym.tolist())) == len(set(ids)) and names[0] == repr("\n")
    with pytest.raises(ValueError, match="input kind"):
        input_symbols("word", tok, ids)


def test_short_names():
    assert short_name("layers.12.mlp.down_proj") == "12.down"
    assert short_name("layers.0.attn.i_proj") == "0.i"
    assert short_name("lm_head") == "head"


def test_measures_find_a_planted_code(rng):
    """Layer "coded" copies the input class into its counts; layer "noise" ignores it."""
    t = 1500
    x = rng.integers(0, 4, t)
    coded = np.stack([x - 2, 2 - x, np.where(x > 1, 3, -3)], axis=1)
    noise = rng.integers(-3, 4, (t, 3))
    rec = SpikeRecording({"coded": coded, "noise": noise}, x, {"coded": 3, "noise": 3})
    layers, neurons = measure_recording(rec, x, shuffles=5, bootstraps=20, seed=1)
    c, n = layers
    assert c.mi == pytest.approx((2 * 2.0 + 1.0) / 3, abs=0.03)  # two bijections, one bit
    assert c.mi_normalised == pytest.approx(c.mi / 2.0, abs=0.01)
    assert n.mi_ci[0] <= 0 <= n.mi_ci[1] and c.mi_ci[0] > 1.5
    assert n.entropy == pytest.approx(np.log2(7), abs=0.02)
    assert n.firing_rate == pytest.approx(6 / 7, abs=0.03)
    assert neurons["coded"].mi.shape == (3,)
    json_ = c.to_json()
    assert json_["layer"] == "coded" and isinstance(json_["mi_ci"], list)


def test_named_text_and_missing_file():
    from nsllm.analysis.analyze import load_text
    from nsllm.data.corpus import pydoc_corpus

    assert load_text("pydoc-heldout") == pydoc_corpus()[1]
    with pytest.raises(FileNotFoundError, match="pydoc-heldout"):
        load_text("/nonexistent/text.txt")
