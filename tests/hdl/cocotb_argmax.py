"""cocotb testbench of Argmax (run by test_argmax_cocotb.py)."""

import cocotb
import numpy as np

from nsllm.model import numerics as nx
from nsllm.model.graph import greedy
from nsllm.sim.streams import test_parameters

from .cocotb_elementwise import check_stream
from .elementwise_top import ElementwiseTestTop


@cocotb.test()
async def argmax_random(dut):
    """Vectors with ties (small value alphabets), extremes, and a full-vocabulary one."""
    params = test_parameters()
    rng = np.random.default_rng(params.get("seed", 0))
    vocab = ElementwiseTestTop().units["argmax"].vocab_max
    vectors = [np.array(v) for v in ([nx.ACT_MIN] * 3, [nx.ACT_MAX] * 2, [5], [0, 1, 1, 0])]
    vectors.append(rng.integers(nx.ACT_MIN, nx.ACT_MAX + 1, vocab))
    for _ in range(params.get("vectors", 20)):
        alphabet = rng.integers(nx.ACT_MIN, nx.ACT_MAX + 1, int(rng.integers(1, 6)))
        vectors.append(rng.choice(alphabet, int(rng.integers(1, vocab + 1))))
    inputs = [{"x": int(x), "last": int(k == len(v) - 1)}
              for v in vectors for k, x in enumerate(v)]
    expected = []
    for v in vectors:
        index = int(greedy(v.astype(np.int64)))
        expected.append({"index": index, "value": int(v[index])})
    await check_stream(dut, "argmax", inputs, expected)
