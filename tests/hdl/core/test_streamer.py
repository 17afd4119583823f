"""``WeightStreamer`` in amaranth.sim: spiking columns → one burst each from the port's weight
region (a memory model with random stalls) → decoded AccumulatorBank beats (the column's
trits word by word, its count, the word index, ``first`` on the layer's first column), with
back-pressure from the bank side; ``busy``, ``used``, the per-beat strobe, the columns in
flight bounded by the FIFO depth, and the trit-code and AXI error flags.

One line per case; :func:`run_streamer` plays one or more layers (a ``begin`` pulse before
each) and returns what left on ``o_beat``.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from nsllm.hdl.core import CoreParams
from nsllm.hdl.core.streamer import WeightStreamer
from nsllm.model.packing import TRITS_PER_BYTE, pack_trits

from .sim import get_payload, set_payload, simulate

BASE = 0x2_0000_0000  # the port's weight region (64-bit device address)


def params(port_bytes=8, packings=("2bit", "base3"), fifo_depth=4):
    return CoreParams(port_bytes=port_bytes, vector=max(4, port_bytes // 4),
                      packings=packings, max_vocab=64, max_hidden=32, max_intermediate=64,
                      max_layers=1, fifo_depth=fifo_depth)


def layer(rng, p, packing, beats, n_columns, region):
    """Random columns of ``beats`` words written into ``region``; returns the spiking columns
    (offset, count) and the beats the bank must receive."""
    rows = TRITS_PER_BYTE[packing] * p.port_bytes * beats
    stride = beats * p.port_bytes
    slots = rng.sample(range(len(region) // stride), n_columns)
    columns, expected = [], []
    for k, slot in enumerate(slots):
        trits = np.array([rng.choice((-1, 0, 1)) for _ in range(rows)])[:, None]
        region[slot * stride:(slot + 1) * stride] = pack_trits(trits, packing)[0].tobytes()
        count = rng.choice([c for c in range(-p.max_D, p.max_D + 1) if c])
        columns.append((slot * stride, count))
        per_word = rows // beats
        for w in range(beats):
            word = trits[w * per_word:(w + 1) * per_word, 0].tolist()
            expected.append({"trits": word + [0] * (p.lanes - per_word), "count": count,
                             "word": w, "first": int(k == 0)})
    return columns, expected


def run_streamer(p, layers, *, seed=0, stall=0.3, error_beats=(), region=None):
    """``layers``: list of (packing, beats per column, columns). Returns (beats out, checks)."""
    dut = WeightStreamer(p)
    rng = random.Random(seed)
    pb = p.port_bytes
    out = {"beats": [], "strobes": 0, "in_flight_max": 0, "busy_end": [], "errors": [],
           "used": [], "requests": [], "busy_gaps": []}

    async def tb(ctx):
        ctx.set(dut.base, BASE)
        beat_no = 0
        queue = []  # requests taken: [addr, beats left]
        for packing, beats, columns in layers:
            ctx.set(dut.beats, beats)
            if "base3" in dut.signature.members and len(p.packings) > 1:
                ctx.set(dut.base3, packing == "base3")
            ctx.set(dut.begin, 1)
            await ctx.tick()
            ctx.set(dut.begin, 0)
            out["used"].append(ctx.get(dut.used))
            todo = list(columns)
            want = len(columns) * beats + len(out["beats"])
            taken, first_beat = 0, len(out["beats"])
            for cycle in range(60 * len(columns) * beats + 200):
                if len(out["beats"]) == want and not todo and not ctx.get(dut.busy):
                    break
                if todo:
                    set_payload(ctx, dut.i_col.p, {"offset": todo[0][0], "count": todo[0][1]})
                ctx.set(dut.i_col.valid, bool(todo))
                ctx.set(dut.read.req.ready, rng.random() >= stall)
                ctx.set(dut.o_beat.ready, rng.random() >= stall)
                beat = bool(queue) and rng.random() >= stall
                if beat:
                    a = queue[0][0] - BASE
                    ctx.set(dut.read.data.p.data, int.from_bytes(region[a:a + pb], "little"))
                    ctx.set(dut.read.data.p.error, beat_no in error_beats)
                ctx.set(dut.read.data.valid, beat)
                took = bool(todo) and ctx.get(dut.i_col.ready)
                if took:
                    todo.pop(0)
                if ctx.get(dut.read.req.valid) and ctx.get(dut.read.req.ready):
                    req = get_payload(ctx, dut.read.req.p)
                    out["requests"].append((req["addr"], req["beats"]))
                    queue.append([req["addr"], req["beats"]])
                out["in_flight_max"] = max(out["in_flight_max"], len(queue))
                # beats of the columns taken at earlier edges that have not left yet
                owed = taken * beats - (len(out["beats"]) - first_beat)
                if owed and not ctx.get(dut.busy):
                    out["busy_gaps"].append((cycle, owed))
                out["strobes"] += ctx.get(dut.beat)
                if beat and ctx.get(dut.read.data.ready):
                    beat_no += 1
                    queue[0][0] += pb
                    queue[0][1] -= 1
                    if queue[0][1] == 0:
                        queue.pop(0)
                if ctx.get(dut.o_beat.valid) and ctx.get(dut.o_beat.ready):
                    out["beats"].append(get_payload(ctx, dut.o_beat.p))
                taken += took
                await ctx.tick()
            else:
                raise AssertionError(f"WeightStreamer: {len(out['beats'])} of {want} beats")
            ctx.set(dut.i_col.valid, 0)
            ctx.set(dut.read.data.valid, 0)
            out["busy_end"].append(ctx.get(dut.busy))
            out["used"].append(ctx.get(dut.used))
            out["errors"].append((ctx.get(dut.error), ctx.get(dut.axi_error)))

    simulate(dut, tb)
    return out


# one line per case: port bytes, packings built, layers (packing, beats per column, columns)
CASES = [
    (8, ("2bit",), [("2bit", 1, 12)]),
    (8, ("2bit", "base3"), [("2bit", 2, 8), ("base3", 3, 6), ("2bit", 1, 10)]),
    (4, ("base3",), [("base3", 4, 5)]),
    (16, ("2bit", "base3"), [("base3", 1, 16)]),
    (64, ("2bit", "base3"), [("2bit", 2, 4), ("base3", 1, 3)]),
]


@pytest.mark.parametrize("pb,packings,layers", CASES)
def test_columns_become_decoded_bank_beats(pb, packings, layers):
    p = params(pb, packings)
    rng = random.Random(pb * 7 + len(layers))
    region = bytearray(1 << 14)
    plays, expected = [], []
    for packing, beats, n in layers:
        columns, want = layer(rng, p, packing, beats, n, region)
        plays.append((packing, beats, columns))
        expected += want
    out = run_streamer(p, plays, seed=pb, region=region)
    assert out["beats"] == expected
    assert out["requests"] == [(BASE + off, beats) for _, beats, cols in plays
                               for off, _ in cols]
    assert out["strobes"] == sum(b * len(c) for _, b, c in plays)
    assert out["busy_end"] == [0] * len(plays)
    assert out["used"] == [0, 1] * len(plays)  # cleared by begin, set by the first column
    assert out["errors"] == [(0, 0)] * len(plays)


@pytest.mark.parametrize("depth", [2, 4])
def test_columns_in_flight_are_bounded_by_the_fifo(depth):
    """A sink that is never stalled but a memory that is: at most fifo_depth columns have been
    requested and not fully delivered (their counts wait in the FIFO)."""
    p = params(8, ("2bit",), fifo_depth=depth)
    rng = random.Random(depth)
    region = bytearray(1 << 14)
    columns, expected = layer(rng, p, "2bit", 1, 20, region)
    out = run_streamer(p, [("2bit", 1, columns)], seed=depth, stall=0.6, region=region)
    assert out["beats"] == expected
    assert 2 <= out["in_flight_max"] <= depth + 1  # +1: a request taken as a beat completes


def test_invalid_trit_code_and_axi_error_are_sticky():
    p = params(8, ("2bit", "base3"))
    rng = random.Random(1)
    region = bytearray(1 << 12)
    columns, _ = layer(rng, p, "2bit", 1, 4, region)
    region[columns[1][0]] = 0b11  # 2bit code 3 in column 1
    out = run_streamer(p, [("2bit", 1, columns), ("base3", 1, [(columns[1][0], 1)])],
                       region=region, error_beats={2})
    # layer 1: the bad code and the error beat; layer 2: byte 3 is valid base3, flags stay
    assert out["errors"] == [(1, 1), (1, 1)]
    out = run_streamer(p, [("base3", 1, [(columns[1][0], 1)])], region=region)
    assert out["errors"] == [(0, 0)]


@pytest.mark.parametrize("pb,packings,layers", CASES[:2])
def test_busy_from_the_cycle_after_a_column_is_taken_until_its_beats_left(pb, packings, layers):
    p = params(pb, packings)
    rng = random.Random(pb)
    region = bytearray(1 << 14)
    plays = [(pk, beats, layer(rng, p, pk, beats, n, region)[0]) for pk, beats, n in layers]
    out = run_streamer(p, plays, seed=pb, region=region)
    assert out["busy_gaps"] == []
