"""QAT module: the PyTorch mirror of the graph must compute what the golden models compute."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the optional PyTorch extra (train)")

from nsllm.model import FloatModel, IntegerModel  # noqa: E402
from nsllm.model.stats import log_softmax  # noqa: E402
from nsllm.quant.train import (  # noqa: E402
    QATModel,
    TrainSettings,
    export_weights,
    mlgru_scan,
    model_config,
    train,
)


def test_parallel_scan_equals_the_recurrence():
    g = torch.Generator().manual_seed(0)
    f = torch.rand(3, 45, 7, generator=g)
    i = torch.randn(3, 45, 7, generator=g)
    h0 = torch.randn(3, 7, generator=g)
    h, hs = h0, []
    for t in range(45):
        h = f[:, t] * h + i[:, t]
        hs.append(h)
    torch.testing.assert_close(mlgru_scan(f, i, h0), torch.stack(hs, 1), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def qat():
    torch.manual_seed(0)
    s = TrainSettings(hidden_size=32, num_layers=2)
    m = QATModel(model_config(s))
    with torch.no_grad():  # non-trivial norms, bounds and thresholds
        for p in m.norms.values():
            p.mul_(1 + 0.2 * torch.randn_like(p))
        m.lower_bounds.normal_()
        for lin in m.linears.values():
            lin.theta.mul_(1 + 0.3 * torch.rand(()))
    return m


def qat_log_probs(qat, tokens: np.ndarray) -> np.ndarray:
    """The QAT module's log-probabilities of ``tokens`` (one sequence), as float64."""
    with torch.no_grad():
        return torch.log_softmax(qat(torch.from_numpy(tokens)[None]), -1)[0].double().numpy()


def assert_golden_models_match(w, tokens: np.ndarray, want: np.ndarray) -> None:
    """The exported model's float and integer golden models against the QAT module's ``want``."""
    got = log_softmax(FloatModel(w).prefill(tokens)[0][0])
    # identical equations; only float32 summation order and rare rounding ties differ
    assert np.mean(np.abs(got - want)) < 2e-3
    ints = IntegerModel(w).prefill(tokens)[0][0]
    got_int = log_softmax(IntegerModel.logits_to_float(ints))
    # the integer model adds fixed-point error, far less than the spread of the distribution
    spread = np.mean(np.abs(want - want.mean(-1, keepdims=True)))
    assert np.mean(np.abs(got_int - want)) < 0.4 * spread


def test_exported_float_model_matches_the_qat_module(qat):
    tokens = np.frombuffer(b"The quick brown fox jumps over the lazy dog.", np.uint8).astype(int)
    want = qat_log_probs(qat, tokens)
    w = export_weights(qat)
    assert_golden_models_match(w, tokens, want)


def test_a_few_training_steps_lower_the_loss():
    s = TrainSettings(steps=12, hidden_size=32, num_layers=1, batch=4, seq_len=64, warmup=2,
                      eval_every=12)
    logs = []
    w, report = train(s, log=logs.append)
    first = float(logs[0].split("loss")[1].split()[0])
    assert report["history"][-1]["heldout_bpb_torch"] < first / np.log(2)
    assert w.config.hidden_size == 32 and w.config.quant["lm_head"].D == 15
