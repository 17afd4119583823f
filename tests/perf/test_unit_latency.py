"""The ``latency`` attributes the cycle model reads are what the units do (amaranth.sim): one
element with ``last`` is offered at cycle 0; its result must be valid exactly ``latency`` cycles
after the cycle it was taken in."""

import pytest
from amaranth.sim import Simulator

from nsllm.hdl.argmax import Argmax
from nsllm.hdl.gate import ResidualAdder, SiluGateUnit
from nsllm.hdl.mlgru import MLGRUStateUnit
from nsllm.hdl.norm import ChannelScale, RsqrtFactor, SumOfSquares
from nsllm.hdl.spike import EncoderArray
from nsllm.hdl.trits import TritUnpacker
from nsllm.model import numerics as nx


def measured_latency(dut, fields: dict, max_cycles: int = 50) -> int:
    result = {}

    async def bench(ctx):
        ctx.set(dut.o_stream.ready, 1)
        for name, value in fields.items():
            ctx.set(getattr(dut.i_stream.p, name), value)
        ctx.set(dut.i_stream.valid, 1)
        taken = None
        for cycle in range(max_cycles):
            if taken is None and ctx.get(dut.i_stream.ready):
                taken = cycle
            await ctx.tick()
            if taken is not None:
                ctx.set(dut.i_stream.valid, 0)
            if ctx.get(dut.o_stream.valid):
                result["latency"] = cycle + 1 - taken
                return

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert "latency" in result, "no output"
    return result["latency"]


CASES = [
    ("ResidualAdder", lambda: ResidualAdder(), {"a": 3, "b": 4, "last": 1}),
    ("SiluGateUnit", lambda: SiluGateUnit(), {"value": 100, "gated": 200, "last": 1}),
    ("MLGRUStateUnit", lambda: MLGRUStateUnit(), {"i_pre": 10, "f_pre": 20, "lb": 0, "h": 5,
                                                  "last": 1}),
    ("ChannelScale", lambda: ChannelScale(), {"x": 1000, "mant": 3, "last": 1}),
    ("SumOfSquares", lambda: SumOfSquares(4, 64), {"x": [1, 2, 3, 4], "last": 1}),
    ("RsqrtFactor", lambda: RsqrtFactor(64), {"sum_sq": 12345, "sqrt_d": nx.sqrt_d_const(64)}),
    ("Argmax", lambda: Argmax(64, lanes=8), {"x": list(range(8)), "last": 1}),
    ("Argmax lanes=1", lambda: Argmax(64, lanes=1), {"x": 5, "last": 1}),
    ("TritUnpacker", lambda: TritUnpacker("2bit", word_bytes=4), {"word": 0x55}),
    ("EncoderArray", lambda: EncoderArray(4, 15), {"x": [1 << 12] * 4, "mant": [1 << 8] * 4,
                                                    "last": 1}),
]


@pytest.mark.parametrize("label, make, fields", CASES, ids=[c[0] for c in CASES])
def test_latency_attribute_is_the_units_latency(label, make, fields):
    dut = make()
    assert measured_latency(dut, fields) == dut.latency, label
