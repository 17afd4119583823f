"""Acceptance of issues 5 and 9: the shipped model on the simulated core (Verilator), three
prompts × 64 tokens equal to the golden model's, at 1, 2 and 3 weight ports and both packings.

One core build per port count decodes both packings; the builds are cached under build/sim/.
"""

import pytest

from nsllm.hdl.core import CoreParams
from nsllm.host.generator import Generator, ModelBackend
from nsllm.model import IntegerModel, load_model, resolve_model_path
from nsllm.model.tokenizer import ByteTokenizer
from nsllm.sim.verilator_device import sim_backend

PROMPTS = ("The ", "def ", "Return the value of")


@pytest.mark.slow
@pytest.mark.parametrize("ports", [1, 2, 3])
def test_default_model_generates_the_golden_tokens_on_the_core(ports):
    weights = load_model(resolve_model_path(None))
    tok = ByteTokenizer()
    params = CoreParams.for_model(weights.config, weight_ports=ports,
                                  packings=("2bit", "base3"))
    golden = Generator(ModelBackend(IntegerModel(weights), "golden"), tok)
    for packing in ("2bit", "base3"):
        backend = sim_backend(weights, params, packing=packing, timeout=600)
        core = Generator(backend, tok)
        for prompt in PROMPTS:
            want = golden.generate(prompt, 64).tokens
            got = core.generate(prompt, 64).tokens
            first = next((k for k, (a, b) in enumerate(zip(want, got, strict=True)) if a != b),
                         None)
            assert first is None, (f"{ports} ports, {packing}, {prompt!r}: token {first}: "
                                   f"golden {want[first]}, core {got[first]}")
        s = backend.summary.as_dict()
        # the shipped model is trained sparse (card: weighted firing ≈ 0.3 on held-out text)
        assert 0.05 < s["firing_rate"] < 0.5 and s["cycles_per_token"] > 0
        per_port = s["weight_bytes_per_port"]
        assert len(per_port) == ports and sum(per_port) == pytest.approx(
            s["weight_bytes_per_token"])
