"""``nsllm build``: what the project holds, the memory plan, and the clear failures (the model
does not fit the banks or the device, a master without memory, bad options)."""

import json
import subprocess
import sys
import time
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from nsllm.boards import get_board
from nsllm.boards.build import (
    BuildError,
    _Steps,
    board_banks,
    build_project,
    plan_memory,
    shape_bytes,
)
from nsllm.hdl.core import CoreParams
from nsllm.host.image import build_image, parse_image
from nsllm.model import preset

from .conftest import PORTS

QUIET = _Steps(stream=None)
VCK190 = get_board("vck190")


def test_project_holds_every_file_and_the_image_per_bank(project, default_weights, sim_params):
    summary = json.loads((project / "build.json").read_text())
    for name in summary["files"]:
        assert (project / name).is_file(), name
    assert {"Makefile", "kernel.xml", "link.cfg", "package_kernel.tcl", "rtl/nsllm_core.v",
            "rtl/nsllm_kernel.v", "host/run.py", "host/manifest.json", "report/README.md",
            "report/report.json", "build.json"} <= set(summary["files"])
    image = build_image(default_weights, port_bytes=8, packing="2bit", weight_ports=PORTS)
    manifest = json.loads((project / "host" / "manifest.json").read_text())
    files = {b["file"]: (project / "host" / b["file"]).read_bytes() for b in manifest["buffers"]}
    assert files == image.files()  # one file per buffer, byte for byte
    parsed = parse_image(files["image.bin"], [files[f"weights{k}.bin"] for k in range(PORTS)])
    assert parsed.region_crcs[:PORTS] == tuple(zlib.crc32(r) for r in parsed.regions)
    link = (project / "link.cfg").read_text()
    for b in manifest["buffers"]:  # each buffer's bank is its master's link target
        assert f"sp=nsllm_kernel_1.{b['master']}:{b['bank']}\n" in link
    assert summary["params"]["weight_ports"] == PORTS and summary["clock_hz"] == 300_000_000
    report = (project / "report" / "README.md").read_text()
    assert "## Tools assumed" in report and "2023.2" in report
    proj = summary["projection"]  # nsllm estimate's result for this build, in the report too
    assert 0 < proj["tokens_per_s"] <= proj["roofline_tokens_per_s"]
    assert 0 < proj["firing_rate"] < 1 and "golden model" in proj["firing_source"]
    assert "## Projection (estimate, not a measurement)" in report
    assert f"**{proj['tokens_per_s']:,.1f} tokens/s**" in report


@pytest.mark.parametrize("ports, clock_mhz, expected, gbytes", [
    # 512-bit ports at 300 MHz peak at 19.2 GB/s: DDR4 25.6, LPDDR4 2 × 15.6
    (1, 300, {"m_axi_w0": "LPDDR", "m_axi_ctl": "DDR"}, 19.2),
    (2, 300, {"m_axi_w0": "LPDDR", "m_axi_w1": "DDR", "m_axi_ctl": "LPDDR"}, 38.4),
    (3, 300, {"m_axi_w0": "LPDDR", "m_axi_w1": "DDR", "m_axi_w2": "LPDDR",
              "m_axi_ctl": "DDR"}, 50.4),
    (4, 300, {"m_axi_w0": "LPDDR", "m_axi_w1": "DDR", "m_axi_w2": "LPDDR",
              "m_axi_w3": "DDR"}, 56.8),
    (3, 100, {"m_axi_w0": "LPDDR", "m_axi_w1": "DDR", "m_axi_w2": "LPDDR"}, 19.2),
])
def test_memory_plan_adds_up_the_bandwidth(ports, clock_mhz, expected, gbytes):
    masters = ["m_axi_ctl", *(f"m_axi_w{k}" for k in range(ports))]
    plan = plan_memory(VCK190, masters, 64, clock_mhz * 1e6)
    assert set(plan.assignments) == set(masters)
    assert {m: plan.assignments[m] for m in expected} == expected
    assert plan.weight_gbytes_per_s() == pytest.approx(gbytes)
    assert plan.weight_gbytes_per_s() <= sum(b.gbytes_per_s for b in plan.banks) + 1e-9


