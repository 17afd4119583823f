"""Bus models for ``amaranth.sim`` testbenches of the core: DRAM behind an AXI4 read port and an
AXI4-Lite master, both stepped by one :meth:`AmaranthBus.cycle` per clock.

Slow (pure Python, about 1 k cycles/s on the core) but needs no external tool: it runs the
core's unit tests on tiny models. Whole models run on Verilator (:mod:`nsllm.sim`).
"""

from __future__ import annotations

import random


class AmaranthBus:
    """Serves ``core.m_axi`` from ``memory`` and drives ``core.s_axil``.

    Parameters
    ----------
    ctx : amaranth.sim testbench context
    core : NSLLMCore
    memory : bytearray
        Device DRAM; burst addresses index it directly.
    stall : float
        Probability that a read beat is held back for a cycle (random ``rvalid`` gaps).
    seed : int
    """

    def __init__(self, ctx, core, memory: bytearray, stall: float = 0.0, seed: int = 0):
        self.ctx, self.core, self.mem = ctx, core, memory
        self.port_bytes = core.params.port_bytes
        self.stall = stall
        self.rng = random.Random(seed)
        self.queue: list[list[int]] = []
        self.burst: list[int] | None = None
        self.cycles = 0
        ctx.set(core.m_axi.arready, 1)
        ctx.set(core.s_axil.bready, 1)
        ctx.set(core.s_axil.rready, 1)

    async def cycle(self) -> None:
        ctx, axi, pb = self.ctx, self.core.m_axi, self.port_bytes
        if ctx.get(axi.arvalid):
            self.queue.append([ctx.get(axi.araddr), ctx.get(axi.arlen) + 1])
        if self.burst is None and self.queue:
            self.burst = self.queue.pop(0)
        beat = self.burst is not None and self.rng.random() >= self.stall
        if beat:
            a = self.burst[0]
            ctx.set(axi.rdata, int.from_bytes(self.mem[a:a + pb], "little"))
            ctx.set(axi.rlast, self.burst[1] == 1)
        ctx.set(axi.rvalid, beat)
        await ctx.tick()
        self.cycles += 1
        if beat:
            self.burst[0] += pb
            self.burst[1] -= 1
            if self.burst[1] == 0:
                self.burst = None

    async def reg_write(self, offset: int, value: int) -> None:
        ctx, ax = self.ctx, self.core.s_axil
        ctx.set(ax.awaddr, offset)
        ctx.set(ax.wdata, value & 0xFFFFFFFF)
        ctx.set(ax.awvalid, 1)
        ctx.set(ax.wvalid, 1)
        await self.cycle()
        ctx.set(ax.awvalid, 0)
        ctx.set(ax.wvalid, 0)
        await self.cycle()

    async def reg_read(self, offset: int) -> int:
        ctx, ax = self.ctx, self.core.s_axil
        ctx.set(ax.araddr, offset)
        ctx.set(ax.arvalid, 1)
        await self.cycle()
        ctx.set(ax.arvalid, 0)
        while not ctx.get(ax.rvalid):
            await self.cycle()
        value = ctx.get(ax.rdata)
        await self.cycle()
        return value
