"""Spike recordings: per layer and neuron, the spike count of every token of a text.

A :class:`SpikeRecording` holds, for each ternary layer (in execution order), the (T, N) integer
spike counts of that layer's input neurons — N is the layer's ``in_features`` — together with the
text, its token ids and each layer's timestep count D. Spike trains are not stored: a count ``s``
expands into D ternary timesteps deterministically (:func:`nsllm.model.numerics.spike_train`),
so :meth:`SpikeRecording.train` rebuilds them on request.

Any source that can supply the same per-layer counts builds a recording with the constructor
(the golden model through :func:`record`, a simulated core through a debug readback), and
:meth:`SpikeRecording.compare` names the first layer, token and neuron where two sources differ.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..model import IntegerModel, ModelWeights, Trace
from ..model.numerics import spike_train

#: Version of the ``.npz`` layout written by :meth:`SpikeRecording.save`.
RECORDING_VERSION = 1
SPIKES_SUFFIX = ".spikes"


@dataclass
class SpikeMismatch:
    """The first spike count that differs between two recordings."""

    layer: str
    token: int | None
    neuron: int | None
    expected: object
    got: object
    reason: str = "count"

    def __str__(self) -> str:
        if self.reason != "count":
            return f"{self.layer}: {self.reason}: expected {self.expected}, got {self.got}"
        return (f"{self.layer}, token {self.token}, neuron {self.neuron}: expected count "
                f"{self.expected}, got {self.got}")


@dataclass
class SpikeRecording:
    """Spike counts of every ternary layer's input for every token of one text.

    Parameters
    ----------
    counts : mapping layer name → (T, N) integer array
        In execution order (e.g. ``layers.0.attn.i_proj`` … ``lm_head``).
    tokens : (T,) integer array
        The token ids that produced the counts.
    timesteps : mapping layer name → D
        Each layer's maximum spike count; counts must lie in [−D, D].
    text : str
        The text (may be empty when only ids are known).
    meta : dict
        Free-form JSON-able description (model name, source such as ``golden`` or ``rtl``).
    """

    counts: dict[str, np.ndarray]
    tokens: np.ndarray
    timesteps: dict[str, int]
    text: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tokens = np.asarray(self.tokens, dtype=np.int64).reshape(-1)
        t = len(self.tokens)
        counts = {}
        for name, c in self.counts.items():
            c = np.asarray(c)
            if c.ndim != 2 or c.shape[0] != t:
                raise ValueError(
                    f"{name}: spike counts must be (tokens, neurons) = ({t}, N), not {c.shape}"
                )
            if name not in self.timesteps:
                raise ValueError(f"{name}: no timestep count D given for this layer")
            d = int(self.timesteps[name])
            if c.size and int(np.abs(c).max()) > d:
                raise ValueError(f"{name}: a spike count exceeds D = {d} (max |count| "
                                 f"{int(np.abs(c).max())}); counts and D do not belong together")
            counts[name] = c.astype(np.int8 if d <= 127 else np.int16)
        self.counts = counts
        self.timesteps = {k: int(self.timesteps[k]) for k in counts}

    # -- access ---------------------------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        """Layer names in execution order."""
        return list(self.counts)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, layer: str) -> np.ndarray:
        return self.counts[layer]

    def train(self, layer: str, tokens: slice | None = None) -> np.ndarray:
        """Spike trains of one layer: int8 (T, D, N), D ternary timesteps per token."""
        c = self.counts[layer] if tokens is None else self.counts[layer][tokens]
        return np.moveaxis(spike_train(c, self.timesteps[layer]), 0, 1)

    def select(self, tokens: slice) -> SpikeRecording:
        """A recording of a range of tokens (the text is kept whole)."""
        return SpikeRecording({k: v[tokens] for k, v in self.counts.items()},
                              self.tokens[tokens], self.timesteps, self.text, dict(self.meta))

    # -- building -------------------------------------------------------------------------------
    @classmethod
    def from_trace(cls, trace: Trace, tokens, timesteps: Mapping[str, int], *, text: str = "",
                   batch: int = 0, meta: dict | None = None) -> SpikeRecording:
        """Collect every ``<layer>.spikes`` tensor of a :class:`~nsllm.model.Trace`.

        Several records of one name (successive prefill segments or decode steps) are joined
        along time; ``batch`` picks the sequence of a batched run.
        """
        counts = {}
        for name in trace.names():
            if name.endswith(SPIKES_SUFFIX):
                parts = [np.asarray(r)[batch] for r in trace.records[name]]
                counts[name[: -len(SPIKES_SUFFIX)]] = np.concatenate(parts, axis=0)
        if not counts:
            raise ValueError("the trace holds no spike counts; record with a Trace that keeps "
                             "'<layer>.spikes' tensors")
        return cls(counts, tokens, dict(timesteps), text, dict(meta or {}))

    # -- comparison -----------------------------------------------------------------------------
    def compare(self, other: SpikeRecording) -> SpikeMismatch | None:
        """First difference, in execution order then token then neuron (``self`` = expected).

        Layers that only ``other`` holds are ignored, so a partial readback compares against a
        full golden recording only where a full one is needed: every layer of ``self``.
        """
        if len(self.tokens) != len(other.tokens) or np.any(self.tokens != other.tokens):
            diff = (np.flatnonzero(self.tokens[: len(other.tokens)] != other.tokens[: len(self)])
                    if min(len(self), len(other)) else [])
            where = f"token {int(diff[0])}" if len(diff) else "length"
            return SpikeMismatch("tokens", None, None, f"{len(self)} tokens",
                                 f"{len(other)} tokens", f"token ids differ ({where})")
        for name, exp in self.counts.items():
            if name not in other.counts:
                return SpikeMismatch(name, None, None, "recorded counts", "nothing", "missing")
            got = other.counts[name]
            if got.shape != exp.shape:
                return SpikeMismatch(name, None, None, f"shape {exp.shape}", f"shape {got.shape}",
                                     "shape")
            bad = np.argwhere(exp != got)
            if len(bad):
                t, n = (int(i) for i in bad[0])
                return SpikeMismatch(name, t, n, int(exp[t, n]), int(got[t, n]))
        return None

    # -- storage --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write a compressed ``.npz`` (no pickled objects; see :meth:`load`)."""
        from ..outputs import atomic_write

        path = Path(path)
        header = {"format": "nsllm-spikes", "version": RECORDING_VERSION, "layers": self.layers,
                  "timesteps": self.timesteps, "meta": self.meta}
        arrays = {f"counts/{k}": v for k, v in self.counts.items()}
        arrays["tokens"] = self.tokens.astype(np.int32)
        arrays["text"] = np.frombuffer(self.text.encode("utf-8"), dtype=np.uint8)
        arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        with atomic_write(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SpikeRecording:
        """Read a recording written by :meth:`save`; any other file raises ValueError."""
        import zipfile

        try:
            return cls._load(path)
        except (zipfile.BadZipFile, EOFError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a readable spike recording ({type(e).__name__}: {e}); "
                             "write one with SpikeRecording.save") from None

    @classmethod
    def _load(cls, path: str | os.PathLike) -> SpikeRecording:
        with np.load(Path(path), allow_pickle=False) as z:
            if "header" not in z.files:
                raise ValueError(f"{path}: not a spike recording (no header); write one with "
                                 "SpikeRecording.save")
            header = json.loads(bytes(z["header"]).decode("utf-8"))
            if header.get("format") != "nsllm-spikes" or header.get("version") != 1:
                raise ValueError(f"{path}: unsupported recording format {header.get('format')!r} "
                                 f"version {header.get('version')!r} (this code reads version "
                                 f"{RECORDING_VERSION})")
            counts = {k: z[f"counts/{k}"] for k in header["layers"]}
            return cls(counts, z["tokens"], header["timesteps"], bytes(z["text"]).decode("utf-8"),
                       header.get("meta", {}))


class _SpikeTrace(Trace):
    """A Trace that keeps only the spike counts of chosen layers, stored as int8."""

    def __init__(self, layers: Iterable[str] | None):
        super().__init__()
        self._layers = None if layers is None else {f"{n}{SPIKES_SUFFIX}" for n in layers}

    def wants(self, name: str) -> bool:
        return name.endswith(SPIKES_SUFFIX) and (self._layers is None or name in self._layers)

    def record(self, name: str, value: np.ndarray) -> None:
        if self.wants(name):
            self.records.setdefault(name, []).append(np.asarray(value).astype(np.int8))


def record(model: IntegerModel | ModelWeights, tokens, *, text: str = "",
           layers: Iterable[str] | None = None, segment: int = 512,
           progress: Callable[[int, int], None] | None = None,
           meta: dict | None = None) -> SpikeRecording:
    """Run the golden model over a text and record every ternary layer's input spike counts.

    Parameters
    ----------
    model : IntegerModel or ModelWeights
    tokens : sequence of int
    text : str
        Stored with the recording.
    layers : iterable of str, optional
        Ternary layer names to keep (default: all).
    segment : int
        Tokens per prefill call; the recurrent state is carried over, so the counts equal one
        prefill of the whole text.
    progress : callable(done, total), optional
    meta : dict, optional
        Extra description stored with the recording.
    """
    if isinstance(model, ModelWeights):
        model = IntegerModel(model)
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    if len(tokens) == 0:
        raise ValueError("cannot record an empty text: give at least one token")
    cfg = model.config
    if layers is not None:
        layers = list(layers)
        unknown = sorted(set(layers) - set(cfg.ternary_layers()))
        if unknown:
            raise ValueError(f"unknown layers {unknown}; the model's ternary layers are "
                             f"{cfg.ternary_layers()}")
    trace = _SpikeTrace(layers)
    state = None
    for s in range(0, len(tokens), segment):
        _, state = model.prefill(tokens[None, s:s + segment], state, trace)
        if progress is not None:
            progress(min(s + segment, len(tokens)), len(tokens))
    timesteps = {n: cfg.quant[n].D for n in cfg.ternary_layers()}
    info = {"model": cfg.name, "source": "golden", "tokenizer": cfg.tokenizer}
    info.update(meta or {})
    return SpikeRecording.from_trace(trace, tokens, timesteps, text=text, meta=info)
