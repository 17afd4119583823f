"""The command line, run in-process through ``nsllm.cli.main``."""

import json

import pytest

from nsllm.cli import main
from nsllm.model import save_model


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_json_golden(capsys):
    code, out, _ = run(capsys, "generate", "--prompt", "The ", "-n", "12", "--json")
    assert code == 0
    res = json.loads(out)
    assert {"tokens", "text", "backend", "seconds", "tokens_per_s"} <= res.keys()
    assert res["backend"] == "golden" and len(res["tokens"]) == 12
    assert res["tokens_per_s"] > 0


def test_generate_is_deterministic_and_seeded(capsys):
    greedy = [json.loads(run(capsys, "generate", "-p", "ab", "-n", "8", "--json")[1])["tokens"]
              for _ in range(2)]
    assert greedy[0] == greedy[1]
    args = ["generate", "-p", "ab", "-n", "16", "--json", "--temperature", "1.5"]
    s1 = json.loads(run(capsys, *args, "--seed", "1")[1])["tokens"]
    s1b = json.loads(run(capsys, *args, "--seed", "1")[1])["tokens"]
    s2 = json.loads(run(capsys, *args, "--seed", "2")[1])["tokens"]
    assert s1 == s1b and s1 != s2


def test_generate_float_backend_and_streaming_text(capsys, tiny_weights, tmp_path):
    path = save_model(tiny_weights, tmp_path / "m.nsllm")
    code, out, err = run(capsys, "generate", "--backend", "float", "-m", str(path), "-p", "x",
                         "-n", "4")
    assert code == 0 and out.startswith("x") and "[float] 4 tokens" in err


def test_info(capsys):
    code, out, _ = run(capsys, "info", "--json")
    info = json.loads(out)
    assert code == 0 and info["vocab_size"] == 256 and info["packing"] in ("2bit", "base3")
    assert info["ternary_bytes"]["base3"] < info["ternary_bytes"]["2bit"]
    code, out, _ = run(capsys, "info")
    assert "lm_head" in out


@pytest.mark.parametrize("argv, message", [
    (["generate", "-m", "/nonexistent/x.nsllm", "-p", "a"], "no such model file"),
    (["generate", "-p", ""], "the prompt is empty"),
    (["info", "/nonexistent"], "no such model file"),
])
def test_errors_are_clear(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.startswith("nsllm: error:") and message in err


def test_demo_runs_on_the_simulated_core(capsys):
    code, out, _ = run(capsys, "demo", "-n", "4")
    assert code == 0, out
    assert "4 tokens, every one equal to the golden model's" in out
    assert "firing rate" in out and "without a weight beat" in out
    ports = next(line for line in out.splitlines() if line.startswith("ports"))
    assert ports.count(" / ") == 2  # three weight ports, one byte count each


def test_generate_on_the_simulated_core_reports_hardware_counters(capsys):
    code, out, _ = run(capsys, "generate", "--backend", "sim", "-p", "The ", "-n", "3", "--json")
    assert code == 0
    res = json.loads(out)
    golden = json.loads(run(capsys, "generate", "-p", "The ", "-n", "3", "--json")[1])
    assert res["backend"] == "sim" and res["tokens"] == golden["tokens"]
    for key in ("cycles", "cycles_per_token", "bytes_fetched_per_token", "firing_rate"):
        assert res[key] > 0, key
    assert res["bytes_fetched_per_token"] > res["weight_bytes_per_token"] > 0
    assert res["weight_ports"] == 1 and res["packing"] == "2bit"
    assert res["weight_bytes_per_port"] == [res["weight_bytes_per_token"]]
