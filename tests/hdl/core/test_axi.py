"""``BurstSplitter`` and ``ReadArbiter`` in amaranth.sim against a memory model with random
``arready``/``rvalid`` stalls and clients with random back-pressure.

BurstSplitter: the AR bursts of every request equal the AXI4 rule (≤ 256 beats, never across
4 KiB), AR is held stable until ``arready``, beats come back in order, ``pending`` counts the
beats requested and not yet delivered, SLVERR/DECERR set the beat's ``error``.
ReadArbiter: fixed priority (client 0 first), and every client receives exactly its own
requests' beats, in order.
"""

from __future__ import annotations

import random

import pytest

from nsllm.hdl.core.axi import BOUNDARY, MAX_BURST, BurstSplitter, ReadArbiter

from .sim import get_payload, set_payload, simulate


def axi_split(addr, beats, pb):
    """The bursts of a request by the AXI4 rules (the golden model of the splitter)."""
    bursts = []
    while beats:
        n = min(beats, MAX_BURST, (BOUNDARY - addr % BOUNDARY) // pb)
        bursts.append((addr, n))
        addr, beats = addr + n * pb, beats - n
    return bursts


def word_at(addr, pb):
    """The memory's content: every word holds a pattern of its own address."""
    return (addr * 0x9E3779B97F4A7C15) & ((1 << (8 * pb)) - 1)


class Memory:
    """An AXI4 read slave: random ``arready``, bursts served in order with random ``rvalid``
    gaps; ``resp(addr)`` gives each beat's RRESP."""

    def __init__(self, axi, pb, rng, *, ar_stall=0.3, r_stall=0.3, resp=lambda a: 0):
        self.axi, self.pb, self.rng = axi, pb, rng
        self.ar_stall, self.r_stall, self.resp = ar_stall, r_stall, resp
        self.bursts = []  # accepted (addr, beats) in order
        self.queue = []  # [addr, beats left]
        self.held = None  # AR offered but not accepted: (addr, len), must stay stable
        self.errors = []

    def drive(self, ctx):
        axi = self.axi
        ctx.set(axi.arready, self.rng.random() >= self.ar_stall)
        beat = bool(self.queue) and self.rng.random() >= self.r_stall
        if beat:
            a, left = self.queue[0]
            ctx.set(axi.rdata, word_at(a, self.pb))
            ctx.set(axi.rresp, self.resp(a))
            ctx.set(axi.rlast, left == 1)
        ctx.set(axi.rvalid, beat)

    def sample(self, ctx):
        """After drive(): record this cycle's handshakes (they happen at the coming edge)."""
        axi = self.axi
        if self.held is not None and not ctx.get(axi.arvalid):
            self.errors.append("arvalid dropped before arready")
        if ctx.get(axi.arvalid):
            ar = (ctx.get(axi.araddr), ctx.get(axi.arlen))
            if self.held is not None and ar != self.held:
                self.errors.append(f"AR changed while waiting for arready: {self.held} → {ar}")
            if ctx.get(axi.arsize) != (self.pb - 1).bit_length() or ctx.get(axi.arburst) != 1:
                self.errors.append("arsize/arburst")
            if ctx.get(axi.arready):
                self.bursts.append((ar[0], ar[1] + 1))
                self.queue.append([ar[0], ar[1] + 1])
                self.held = None
            else:
                self.held = ar
        delivered = None
        if ctx.get(axi.rvalid) and ctx.get(axi.rready):
            head = self.queue[0]
            delivered = head[0]
            head[0] += self.pb
            head[1] -= 1
            if head[1] == 0:
                self.queue.pop(0)
        return delivered


def run_splitter(pb, requests, *, seed=0, ready=0.7, resp=lambda a: 0, ar_stall=0.3,
                 r_stall=0.3):
    dut = BurstSplitter(pb)
    rng = random.Random(seed)
    mem = Memory(dut.axi, pb, rng, ar_stall=ar_stall, r_stall=r_stall, resp=resp)
    out = {"beats": [], "pending_bad": []}
    total = sum(b for _, b in requests)

    async def tb(ctx):
        pending = 0  # the golden count: requested beats minus delivered ones
        queue = list(requests)
        for _ in range(20 * total + 200):
            if len(out["beats"]) == total and not queue:
                break
            if queue:
                set_payload(ctx, dut.i_req.p, {"addr": queue[0][0], "beats": queue[0][1]})
            ctx.set(dut.i_req.valid, bool(queue))
            ctx.set(dut.o_data.ready, rng.random() < ready)
            mem.drive(ctx)
            if ctx.get(dut.pending) != pending:
                out["pending_bad"].append((ctx.get(dut.pending), pending))
            mem.sample(ctx)
            if queue and ctx.get(dut.i_req.ready):
                pending += queue.pop(0)[1]
            if ctx.get(dut.o_data.valid) and ctx.get(dut.o_data.ready):
                out["beats"].append(get_payload(ctx, dut.o_data.p))
                pending -= 1
            await ctx.tick()
        for _ in range(3):  # nothing more arrives, pending settles at 0
            ctx.set(dut.i_req.valid, 0)
            mem.drive(ctx)
            mem.sample(ctx)
            await ctx.tick()
        out["pending_end"] = ctx.get(dut.pending)

    simulate(dut, tb)
    return out, mem


# one line per case: port bytes, request (byte address, beats)
SPLIT_CASES = [
    (8, 0, 1), (8, 0, 256), (8, 0, 257), (8, 4096 - 8, 2), (8, 4096 - 8 * 3, 600),
    (64, 0, 64), (64, 0, 65), (64, 64 * 10, 300), (4, 0, 1024), (4, 4, 1100), (16, 2048, 5),
    (128, 4096 - 128, 100), (64, (1 << 40) + 4096 - 64, 3), (8, 0, 0),
]


@pytest.mark.parametrize("pb,addr,beats", SPLIT_CASES)
def test_splitter_bursts_follow_the_axi_rules(pb, addr, beats):
    out, mem = run_splitter(pb, [(addr, beats)], seed=beats)
    assert mem.errors == []
    assert mem.bursts == axi_split(addr, beats, pb)
    assert [b["data"] for b in out["beats"]] == [word_at(addr + k * pb, pb)
                                                for k in range(beats)]
    assert out["pending_bad"] == [] and out["pending_end"] == 0


def test_splitter_back_to_back_requests_and_pending():
    """Many requests, slow consumer: the next request is split while earlier bursts are still
    outstanding; pending equals requested − delivered in every cycle."""
    rng = random.Random(5)
    requests = [(rng.randrange(0, 1 << 16) * 8, rng.randrange(1, 600)) for _ in range(12)]
    out, mem = run_splitter(8, requests, seed=6, ready=0.4)
    assert mem.errors == []
    assert mem.bursts == [b for a, n in requests for b in axi_split(a, n, 8)]
    assert [b["data"] for b in out["beats"]] == [word_at(a + k * 8, 8) for a, n in requests
                                                for k in range(n)]
    assert out["pending_bad"] == [] and out["pending_end"] == 0


@pytest.mark.parametrize("rresp,error", [(0, 0), (1, 0), (2, 1), (3, 1)])
def test_splitter_read_errors_mark_the_beat(rresp, error):
    """SLVERR (2) and DECERR (3) set the beat's error bit; OKAY and EXOKAY do not."""
    bad = 0x1000 + 8 * 3
    out, _ = run_splitter(8, [(0x1000, 6)], resp=lambda a: rresp if a == bad else 0)
    assert [b["error"] for b in out["beats"]] == [0, 0, 0, error, 0, 0]


def test_splitter_rejects_a_port_width_that_is_not_a_power_of_two():
    with pytest.raises(ValueError, match=r"^port_bytes must be a power of two ≤ 128, not 24$"):
        BurstSplitter(24)


# --- ReadArbiter -----------------------------------------------------------------------------
def run_arbiter(n_clients, requests, *, pb=8, depth=4, seed=0, ready=0.6, ask=0.5,
                r_stall=0.3):
    """``requests[c]``: client c's (addr, beats) list. Returns each client's received words and
    the grant checks."""
    dut = ReadArbiter(pb, n_clients, depth=depth)
    rng = random.Random(seed)
    got = [[] for _ in range(n_clients)]
    errors = []
    mem_queue = []  # accepted requests: [addr, beats left]
    total = sum(b for reqs in requests for _, b in reqs)

    async def tb(ctx):
        todo = [list(r) for r in requests]
        offered = [False] * n_clients
        for _ in range(40 * total + 400):
            if sum(map(len, got)) == total and not any(todo):
                break
            for c, cl in enumerate(dut.clients):
                # a request, once offered, stays until taken (stream rule)
                offered[c] = bool(todo[c]) and (offered[c] or rng.random() < ask)
                if offered[c]:
                    set_payload(ctx, cl.req.p, {"addr": todo[c][0][0], "beats": todo[c][0][1]})
                ctx.set(cl.req.valid, offered[c])
                ctx.set(cl.data.ready, rng.random() < ready)
            ctx.set(dut.o_req.ready, rng.random() < 0.7)
            beat = bool(mem_queue) and rng.random() >= r_stall
            if beat:
                ctx.set(dut.i_data.p.data, word_at(mem_queue[0][0], pb))
            ctx.set(dut.i_data.valid, beat)
            # the grant: the lowest-index client asking, and only it
            asking = [c for c in range(n_clients) if offered[c]]
            if ctx.get(dut.o_req.valid) and ctx.get(dut.o_req.ready):
                winner = asking[0]
                if get_payload(ctx, dut.o_req.p) != {"addr": todo[winner][0][0],
                                                     "beats": todo[winner][0][1]}:
                    errors.append(f"o_req does not carry client {winner}'s request")
                takers = [c for c in asking if ctx.get(dut.clients[c].req.ready)]
                if takers != [winner]:
                    errors.append(f"clients {takers} taken, {winner} has priority")
                request = todo[winner].pop(0)
                if request[1]:  # the memory answers a zero-beat request with no beat
                    mem_queue.append(list(request))
                offered[winner] = False
            elif any(ctx.get(dut.clients[c].req.ready) and offered[c] for c in asking):
                errors.append("a client's request taken without o_req")
            if beat and ctx.get(dut.i_data.ready):
                receivers = [c for c in range(n_clients)
                             if ctx.get(dut.clients[c].data.valid)
                             and ctx.get(dut.clients[c].data.ready)]
                if len(receivers) != 1:
                    errors.append(f"beat taken by {receivers}")
                else:
                    got[receivers[0]].append(ctx.get(dut.clients[receivers[0]].data.p.data))
                head = mem_queue[0]
                head[0] += pb
                head[1] -= 1
                if head[1] == 0:
                    mem_queue.pop(0)
            await ctx.tick()

    simulate(dut, tb)
    return got, errors


# one line per case: clients, route depth, requests per client, most beats, client ready
ARBITER_CASES = [(2, 4, 6, 5, 0.6), (3, 2, 5, 9, 0.3), (1, 4, 8, 3, 1.0), (4, 1, 4, 4, 0.5),
                 (3, 8, 10, 1, 0.8)]


@pytest.mark.parametrize("n,depth,per_client,most,ready", ARBITER_CASES)
def test_arbiter_routes_every_beat_to_its_client_in_order(n, depth, per_client, most, ready):
    rng = random.Random(n * 10 + depth)
    requests = [[((c << 20) + 8 * rng.randrange(1000), rng.randrange(1, most + 1))
                 for _ in range(per_client)] for c in range(n)]
    got, errors = run_arbiter(n, requests, depth=depth, seed=depth, ready=ready)
    assert errors == []
    for c in range(n):
        assert got[c] == [word_at(a + 8 * k, 8) for a, b in requests[c] for k in range(b)], c


def test_arbiter_gives_client_0_priority_under_contention():
    """All clients ask all the time: their requests are granted lowest index first."""
    requests = [[(c << 20, 1)] * 3 for c in range(3)]
    got, errors = run_arbiter(3, requests, ask=1.0, ready=1.0, r_stall=0.0, seed=1)
    assert errors == []
    assert [len(g) for g in got] == [3, 3, 3]


def test_arbiter_needs_a_client():
    with pytest.raises(ValueError, match=r"^n_clients must be at least 1, not 0$"):
        ReadArbiter(8, 0)


def test_arbiter_zero_beat_request_does_not_misroute_later_beats():
    got, _ = run_arbiter(2, [[(0, 0)], [(1 << 20, 2)]], ask=1.0, ready=1.0, r_stall=0.0)
    assert got == [[], [word_at(1 << 20, 8), word_at((1 << 20) + 8, 8)]]
