"""amaranth.sim drivers for stream components: random input gaps and output back-pressure.

``run_stream(dut, payloads, n_out)`` pushes ``payloads`` into ``dut.i_stream`` (valid dropped for
a random number of cycles between items) while a consumer toggles ``dut.o_stream.ready`` at
random, and returns the accepted output payloads with the cycle each was taken in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator


@dataclass
class Received:
    cycle: int
    payload: object  #: amaranth.lib.data.Const of the output layout


def run_stream(dut, payloads: Sequence, n_out: int, *, gap: float = 0.3, stall: float = 0.3,
               seed: int = 0, setup: Callable | None = None, max_cycles: int = 200_000,
               in_name: str = "i_stream", out_name: str = "o_stream") -> list[Received]:
    """Simulate ``dut`` until ``n_out`` outputs were taken; ``setup(ctx)`` sets static ports first.

    ``gap`` is the probability of an idle input cycle before each item, ``stall`` the probability
    that the consumer is not ready in a cycle. Raises ``TimeoutError`` after ``max_cycles``.
    """
    rng = np.random.default_rng(seed)
    i_port, o_port = getattr(dut, in_name), getattr(dut, out_name)
    got: list[Received] = []
    state = {"cycle": 0}

    async def producer(ctx):
        if setup is not None:
            setup(ctx)
        for payload in payloads:
            while rng.random() < gap:
                await ctx.tick()
            ctx.set(i_port.valid, 1)
            ctx.set(i_port.payload, payload)
            await ctx.tick().until(i_port.ready)
            ctx.set(i_port.valid, 0)

    async def consumer(ctx):
        while len(got) < n_out:
            ctx.set(o_port.ready, int(rng.random() >= stall))
            _, _, valid, ready, payload = await ctx.tick().sample(
                o_port.valid, o_port.ready, o_port.payload)
            state["cycle"] += 1
            if valid and ready:
                got.append(Received(state["cycle"], payload))
            if state["cycle"] > max_cycles:
                raise TimeoutError(
                    f"{type(dut).__name__}: only {len(got)} of {n_out} outputs after "
                    f"{max_cycles} cycles")
        # a few more cycles: nothing further may come out
        ctx.set(o_port.ready, 1)
        for _ in range(8):
            _, _, valid = await ctx.tick().sample(o_port.valid)
            if valid:
                raise AssertionError(f"{type(dut).__name__}: unexpected extra output")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    return got
