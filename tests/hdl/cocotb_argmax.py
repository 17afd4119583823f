"""cocotb testbench of Argmax (run by test_argmax_cocotb.py): ``lanes`` logits per beat."""

import cocotb
import numpy as np

from nsllm.model import numerics as nx
from nsllm.sim.streams import test_parameters

from .cocotb_elementwise import check_stream
from .elementwise_top import ElementwiseTestTop


@cocotb.test()
async def argmax_random(dut):
    """Vectors with ties (small value alphabets, within and across beats), extremes, and a
    full-vocabulary one, against numerics.argmax_q."""
    params = test_parameters()
    rng = np.random.default_rng(params.get("seed", 0))
    unit = ElementwiseTestTop().units["argmax"]
    vocab, L = unit.vocab_max, unit.lanes
    vectors = [np.array(v) for v in ([nx.ACT_MIN] * L, [nx.ACT_MAX] * 2 * L, [5] * L,
                                     [0, 1] * L)]
    vectors.append(rng.integers(nx.ACT_MIN, nx.ACT_MAX + 1, vocab))
    for _ in range(params.get("vectors", 20)):
        alphabet = rng.integers(nx.ACT_MIN, nx.ACT_MAX + 1, int(rng.integers(1, 6)))
        vectors.append(rng.choice(alphabet, L * int(rng.integers(1, vocab // L + 1))))
    inputs = [{"x": [int(x) for x in v[k:k + L]], "last": int(k + L == len(v))}
              for v in vectors for k in range(0, len(v), L)]
    expected = []
    for v in vectors:
        index = nx.argmax_q(v.astype(np.int64))
        expected.append({"index": index, "value": int(v[index])})
    await check_stream(dut, "argmax", inputs, expected)
