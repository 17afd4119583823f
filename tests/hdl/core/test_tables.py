"""``TableLoader`` in amaranth.sim: int32 tables from an image (a memory model with random
stalls) into a bank of a table memory, lane by lane when a beat carries fewer entries than a
word; ``busy``; the AXI error flag is sticky.

One line per case; :func:`run_loader` turns a list of commands into a testbench and returns the
table memory, the requests seen and the ``busy``/``error`` traces.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from nsllm.hdl.core.tables import TableLoader

from .sim import get_payload, set_payload, simulate


def image_bytes(seed, size=1 << 14):
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def entries(image, addr, n):
    return np.frombuffer(image[addr:addr + 4 * n], dtype="<i4").astype(np.int64).tolist()


def run_loader(pb, vector, bank_words, commands, *, seed=0, stall=0.3, req_stall=0.3,
               error_beats=()):
    """Run ``commands`` ((addr, n, bank) each) one after the other through a TableLoader.

    ``error_beats``: indices (over all beats of the run) answered with an AXI error.
    Returns ``(memory, requests, errors_after_each_command, busy_ok)``; ``memory[word]`` is a
    list of ``vector`` entries (None where never written).
    """
    dut = TableLoader(pb, vector, bank_words)
    rng = random.Random(seed)
    image = image_bytes(seed)
    memory = [[None] * vector for _ in range(2 * bank_words)]
    out = {"requests": [], "errors": [], "busy_bad": []}

    async def tb(ctx):
        beat_no = 0
        queue = []  # [addr, beats left] of requests taken
        ctx.set(dut.read.req.ready, 0)
        for addr, n, bank in commands:
            set_payload(ctx, dut.cmd.p, {"addr": addr, "n": n, "bank": bank})
            ctx.set(dut.cmd.valid, 1)
            assert ctx.get(dut.cmd.ready), "TableLoader: not ready while idle"
            await ctx.tick()
            ctx.set(dut.cmd.valid, 0)
            if not ctx.get(dut.busy):
                out["busy_bad"].append("busy not set the cycle after the command")
            for _ in range(50 * n + 100):
                if not ctx.get(dut.busy):
                    break
                if ctx.get(dut.cmd.ready):
                    out["busy_bad"].append("ready while busy")
                ctx.set(dut.read.req.ready, rng.random() >= req_stall)
                if ctx.get(dut.read.req.valid) and ctx.get(dut.read.req.ready):
                    req = get_payload(ctx, dut.read.req.p)
                    out["requests"].append((req["addr"], req["beats"]))
                    queue.append([req["addr"], req["beats"]])
                beat = bool(queue) and rng.random() >= stall
                if beat:
                    a = queue[0][0]
                    ctx.set(dut.read.data.p.data, int.from_bytes(image[a:a + pb], "little"))
                    ctx.set(dut.read.data.p.error, beat_no in error_beats)
                ctx.set(dut.read.data.valid, beat)
                if beat and ctx.get(dut.read.data.ready):
                    beat_no += 1
                    queue[0][0] += pb
                    queue[0][1] -= 1
                    if queue[0][1] == 0:
                        queue.pop(0)
                # the table memory: one lane per en bit
                en = ctx.get(dut.table.en)
                for lane in range(vector):
                    if en >> lane & 1:
                        memory[ctx.get(dut.table.addr)][lane] = ctx.get(dut.table.data[lane])
                await ctx.tick()
            else:
                raise AssertionError("TableLoader: busy stuck high")
            ctx.set(dut.read.data.valid, 0)
            assert not queue, "TableLoader: done before all beats were taken"
            out["errors"].append(ctx.get(dut.error))

    simulate(dut, tb)
    return memory, out["requests"], out["errors"], out["busy_bad"]


def expected_memory(seed, vector, bank_words, commands):
    image = image_bytes(seed)
    memory = [[None] * vector for _ in range(2 * bank_words)]
    for addr, n, bank in commands:
        values = entries(image, addr, n)
        for k, v in enumerate(values):
            memory[bank * bank_words + k // vector][k % vector] = v
    return memory


# one line per case: port bytes, vector (entries per word), words per bank, commands
CASES = [
    (8, 8, 8, [(64, 32, 0)]),  # 2 entries per beat: 4 beats fill a word, lane by lane
    (4, 4, 4, [(128, 16, 1)]),  # 1 entry per beat, bank 1
    (16, 4, 4, [(0, 16, 0), (256, 12, 1)]),  # one beat per word; both banks
    (32, 16, 2, [(192, 32, 1), (64, 16, 0)]),  # half a word per beat
    (64, 16, 8, [(0, 128, 0), (4096, 64, 1), (640, 16, 0)]),  # a later, shorter table
    (8, 2, 16, [(8, 32, 0)]),  # beats are whole words; the address need not be 64-aligned here
]


@pytest.mark.parametrize("pb,vector,bank_words,commands", CASES)
def test_tables_land_in_their_bank_lane_by_lane(pb, vector, bank_words, commands):
    memory, requests, errors, busy_bad = run_loader(pb, vector, bank_words, commands, seed=pb)
    assert busy_bad == []
    assert requests == [(addr, n // (pb // 4)) for addr, n, _ in commands]
    assert memory == expected_memory(pb, vector, bank_words, commands)
    assert errors == [0] * len(commands)


def test_full_rate_takes_one_cycle_per_beat():
    """No stalls: busy lasts the beats plus the request's cycle, nothing more."""
    pb, vector = 8, 8
    dut = TableLoader(pb, vector, 4)
    image = image_bytes(1)
    busy_cycles = []

    async def tb(ctx):
        ctx.set(dut.read.req.ready, 1)
        set_payload(ctx, dut.cmd.p, {"addr": 0, "n": 32, "bank": 0})
        ctx.set(dut.cmd.valid, 1)
        await ctx.tick()
        ctx.set(dut.cmd.valid, 0)
        k = 0
        while ctx.get(dut.busy):
            requested = not ctx.get(dut.read.req.valid)
            ctx.set(dut.read.data.valid, requested)
            ctx.set(dut.read.data.p.data, int.from_bytes(image[8 * k:8 * k + 8], "little"))
            if requested:
                k += 1
            busy_cycles.append(1)
            await ctx.tick()

    simulate(dut, tb)
    assert len(busy_cycles) == 1 + 32 // 2


def test_axi_error_is_sticky_across_commands():
    commands = [(0, 16, 0), (256, 16, 1), (512, 16, 0)]
    _, _, errors, _ = run_loader(8, 8, 4, commands, error_beats={3})
    assert errors == [1, 1, 1]
    _, _, errors, _ = run_loader(8, 8, 4, commands, error_beats={8 + 2})
    assert errors == [0, 1, 1]


@pytest.mark.parametrize("args,message", [
    ((64, 8, 4), r"^port_bytes/4 \(16\) entries per beat must divide the table word of 8 "
                 r"entries$"),
    ((24, 8, 4), r"^port_bytes/4 \(6\) entries per beat must divide the table word of 8 "
                 r"entries$"),
    ((2, 8, 4), r"^port_bytes/4 \(0\) entries per beat must divide the table word of 8 "
                r"entries$"),
    ((8, 8, 6), r"^bank_words must be a power of two, not 6$"),
])
def test_init_wrong_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        TableLoader(*args)
