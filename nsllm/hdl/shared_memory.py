"""``SharedMemory``: an on-chip memory whose ports are shared by named clients, explicitly.

The scratchpad and the table memory are each read and written by several units. Instead of
units driving one memory port in turn (ownership by statement order), every client gets its own
interface, and each physical port has a fixed priority list of clients: the first client with
``en`` set that cycle is served. Units never need the same port in the same cycle (the
sequencer runs one instruction at a time); if two ask anyway, the lower-priority request is
dropped and the sticky ``conflict`` output is set, which the core reports as a datapath error.
*Background* clients (the debug readback) may be starved silently.

Reads have one cycle of latency (``data`` is valid the cycle after ``en``); a write client sets
one ``en`` bit per element (lane), so a word can be filled lane by lane.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["SharedMemory", "read_signature", "write_signature"]


def read_signature(shape: data.ArrayLayout, depth: int):
    """A read client, seen from the client."""
    return wiring.Signature({"addr": Out(range(max(depth, 2))), "en": Out(1), "data": In(shape)})


def write_signature(shape: data.ArrayLayout, depth: int):
    """A write client, seen from the client (``en``: one bit per element)."""
    return wiring.Signature({"addr": Out(range(max(depth, 2))), "en": Out(shape.length),
                             "data": Out(shape)})


class SharedMemory(wiring.Component):
    """A memory of ``depth`` words of ``shape`` (an ``ArrayLayout``) with arbitrated clients.

    Parameters
    ----------
    shape : data.ArrayLayout
    depth : int
    read_ports : list of list of str
        One list per physical read port: its clients, highest priority first. Client ``c``
        appears as attribute ``r_<c>``.
    write_clients : list of str
        Clients of the single write port, highest priority first (attribute ``w_<c>``).
    background : iterable of str
        Read clients that may lose arbitration without it being a conflict.
    """

    #: Cycles from a read's ``en`` to its ``data``.
    read_latency = 1

    def __init__(self, shape: data.ArrayLayout, depth: int, read_ports: list[list[str]],
                 write_clients: list[str], background=()):
        if depth < 1:
            raise ValueError(f"depth must be positive, not {depth}")
        self.shape, self.depth = shape, depth
        self.read_ports = [list(p) for p in read_ports]
        self.write_clients = list(write_clients)
        self.background = set(background)
        members = {"conflict": Out(1)}
        for port in self.read_ports:
            for c in port:
                members[f"r_{c}"] = In(read_signature(shape, depth))
        for c in self.write_clients:
            members[f"w_{c}"] = In(write_signature(shape, depth))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=self.shape, depth=self.depth, init=[])
        conflicts = []

        wr = mem.write_port(granularity=1)
        served = Signal(name="w_served")
        for c in self.write_clients:
            client = getattr(self, f"w_{c}")
            asks = client.en.any()
            with m.If(asks & ~served):
                m.d.comb += [wr.addr.eq(client.addr), wr.data.eq(client.data),
                             wr.en.eq(client.en)]
            conflicts.append(asks & served)
            served_next = Signal(name=f"w_served_{c}")
            m.d.comb += served_next.eq(served | asks)
            served = served_next

        for k, port in enumerate(self.read_ports):
            rd = mem.read_port(transparent_for=(wr,))
            taken = Signal(name=f"r{k}_taken")
            for c in port:
                client = getattr(self, f"r_{c}")
                m.d.comb += client.data.eq(rd.data)
                with m.If(client.en & ~taken):
                    m.d.comb += [rd.addr.eq(client.addr), rd.en.eq(1)]
                if c not in self.background:
                    conflicts.append(client.en & taken)
                taken_next = Signal(name=f"r{k}_taken_{c}")
                m.d.comb += taken_next.eq(taken | client.en)
                taken = taken_next
        if conflicts:
            with m.If(Cat(*conflicts).any()):
                m.d.sync += self.conflict.eq(1)
        return m
