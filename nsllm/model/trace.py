"""Recording every intermediate tensor of a forward pass, and finding where two runs differ.

Names are ``layers.<i>.<unit>`` for per-layer tensors (``layers.3.mlgru.h``,
``layers.0.attn.i_proj.spikes`` …) and plain names elsewhere (``embed``, ``norm``, ``logits``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")


@dataclass
class Mismatch:
    """The first differing element between two traces."""

    name: str
    index: tuple[int, ...]
    expected: object
    got: object

    @property
    def layer(self) -> int | None:
        m = _LAYER.match(self.name)
        return int(m.group(1)) if m else None

    @property
    def unit(self) -> str:
        m = _LAYER.match(self.name)
        return m.group(2) if m else self.name

    def __str__(self) -> str:
        where = f"layer {self.layer}, {self.unit}" if self.layer is not None else self.unit
        idx = self.index[0] if len(self.index) == 1 else self.index
        return f"{where}, index {idx}: expected {self.expected}, got {self.got}"


@dataclass
class Trace:
    """An ordered record of named tensors (copies) from one forward pass.

    Pass ``only`` (a set of name prefixes) to keep just some tensors, e.g. ``{"layers.2."}``.
    A name recorded twice (a second step) is appended along a new leading axis by
    :meth:`stacked`.
    """

    only: set[str] | None = None
    records: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def wants(self, name: str) -> bool:
        return self.only is None or any(name.startswith(p) for p in self.only)

    def record(self, name: str, value: np.ndarray) -> None:
        if self.wants(name):
            self.records.setdefault(name, []).append(np.array(value, copy=True))

    def names(self) -> list[str]:
        return list(self.records)

    def __getitem__(self, name: str) -> np.ndarray:
        """The tensor recorded last under ``name``."""
        return self.records[name][-1]

    def stacked(self, name: str) -> np.ndarray:
        return np.stack(self.records[name])

    def compare(self, other: Trace) -> Mismatch | None:
        """First difference, in recording order, treating ``self`` as the expected values."""
        for name, values in self.records.items():
            if name not in other.records:
                return Mismatch(name, (), "a recorded tensor", "nothing")
            for exp, got in zip(values, other.records[name], strict=False):
                mismatch = first_difference(name, exp, got)
                if mismatch:
                    return mismatch
        return None


def first_difference(name: str, expected: np.ndarray, got: np.ndarray) -> Mismatch | None:
    """The first index at which two arrays differ (flattened over leading batch/time axes)."""
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.shape != got.shape:
        return Mismatch(name, (), f"shape {expected.shape}", f"shape {got.shape}")
    diff = np.argwhere(expected != got)
    if diff.size == 0:
        return None
    full = tuple(int(i) for i in diff[0])
    # a single token's tensor (leading axes all 1) is reported by its neuron index alone
    shown = full[-1:] if all(n == 1 for n in expected.shape[:-1]) else full
    return Mismatch(name, shown, expected[full].item(), got[full].item())
