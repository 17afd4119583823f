"""Sparsity-aware QAT: firing-rate target, learned δ, starting from a saved model, the pipeline."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the optional PyTorch extra (train)")

from nsllm.model import FloatModel, ModelConfig, random_weights, save_model  # noqa: E402
from nsllm.model.stats import log_softmax  # noqa: E402
from nsllm.quant.train import (  # noqa: E402
    Progress,
    TrainSettings,
    build_model,
    delta_at,
    export_weights,
    train,
)

TINY = dict(hidden_size=32, num_layers=1, batch=4, seq_len=64, warmup=2, eval_every=20,
            lr=3e-3)


def test_firing_target_lowers_the_firing_rate_and_learns_delta():
    plain, rep_plain = train(TrainSettings(steps=20, **TINY), log=lambda m: None)
    sparse, rep_sparse = train(TrainSettings(steps=20, firing_target=0.3, sparsity_weight=20.0,
                                             delta_mode="learn", delta_lr=0.05, **TINY),
                               log=lambda m: None)
    before = rep_plain["history"][-1]["heldout_firing_torch"]
    after = rep_sparse["history"][-1]["heldout_firing_torch"]
    assert after < before - 0.15, (before, after)
    deltas = [q.delta for q in sparse.config.quant.values()]
    assert min(deltas) > 0.1 and all(q.delta == 0 for q in plain.config.quant.values())


def test_training_from_a_saved_model_keeps_its_trits_scales_and_thresholds(tmp_path):
    cfg = ModelConfig(name="s", hidden_size=32, num_layers=2, intermediate_size=64)
    w = random_weights(cfg, seed=5)
    for k, q in enumerate(w.config.quant.values()):
        q.theta, q.delta, q.D = 0.2 + 0.01 * k, 0.1 * (k % 3), (7, 15)[k % 2]
    path = save_model(w, tmp_path / "m.nsllm")
    m = build_model(TrainSettings(init=str(path), delta_mode="learn"))
    back = export_weights(m, name="s")
    for n in cfg.ternary_layers():
        a, b = back.config.quant[n], w.config.quant[n]
        assert np.array_equal(back.linears[n].trits, w.linears[n].trits), n
        assert (a.D, a.delta) == (b.D, pytest.approx(b.delta)) and a.theta == pytest.approx(
            b.theta, rel=1e-6) and a.weight_scale == pytest.approx(b.weight_scale, rel=1e-5)
    # the module computes what the saved model computes (float reference, same spikes)
    tokens = np.frombuffer(b"Return the value of x.", np.uint8).astype(int)
    with torch.no_grad():
        m.eval()
        want = torch.log_softmax(m(torch.from_numpy(tokens)[None]), -1)[0].double().numpy()
    got = log_softmax(FloatModel(w).prefill(tokens)[0][0])
    assert np.mean(np.abs(got - want)) < 2e-3


def test_delta_schedule_and_settings_validation():
    s = TrainSettings(delta=1.0, delta_mode="schedule", delta_ramp=100)
    assert [delta_at(s, k) for k in (0, 50, 100, 400)] == [0.0, 0.5, 1.0, 1.0]
    for bad in (dict(firing_target=1.5), dict(delta_mode="sometimes"), dict(steps=0),
                dict(delta=-1.0), dict(lr=0.0)):
        with pytest.raises(ValueError):
            TrainSettings(**bad).validate()


def test_progress_line_shows_firing_and_heldout_bits_per_byte():
    lines = []
    p = Progress(100, log=lines.append, every=50)
    p.update(1, 1.0, 0.8)
    p.held_out(50, 1.6, 0.4)
    p.update(50, 0.9, 0.41)
    assert len(lines) == 2 and "firing 0.410" in lines[1] and "held-out bpb 1.6000" in lines[1]


def test_train_command_rejects_bad_options(capsys, tmp_path):
    from nsllm.cli import main

    out = str(tmp_path / "m.nsllm")
    with pytest.raises(SystemExit) as e:  # refused by the option parser
        main(["train", "--out", out, "--firing-target", "2"])
    assert e.value.code == 2 and "firing rate in (0, 1], not 2" in capsys.readouterr().err
    assert main(["train", "--out", out, "--firing-target", "1"]) == 2  # refused by validate()
    assert "firing-target must be in (0, 1)" in capsys.readouterr().err
    assert main(["train", "--out", out, "--distill", str(tmp_path / "none.nsllm")]) == 2
    assert "--distill teacher" in capsys.readouterr().err
    assert main(["train", "--out", out, "--init", str(tmp_path / "none.nsllm")]) == 2
    assert "no such model file" in capsys.readouterr().err


def test_pipeline_end_to_end_writes_a_model_and_card(tmp_path, capsys):
    from nsllm.cli import main
    from nsllm.model import load_model
    from nsllm.quant.pipeline import load_card

    out = tmp_path / "p.nsllm"
    code = main(["pipeline", "--out", str(out), "--steps", "6", "--hidden-size", "32",
                 "--layers", "1", "--batch", "2", "--seq-len", "32", "--warmup", "1",
                 "--firing-target", "0.5", "--delta-mode", "learn", "--eval-every", "6",
                 "--budget", "5", "--kl-budget", "0.05", "--calib-bytes", "256",
                 "--calib-texts", "2", "--deltas", "0,0.5", "--theta", "mse"])
    assert code == 0
    card = load_card(out)
    w = load_model(out)
    assert card["budgets"] == {"average_D": 5.0, "kl": 0.05}
    res = card["heldout"]["integer (golden)"]
    assert res["average_D"] <= 5.0 and 0 < res["weighted_firing_rate"] < 1
    for n, layer in card["layers"].items():  # the card describes the saved model
        q = w.config.quant[n]
        assert layer["D"] == q.D and layer["delta"] == pytest.approx(q.delta, abs=1e-4)
        assert layer["firing_rate"] == res["firing_rate"][n]
    assert set(card["pipeline"]["stages"]) == {"trained", "allocated", "sparsified"}
    assert abs(card["heldout"]["float, same spikes"]["bits_per_byte"] - res["bits_per_byte"]) < 0.1
    assert (tmp_path / "p.trained.nsllm").is_file() and (tmp_path / "p.sensitivity.json").is_file()
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "budgets: average D ≤ 5" in text and "firing" in text
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["card"]["budgets"]["kl"] == 0.05
    assert info["layers"]["lm_head"]["firing_rate"] == res["firing_rate"]["lm_head"]


def test_pipeline_keeps_the_trained_thresholds_by_default(tmp_path):
    from nsllm.model import load_model
    from nsllm.quant.pipeline import PipelineSettings, run_pipeline

    cfg = ModelConfig(name="s", hidden_size=32, num_layers=1, intermediate_size=64)
    w = random_weights(cfg, seed=2)
    trained = save_model(w, tmp_path / "t.nsllm")
    out = tmp_path / "p.nsllm"
    card = run_pipeline(PipelineSettings(budget=3, kl_budget=0.0, calib_bytes=256,
                                         deltas=(0.0,)), out, trained=trained,
                        log=lambda m: None)
    got = load_model(out).config.quant
    assert card["pipeline"]["settings"]["theta"] == "trained"
    assert any(q.D < 15 for q in got.values())
    assert all(got[n].theta == w.config.quant[n].theta for n in got)


def test_distillation_pulls_the_student_towards_the_teacher(tmp_path):
    from nsllm.quant.train import build_teacher, distill_kl

    teacher_w = random_weights(ModelConfig(name="t", hidden_size=32, num_layers=1,
                                           intermediate_size=64), seed=3)
    teacher_path = str(save_model(teacher_w, tmp_path / "t.nsllm"))
    teacher = build_teacher(teacher_path, 256)
    tokens = torch.from_numpy(np.frombuffer(b"Return the value of x. " * 4, np.uint8)
                              .astype(np.int64))[None]

    def kl_to_teacher(w):
        m = build_model(TrainSettings(init=str(save_model(w, tmp_path / "s.nsllm"))))
        m.eval()
        with torch.no_grad():
            return float(distill_kl(m(tokens), teacher(tokens)))

    plain, _ = train(TrainSettings(steps=20, seed=1, **TINY), log=lambda m: None)
    taught, rep = train(TrainSettings(steps=20, seed=1, distill=teacher_path, distill_weight=1.0,
                                      **TINY), log=lambda m: None)
    assert rep["settings"]["distill"] == teacher_path
    assert kl_to_teacher(taught) < 0.8 * kl_to_teacher(plain)  # measured: 0.50 vs 0.77
    with pytest.raises(ValueError, match="vocabulary"):
        build_teacher(teacher_path, 1000)
    with pytest.raises(ValueError, match="distill-weight"):
        TrainSettings(distill_weight=1.5).validate()


def test_pipeline_allocate_first_trains_at_the_allocated_timesteps(tmp_path, capsys):
    from nsllm.cli import main
    from nsllm.model import load_model
    from nsllm.quant.pipeline import load_card

    start = save_model(random_weights(ModelConfig(name="s", hidden_size=32, num_layers=1,
                                                  intermediate_size=64), seed=4),
                       tmp_path / "start.nsllm")
    out = tmp_path / "p.nsllm"
    args = ["pipeline", "--out", str(out), "--init", str(start), "--steps", "4", "--batch", "2",
            "--seq-len", "32", "--warmup", "1", "--firing-target", "0.5", "--delta-mode",
            "learn", "--eval-every", "4", "--budget", "5", "--kl-budget", "0.05",
            "--calib-bytes", "256", "--deltas", "0,0.5"]
    assert main(args[:3] + ["--allocate-first", "--steps", "4"]) == 2  # no --init
    assert "needs --init" in capsys.readouterr().err
    assert main(args + ["--allocate-first"]) == 0
    card = load_card(out)
    pre = card["pipeline"]["allocate_first"]
    assert pre["average_D"] <= 5 and min(pre["D"].values()) < 15
    trained = load_model(tmp_path / "p.trained.nsllm").config.quant
    final = load_model(out).config.quant
    # training ran at the allocated D, and the allocation stage kept it
    assert {n: q.D for n, q in trained.items()} == pre["D"] == {n: q.D for n, q in final.items()}
    assert card["pipeline"]["allocation"]["kept_trained_D"] is True
    assert set(card["pipeline"]["stages"]) == {"start", "trained", "allocated", "sparsified"}
    assert (tmp_path / "p.init-sensitivity.json").is_file()
    assert not (tmp_path / "p.sensitivity.json").exists()
    # the saved report of the starting model is reused instead of measured again
    out2 = tmp_path / "q.nsllm"
    args2 = [a if a != str(out) else str(out2) for a in args]
    assert main(args2 + ["--allocate-first", "--init-sensitivity",
                         str(tmp_path / "p.init-sensitivity.json")]) == 0
    assert load_card(out2)["pipeline"]["allocate_first"]["D"] == pre["D"]
    assert not (tmp_path / "q.init-sensitivity.json").exists()
