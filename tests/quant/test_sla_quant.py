"""The quantization tools on a hybrid (MLGRU + SLA) model: calibration, sensitivity with q, k, v,
g and o as projection-level units, allocation and sparsification."""

import numpy as np
import pytest

from nsllm.model import IntegerModel, ModelConfig, random_weights
from nsllm.model.stats import evaluate
from nsllm.quant.calibrate import calibrate
from nsllm.quant.probe import QuantProbe, layer_weights
from nsllm.quant.quantize import calibration_thetas, quantize_model, sparsify_model
from nsllm.quant.sensitivity import hierarchy, measure_sensitivity

TEXT = ("Return the value of the named attribute of object. The name must be a string. "
        "If the string is the name of one of the object's attributes, the result is the value "
        "of that attribute. ") * 2
SLA = [f"layers.1.attn.{p}_proj" for p in "qkvgo"]


@pytest.fixture(scope="module")
def small():
    cfg = ModelConfig(name="small-hybrid", hidden_size=32, num_layers=2, intermediate_size=64,
                      token_mixer=["mlgru", "sla"])
    return random_weights(cfg, seed=3)


@pytest.fixture(scope="module")
def tokens():
    return np.frombuffer(TEXT.encode(), dtype=np.uint8).astype(np.int64)


@pytest.fixture(scope="module")
def report(small, tokens):
    thetas = calibration_thetas(small, tokens, (3, 15))
    return measure_sensitivity(QuantProbe(small, tokens), thetas, (3, 15))


def test_hierarchy_has_the_sla_projections(small):
    tree = hierarchy(2, small.config.mixers())
    assert tree["layers.1"]["layers.1.attn"] == SLA
    layers = [p for subs in tree.values() for ps in subs.values() for p in ps]
    assert sorted(layers) == sorted(small.config.ternary_layers())


def test_sensitivity_measures_every_sla_projection(report):
    for name in SLA:
        assert report.measured["projection"][name][3]["kl"] > 0, name
        assert name in report.combined
    block = report.measured["block"]["layers.1"][3]["kl"]
    tree = hierarchy(2, ["mlgru", "sla"])
    projs = [p for ps in tree["layers.1"].values() for p in ps]
    assert sum(report.combined[p][3]["kl"] for p in projs) == pytest.approx(block, rel=1e-9)


def test_calibration_and_allocation_cover_sla_layers(small, tokens, report):
    w = calibrate(small, tokens)
    assert all(w.config.quant[n].theta != small.config.quant[n].theta for n in SLA)
    out, alloc, _ = quantize_model(small, tokens, 7.0, sensitivity=report)
    assert set(SLA) <= set(alloc.D) and alloc.average_timesteps <= 7.0
    assert {out.config.quant[n].D for n in SLA} <= {3, 15}


def test_sparsify_sweeps_sla_projections(small, tokens):
    out, choice, sw = sparsify_model(small, tokens, kl_budget=0.05, deltas=(0.0, 1.0))
    for name in SLA:
        curve = sw.per_layer[name]
        assert curve[1.0]["firing"] < curve[0.0]["firing"], name
    before = evaluate(IntegerModel(small), tokens).firing
    after = evaluate(IntegerModel(out), tokens).firing
    sizes = layer_weights(small)
    assert sum(after[n] * sizes[n] for n in sizes) <= sum(before[n] * sizes[n] for n in sizes)