def test_memory_plan_honours_pinned_masters():
    plan = plan_memory(VCK190, ["m_axi_ctl", "m_axi_w0", "m_axi_w1"], 64, 300e6,
                       {"m_axi_w0": "DDR", "m_axi_w1": "DDR"})
    assert plan.assignments["m_axi_w0"] == plan.assignments["m_axi_w1"] == "DDR"
    assert plan.weight_gbytes_per_s() == pytest.approx(25.6)


def test_board_banks_group_the_memories_by_link_tag():
    banks = board_banks(VCK190)
    assert [(b.tag, b.memories) for b in banks] == [("DDR", ("DDR4",)),
                                                    ("LPDDR", ("LPDDR4_0", "LPDDR4_1"))]
    assert [b.capacity_bytes for b in banks] == [8 << 30, 8 << 30]


def test_shape_bytes_match_the_image(default_weights):
    image = build_image(default_weights, port_bytes=64, packing="base3", weight_ports=3)
    est_image, est_region = shape_bytes(default_weights.config, 64, "base3", 3)
    assert est_region == image.region_bytes
    assert abs(est_image - image.image_bytes) <= 4096


SMALL_BOARD_PARAMS = CoreParams(port_bytes=8, vector=8, weight_ports=1, max_vocab=256,
                                max_hidden=128, max_intermediate=512, max_layers=4)


@pytest.mark.parametrize("case, message", [
    ("tiny banks", r"^the model does not fit the vck190's memory banks: LPDDR needs 0\.\d\d GiB "
                   r"of its 0\.00 GiB.*--memory\)$"),
    ("no memory", r"^board vck190 lists no memory: no master of the kernel would have one$"),
    ("untagged memory", r"^board vck190: memory DDR4 has no link tag \('sp' in "
                        r"nsllm/boards/vck190\.json\)$"),
    ("unknown tag", r"^--memory m_axi_w0=HBM: the vck190 has no memory HBM \(its link tags: "
                    r"DDR, LPDDR\)$"),
    ("unknown master", r"^--memory names m_axi_w7, which this kernel does not have .*$"),
    ("too big for the device", r"^the kernel does not fit the xcvc1902-vsva2197-2MP-e-S: LUT "
                               r"2,000,000 > 899,840; DSP 5,000 > 1,968 \(estimate\).*$"),
    ("packing", r"^packing base3 is not decoded by this build \(2bit\)$"),
    ("clock", r"^--clock-mhz 5 is outside \[10, 1000\] MHz$"),
    ("both", r"^give a model or a preset \(one of them\)$"),
])
def test_build_failures_are_clear(case, message, tmp_path, monkeypatch):
    board, kwargs = VCK190, {"preset": "tiny", "params": SMALL_BOARD_PARAMS, "resources": False,
                             "packing": "2bit"}
    if case == "tiny banks":
        board = replace(VCK190, memories=tuple({**m, "gbytes": 1e-6} for m in VCK190.memories))
    elif case == "no memory":
        board = replace(VCK190, memories=())
    elif case == "untagged memory":
        board = replace(VCK190, memories=({"name": "DDR4", "gbytes_per_s": 25.6},))
    elif case == "unknown tag":
        kwargs["memory"] = {"m_axi_w0": "HBM"}
    elif case == "unknown master":
        kwargs["memory"] = {"m_axi_w7": "DDR"}
    elif case == "too big for the device":
        from nsllm.boards import build as build_module

        monkeypatch.setattr(build_module, "_core_resources", lambda p, say=None: (
            {"LUT": 2_000_000, "FF": 1000, "BRAM": 10, "URAM": 0, "DSP": 5000}, {}, {}))
        monkeypatch.setattr(build_module, "kernel_rtl", lambda p: {})  # not needed to fail
        kwargs["resources"] = True
    elif case == "packing":
        kwargs["params"] = replace(SMALL_BOARD_PARAMS, packings=("2bit",))
        kwargs["packing"] = "base3"
    elif case == "clock":
        kwargs["clock_mhz"] = 5
    elif case == "both":
        kwargs["weights"] = object()
    out = tmp_path / "out"
    with pytest.raises(BuildError, match=message):
        build_project(out, board=board, progress=QUIET, **kwargs)
    assert not out.exists()  # nothing written before the checks


