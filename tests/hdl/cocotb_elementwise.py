"""Shared drive-and-compare code of the elementwise cocotb testbenches (norm, MLGRU, gates,
argmax), which all run on :class:`tests.hdl.elementwise_top.ElementwiseTestTop`."""

import numpy as np

from nsllm.model import numerics as nx
from nsllm.sim.streams import TB, test_parameters

from .elementwise_top import UNITS, ElementwiseTestTop


async def start(dut, prefix):
    """Clock, reset, and a source and sink on the unit ``prefix`` of the toplevel.

    Returns ``(tb, source, sink, unit)``; ``unit`` is the Amaranth object (for its layouts).
    """
    params = test_parameters()
    unit = ElementwiseTestTop().units[prefix]
    tb = TB(dut, f"{UNITS[prefix]}", seed=params.get("seed", 0))
    for other in UNITS:  # keep the other units idle (Icarus leaves undriven inputs at z)
        getattr(dut, f"{other}__i_stream__valid").value = 0
        getattr(dut, f"{other}__o_stream__ready").value = 0
    source = tb.source(f"{prefix}__i_stream", unit.i_stream.payload.shape(),
                       valid_probability=params.get("valid", 0.7))
    sink = tb.sink(f"{prefix}__o_stream", unit.o_stream.payload.shape(),
                   ready_probability=params.get("ready", 0.7))
    await tb.reset()
    return tb, source, sink, unit


async def transfer(source, sink, inputs, expected):
    """Send one batch and wait until all its outputs arrived; the sink compares every beat and
    raises naming the component, cycle, beat and lane of the first mismatch."""
    inputs, expected = list(inputs), list(expected)
    begin = len(sink.beats)
    sink.expect(expected)
    source.send(inputs)
    await sink.wait_for(begin + len(expected),
                        timeout_cycles=40 * max(len(inputs), len(expected)) + 200)
    await sink.wait_quiet(4)


async def check_stream(dut, prefix, inputs, expected):
    """Run one batch through the unit ``prefix`` with random gaps and back-pressure."""
    _, source, sink, _ = await start(dut, prefix)
    await transfer(source, sink, inputs, expected)


def random_acts(rng, n):
    """Mostly values near the sigmoid range (±12), some over the full activation range."""
    small = rng.integers(-12 << nx.ACT_FRAC, 12 << nx.ACT_FRAC, n)
    full = rng.integers(nx.ACT_MIN, nx.ACT_MAX + 1, n)
    return np.where(rng.random(n) < 0.8, small, full)


def edge_acts():
    """Activations at the ±8 sigmoid edges and the range limits."""
    edge = 8 << nx.ACT_FRAC
    return [0, -1, 1, edge, edge - 1, edge - 8, edge - 9, -edge, -edge - 1, -edge - 8, -edge - 9,
            -edge + 8, nx.ACT_MAX, nx.ACT_MIN]


def run_elementwise(test_module: str, simulator: str, **parameters):
    """pytest side: build the shared toplevel (cached per simulator) and run ``test_module``."""
    from nsllm.sim.cocotb_runner import run_cocotb

    return run_cocotb(ElementwiseTestTop(), test_module, simulator, name="ElementwiseTestTop",
                      parameters=parameters)
