"""Converter: a Hugging Face ``hgrn_bit`` checkpoint (MatMul-free LM) → a ``.nsllm`` model.

Reads ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin`` when PyTorch is
installed) with the key names of the public checkpoints (ridger/MMfreeLM-370M, -1.3B, -2.7B)::

    model.embeddings.weight                      [V, H]
    model.lower_bounds                           [L, H]      (use_lower_bound)
    model.layers.{i}.attn_norm.weight            [H]
    model.layers.{i}.attn.{i,f,g,o}_proj.weight  [H, H]      latent float weights
    model.layers.{i}.attn.{i,f,g,o}_proj.norm.weight [H]     the BitLinear's own RMSNorm
    model.layers.{i}.attn.g_norm.weight          [H]
    model.layers.{i}.mlp_norm.weight             [H]
    model.layers.{i}.mlp.gate_proj.weight        [2I, H]     first half gate, second half up
    model.layers.{i}.mlp.gate_proj.norm.weight   [H]
    model.layers.{i}.mlp.down_proj.weight        [H, I]
    model.layers.{i}.mlp.down_proj.norm.weight   [I]
    model.norm.weight                            [H]
    lm_head.weight, lm_head.norm.weight          [V, H], [H] (lm_head is a BitLinear)

Latent weights are ternarised per tensor with absmean (:func:`~nsllm.quant.ternary.
absmean_ternarize`); every layer gets the default spike quantization until calibration.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..model.config import ModelConfig, mlp_intermediate_size
from ..model.weights import ModelWeights, TernaryLinear
from .ternary import absmean_ternarize


class ConversionError(ValueError):
    """A checkpoint folder that cannot be converted; the message names the problem and the fix."""


#: hgrn_bit config fields this converter understands, and the values it supports.
SUPPORTED = {"use_short_conv": False, "expand_ratio": 1, "num_heads": 1}


def read_hf_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise ConversionError(f"{folder}: no config.json; expected a Hugging Face hgrn_bit model "
                              "folder (config.json + model.safetensors)")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise ConversionError(f"{path}: expected a JSON object")
    return cfg


def model_config_from_hf(hf: dict, name: str = "converted") -> ModelConfig:
    """The :class:`ModelConfig` of an ``hgrn_bit`` ``config.json``; rejects what is unsupported."""
    mt = hf.get("model_type")
    if mt != "hgrn_bit":
        raise ConversionError(f"unknown model_type {mt!r}: this converter reads MatMul-free LM "
                              "checkpoints with model_type 'hgrn_bit'")
    for key in ("vocab_size", "hidden_size", "num_hidden_layers"):
        if not isinstance(hf.get(key), int) or hf[key] < 1:
            raise ConversionError(f"config.json: {key} must be a positive integer, not "
                                  f"{hf.get(key)!r}")
    for key, ok in SUPPORTED.items():
        v = hf.get(key, ok)
        if v is None:
            v = ok
        if v != ok:
            raise ConversionError(f"config.json: {key} = {v!r} is not supported (only {ok!r}); "
                                  "nsllm implements the single-head MLGRU without short "
                                  "convolution")
    if hf.get("attn_mode") not in (None, "fused_recurrent", "chunk", "recurrent"):
        raise ConversionError(f"config.json: attn_mode {hf['attn_mode']!r} is not supported")
    d = hf["hidden_size"]
    try:
        ratio = hf.get("hidden_ratio") or 4
        inter = hf.get("intermediate_size")
        if inter is None:
            inter = mlp_intermediate_size(d, ratio)
        eps = hf.get("rms_norm_eps")
        return ModelConfig(name=name, vocab_size=hf["vocab_size"], hidden_size=d,
                           num_layers=hf["num_hidden_layers"], intermediate_size=int(inter),
                           use_lower_bound=bool(hf.get("use_lower_bound", True)),
                           norm_eps=1e-6 if eps is None else float(eps), tokenizer="byte"
                           if hf["vocab_size"] == 256 else "hf")
    except (TypeError, ValueError) as e:  # a field of the wrong type or out of range
        raise ConversionError(f"config.json: {e}") from None


def hf_key_shapes(cfg: ModelConfig, tie: bool = False) -> dict[str, tuple[int, ...]]:
    """Every checkpoint key the converter reads, with its shape."""
    d, V = cfg.hidden_size, cfg.vocab_size
    keys: dict[str, tuple[int, ...]] = {"model.embeddings.weight": (V, d),
                                        "model.norm.weight": (d,)}
    if cfg.use_lower_bound:
        keys["model.lower_bounds"] = (cfg.num_layers, d)
    for i in range(cfg.num_layers):
        p = f"model.layers.{i}"
        keys[f"{p}.attn_norm.weight"] = (d,)
        keys[f"{p}.mlp_norm.weight"] = (d,)
        keys[f"{p}.attn.g_norm.weight"] = (d,)
    for name in cfg.ternary_layers():
        out_f, in_f = cfg.ternary_shape(name)
        src = "lm_head" if name == "lm_head" else f"model.{name}"
        if not (tie and name == "lm_head"):
            keys[f"{src}.weight"] = (out_f, in_f)
        keys[f"{src}.norm.weight"] = (in_f,)
    return keys


class _Checkpoint:
    """Lazy access to the tensors of a checkpoint folder (one tensor in memory at a time)."""

    def __init__(self, folder: Path):
        self.folder = folder
        st = sorted(folder.glob("model*.safetensors"))
        self._files: dict[str, Path] = {}
        self._torch_state = None
        if st:
            from safetensors import SafetensorError, safe_open

            for f in st:
                try:
                    with safe_open(str(f), framework="numpy") as h:
                        for k in h.keys():
                            self._files[k] = f
                except (SafetensorError, OSError) as e:
                    raise ConversionError(f"{f}: not a readable safetensors file ({e}); "
                                          "re-download the checkpoint") from None
            self.kind = "safetensors"
        elif (folder / "pytorch_model.bin").is_file():
            try:
                import torch
            except ModuleNotFoundError:
                raise ConversionError(
                    f"{folder}: only pytorch_model.bin found; reading it needs PyTorch "
                    "(pip install torch==2.13.0) — or convert the checkpoint to model.safetensors"
                ) from None
            try:
                self._torch_state = torch.load(folder / "pytorch_model.bin", map_location="cpu",
                                               weights_only=True)
            except Exception as e:  # torch raises pickle and runtime errors of many kinds
                raise ConversionError(f"{folder / 'pytorch_model.bin'}: cannot be read ({e}); "
                                      "re-download the checkpoint") from None
            self.kind = "pytorch"
        else:
            raise ConversionError(f"{folder}: no model.safetensors (or pytorch_model.bin) found")

    def keys(self) -> set[str]:
        if self._torch_state is not None:
            return set(self._torch_state)
        return set(self._files)

    def shape(self, key: str) -> tuple[int, ...]:
        if self._torch_state is not None:
            return tuple(self._torch_state[key].shape)
        from safetensors import safe_open

        with safe_open(str(self._files[key]), framework="numpy") as h:
            return tuple(h.get_slice(key).get_shape())

    def get(self, key: str) -> np.ndarray:
        if self._torch_state is not None:
            return self._torch_state[key].float().numpy()
        return _read_float32(self._files[key], key)


def _read_float32(path: Path, key: str) -> np.ndarray:
    """One tensor as float32; bfloat16 (which NumPy lacks) is widened from its raw bits."""
    import struct

    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        info = header[key]
        start, end = info["data_offsets"]
        f.seek(8 + n + start)
        raw = f.read(end - start)
    dtype, shape = info["dtype"], tuple(info["shape"])
    if len(raw) != end - start:
        raise ConversionError(f"{path}: truncated: tensor {key} needs bytes {8 + n + start}–"
                              f"{8 + n + end}; re-download the checkpoint")
    if dtype == "BF16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    np_types = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}
    if dtype not in np_types:
        raise ConversionError(f"{path}: tensor {key} has dtype {dtype}; expected a float type "
                              "(F32, F16, BF16)")
    return np.frombuffer(raw, dtype=np_types[dtype]).astype(np.float32).reshape(shape)


def convert_checkpoint(folder: str | os.PathLike, name: str | None = None) -> ModelWeights:
    """Read a ``hgrn_bit`` folder into :class:`ModelWeights` (absmean trits, default spikes)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConversionError(f"{folder}: not a folder; pass the checkpoint folder holding "
                              "config.json and model.safetensors")
    hf = read_hf_config(folder)
    cfg = model_config_from_hf(hf, name or folder.name)
    if (folder / "tokenizer.json").is_file():
        cfg.tokenizer = "hf"
    ckpt = _Checkpoint(folder)
    have = ckpt.keys()
    tie = bool(hf.get("tie_word_embeddings", False)) and "lm_head.weight" not in have
    need = hf_key_shapes(cfg, tie)
    missing = sorted(set(need) - have)
    if missing:
        raise ConversionError(
            f"{folder}: checkpoint is missing {len(missing)} tensor(s): {', '.join(missing[:5])}"
            + (" …" if len(missing) > 5 else "") + "; is this an hgrn_bit checkpoint with "
            "matching config.json?")
    for key, shape in need.items():
        got = ckpt.shape(key)
        if got != shape:
            raise ConversionError(f"{folder}: shape mismatch for {key}: checkpoint has "
                                  f"{list(got)}, config.json implies {list(shape)}")
    tensors = {"embeddings.weight": ckpt.get("model.embeddings.weight"),
               "norm.weight": ckpt.get("model.norm.weight")}
    if cfg.use_lower_bound:
        tensors["lower_bounds"] = ckpt.get("model.lower_bounds")
    for i in range(cfg.num_layers):
        for n in ("attn_norm.weight", "mlp_norm.weight", "attn.g_norm.weight"):
            tensors[f"layers.{i}.{n}"] = ckpt.get(f"model.layers.{i}.{n}")
    linears = {}
    for lname in cfg.ternary_layers():
        src = "lm_head" if lname == "lm_head" else f"model.{lname}"
        w = ckpt.get("model.embeddings.weight" if tie and lname == "lm_head" else f"{src}.weight")
        trits, beta = absmean_ternarize(w)
        del w
        linears[lname] = TernaryLinear(trits, ckpt.get(f"{src}.norm.weight"))
        cfg.quant[lname].weight_scale = beta
    weights = ModelWeights(cfg, tensors, linears)
    try:
        weights.validate()  # NaN/Inf, ranges the integer model and the device image need
    except ValueError as e:
        raise ConversionError(f"{folder}: the checkpoint cannot be converted: {e}") from None
    if (folder / "tokenizer.json").is_file():  # none: the model works on token ids; text needs
        check_tokenizer(folder / "tokenizer.json", cfg.vocab_size)  # one copied beside it
    return weights


def check_tokenizer(path: Path, vocab_size: int) -> None:
    """Refuse a ``tokenizer.json`` that does not load or has more tokens than the model."""
    from ..model.tokenizer import HFTokenizer

    tok = HFTokenizer(path)
    if tok.vocab_size > vocab_size:
        raise ConversionError(f"{path}: the tokenizer has {tok.vocab_size} tokens but the model "
                              f"only {vocab_size}; use the checkpoint's own tokenizer.json")


def copy_tokenizer(folder: str | os.PathLike, out_model: str | os.PathLike) -> Path | None:
    """Copy ``tokenizer.json`` next to the converted model (where the model loader looks)."""
    src = Path(folder) / "tokenizer.json"
    if not src.is_file():
        return None
    from ..outputs import atomic_write

    dst = Path(out_model).parent / "tokenizer.json"
    if src.resolve() != dst.resolve():
        with atomic_write(dst) as tmp:  # inside a transaction: appears with the model
            shutil.copyfile(src, tmp)
    return dst
