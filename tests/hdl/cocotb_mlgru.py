"""cocotb testbench of MLGRUStateUnit (run by test_mlgru_cocotb.py)."""

import cocotb
import numpy as np

from nsllm.model import numerics as nx
from nsllm.sim.streams import test_parameters

from .cocotb_elementwise import check_stream, edge_acts, random_acts


def golden(f_pre, i_pre, lb, h):
    """IntegerArithmetic.forget_gate / input_gate / recur with the lower bound as an argument
    (tests/hdl/test_mlgru.py checks this restatement against IntegerArithmetic itself)."""
    f = lb + nx.shift_round((nx.GATE_ONE - lb) * nx.sigmoid_q(f_pre), nx.GATE_FRAC)
    i = nx.shift_round(nx.silu_q(i_pre) * (nx.GATE_ONE - f), nx.GATE_FRAC)
    return f, i, nx.saturate(nx.shift_round(f * h, nx.GATE_FRAC) + i)


@cocotb.test()
async def mlgru_random(dut):
    """Sigmoid edges, lb at 0 and 1, saturating h, then random channels; with stalls."""
    params = test_parameters()
    rng = np.random.default_rng(params.get("seed", 0))
    n = params.get("beats", 1000)
    edges = np.array(edge_acts())
    k = len(edges)
    f_pre = np.concatenate([edges, np.roll(edges, 3), random_acts(rng, n)])
    i_pre = np.concatenate([edges, edges, random_acts(rng, n)])
    lb = np.concatenate([np.zeros(k, np.int64), np.full(k, nx.GATE_ONE),
                         np.where(rng.random(n) < 0.2, 0, rng.integers(0, nx.GATE_ONE + 1, n))])
    h = np.concatenate([np.full(k, nx.ACT_MAX), np.full(k, nx.ACT_MIN),
                        rng.integers(nx.ACT_MIN, nx.ACT_MAX + 1, n)])
    last = rng.random(len(h)) < 0.05
    f, i, hn = golden(*(v.astype(np.int64) for v in (f_pre, i_pre, lb, h)))
    await check_stream(
        dut, "mlgru",
        [{"f_pre": int(a), "i_pre": int(b), "lb": int(c), "h": int(d), "last": int(e)}
         for a, b, c, d, e in zip(f_pre, i_pre, lb, h, last, strict=True)],
        [{"f": int(a), "i": int(b), "h": int(c), "last": int(e)}
         for a, b, c, e in zip(f, i, hn, last, strict=True)])
