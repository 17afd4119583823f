"""Calibration, shared statistics, sensitivity, allocation flow and sparsification on a small
random model (d = 32, two blocks) and a short text."""

import json

import numpy as np
import pytest

from nsllm.model import FloatModel, IntegerModel, ModelConfig, Trace, random_weights, save_model
from nsllm.model.stats import (
    bits_per_byte,
    evaluate,
    firing_rates,
    kl_divergence,
    log_softmax,
    reference_logprobs,
    unigram_bits_per_byte,
)
from nsllm.quant.calibrate import _Reservoir, calibrate, mse_optimal_theta, quantization_mse
from nsllm.quant.probe import QuantProbe, layer_weights
from nsllm.quant.quantize import calibration_thetas, quantize_model, sparsify_model
from nsllm.quant.sensitivity import SensitivityReport, hierarchy, measure_sensitivity
from nsllm.quant.sparsify import SparsitySweep, choose_deltas

TEXT = ("Return the value of the named attribute of object. The name must be a string. "
        "If the string is the name of one of the object's attributes, the result is the value "
        "of that attribute. ") * 2


@pytest.fixture(scope="module")
def small():
    cfg = ModelConfig(name="small", hidden_size=32, num_layers=2, intermediate_size=64)
    return random_weights(cfg, seed=3)


@pytest.fixture(scope="module")
def tokens():
    return np.frombuffer(TEXT.encode(), dtype=np.uint8).astype(np.int64)


# -- stats --------------------------------------------------------------------------------------
def test_uniform_logits_cost_eight_bits_per_byte():
    lp = log_softmax(np.zeros((5, 256)))
    assert np.allclose(np.exp(lp).sum(-1), 1)
    assert kl_divergence(lp, lp) == 0


def test_segmented_evaluation_equals_one_prefill(small, tokens):
    m = IntegerModel(small)
    whole = evaluate(m, tokens, segment=10_000)
    pieces = evaluate(m, tokens, segment=37)
    assert pieces.bits_per_byte == pytest.approx(whole.bits_per_byte, rel=1e-12)
    assert pieces.firing == whole.firing
    assert bits_per_byte(m, tokens) == pytest.approx(whole.bits_per_byte)


def test_firing_rates_from_a_trace_match_the_streaming_counter(small, tokens):
    m = IntegerModel(small)
    trace = Trace()
    m.prefill(tokens[:-1], trace=trace)
    rates = firing_rates(trace)
    assert set(rates) == set(small.config.ternary_layers())
    assert rates == pytest.approx(evaluate(m, tokens).firing)
    assert firing_rates(m, tokens[:-1], segment=50) == pytest.approx(rates)
    assert all(0 < r <= 1 for r in rates.values())


def test_kl_against_itself_is_zero_and_positive_for_another_model(small, tokens):
    ref = reference_logprobs(FloatModel(small), tokens, 64)
    assert evaluate(FloatModel(small), tokens, reference=ref, segment=64).kl == pytest.approx(0)
    assert evaluate(IntegerModel(small), tokens, reference=ref, segment=64).kl > 0


def test_unigram_baseline():
    train = np.array([0, 0, 0, 1])
    # test predictions are tokens 1: [0, 0]; p(0) = (3+1)/(4+256)
    got = unigram_bits_per_byte(train, np.array([5, 0, 0]), 256)
    assert got == pytest.approx(-np.log2(4 / 260))


# -- calibration --------------------------------------------------------------------------------
def test_mse_optimal_theta_beats_neighbours():
    x = np.random.default_rng(0).standard_normal(20_000)
    for D in (1, 3, 7, 15):
        th = mse_optimal_theta(x, D)
        grid = th * np.array([0.8, 0.9, 1.0, 1.1, 1.25])
        mse = quantization_mse(x, grid, D)
        assert np.argmin(mse) == 2
    # more timesteps → finer steps
    assert mse_optimal_theta(x, 15) < mse_optimal_theta(x, 7) < mse_optimal_theta(x, 1)


def test_theta_table_uses_each_layers_delta_and_keeps_a_better_trained_theta():
    from nsllm.quant.calibrate import theta_table

    x = np.random.default_rng(1).standard_normal(20_000)
    th15 = mse_optimal_theta(x, 15)
    t = theta_table({"a": x}, (3, 15), keep={"a": th15})
    assert t["a"][15] == th15  # the trained θ is the optimum here: kept
    assert t["a"][3] == mse_optimal_theta(x, 3) != th15  # a worse trained θ is replaced
    shifted = theta_table({"a": x}, (3,), deltas={"a": 1.0})["a"][3]
    assert shifted == mse_optimal_theta(x, 3, 1.0) and shifted != mse_optimal_theta(x, 3)


def test_reservoir_is_bounded_and_uniform():
    r = _Reservoir(1000, np.random.default_rng(0))
    for k in range(100):
        r.add(np.full(500, k, dtype=np.float32))
    assert len(r.values) == 1000 and r.seen == 50_000
    assert 35 < r.values.mean() < 64  # uniform over 0..99 would be 49.5


def test_calibrate_sets_a_theta_per_layer(small, tokens):
    w = calibrate(small, tokens)
    q = w.config.quant
    # i, f and g read the same input (and here the same unit norm weights): the same θ
    assert q["layers.0.attn.i_proj"].theta == q["layers.0.attn.f_proj"].theta
    distinct = {q[n].theta for n in w.config.ternary_layers()
                if not n.endswith(("f_proj", "g_proj"))}
    assert len(distinct) == len(w.config.ternary_layers()) - 2 * w.config.num_layers
    assert small.config.quant["lm_head"].theta != w.config.quant["lm_head"].theta  # copy, not edit


