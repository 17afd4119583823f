"""Model evaluation on a text: bits per byte, firing rate per layer, size at each packing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..model.integer import IntegerModel
from ..model.packing import PACKINGS, bytes_per_column
from ..model.reference import FloatModel
from ..model.stats import evaluate, mean_firing_rate
from ..model.tokenizer import load_tokenizer
from ..model.weights import ModelWeights, expected_tensor_shapes
from .probe import layer_weights

BACKENDS = ("golden", "float")


def make_model(weights: ModelWeights, backend: str = "golden"):
    """``golden``: the bit-exact integer model; ``float``: the float reference (spikes)."""
    if backend == "golden":
        return IntegerModel(weights)
    if backend == "float":
        return FloatModel(weights, act="spike")
    raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


def tensor_bytes(weights: ModelWeights) -> dict[str, int]:
    """Bytes of tensor data in a ``.nsllm`` file at each trit packing (metadata header excluded)."""
    cfg = weights.config
    floats = sum(int(np.prod(s)) * 4 for s in expected_tensor_shapes(cfg).values())
    out = {}
    for packing in PACKINGS:
        tern = 0
        for n in cfg.ternary_layers():
            o, i = cfg.ternary_shape(n)
            tern += i * bytes_per_column(o, packing) + 4 * i  # trits + the BitLinear norm weight
        out[packing] = floats + tern
    return out


def token_byte_lengths(tokenizer, vocab_size: int) -> np.ndarray | None:
    """UTF-8 length of every token (None for the byte tokenizer: one byte each)."""
    from ..model.tokenizer import ByteTokenizer

    if isinstance(tokenizer, ByteTokenizer):
        return None
    return np.array([len(tokenizer.decode([i]).encode("utf-8")) for i in range(vocab_size)],
                    dtype=np.int64)


def encode_text(weights: ModelWeights, text: str, model_path: str | os.PathLike | None = None):
    """Token ids of a text and the per-token byte lengths, with the model's tokenizer."""
    tok = load_tokenizer(weights.config.tokenizer, model_path)
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    return ids, token_byte_lengths(tok, weights.config.vocab_size)


def evaluate_model(weights: ModelWeights, text: str, *, backend: str = "golden",
                   model_path: str | os.PathLike | None = None, segment: int = 1024) -> dict:
    """Everything ``nsllm eval`` reports, as a JSON-ready dict."""
    ids, tb = encode_text(weights, text, model_path)
    st = evaluate(make_model(weights, backend), ids, token_bytes=tb, segment=segment)
    sizes = layer_weights(weights)
    res = {
        "backend": backend,
        "model": weights.config.name,
        "tokens": int(len(ids)),
        "predictions": st.predictions,
        "bits_per_byte": st.bits_per_byte,
        "bits_per_token": st.bits_per_token,
        "firing_rate": st.firing,
        "spikes_per_input": st.spikes_per_count,
        "mean_firing_rate": mean_firing_rate(st.firing),
        "weighted_firing_rate": mean_firing_rate(st.firing, sizes),
        "average_timesteps": sum(sizes[n] * q.D for n, q in weights.config.quant.items())
        / sum(sizes.values()),
        "size_bytes": tensor_bytes(weights),
    }
    if weights.config.tokenizer != "byte":
        res["perplexity"] = st.perplexity
    if model_path is not None and Path(model_path).is_file():
        res["file_bytes"] = Path(model_path).stat().st_size
    return res
