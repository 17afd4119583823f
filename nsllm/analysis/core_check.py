"""Cross-check: the spike counts the simulated core computes equal the golden model's.

The core leaves a copy of every LINEAR's input spike counts in its scratchpad;
:func:`nsllm.host.runtime.record_spikes` reads them back instruction by instruction. This module
wraps them as a :class:`~nsllm.analysis.recording.SpikeRecording` and compares with a golden
recording of the same tokens.
"""

from __future__ import annotations

from .recording import SpikeMismatch, SpikeRecording, record


def core_recording(runner, tokens, timesteps, text: str = "") -> SpikeRecording:
    """Record every ternary layer's spike counts from a core (any Device) for ``tokens``."""
    from nsllm.host.runtime import record_spikes

    counts = record_spikes(runner, [int(t) for t in tokens])
    return SpikeRecording(counts, tokens, dict(timesteps), text, {"source": "core"})


def check_core_spikes(weights, text: str, simulator: str = "verilator",
                      tokenizer=None) -> tuple[SpikeRecording, SpikeMismatch | None]:
    """Run ``text`` through the simulated core and the golden model; return the core's
    recording and the first mismatch (``None`` when every count agrees)."""
    from nsllm.model.tokenizer import load_tokenizer
    from nsllm.sim.verilator_device import sim_backend

    tok = tokenizer or load_tokenizer(weights.config.tokenizer)
    tokens = tok.encode(text)
    timesteps = {name: q.D for name, q in weights.config.quant.items()}
    golden = record(weights, tokens, text=text)
    runner = sim_backend(weights, simulator=simulator).runner
    core = core_recording(runner, golden.tokens, timesteps, text)
    return core, golden.compare(core)
