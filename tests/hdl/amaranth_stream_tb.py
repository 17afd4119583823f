"""``run_stream``: the shared amaranth.sim stream driver
(:func:`nsllm.sim.streams.run_amaranth_stream`) with the interface the elementwise-unit tests use:
payloads as attribute objects.

``run_stream(dut, payloads, n_out)`` pushes ``payloads`` (dicts of field values) into
``dut.i_stream`` with a random idle cycle before an item with probability ``gap``, while the
consumer drops ``dut.o_stream.ready`` with probability ``stall``; it returns the accepted outputs
with the cycle each was taken in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

from nsllm.sim.streams import run_amaranth_stream


@dataclass
class Received:
    cycle: int
    payload: object  #: the output fields as attributes (``payload.x``, ``payload.last`` …)


def run_stream(dut, payloads: Sequence, n_out: int, *, gap: float = 0.3, stall: float = 0.3,
               seed: int = 0, setup: Callable | None = None, max_cycles: int = 200_000,
               in_name: str = "i_stream", out_name: str = "o_stream") -> list[Received]:
    """Simulate ``dut`` until ``n_out`` outputs were taken; ``setup(ctx)`` sets static ports."""
    got = run_amaranth_stream(dut, payloads, n_out, setup=setup, in_port=in_name,
                              out_port=out_name, valid_probability=1.0 - gap,
                              ready_probability=1.0 - stall, seed=seed, max_cycles=max_cycles)
    return [Received(cycle, SimpleNamespace(**v) if isinstance(v, dict) else v)
            for cycle, v in got]
