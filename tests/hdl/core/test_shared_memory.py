"""``SharedMemory`` in amaranth.sim: fixed priorities per port, the sticky ``conflict`` flag,
background clients that lose silently, lane-granular writes, read-after-write transparency and
one cycle of read latency (every client of a port sees the port's data).

Each case is one line: a script of cycles (what each client asks in that cycle), the data each
read must return and the final ``conflict``; :func:`run_script` plays it.
"""

from __future__ import annotations

import pytest
from amaranth.hdl import signed
from amaranth.lib import data

from nsllm.hdl.shared_memory import SharedMemory

from .sim import simulate

SHAPE = data.ArrayLayout(signed(8), 4)
READ_PORTS = [["hi", "lo", "dbg"], ["other"]]
WRITERS = ["wa", "wb"]


def memory():
    return SharedMemory(SHAPE, 8, READ_PORTS, WRITERS, background=["dbg"])


def run_script(script, preload=()):
    """``script``: list of cycles, each ``{client: request}`` — a read client's request is an
    address, a write client's ``(addr, en mask, [4 values])``. ``preload``: (addr, values)
    written first (by ``wb``, one per cycle). Returns ``(reads, conflict)`` with
    ``reads[(cycle, client)]`` the data a read issued in ``cycle`` returned."""
    dut = memory()
    clients = [c for port in READ_PORTS for c in port]
    reads = {}
    out = {}

    def idle(ctx):
        for c in clients:
            ctx.set(getattr(dut, f"r_{c}").en, 0)
        for w in WRITERS:
            ctx.set(getattr(dut, f"w_{w}").en, 0)

    async def write(ctx, w, addr, en, values):
        port = getattr(dut, f"w_{w}")
        ctx.set(port.addr, addr)
        ctx.set(port.en, en)
        for i, v in enumerate(values):
            ctx.set(port.data[i], v)

    async def tb(ctx):
        idle(ctx)
        for addr, values in preload:
            await write(ctx, "wb", addr, 0b1111, values)
            await ctx.tick()
            idle(ctx)
        for n, cycle in enumerate(script):
            idle(ctx)
            for client, request in cycle.items():
                if client in WRITERS:
                    await write(ctx, client, *request)
                else:
                    port = getattr(dut, f"r_{client}")
                    ctx.set(port.addr, request)
                    ctx.set(port.en, 1)
            await ctx.tick()
            idle(ctx)
            for client in cycle:
                if client not in WRITERS:
                    port = getattr(dut, f"r_{client}")
                    reads[(n, client)] = [ctx.get(port.data[i]) for i in range(4)]
        await ctx.tick()
        out["conflict"] = ctx.get(dut.conflict)

    simulate(dut, tb)
    return reads, out["conflict"]


A, B, C = [1, 2, 3, 4], [-5, -6, -7, -8], [9, 10, 11, 12]
PRE = [(1, A), (2, B), (3, C)]

# one line per case: script, reads {(cycle, client): data}, conflict
CASES = [
    pytest.param([{"hi": 1}], {(0, "hi"): A}, 0, id="one-read"),
    pytest.param([{"lo": 2}, {"hi": 3}], {(0, "lo"): B, (1, "hi"): C}, 0, id="in-turn"),
    pytest.param([{"hi": 1, "lo": 2}], {(0, "hi"): A, (0, "lo"): A}, 1,
                 id="hi-wins-lo-conflicts"),
    pytest.param([{"lo": 2, "dbg": 3}], {(0, "lo"): B, (0, "dbg"): B}, 0,
                 id="background-loses-silently"),
    pytest.param([{"dbg": 3}], {(0, "dbg"): C}, 0, id="background-served-when-free"),
    pytest.param([{"hi": 1, "other": 2}], {(0, "hi"): A, (0, "other"): B}, 0,
                 id="ports-are-independent"),
    pytest.param([{"wa": (4, 0b1111, C)}, {"hi": 4}], {(1, "hi"): C}, 0, id="write-read"),
    pytest.param([{"wa": (1, 0b0101, [0, 0, 0, 0])}, {"hi": 1}], {(1, "hi"): [0, 2, 0, 4]}, 0,
                 id="lane-enables"),
    pytest.param([{"wa": (5, 0b0001, [7, 0, 0, 0])}, {"wa": (5, 0b0010, [0, 8, 0, 0])},
                  {"wa": (5, 0b1100, [0, 0, 9, 10])}, {"hi": 5}], {(3, "hi"): [7, 8, 9, 10]}, 0,
                 id="lane-by-lane-fill"),
    pytest.param([{"wa": (2, 0b1111, C), "hi": 2, "other": 2}], {(0, "hi"): C, (0, "other"): C},
                 0, id="read-transparent-to-the-write"),
    pytest.param([{"wa": (2, 0b0011, C), "hi": 2}], {(0, "hi"): [9, 10, -7, -8]}, 0,
                 id="transparent-per-lane"),
    pytest.param([{"wa": (1, 0b1111, C), "wb": (2, 0b1111, A)}, {"hi": 1}, {"hi": 2}],
                 {(1, "hi"): C, (2, "hi"): B}, 1, id="write-priority-drops-wb"),
    pytest.param([{"wb": (2, 0b1111, A)}, {"hi": 2}], {(1, "hi"): A}, 0, id="wb-alone"),
    pytest.param([{"wa": (1, 0, C), "wb": (2, 0b1111, A)}, {"hi": 2}], {(1, "hi"): A}, 0,
                 id="no-lane-enabled-is-no-request"),
    pytest.param([{"hi": 1, "lo": 2}, {"lo": 3}, {"lo": 2}], {(2, "lo"): B}, 1,
                 id="conflict-is-sticky"),
]


@pytest.mark.parametrize("script,reads,conflict", CASES)
def test_shared_memory(script, reads, conflict):
    got, got_conflict = run_script(script, PRE)
    assert {k: got[k] for k in reads} == reads
    assert got_conflict == conflict


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match=r"^depth must be positive, not 0$"):
        SharedMemory(SHAPE, 0, READ_PORTS, WRITERS)
