"""Bus models for ``amaranth.sim`` testbenches of the core: memory behind every AXI4 read port
and an AXI4-Lite master, all stepped by one :meth:`AmaranthBus.cycle` per clock.

Slow (pure Python, about 1 k cycles/s on the core) but needs no external tool: it runs the
core's unit tests on tiny models. Whole models run on Verilator (:mod:`nsllm.sim`).
"""

from __future__ import annotations

import random

from ..host.device import FlatAllocator


class _ReadPort:
    """One AXI4 read master served from the shared memory, in order, with random gaps."""

    def __init__(self, ctx, axi, memory: bytearray, port_bytes: int, stall: float,
                 rng: random.Random, latency: int):
        self.ctx, self.axi, self.mem, self.pb = ctx, axi, memory, port_bytes
        self.stall, self.rng, self.latency = stall, rng, latency
        self.queue: list[list[int]] = []  # [addr, beats left, cycle it may start]
        self.cycle = 0
        self.error = ""
        ctx.set(axi.arready, 1)

    def drive(self) -> bool:
        """Set this cycle's inputs; True when a beat is taken at the coming edge."""
        ctx, axi, pb = self.ctx, self.axi, self.pb
        if ctx.get(axi.arvalid):  # arready is always 1: taken at the coming edge
            addr, beats = ctx.get(axi.araddr), ctx.get(axi.arlen) + 1
            if (addr >> 12) != ((addr + beats * pb - 1) >> 12):
                self.error = self.error or f"burst at {addr:#x} of {beats} beats crosses 4 KiB"
            self.queue.append([addr, beats, self.cycle + self.latency])
        head = self.queue[0] if self.queue else None
        beat = (head is not None and self.cycle >= head[2] and self.rng.random() >= self.stall)
        if beat:
            a = head[0]
            ok = a + pb <= len(self.mem)
            ctx.set(axi.rdata, int.from_bytes(self.mem[a:a + pb], "little") if ok else 0)
            ctx.set(axi.rresp, 0 if ok else 2)
            ctx.set(axi.rlast, head[1] == 1)
        ctx.set(axi.rvalid, beat)
        return beat and bool(ctx.get(axi.rready))  # testbenches see settled values

    def advance(self, beat: bool) -> None:
        self.cycle += 1
        if beat:
            head = self.queue[0]
            head[0] += self.pb
            head[1] -= 1
            if head[1] == 0:
                self.queue.pop(0)


class AmaranthBus:
    """Serves every ``core.m_axi_*`` port from ``memory`` and drives ``core.s_axil``.

    Parameters
    ----------
    ctx : amaranth.sim testbench context
    core : NSLLMCore
    memory : bytearray
        Device memory; burst addresses index it directly.
    stall : float
        Probability that a read beat is held back for a cycle (random ``rvalid`` gaps), on every
        port independently.
    seed : int
    latency : int
        Cycles from an accepted AR to its first beat.
    """

    name = "amaranth"

    def __init__(self, ctx, core, memory: bytearray, stall: float = 0.0, seed: int = 0,
                 latency: int = 0):
        from ..hdl.core import axi_port_names

        self.ctx, self.core, self.mem = ctx, core, memory
        rng = random.Random(seed)
        self.ports = [_ReadPort(ctx, getattr(core, name), memory, core.params.port_bytes, stall,
                                rng, latency)
                      for name in axi_port_names(core.params.weight_ports)]
        self.allocator = FlatAllocator(len(memory))
        self.cycles = 0
        ctx.set(core.s_axil.bready, 1)
        ctx.set(core.s_axil.rready, 1)

    async def cycle(self) -> None:
        beats = [port.drive() for port in self.ports]
        await self.ctx.tick()
        self.cycles += 1
        for port, beat in zip(self.ports, beats, strict=True):
            port.advance(beat)

    @property
    def protocol_error(self) -> str:
        return next((p.error for p in self.ports if p.error), "")

    # -- enough of the Device protocol for nsllm.host.runtime's helpers
    def alloc(self, nbytes: int, arg: str) -> int:
        return self.allocator.alloc(nbytes, arg)

    def write(self, addr: int, data: bytes) -> None:
        self.mem[addr:addr + len(data)] = data

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
