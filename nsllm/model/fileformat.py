"""The ``.nsllm`` model file: safetensors with the config in its metadata, packed trits, and a
CRC-32 over the header and every tensor.

Layout (format version 2; docs/formats.md)
------------------------------------------
metadata (all strings):
    ``format`` = ``"nsllm"``, ``format_version`` = ``"2"``, ``packing`` = ``"2bit"`` | ``"base3"``,
    ``config`` = the :class:`~nsllm.model.config.ModelConfig` as JSON,
    ``crc32_tensors`` = JSON object: tensor name → CRC-32 of its data bytes (8 hex digits),
    ``crc32_header`` = CRC-32 (8 hex digits) of the file's first ``8 + header length`` bytes —
    the length field and the whole JSON header, padding included — computed with these 8 digits
    set to ``00000000``.
tensors:
    float32 tensors by their model names (``embeddings.weight``, ``layers.0.attn_norm.weight`` …),
    and for every ternary layer ``<name>.trits`` (uint8, column-major packed, shape
    (in_features, bytes_per_column)) and ``<name>.norm.weight`` (float32, (in_features,)).

Version 1 is the same without the two checksums; it still loads, with a
:class:`ModelFormatWarning` saying how to rewrite it (``nsllm info --upgrade FILE``).

Loading checks the container, the header checksum (before any header field is trusted), the
version, every tensor's checksum, presence, dtype and shape, every trit code, and the value
ranges the integer model and the device image need (:meth:`ModelWeights.validate`); every error
names the file and the damaged section or the offending value.
"""

from __future__ import annotations

import json
import os
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from .config import ConfigError, ModelConfig
from .packing import PACKINGS, PackingError, bytes_per_column, pack_trits, unpack_trits
from .weights import ModelWeights, TernaryLinear, WeightsError, expected_tensor_shapes

FORMAT_NAME = "nsllm"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
SUFFIX = ".nsllm"
HEADER_CRC_KEY = "crc32_header"
TENSOR_CRC_KEY = "crc32_tensors"
_HEADER_CRC_FIELD = re.compile(rb'"' + HEADER_CRC_KEY.encode() + rb'":"([0-9a-f]{8})"')


class ModelFileError(ValueError):
    """A ``.nsllm`` file that cannot be loaded; the message names the file and the problem."""


class ModelFormatWarning(UserWarning):
    """A model file in an older format version (it loads; rewrite it to get its checksums)."""


