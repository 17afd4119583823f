"""SLA training module: the chunked parallel form equals the recurrence, and the PyTorch mirror of
a hybrid model computes what the golden models compute."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the optional PyTorch extra (train)")

from nsllm.quant.sla_train import decay_factors, sla_chunked, sla_recurrent  # noqa: E402
from nsllm.quant.train import (  # noqa: E402
    QATModel,
    TrainSettings,
    export_weights,
    layer_mixers,
    model_config,
    train,
)

from .test_train import assert_golden_models_match, qat_log_probs  # noqa: E402


def _counts(shape, D, signed, g):
    c = torch.randint(0, D + 1, shape, generator=g).double()
    return c * (torch.randint(0, 2, shape, generator=g) * 2 - 1) if signed else c


@pytest.mark.parametrize("T, chunk", [(45, 16), (64, 64), (64, 7), (10, 32), (33, 1)])
def test_chunked_form_equals_the_recurrence(T, chunk):
    g = torch.Generator().manual_seed(T * 100 + chunk)
    shape = (2, T, 3, 8)
    q, k, v = _counts(shape, 2, False, g), _counts(shape, 2, False, g), _counts(shape, 4, True, g)
    gamma = decay_factors([9, 4, 2], torch.float64)
    S0 = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64) * 50
    o_rec, S_rec = sla_recurrent(q, k, v, gamma, S0)
    o_chk, S_chk = sla_chunked(q, k, v, gamma, S0, chunk=chunk)
    torch.testing.assert_close(o_chk, o_rec, rtol=1e-10, atol=1e-8)
    torch.testing.assert_close(S_chk, S_rec, rtol=1e-10, atol=1e-8)
    assert o_rec.abs().max() > 10  # a real signal, not zeros on both sides


def test_chunked_form_has_the_recurrences_gradients():
    g = torch.Generator().manual_seed(1)
    shape = (1, 40, 2, 4)
    qkv = [torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
           for _ in range(3)]
    gamma = decay_factors([6, 2], torch.float64)
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    grads = []
    for form in (lambda *a: sla_recurrent(*a)[0], lambda *a: sla_chunked(*a, chunk=16)[0]):
        for x in qkv:
            x.grad = None
        (form(*qkv, gamma) * w).sum().backward()
        grads.append([x.grad.clone() for x in qkv])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_bad_chunk_is_refused():
    x = torch.zeros(1, 4, 1, 2)
    with pytest.raises(ValueError, match="^chunk must be a positive number of tokens, not 0$"):
        sla_chunked(x, x, x, decay_factors([2]), chunk=0)


def test_hybrid_layout():
    assert layer_mixers("hybrid", 4) == ["mlgru", "sla", "mlgru", "sla"]
    assert layer_mixers("hybrid", 8, 4) == ["mlgru"] * 3 + ["sla"] + ["mlgru"] * 3 + ["sla"]
    assert layer_mixers("sla", 2) == ["sla", "sla"]
    with pytest.raises(ValueError, match="mixer must be one of"):
        layer_mixers("transformer", 2)


@pytest.fixture(scope="module", params=["hybrid", "sla"])
def qat(request):
    torch.manual_seed(0)
    m = QATModel(model_config(TrainSettings(hidden_size=64, num_layers=2, mixer=request.param)))
    with torch.no_grad():  # non-trivial norms and thresholds
        for p in m.norms.values():
            p.mul_(1 + 0.2 * torch.randn_like(p))
        for lin in m.linears.values():
            lin.theta.mul_(1 + 0.3 * torch.rand(()))
        for s in m.sla.values():
            for c in (s.q, s.k, s.v):
                c.theta.mul_(1 + 0.3 * torch.rand_like(c.theta))
            s.o_norm.mul_(1 + 0.2 * torch.randn_like(s.o_norm))
    return m


def test_exported_hybrid_matches_the_qat_module(qat):
    tokens = np.frombuffer(b"The quick brown fox jumps over the lazy dog; the quick brown fox "
                           b"jumps again.", np.uint8).astype(int)
    want = qat_log_probs(qat, tokens)
    w = export_weights(qat)
    assert w.config.sla_layers() == ([1] if qat.cfg.mixer(0) == "mlgru" else [0, 1])
    assert_golden_models_match(w, tokens, want)


def test_a_few_hybrid_training_steps_lower_the_loss():
    s = TrainSettings(steps=12, hidden_size=32, num_layers=2, batch=4, seq_len=64, warmup=2,
                      eval_every=12, mixer="hybrid")
    logs = []
    w, report = train(s, log=logs.append)
    first = float(logs[0].split("loss")[1].split()[0])
    assert report["history"][-1]["heldout_bpb_torch"] < first / np.log(2)
    assert w.config.mixers() == ["mlgru", "sla"] and w.config.name == "nsllm-hybrid"
    thetas = w.tensors["layers.1.attn.k_theta"]
    assert thetas.shape == (32,) and np.ptp(thetas) > 0  # learned per channel
