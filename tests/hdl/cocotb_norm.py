"""cocotb testbenches of RMSNormUnit and ChannelScale (run by test_norm_cocotb.py)."""

import cocotb
import numpy as np

from nsllm.hdl.norm import ChannelScale
from nsllm.model import numerics as nx
from nsllm.sim.streams import test_parameters

from .cocotb_elementwise import start, transfer


@cocotb.test()
async def rmsnorm_vectors(dut):
    """Corner and random vectors at several lengths on one build (the sqrt_d port changes)."""
    params = test_parameters()
    rng = np.random.default_rng(params.get("seed", 0))
    _, source, sink, _ = await start(dut, "rmsnorm")
    for d in params.get("lengths", [128, 37]):
        vectors = [np.zeros(d, np.int64), np.full(d, nx.ACT_MAX), np.full(d, nx.ACT_MIN),
                   np.eye(1, d, d - 1, dtype=np.int64)[0], rng.integers(-3, 4, d)]
        vectors += [rng.integers(-(1 << int(b)), 1 << int(b), d)
                    for b in rng.integers(4, nx.ACT_BITS, params.get("vectors", 4))]
        # the unit is idle here: every earlier vector has left
        dut.rmsnorm__sqrt_d.value = nx.sqrt_d_const(d)
        await transfer(source, sink,
                       [{"x": int(x), "last": int(k == d - 1)}
                        for v in vectors for k, x in enumerate(v)],
                       [{"x": int(x), "last": int(k == d - 1)}
                        for v in vectors for k, x in enumerate(nx.rmsnorm_q(v))])


@cocotb.test()
async def channel_scale_shifts(dut):
    """Every shift class: large left (saturating), left, zero, right, beyond the product."""
    params = test_parameters()
    rng = np.random.default_rng(params.get("seed", 0))
    _, source, sink, _ = await start(dut, "scale")
    mmax = (1 << (nx.MULT_BITS - 1)) - 1
    n = params.get("beats", 60)
    for shift in (-30, -24, -3, 0, 1, 14, 40, 41, 63, 90):
        x = np.concatenate([[nx.ACT_MAX, nx.ACT_MIN, 1, -1, 0],
                            rng.integers(nx.ACT_MIN, nx.ACT_MAX + 1, n)])
        mant = np.concatenate([[mmax, -mmax, 1, 1, mmax], rng.integers(-mmax, mmax + 1, n)])
        expected = [{"x": int(nx.saturate(nx.shift_round(int(a) * int(b), shift))),
                     "last": int(k == len(x) - 1)}
                    for k, (a, b) in enumerate(zip(x, mant, strict=True))]
        dut.scale__shift.value = ChannelScale.port_shift(shift)  # idle: the last batch has left
        await transfer(source, sink,
                       [{"x": int(a), "mant": int(b), "last": int(k == len(x) - 1)}
                        for k, (a, b) in enumerate(zip(x, mant, strict=True))],
                       expected)
