"""Small amaranth.sim helpers shared by the core's unit tests."""

from __future__ import annotations

from amaranth.hdl import Value
from amaranth.sim import Simulator

from nsllm.sim.streams import pack, unpack


def simulate(dut, *testbenches, background=(), clock=True):
    """Run ``testbenches`` (async ``tb(ctx)``) on ``dut`` until they return; ``background``
    ones (bus models that loop forever) stop with them."""
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-8)
    for tb in background:
        sim.add_testbench(tb, background=True)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run()


def set_payload(ctx, view, value) -> None:
    """Set a layout-typed signal (a ``data.View``) from a Python value (dict / list / int)."""
    ctx.set(Value.cast(view), pack(view.shape(), value))


def get_payload(ctx, view):
    """The value of a layout-typed signal as :func:`nsllm.sim.streams.unpack` gives it."""
    return unpack(view.shape(), ctx.get(Value.cast(view)))