# -- sensitivity and allocation -------------------------------------------------------------------
@pytest.fixture(scope="module")
def report(small, tokens):
    probe = QuantProbe(small, tokens)
    thetas = calibration_thetas(small, tokens)
    return measure_sensitivity(probe, thetas)


def test_hierarchy_covers_every_layer_once(small):
    tree = hierarchy(2)
    layers = [p for subs in tree.values() for ps in subs.values() for p in ps]
    assert sorted(layers) == sorted(small.config.ternary_layers())


def test_combined_sensitivity_sums_to_the_measured_block(report):
    for block, subs in hierarchy(2).items():
        projs = [p for ps in subs.values() for p in ps]
        for D in (1, 3, 7):
            total = sum(report.combined[p][D]["kl"] for p in projs)
            assert total == pytest.approx(report.measured["block"][block][D]["kl"], rel=1e-9)


def test_fewer_timesteps_hurt_more(report):
    for unit, per_d in report.measured["block"].items():
        assert per_d[1]["kl"] > per_d[7]["kl"] >= 0, unit
        assert per_d[15]["kl"] == 0


def test_report_round_trips_through_json(report, tmp_path):
    report.save(tmp_path / "s.json")
    back = SensitivityReport.load(tmp_path / "s.json")
    assert back.cost_table() == report.cost_table()
    json.loads((tmp_path / "s.json").read_text())


def test_sensitivity_plot(report, tmp_path):
    from nsllm.quant.sensitivity import plot_sensitivity

    plot_sensitivity(report, tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_quantize_meets_the_budget_and_beats_uniform_prediction(small, tokens, report):
    out, alloc, _ = quantize_model(small, tokens, 3.0, sensitivity=report)
    sizes = layer_weights(small)
    avg = sum(sizes[n] * out.config.quant[n].D for n in sizes) / sum(sizes.values())
    assert avg <= 3.0
    uniform = sum(report.cost_table()[n][3] for n in sizes)
    assert alloc.sensitivity <= uniform + 1e-12
    assert out.config.quant["lm_head"].theta == report.thetas["lm_head"][out.config.quant[
        "lm_head"].D]


# -- sparsification -----------------------------------------------------------------------------
def test_choose_deltas_is_optimal_on_a_synthetic_sweep():
    sw = SparsitySweep([0.0, 0.5, 1.0], 2.0, {})
    sw.per_layer = {
        "a": {0.0: {"firing": 0.8, "kl": 0.0}, 0.5: {"firing": 0.5, "kl": 0.01},
              1.0: {"firing": 0.3, "kl": 0.10}},
        "b": {0.0: {"firing": 0.8, "kl": 0.0}, 0.5: {"firing": 0.6, "kl": 0.05},
              1.0: {"firing": 0.4, "kl": 0.06}},
    }
    sizes = {"a": 1, "b": 1}
    assert choose_deltas(sw, sizes, 0.0).delta == {"a": 0.0, "b": 0.0}
    assert choose_deltas(sw, sizes, 0.011).delta == {"a": 0.5, "b": 0.0}
    assert choose_deltas(sw, sizes, 0.08).delta == {"a": 0.5, "b": 1.0}
    c = choose_deltas(sw, sizes, 1.0)
    assert c.delta == {"a": 1.0, "b": 1.0} and c.predicted_firing == pytest.approx(0.35)


def test_sparsify_lowers_the_firing_rate(small, tokens):
    out, choice, sw = sparsify_model(small, tokens, kl_budget=0.05, deltas=(0.0, 0.5, 1.0))
    rates = [r["weighted_firing"] for r in sw.global_curve]
    assert rates[0] > rates[1] > rates[2]
    assert choice.predicted_kl <= 0.05
    before = evaluate(IntegerModel(small), tokens).firing
    after = evaluate(IntegerModel(out), tokens).firing
    sizes = layer_weights(small)
    w_before = sum(before[n] * sizes[n] for n in sizes)
    w_after = sum(after[n] * sizes[n] for n in sizes)
    assert w_after < w_before


# -- commands -----------------------------------------------------------------------------------
def test_eval_quantize_sparsify_commands(small, tmp_path, capsys):
    from nsllm.cli import main

    model = save_model(small, tmp_path / "m.nsllm")
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    assert main(["eval", str(model), "--text", str(text), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["firing_rate"]) == set(small.config.ternary_layers())
    assert res["size_bytes"]["2bit"] > res["size_bytes"]["base3"]
    assert 0 < res["bits_per_byte"] < 20
    out = tmp_path / "q.nsllm"
    assert main(["quantize", str(model), "--budget", "5", "--calib", str(text), "--out", str(out),
                 "--report", str(tmp_path / "s.json"), "--plot", str(tmp_path / "s.png"),
                 "--kl-budget", "0.02"]) == 0
    assert (tmp_path / "s.png").is_file()
    assert main(["eval", str(out), "--text", str(text), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert res["average_timesteps"] <= 5
    assert main(["sparsify", str(model), "--calib", str(text), "--kl-budget", "0.01",
                 "--deltas", "0,1", "--plot", str(tmp_path / "sp.png")]) == 0
    assert main(["eval", str(model), "--text", str(tmp_path / "missing.txt")]) == 2