NSLLM = str(Path(sys.executable).with_name("nsllm"))  # the installed command


def _cli(*args, env=None, timeout=900):
    return subprocess.run([NSLLM, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.mark.parametrize("argv, message", [
    (["--board", "zcu104", "--preset", "tiny"], "argument --board: invalid choice: 'zcu104'"),
    (["--preset", "tiny", "--model", "default"], "not allowed with argument"),
    (["--preset", "no-such"], "unknown preset 'no-such'"),
    (["--preset", "tiny", "--weight-ports", "5"], "must be a number of weight ports in [1, 4]"),
    (["--preset", "tiny", "--memory", "w0"], "expected PORT=TAG"),
    (["--preset", "tiny", "--memory", "w0=HBM"], "the vck190 has no memory HBM"),
    (["--model", "/no/such.nsllm"], "no such"),
])
def test_cli_build_errors(argv, message, tmp_path):
    r = _cli("build", *argv, "--out", str(tmp_path / "o"), "--skip-resources")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert message in r.stderr.lower() or message in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cli_build_nsllm_1_5b_preset(tmp_path):
    """The acceptance build: the VCK190 kernel at nsllm-1.5b maxima, in minutes (the core's
    conversion and the per-unit synthesis are cached after the first run)."""
    out = tmp_path / "vck190"
    t0 = time.perf_counter()
    r = _cli("build", "--board", "vck190", "--preset", "nsllm-1.5b", "--out", str(out),
             "--json", timeout=3600)
    seconds = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["params"] == {"port_bytes": 64, "vector": 16, "weight_ports": 3,
                                 "packings": ["2bit", "base3"], "max_vocab": 32000,
                                 "max_hidden": 2048, "max_intermediate": 5632,
                                 "max_layers": 28, "max_D": summary["params"]["max_D"]}
    for name in summary["files"]:
        assert (out / name).is_file()
    assert summary["bytes_estimated"] and summary["image_files"] == {}
    print(f"nsllm build --preset nsllm-1.5b: {seconds:.0f} s; steps {summary['seconds']}")
    cap = VCK190.capacity  # the resource report shows the kernel fits
    assert all(summary["resources"][k] <= cap[c] for k, c in
               [("LUT", "LUT"), ("FF", "FF"), ("BRAM", "BRAM36"), ("URAM", "URAM"),
                ("DSP", "DSP")])
    proj = summary["projection"]
    assert 0 < proj["tokens_per_s"] <= proj["roofline_tokens_per_s"]


def test_preset_config_intermediate_matches_expectation():
    """The slow test above pins nsllm-1.5b's shape; keep it honest if the preset changes."""
    cfg = preset("nsllm-1.5b")
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_layers) == (32000, 2048, 28)
    assert cfg.intermediate_size == 5632


def test_projection_of_a_model_whose_text_cannot_be_tokenized_here_uses_the_shipped_rates():
    """A model with a Hugging Face tokenizer but no tokenizer.json beside it: the build's
    projection falls back to the shipped model's firing rates, and says so."""
    from nsllm.boards.build import _projection
    from nsllm.model.config import ModelConfig
    from nsllm.model.weights import random_weights

    cfg = ModelConfig(name="hf-model", vocab_size=320, hidden_size=32, num_layers=1,
                      intermediate_size=64, tokenizer="hf")
    said = []
    proj = _projection(cfg, VCK190, random_weights(cfg), CoreParams.for_model(cfg), "2bit",
                       300.0, None, said.append)
    assert "shipped model" in proj["firing_source"] and any("cannot measure" in m for m in said)
    assert 0 < proj["tokens_per_s"] <= proj["roofline_tokens_per_s"]
