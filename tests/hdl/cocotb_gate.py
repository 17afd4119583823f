"""cocotb testbenches of SiluGateUnit and ResidualAdder (run by test_gate_cocotb.py)."""

import cocotb
import numpy as np

from nsllm.model import numerics as nx
from nsllm.sim.streams import test_parameters

from .cocotb_elementwise import check_stream, edge_acts, random_acts


@cocotb.test()
async def silu_gate_random(dut):
    """value * silu(gated) for edge cases and random data, with stalls."""
    params = test_parameters()
    rng = np.random.default_rng(params.get("seed", 0))
    edges = edge_acts()
    value = np.concatenate([np.tile([1024, nx.ACT_MAX, nx.ACT_MIN], len(edges)),
                            random_acts(rng, params.get("beats", 1000))])
    gated = np.concatenate([np.repeat(edges, 3), random_acts(rng, params.get("beats", 1000))])
    last = rng.random(len(value)) < 0.05
    z = nx.saturate(nx.shift_round(value.astype(np.int64) * nx.silu_q(gated), nx.ACT_FRAC))
    await check_stream(
        dut, "gate",
        [{"value": int(v), "gated": int(g), "last": int(la)}
         for v, g, la in zip(value, gated, last, strict=True)],
        [{"x": int(x), "last": int(la)} for x, la in zip(z, last, strict=True)])


@cocotb.test()
async def residual_add_random(dut):
    """saturate(a + b) including both saturation directions, with stalls."""
    params = test_parameters()
    rng = np.random.default_rng(params.get("seed", 0))
    n = params.get("beats", 1000)
    a = np.concatenate([[nx.ACT_MAX, nx.ACT_MIN, nx.ACT_MAX, 0], random_acts(rng, n)])
    b = np.concatenate([[1, -1, nx.ACT_MIN, 0], random_acts(rng, n)])
    last = rng.random(len(a)) < 0.05
    y = nx.saturate(a.astype(np.int64) + b)
    await check_stream(
        dut, "residual",
        [{"a": int(x), "b": int(w), "last": int(la)} for x, w, la in zip(a, b, last, strict=True)],
        [{"x": int(v), "last": int(la)} for v, la in zip(y, last, strict=True)])
