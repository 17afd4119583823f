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

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "data" / "default.nsllm"


def resolve_model_path(path: str | os.PathLike | None) -> Path:
    """A model argument → a ``.nsllm`` file: ``None`` is the shipped default model; a folder
    must hold exactly one ``.nsllm`` file (``model.nsllm`` preferred)."""
    if path is None:
        return DEFAULT_MODEL
    p = Path(path)
    if p.is_dir():
        if (p / "model.nsllm").is_file():
            return p / "model.nsllm"
        found = sorted(p.glob("*.nsllm"))
        if len(found) != 1:
            raise ModelFileError(f"{p}: expected one .nsllm file in the folder, found {len(found)}")
        return found[0]
    return p


__all__ = [
    "DEFAULT_MODEL", "FloatModel", "IntegerModel", "LanguageModel", "ModelConfig", "ModelFileError",
    "ModelFormatWarning", "ModelWeights", "SpikeQuant", "Trace", "greedy", "load_model", "preset",
    "random_weights", "resolve_model_path", "save_model",
]
