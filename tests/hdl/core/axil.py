"""An AXI4-Lite master for amaranth.sim testbenches: one transaction at a time, handshakes
checked, optional idle cycles before each channel."""

from __future__ import annotations

import random


class AxiLiteMaster:
    """Drives ``bus`` (a flipped :func:`nsllm.hdl.core.axi.axil_signature`: the slave's port).

    Parameters
    ----------
    ctx : testbench context
    bus : the slave's ``s_axil`` interface
    stall : float
        Probability of an idle cycle before each channel's handshake and of ``bready`` /
        ``rready`` being low in a cycle.
    timeout : int
        Cycles a handshake may take before the test fails.
    """

    def __init__(self, ctx, bus, *, stall: float = 0.0, seed: int = 0, timeout: int = 50):
        self.ctx, self.bus, self.stall, self.timeout = ctx, bus, stall, timeout
        self.rng = random.Random(seed)
        for name in ("awvalid", "wvalid", "bready", "arvalid", "rready"):
            ctx.set(getattr(bus, name), 0)

    async def _idle(self):
        while self.rng.random() < self.stall:
            await self.ctx.tick()

    async def write(self, addr: int, data: int, watch=()) -> tuple[int, list[int]]:
        """Write ``data`` at byte offset ``addr``; returns ``(bresp, values)`` with the value of
        each signal of ``watch`` in the cycle the write was accepted."""
        ctx, b = self.ctx, self.bus
        await self._idle()
        ctx.set(b.awaddr, addr)
        ctx.set(b.wdata, data & 0xFFFFFFFF)
        ctx.set(b.wstrb, 0xF)
        ctx.set(b.awvalid, 1)
        ctx.set(b.wvalid, 1)
        for _ in range(self.timeout):
            if ctx.get(b.awready) and ctx.get(b.wready):
                break
            await ctx.tick()
        else:
            raise AssertionError(f"write {addr:#x}: awready/wready never came")
        seen = [ctx.get(s) for s in watch]
        await ctx.tick()
        ctx.set(b.awvalid, 0)
        ctx.set(b.wvalid, 0)
        for _ in range(self.timeout):
            ready = self.rng.random() >= self.stall
            ctx.set(b.bready, ready)
            if ready and ctx.get(b.bvalid):
                resp = ctx.get(b.bresp)
                await ctx.tick()
                ctx.set(b.bready, 0)
                return resp, seen
            await ctx.tick()
        raise AssertionError(f"write {addr:#x}: no write response")

    async def read(self, addr: int) -> tuple[int, int]:
        """Read the word at byte offset ``addr``; returns ``(rdata, rresp)``."""
        ctx, b = self.ctx, self.bus
        await self._idle()
        ctx.set(b.araddr, addr)
        ctx.set(b.arvalid, 1)
        for _ in range(self.timeout):
            if ctx.get(b.arready):
                break
            await ctx.tick()
        else:
            raise AssertionError(f"read {addr:#x}: arready never came")
        await ctx.tick()
        ctx.set(b.arvalid, 0)
        for _ in range(self.timeout):
            ready = self.rng.random() >= self.stall
            ctx.set(b.rready, ready)
            if ready and ctx.get(b.rvalid):
                value = ctx.get(b.rdata), ctx.get(b.rresp)
                await ctx.tick()
                ctx.set(b.rready, 0)
                return value
            await ctx.tick()
        raise AssertionError(f"read {addr:#x}: no read data")
