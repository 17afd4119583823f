"""``nsllm analyze`` end to end on a small model (report files, JSON content, cross-check)."""

import argparse
import json

import numpy as np
import pytest

from nsllm.analysis.commands import register
from nsllm.analysis.recording import record
from nsllm.analysis.study import load_passages


def run(*argv) -> int:
    parser = argparse.ArgumentParser(prog="nsllm")
    register(parser.add_subparsers())
    args = parser.parse_args(["analyze", *argv])
    return args.func(args)


def test_analyze_text_and_study_write_the_report(tiny_file, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("The parser reads a line. It returns 3 tokens.\n" * 4)
    study = tmp_path / "study.json"
    pairs = [{"id": f"p{i}", "kind": "lexical", "topic": "t", "note": "n",
              "clear": f"The river shore was steep and wet {i}.",
              "ambiguous": f"The bank was steep, and the bank was wet {i}."} for i in range(2)]
    study.write_text(json.dumps({"pairs": pairs}))
    out = tmp_path / "rep"
    code = run("--model", str(tiny_file), "--text", str(text), "--study", str(study),
               "--out", str(out), "--shuffles", "3", "--bootstraps", "6",
               "--trains", "lm_head")
    assert code == 0
    for f in ("index.html", "analysis.json", "recording.npz", "neurons.npz", "spike_trains.npz",
              "plots/raster.png", "plots/firing_rate.png", "plots/entropy_mi.png",
              "plots/mi_vs_entropy.png", "plots/study.png",
              "study_recordings/p0.clear.npz"):
        assert (out / f).is_file(), f
    res = json.loads((out / "analysis.json").read_text())
    layers = res["text"]["layers"]
    assert len(layers) == 4 * 6 + 1 and layers[-1]["layer"] == "lm_head"
    for lm in layers:
        assert 0 <= lm["firing_rate"] <= 1 and lm["entropy"] <= lm["entropy_max"] + 0.5
        assert lm["mi_ci"][0] <= lm["mi"] <= lm["mi_ci"][1]
    assert res["text"]["tokens"] == len(text.read_text())
    assert set(res["study"]["tests"]) >= {"mi", "entropy", "firing_rate", "input_entropy"}
    assert res["study"]["tests"]["mi"]["all_layers"]["n"] == 2
    assert all(p["clear_tokens"] == p["ambiguous_tokens"] for p in res["study"]["pairs"])
    html = (out / "index.html").read_text()
    assert "plots/study.png" in html and "plots/raster.png" in html
    out_text = capsys.readouterr()
    assert "[text] Firing rate" in out_text.out and "[study passages]" in out_text.err


def test_compare_cross_checks_a_recording(tiny_file, tiny_weights, tmp_path, capsys):
    rec = record(tiny_weights, np.frombuffer(b"abcdefghijklmnop", dtype=np.uint8))
    rec.save(tmp_path / "good.npz")
    assert run("--model", str(tiny_file), "--compare", str(tmp_path / "good.npz")) == 0
    rec.counts["layers.1.mlp.down_proj"][3, 2] = 0 if rec["layers.1.mlp.down_proj"][3, 2] else 1
    rec.save(tmp_path / "bad.npz")
    assert run("--model", str(tiny_file), "--compare", str(tmp_path / "bad.npz")) == 1
    assert "layers.1.mlp.down_proj, token 3, neuron 2" in capsys.readouterr().out


def test_analyze_needs_something_to_do(tiny_file):
    with pytest.raises(ValueError, match="--text"):
        run("--model", str(tiny_file), "--out", "x")


def test_shipped_study_passages_are_matched():
    pairs = load_passages("clear-vs-ambiguous")
    assert len(pairs) >= 10 and len({p.id for p in pairs}) == len(pairs)
    for p in pairs:
        a, c = len(p.ambiguous.encode()), len(p.clear.encode())
        assert abs(a - c) <= 0.2 * min(a, c), p.id  # lengths matched within 20 %
        assert p.kind in ("lexical", "syntactic", "referential") and p.note
    kinds = {p.kind for p in pairs}
    assert kinds == {"lexical", "syntactic", "referential"}
    assert np.mean([len(p.ambiguous) for p in pairs]) > 200
