"""The golden model: config, weights, the ``.nsllm`` file, float reference and integer model."""

from __future__ import annotations

import os
from pathlib import Path

from .config import ModelConfig, SpikeQuant, preset
from .fileformat import ModelFileError, ModelFormatWarning, load_model, save_model
from .graph import LanguageModel, greedy
from .integer import IntegerModel
from .reference import FloatModel
from .trace import Trace
from .weights import ModelWeights, random_weights

DATA = Path(__file__).resolve().parent.parent / "data"
DEFAULT_MODEL = DATA / "default.nsllm"
HYBRID_MODEL = DATA / "hybrid.nsllm"
DENSE_MODEL = DATA / "dense.nsllm"
#: Shipped models by name (``--model hybrid``): the MLGRU default, the MLGRU/SLA hybrid, and the
#: dense MLGRU model the default was sparsified from (the reference of bench/pareto.py).
SHIPPED_MODELS = {"default": DEFAULT_MODEL, "nsllm-default": DEFAULT_MODEL,
                  "hybrid": HYBRID_MODEL, "nsllm-hybrid": HYBRID_MODEL,
                  "dense": DENSE_MODEL, "nsllm-dense": DENSE_MODEL}


def resolve_model_path(path: str | os.PathLike | None) -> Path:
    """A model argument → a ``.nsllm`` file: ``None`` is the shipped default model, a shipped
    model's name (``default``, ``hybrid``, ``dense``; see :data:`SHIPPED_MODELS`) that model
    unless a file or folder of that name exists; a folder must hold exactly one ``.nsllm`` file
    (``model.nsllm`` preferred)."""
    if path is None:
        return DEFAULT_MODEL
    p = Path(path)
    if not p.exists() and str(path) in SHIPPED_MODELS:
        return SHIPPED_MODELS[str(path)]
    if p.is_dir():
        if (p / "model.nsllm").is_file():
            return p / "model.nsllm"
        found = sorted(p.glob("*.nsllm"))
        if len(found) != 1:
            raise ModelFileError(f"{p}: expected one .nsllm file in the folder, found {len(found)}")
        return found[0]
    return p


__all__ = [
    "DEFAULT_MODEL", "HYBRID_MODEL", "SHIPPED_MODELS", "FloatModel", "IntegerModel",
    "LanguageModel", "ModelConfig", "ModelFileError", "ModelFormatWarning", "ModelWeights",
    "SpikeQuant", "Trace", "greedy", "load_model", "preset", "random_weights",
    "resolve_model_path", "save_model",
]
