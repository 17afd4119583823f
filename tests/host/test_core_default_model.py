"""Issue-5 acceptance: the shipped model on the simulated core, three prompts × 64 tokens."""

import pytest

from nsllm.host.generator import Generator, ModelBackend
from nsllm.model import IntegerModel, load_model, resolve_model_path
from nsllm.model.tokenizer import ByteTokenizer
from nsllm.sim.verilator_device import sim_backend

PROMPTS = ("The ", "def ", "Return the value of")


@pytest.mark.slow
def test_default_model_generates_the_golden_tokens_on_the_core():
    weights = load_model(resolve_model_path(None))
    tok = ByteTokenizer()
    backend = sim_backend(weights)  # the build `make demo` uses (cached)
    golden = Generator(ModelBackend(IntegerModel(weights), "golden"), tok)
    core = Generator(backend, tok)
    for prompt in PROMPTS:
        want = golden.generate(prompt, 64).tokens
        got = core.generate(prompt, 64).tokens
        first = next((k for k, (a, b) in enumerate(zip(want, got, strict=True)) if a != b), None)
        assert first is None, f"{prompt!r}: token {first}: golden {want[first]}, core {got[first]}"
    s = backend.summary.as_dict()
    # the shipped model is trained sparse (card: weighted firing rate ≈ 0.3 on held-out text)
    assert 0.05 < s["firing_rate"] < 0.5 and s["cycles_per_token"] > 0
