"""``nsllm estimate`` and ``nsllm bench`` on the command line: the acceptance case's JSON, the
text table, clear errors; ``bench`` on the golden backend and on a device with a fake power
source."""

import json

import pytest

from nsllm.cli import main

ESTIMATE = ["estimate", "--preset", "nsllm-1.5b", "--board", "vck190", "--json",
            "--measure-tokens", "256"]


def run(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's errors
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def acceptance():
    """``nsllm estimate --preset nsllm-1.5b --board vck190 --json`` (base3, the board's three
    ports, the firing rate measured on the shipped model), with XPE's default activity so the
    default tier needs no coverage build."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        assert main(ESTIMATE + ["--activity", "xpe"]) == 0
    return json.loads(buf.getvalue())


def test_estimate_json_has_the_issues_fields(acceptance):
    d = acceptance
    for key in ("tokens_per_s", "roofline_tokens_per_s", "firing_rate", "watts",
                "tokens_per_joule", "assumptions", "cycles_breakdown", "bytes_per_token",
                "power_breakdown", "resources", "published", "limits"):
        assert key in d, key
    assert d["estimate"] is True
    assert d["packing"] == "base3" and d["weight_ports"] == 3
    assert set(d["watts"]) >= {"low", "typical", "high"}
    assert d["watts"]["low"] < d["watts"]["typical"] < d["watts"]["high"]
    tpj = d["tokens_per_joule"]
    assert tpj["low"] < tpj["typical"] < tpj["high"]
    assert tpj["typical"] == pytest.approx(d["tokens_per_s"] / d["watts"]["typical"], rel=1e-3)
    assert "golden model" in d["firing"]["source"] and "default.nsllm" in d["firing"]["source"]
    assert 0 < d["firing_rate"] <= 1
    assert 0 < d["tokens_per_s"] <= d["roofline_tokens_per_s"]
    assert d["roofline_fraction"] == pytest.approx(
        d["tokens_per_s"] / d["roofline_tokens_per_s"], rel=1e-3)
    b = d["bytes_per_token"]
    assert b["weights_sparse"] < b["weights_dense"]
    # every assumption and coefficient carries a source
    for name, a in d["assumptions"].items():
        if name == "power_coefficients":
            assert all(c["source"] for c in a.values())
        elif isinstance(a, dict) and "source" in a:
            assert a["source"], name
    assert any(p["system"].startswith("NSLLM") and p["tokens_per_s"] == 161.8
               for p in d["published"])


def test_estimate_reads_the_rate_of_the_model_it_is_given(capsys, tmp_path):
    code, out, _ = run(capsys, ["estimate", "--model", "nsllm/data/default.nsllm", "--board",
                                "vck190", "--json", "--activity", "xpe", "--measure-tokens",
                                "128", "--weight-ports", "1", "--packing", "2bit"])
    assert code == 0
    d = json.loads(out)
    assert d["model"] == "nsllm-default" and d["weight_ports"] == 1 and d["packing"] == "2bit"
    given = json.loads(run(capsys, ["estimate", "--model", "nsllm/data/default.nsllm",
                                    "--board", "vck190", "--json", "--activity", "xpe",
                                    "--firing-rate", "0.2", "--weight-ports", "1",
                                    "--packing", "2bit"])[1])
    assert given["firing"]["source"].startswith("given")
    assert given["tokens_per_s"] > d["tokens_per_s"]  # the shipped model fires far more


def test_estimate_text_says_estimate_and_lists_published_figures(capsys):
    code, out, _ = run(capsys, ["estimate", "--preset", "mmfree-370m", "--board", "vck190",
                                "--firing-rate", "0.5", "--activity", "xpe"])
    assert code == 0
    assert out.startswith("ESTIMATE (not a measurement)")
    assert "NSLLM (1.5B, VCK190)" in out and "roofline" in out and "assumptions:" in out


def test_estimate_plot(capsys, tmp_path):
    png = tmp_path / "p.png"
    code, _, _ = run(capsys, ["estimate", "--preset", "tiny", "--board", "vck190",
                              "--firing-rate", "0.5", "--activity", "xpe", "--plot", str(png)])
    assert code == 0 and png.stat().st_size > 10_000


@pytest.mark.parametrize("argv, message", [
    (["estimate", "--preset", "nope", "--board", "vck190"], "invalid choice"),
    (["estimate", "--preset", "tiny", "--board", "vck190", "--firing-rate", "1.5"],
     "firing rate"),
    (["estimate", "--preset", "tiny"], "--board"),
    (["estimate", "--board", "vck190"], "--preset"),
    (["estimate", "--preset", "tiny", "--board", "vck190", "--measure-on", "/no/such.txt",
      "--activity", "xpe"], "no text file"),
    (["bench", "--backend", "sim", "--power-source", "nowhere-xyz"], "power source"),
    (["bench", "--backend", "xrt"], "xrt"),
])
def test_clear_errors(capsys, argv, message):
    code, _, err = run(capsys, argv)
    assert code == 2
    assert "nsllm: error:" in err and message in err, err


def test_bench_golden_json(capsys):
    code, out, _ = run(capsys, ["bench", "--backend", "golden", "--tokens", "3", "--json",
                                "--weight-ports", "3", "--packing", "base3"])
    assert code == 0
    d = json.loads(out)
    assert d["backend"] == "golden" and d["tokens"] == 3
    assert d["cycles_per_token"] is None and d["model_error"] is None  # nothing measured
    assert d["predicted_cycles_per_token"] > 0 and 0 < d["firing_rate"] < 1


def test_bench_on_a_device_with_a_fake_power_source(tmp_path):
    """The xrt path's logic: any Device (here the NumPy ModelDevice) through CoreRunner, board
    power sampled from a fake hwmon tree while the tokens run, idle subtracted."""
    import threading

    from nsllm.hdl.core import CoreParams
    from nsllm.host.device import ModelDevice
    from nsllm.host.image import build_image
    from nsllm.host.runtime import CoreBackend, CoreRunner
    from nsllm.model import load_model, resolve_model_path
    from nsllm.model.tokenizer import ByteTokenizer
    from nsllm.perf.bench import BenchConfig, run_bench
    from nsllm.perf.powersource import HwmonSource

    w = load_model(resolve_model_path(None))
    params = CoreParams.for_model(w.config)
    image = build_image(w, port_bytes=params.port_bytes)
    device = ModelDevice(params.build_limits(), mem_bytes=image.total_bytes + (1 << 16))
    hw = tmp_path / "hwmon1"
    hw.mkdir()
    power = hw / "power1_input"
    power.write_text("5000000\n")
    original = device.start

    def start():  # the "board" draws 3 W more while a token runs
        power.write_text("8000000\n")
        threading.Timer(0.05, lambda: power.write_text("5000000\n")).start()
        original()

    device.start = start
    backend = CoreBackend(CoreRunner(device, image), name="xrt")
    cfg = BenchConfig(backend="xrt", tokens=3)
    out = run_bench(cfg, w, ByteTokenizer(), backend=backend, params=params,
                    power_source=HwmonSource(hw), idle_seconds=0.1, power_interval=0.01)
    p = out["power"]
    assert p["idle_w"] == pytest.approx(5.0)
    assert 5.0 < p["running_w"] <= 8.0 and p["dynamic_w"] > 0
    assert p["running_samples"] >= 2 and p["idle_samples"] >= 2
    assert out["cycles_per_token"] > 0 and out["predicted_cycles_per_token"] > 0
