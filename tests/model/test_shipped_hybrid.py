"""The shipped hybrid model (MLGRU + SLA): what it is, selectable by name, and its integer golden
model against its float spiking twin on held-out text."""

import json

import numpy as np
import pytest

from nsllm.data.corpus import pydoc_corpus
from nsllm.model import (
    HYBRID_MODEL,
    FloatModel,
    IntegerModel,
    load_model,
    resolve_model_path,
)
from nsllm.model.stats import evaluate


@pytest.fixture(scope="module")
def hybrid():
    return load_model(resolve_model_path("hybrid"))


def test_hybrid_is_selectable_by_name(tmp_path, monkeypatch):
    assert resolve_model_path("hybrid") == HYBRID_MODEL == resolve_model_path("nsllm-hybrid")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hybrid").mkdir()  # a folder of that name wins over the shipped model
    with pytest.raises(Exception, match="expected one .nsllm file in the folder, found 0"):
        resolve_model_path("hybrid")


def test_hybrid_shape_is_the_default_size_class(hybrid):
    cfg = hybrid.config
    assert cfg.name == "nsllm-hybrid" and cfg.tokenizer == "byte" and cfg.vocab_size == 256
    assert (cfg.hidden_size, cfg.num_layers) == (192, 4)
    assert cfg.mixers() == ["mlgru", "sla", "mlgru", "sla"]
    assert cfg.sla_params(1).heads == 3 and cfg.sla_params(1).decay_shifts == [9, 6, 2]


def test_integer_model_equals_its_float_twin_on_heldout_text(hybrid):
    """As for the MLGRU model: the same bits/byte and nearly the same predictions."""
    _, held = pydoc_corpus()
    tokens = np.frombuffer(held.encode(), np.uint8).astype(np.int64)[:3000]
    si = evaluate(IntegerModel(hybrid), tokens, spikes=False)
    sf = evaluate(FloatModel(hybrid), tokens, spikes=False)
    assert si.bits_per_byte < 2.5  # a trained model, not noise (unigram: 4.7)
    assert abs(si.bits_per_byte - sf.bits_per_byte) < 0.01, (si.bits_per_byte, sf.bits_per_byte)


def test_cli_runs_the_hybrid_by_name(capsys):
    from nsllm.cli import main

    assert main(["generate", "--model", "hybrid", "-p", "The ", "-n", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "nsllm-hybrid" and len(out["tokens"]) == 8
    assert main(["info", "hybrid"]) == 0
    text = capsys.readouterr().out
    assert "mlgru/sla/mlgru/sla" in text and "layers.1.attn: SLA, 3 heads × 64" in text
