"""Absmean ternarisation: the MatMul-free LM's rule for turning latent weights into trits."""

from __future__ import annotations

import numpy as np

#: Lower clamp of the absmean scale (the reference's ``clamp(min=1e-5)``).
MIN_SCALE = 1e-5


def absmean_ternarize(w: np.ndarray) -> tuple[np.ndarray, float]:
    """Latent float weights → ``(trits int8, β)`` with ``w ≈ β · trits``.

    ``β = max(mean|w|, 1e-5)`` over the whole tensor and ``trit = clip(round(w / β), −1, 1)``,
    exactly as the reference BitLinear quantizes its weights (per tensor).
    """
    w = np.asarray(w, dtype=np.float32)
    beta = max(float(np.mean(np.abs(w), dtype=np.float64)), MIN_SCALE)
    trits = np.clip(np.round(w / np.float32(beta)), -1, 1).astype(np.int8)
    return trits, beta
