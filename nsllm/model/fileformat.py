"""The ``.nsllm`` model file: safetensors with the config in its metadata and packed trits.

Layout (format version 1)
-------------------------
metadata (all strings):
    ``format`` = ``"nsllm"``, ``format_version`` = ``"1"``, ``packing`` = ``"2bit"`` | ``"base3"``,
    ``config`` = the :class:`~nsllm.model.config.ModelConfig` as JSON.
tensors:
    float32 tensors by their model names (``embeddings.weight``, ``layers.0.attn_norm.weight`` …),
    and for every ternary layer ``<name>.trits`` (uint8, column-major packed, shape
    (in_features, bytes_per_column)) and ``<name>.norm.weight`` (float32, (in_features,)).

Loading checks the container, the version, every tensor's presence, dtype and shape, and every
trit code, and says which one is wrong.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from .config import ConfigError, ModelConfig
from .packing import PACKINGS, PackingError, bytes_per_column, pack_trits, unpack_trits
from .weights import ModelWeights, TernaryLinear, expected_tensor_shapes

FORMAT_NAME = "nsllm"
FORMAT_VERSION = 1
SUFFIX = ".nsllm"


class ModelFileError(ValueError):
    """A ``.nsllm`` file that cannot be loaded; the message names the file and the problem."""


def save_model(weights: ModelWeights, path: str | os.PathLike, packing: str = "base3") -> Path:
    """Write a model. ``packing`` is ``"base3"`` (5 trits/byte, default) or ``"2bit"``."""
    from safetensors.numpy import save

    if packing not in PACKINGS:
        raise ValueError(f"unknown packing {packing!r}; choose from {PACKINGS}")
    cfg = weights.config
    cfg.validate()
    tensors: dict[str, np.ndarray] = {}
    for name, shape in expected_tensor_shapes(cfg).items():
        t = np.ascontiguousarray(weights.tensors[name], dtype=np.float32)
        if t.shape != shape:
            raise ValueError(f"tensor {name} has shape {t.shape}, the config needs {shape}")
        tensors[name] = t
    for name in cfg.ternary_layers():
        lin = weights.linears[name]
        if lin.trits.shape != cfg.ternary_shape(name):
            raise ValueError(f"{name} has shape {lin.trits.shape}, the config needs "
                             f"{cfg.ternary_shape(name)}")
        tensors[f"{name}.trits"] = pack_trits(lin.trits, packing)
        tensors[f"{name}.norm.weight"] = np.ascontiguousarray(lin.norm_weight, dtype=np.float32)
    meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "packing": packing,
            "config": cfg.to_json()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(save(tensors, metadata=meta))
    os.replace(tmp, path)  # never leave a half-written model under the real name
    return path


def read_header(path: str | os.PathLike) -> dict:
    """Parse and check the safetensors header of a file without loading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelFileError(f"{path}: file is {size} bytes, too short to be a .nsllm file")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise ModelFileError(
                f"{path}: truncated or not a .nsllm file: header says {n} bytes of metadata "
                f"but the file has only {size - 8} after the length field"
            )
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelFileError(f"{path}: not a .nsllm file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: not a .nsllm file (header is not a JSON object)")
    ends = [v["data_offsets"][1] for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v]
    need = 8 + n + max(ends, default=0)
    if size < need:
        raise ModelFileError(f"{path}: truncated: the tensors need {need} bytes, the file has "
                             f"{size}; re-copy or re-export the model")
    return header


def load_model(path: str | os.PathLike) -> ModelWeights:
    """Load and validate a ``.nsllm`` file (see the module docstring for what is checked)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    header = read_header(path)
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: not a .nsllm file (metadata 'format' is "
                             f"{meta.get('format')!r}, expected {FORMAT_NAME!r})")
    version = meta.get("format_version")
    if version != str(FORMAT_VERSION):
        raise ModelFileError(
            f"{path}: format version {version!r} is not supported (this nsllm reads version "
            f"{FORMAT_VERSION}); convert the model with a matching nsllm release"
        )
    packing = meta.get("packing")
    if packing not in PACKINGS:
        raise ModelFileError(f"{path}: unknown trit packing {packing!r} (expected one of "
                             f"{PACKINGS})")
    try:
        cfg = ModelConfig.from_json(meta.get("config", ""))
    except ConfigError as e:
        raise ModelFileError(f"{path}: bad model config: {e}") from None
    try:
        raw = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path}: cannot read tensors: {e}") from None

    expected: dict[str, tuple[tuple[int, ...], np.dtype]] = {
        name: (shape, np.dtype(np.float32)) for name, shape in expected_tensor_shapes(cfg).items()
    }
    for name in cfg.ternary_layers():
        out_f, in_f = cfg.ternary_shape(name)
        expected[f"{name}.trits"] = ((in_f, bytes_per_column(out_f, packing)), np.dtype(np.uint8))
        expected[f"{name}.norm.weight"] = ((in_f,), np.dtype(np.float32))
    missing = sorted(set(expected) - set(raw))
    if missing:
        raise ModelFileError(f"{path}: missing tensors: {', '.join(missing[:5])}"
                             + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    extra = sorted(set(raw) - set(expected))
    if extra:
        raise ModelFileError(f"{path}: unexpected tensors: {', '.join(extra[:5])}")
    for name, (shape, dtype) in expected.items():
        t = raw[name]
        if t.shape != shape or t.dtype != dtype:
            raise ModelFileError(f"{path}: tensor {name} is {t.dtype} {tuple(t.shape)}, the config "
                                 f"needs {dtype} {shape} (shape mismatch)")
        if dtype == np.float32 and not np.all(np.isfinite(t)):
            raise ModelFileError(f"{path}: tensor {name} has non-finite values")

    linears = {}
    for name in cfg.ternary_layers():
        try:
            trits = unpack_trits(raw[f"{name}.trits"], cfg.ternary_shape(name)[0], packing)
        except PackingError as e:
            raise ModelFileError(f"{path}: {name}.trits: {e}") from None
        linears[name] = TernaryLinear(trits, raw[f"{name}.norm.weight"])
    tensors = {name: raw[name] for name in expected_tensor_shapes(cfg)}
    return ModelWeights(cfg, tensors, linears)


def file_packing(path: str | os.PathLike) -> str:
    """The trit packing a ``.nsllm`` file was written with."""
    return (read_header(path).get("__metadata__") or {}).get("packing", "?")