def _crc(data) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def encode_file(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """The bytes of a format-2 file holding ``tensors`` and ``metadata`` (checksums added).

    Low level: no model validation (:func:`save_model` validates first).
    """
    from safetensors.numpy import save

    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    sums = {k: f"{_crc(memoryview(v).cast('B')):08x}" for k, v in tensors.items()}
    meta = {**metadata, "format_version": str(FORMAT_VERSION),
            TENSOR_CRC_KEY: json.dumps(sums, sort_keys=True), HEADER_CRC_KEY: "0" * 8}
    raw = bytearray(save(tensors, metadata=meta))
    (n,) = struct.unpack("<Q", raw[:8])
    fields = list(_HEADER_CRC_FIELD.finditer(raw, 8, 8 + n))
    if len(fields) != 1:  # cannot happen with safetensors' compact JSON; never write unsealed
        raise RuntimeError("the safetensors header does not hold exactly one header checksum")
    pos = fields[0].start(1)
    raw[pos:pos + 8] = f"{_crc(raw[:8 + n]):08x}".encode()
    return bytes(raw)


def model_tensors(weights: ModelWeights, packing: str) -> dict[str, np.ndarray]:
    """The tensors of a model as the file stores them (float32, packed trits)."""
    cfg = weights.config
    tensors: dict[str, np.ndarray] = {
        name: np.ascontiguousarray(weights.tensors[name], dtype=np.float32)
        for name in expected_tensor_shapes(cfg)}
    for name in cfg.ternary_layers():
        lin = weights.linears[name]
        tensors[f"{name}.trits"] = pack_trits(lin.trits, packing)
        tensors[f"{name}.norm.weight"] = np.ascontiguousarray(lin.norm_weight, dtype=np.float32)
    return tensors


def save_model(weights: ModelWeights, path: str | os.PathLike, packing: str = "base3", *,
               join: bool = True) -> Path:
    """Write a model (format version 2). ``packing`` is ``"base3"`` (5 trits/byte, default) or
    ``"2bit"``.

    The model is validated first (:meth:`ModelWeights.validate`: values the integer model or the
    device image cannot represent raise before anything is written), and the file is written
    atomically (:func:`nsllm.outputs.write_bytes`: a temporary file, then a rename; with ``join``
    false at once, not at the end of an enclosing transaction).
    """
    from ..outputs import write_bytes

    return write_bytes(path, encode_model(weights, packing), join=join)


def encode_model(weights: ModelWeights, packing: str = "base3") -> bytes:
    """The bytes :func:`save_model` writes (validated first); ``len()`` of it is the file size."""
    if packing not in PACKINGS:
        raise ValueError(f"unknown packing {packing!r}; choose from {PACKINGS}")
    weights.validate()
    meta = {"format": FORMAT_NAME, "packing": packing, "config": weights.config.to_json()}
    return encode_file(model_tensors(weights, packing), meta)


def _parse_header(path: Path, raw: bytes, size: int) -> tuple[dict, int, bool]:
    """(header, header length, header checksum present) of a file of ``size`` bytes whose first
    bytes (at least the length field and the header) are ``raw``; checks the length field, the
    header checksum (when there is one) and the JSON."""
    if size < 8:
        raise ModelFileError(f"{path}: file is {size} bytes, too short to be a .nsllm file")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > size - 8:
        raise ModelFileError(
            f"{path}: truncated or not a .nsllm file: header says {n} bytes of metadata "
            f"but the file has only {size - 8} after the length field"
        )
    fields = list(_HEADER_CRC_FIELD.finditer(raw, 8, 8 + n))
    if len(fields) == 1:
        stored = fields[0][1].decode()
        pos = fields[0].start(1)
        actual = _crc(raw[:pos] + b"0" * 8 + raw[pos + 8:8 + n])
        if f"{actual:08x}" != stored:
            raise ModelFileError(
                f"{path}: checksum mismatch in the header (format, config and tensor index; "
                f"bytes 0–{8 + n}): stored {stored}, computed {actual:08x}; the file is damaged "
                "— re-copy or re-export the model")
    try:
        header = json.loads(raw[8:8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelFileError(f"{path}: damaged header or not a .nsllm file (the header is not "
                             "JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: not a .nsllm file (header is not a JSON object)")
    return header, n, len(fields) == 1


def _tensor_index(path: Path, header: dict) -> dict[str, tuple[int, int]]:
    index = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        try:
            start, end = (int(x) for x in v["data_offsets"])
        except (TypeError, KeyError, ValueError):
            raise ModelFileError(f"{path}: damaged header: tensor {k} has no valid "
                                 "data_offsets") from None
        index[k] = (start, end)
    return index


def read_header(path: str | os.PathLike) -> dict:
    """Parse and check the header of a file without loading its tensors (the header checksum
    too, when the file has one)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) == 8:
            raw += f.read(min(struct.unpack("<Q", raw)[0], size))
    header, n, _ = _parse_header(path, raw, size)
    need = 8 + n + max((e for _, e in _tensor_index(path, header).values()), default=0)
    if size < need:
        raise ModelFileError(f"{path}: truncated: the tensors need {need} bytes, the file has "
                             f"{size}; re-copy or re-export the model")
    return header


def format_version(path: str | os.PathLike) -> int | None:
    """The format version a ``.nsllm`` file declares (None when it declares none)."""
    meta = read_header(path).get("__metadata__") or {}
    try:
        return int(meta.get("format_version"))
    except (TypeError, ValueError):
        return None


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a model file")
    try:
        return path.read_bytes()
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read the model file: {e.strerror or e}; check its "
                             "permissions") from None


def load_model(path: str | os.PathLike) -> ModelWeights:
    """Load and validate a ``.nsllm`` file (see the module docstring for what is checked)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    raw = _read_bytes(path)
    header, n, sealed = _parse_header(path, raw, len(raw))
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: not a .nsllm file (no metadata)")
    if meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: not a .nsllm file (metadata 'format' is "
                             f"{meta.get('format')!r}, expected {FORMAT_NAME!r})")
    version = meta.get("format_version")
    if version not in [str(v) for v in READABLE_VERSIONS]:
        raise ModelFileError(
            f"{path}: format version {version!r} is not supported (this nsllm reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}); convert the model with a matching "
            "nsllm release"
        )
    index = _tensor_index(path, header)
    data_start = 8 + n
    need = data_start + max((e for _, e in index.values()), default=0)
    if len(raw) < need:
        raise ModelFileError(f"{path}: truncated: the tensors need {need} bytes, the file has "
                             f"{len(raw)}; re-copy or re-export the model")
    if int(version) >= 2:
        if not sealed:
            raise ModelFileError(f"{path}: damaged header: a version {version} file must hold "
                                 f"its header checksum ({HEADER_CRC_KEY}); re-copy or re-export "
                                 "the model")
        if len(raw) != need:
            raise ModelFileError(f"{path}: {len(raw) - need} bytes after the last tensor: the "
                                 "file is damaged or was padded in transfer; re-copy it")
        _check_tensor_sums(path, raw, data_start, index, meta.get(TENSOR_CRC_KEY))
    else:
        warnings.warn(f"{path}: format version {version} has no checksums; rewrite it as version "
                      f"{FORMAT_VERSION} with `nsllm info --upgrade {path}`",
                      ModelFormatWarning, stacklevel=2)
    packing = meta.get("packing")
    if packing not in PACKINGS:
        raise ModelFileError(f"{path}: unknown trit packing {packing!r} (expected one of "
                             f"{PACKINGS})")
    try:
        cfg = ModelConfig.from_json(meta.get("config", ""))
    except (ConfigError, TypeError) as e:
        raise ModelFileError(f"{path}: bad model config: {e}") from None
    try:
        tensors = load(raw)
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path}: cannot read tensors: {e}") from None
    del raw
    weights = _to_weights(path, cfg, packing, tensors)
    try:
        weights.validate()
    except (ConfigError, WeightsError) as e:
        raise ModelFileError(f"{path}: the model cannot run: {e}; re-export it with valid "
                             "values") from None
    return weights


def _check_tensor_sums(path: Path, raw: bytes, data_start: int,
                       index: dict[str, tuple[int, int]], stored) -> None:
    try:
        sums = json.loads(stored)
        if not isinstance(sums, dict):
            raise ValueError
    except (TypeError, ValueError):
        raise ModelFileError(f"{path}: damaged header: {TENSOR_CRC_KEY} is not a JSON object of "
                             "checksums") from None
    if set(sums) != set(index):
        names = sorted(set(sums) ^ set(index))
        raise ModelFileError(f"{path}: damaged header: the checksums do not list exactly the "
                             f"tensors of the file ({', '.join(names[:5])})")
    view = memoryview(raw)
    for name, (start, end) in sorted(index.items(), key=lambda kv: kv[1]):
        actual = f"{_crc(view[data_start + start:data_start + end]):08x}"
        if actual != sums[name]:
            raise ModelFileError(
                f"{path}: checksum mismatch in tensor {name} (bytes {data_start + start}–"
                f"{data_start + end}): stored {sums[name]}, computed {actual}; the file is "
                "damaged — re-copy or re-export the model")


def _to_weights(path: Path, cfg: ModelConfig, packing: str,
                raw: dict[str, np.ndarray]) -> ModelWeights:
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
