"""Synthetic Hugging Face ``hgrn_bit`` checkpoints in the public repository's exact layout."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from nsllm.model.config import mlp_intermediate_size


def hf_config(vocab=256, hidden=32, layers=2, intermediate=None, **changes) -> dict:
    cfg = {
        "model_type": "hgrn_bit", "architectures": ["HGRNBitForCausalLM"],
        "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers,
        "attn_mode": "fused_recurrent", "num_heads": 1, "expand_ratio": 1,
        "use_short_conv": False, "conv_size": 4, "share_conv_kernel": True,
        "use_lower_bound": True, "hidden_ratio": 4, "intermediate_size": intermediate,
        "hidden_act": "swish", "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
        "use_cache": True, "pad_token_id": None, "bos_token_id": 1, "eos_token_id": 2,
        "tie_word_embeddings": False, "initializer_range": 0.02, "fuse_cross_entropy": True,
        "torch_dtype": "float32",
    }
    cfg.update(changes)
    return cfg


def hf_tensors(cfg: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Latent float weights with the checkpoint's key names and shapes."""
    rng = np.random.default_rng(seed)
    d, V, L = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    inter = cfg["intermediate_size"] or mlp_intermediate_size(d, cfg["hidden_ratio"])

    def w(*shape, scale=0.02):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    t = {"model.embeddings.weight": w(V, d, scale=1.0), "model.norm.weight": norm(d),
         "model.lower_bounds": w(L, d, scale=0.5)}
    for i in range(L):
        p = f"model.layers.{i}"
        t[f"{p}.attn_norm.weight"] = norm(d)
        t[f"{p}.mlp_norm.weight"] = norm(d)
        t[f"{p}.attn.g_norm.weight"] = norm(d)
        for n in ("i_proj", "f_proj", "g_proj", "o_proj"):
            t[f"{p}.attn.{n}.weight"] = w(d, d)
            t[f"{p}.attn.{n}.norm.weight"] = norm(d)
        t[f"{p}.mlp.gate_proj.weight"] = w(2 * inter, d)
        t[f"{p}.mlp.gate_proj.norm.weight"] = norm(d)
        t[f"{p}.mlp.down_proj.weight"] = w(d, inter)
        t[f"{p}.mlp.down_proj.norm.weight"] = norm(inter)
    t["lm_head.weight"] = w(V, d)
    t["lm_head.norm.weight"] = norm(d)
    return t


def write_safetensors_bf16(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """A safetensors file with BF16 tensors (NumPy has no bfloat16: written from raw bits)."""
    header, blobs, off = {}, [], 0
    for k, v in tensors.items():
        bits = np.ascontiguousarray(v, dtype=np.float32).view(np.uint32)
        bf = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")  # round to nearest even
        raw = bf.tobytes()
        header[k] = {"dtype": "BF16", "shape": list(v.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def bf16_round(x: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    bf = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint32) << 16
    return bf.view(np.float32)


def write_checkpoint(folder: Path, cfg: dict | None = None, tensors: dict | None = None,
                     dtype: str = "f32", seed: int = 0) -> tuple[dict, dict]:
    """Write ``config.json`` + ``model.safetensors``; returns (config, tensors)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    cfg = cfg if cfg is not None else hf_config()
    tensors = tensors if tensors is not None else hf_tensors(cfg, seed)
    (folder / "config.json").write_text(json.dumps(cfg))
    if dtype == "bf16":
        write_safetensors_bf16(folder / "model.safetensors", tensors)
    else:
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return cfg, tensors
