"""cocotb testbench of the trit unpacker (run by tests/hdl/test_trits_cocotb.py)."""

import random

import cocotb
import numpy as np

from nsllm.model.packing import pack_trits
from nsllm.sim.streams import TB, dut_component, test_parameters


def _words(model, rng: random.Random, n: int) -> tuple[list[int], list[list[int]]]:
    """``n`` random valid words and the trit lanes each must decode to (golden packing)."""
    np_rng = np.random.default_rng(rng.randrange(1 << 30))
    trits = np_rng.integers(-1, 2, size=(model.lanes, n))  # (rows, columns): one word per column
    packed = pack_trits(trits, model.packing)  # (columns, word_bytes), column-major
    words = [int.from_bytes(col.tobytes(), "little") for col in packed]
    return words, [list(map(int, trits[:, j])) for j in range(n)]


@cocotb.test()
async def random_words_with_stalls(dut):
    """Random words, random valid gaps and back-pressure; every lane checked."""
    params = test_parameters()
    model = dut_component()
    tb = TB(dut, type(model).__name__, seed=params.get("seed", 0))
    source = tb.source("i_stream", model.in_layout, valid_probability=params.get("valid", 0.7))
    sink = tb.sink("o_stream", model.out_layout, ready_probability=params.get("ready", 0.7))
    await tb.reset()
    words, expected = _words(model, random.Random(params.get("seed", 0)), params.get("beats", 500))
    sink.expect({"trits": t} for t in expected)
    source.send({"word": w} for w in words)
    await sink.wait_for(len(words), timeout_cycles=20 * len(words) + 100)
    await sink.wait_quiet()
    assert int(dut.error.value) == 0, f"{tb.component}: error raised on valid words"


@cocotb.test()
async def full_rate(dut):
    """With valid and ready always high, one word per cycle comes out."""
    model = dut_component()
    tb = TB(dut, type(model).__name__)
    source = tb.source("i_stream", model.in_layout, valid_probability=1.0)
    sink = tb.sink("o_stream", model.out_layout, ready_probability=1.0)
    await tb.reset()
    words, expected = _words(model, random.Random(1), 64)
    sink.expect({"trits": t} for t in expected)
    source.send({"word": w} for w in words)
    await sink.wait_for(len(words), timeout_cycles=200)
    span = sink.cycles[-1] - sink.cycles[0] + 1
    assert span == len(words), f"{tb.component}: {len(words)} words took {span} cycles"


@cocotb.test()
async def invalid_code_sets_sticky_error(dut):
    """An invalid code (2bit code 3, base3 byte > 242) raises error, which stays high."""
    model = dut_component()
    tb = TB(dut, type(model).__name__)
    source = tb.source("i_stream", model.in_layout, valid_probability=1.0)
    sink = tb.sink("o_stream", model.out_layout, ready_probability=1.0)
    await tb.reset()
    bad = 0b11 if model.packing == "2bit" else 243
    sink.check = lambda *args: None  # this test is about the flag, not the lanes
    sink.expect([None] * 3)
    source.send([{"word": 0}, {"word": bad << 8}, {"word": 0}])
    await sink.wait_for(3, timeout_cycles=100)
    assert int(dut.error.value) == 1, f"{tb.component}: invalid code {bad} not flagged"
    await tb.cycles(5)
    assert int(dut.error.value) == 1, f"{tb.component}: error is not sticky"
