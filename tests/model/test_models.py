"""Golden model behaviour: decode API, spike forms, tracing, and error against the float model."""

import numpy as np
import pytest

from nsllm.model import FloatModel, IntegerModel, ModelConfig, Trace, greedy, random_weights
from nsllm.model import numerics as nx
from nsllm.model.graph import LanguageModel
from nsllm.model.reference import FloatArithmetic

TOKENS = np.array([[84, 104, 101, 32, 115, 112, 105, 107, 101, 115, 32, 102, 105, 114, 101]])


def test_step_equals_prefill(tiny_weights):
    m = IntegerModel(tiny_weights)
    full, state_full = m.prefill(TOKENS)
    state = m.init_state()
    for t, tok in enumerate(TOKENS[0]):
        logits, state = m.step(tok, state)
        assert np.array_equal(logits[0], full[0, t]), f"token {t}"
    for a, b in zip(state, state_full, strict=True):
        assert np.array_equal(a, b)


def test_prefill_can_be_split(tiny_weights):
    m = IntegerModel(tiny_weights)
    full, _ = m.prefill(TOKENS)
    first, state = m.prefill(TOKENS[:, :6])
    second, _ = m.prefill(TOKENS[:, 6:], state)
    assert np.array_equal(np.concatenate([first, second], axis=1), full)


def test_batch_rows_are_independent(tiny_weights):
    m = IntegerModel(tiny_weights)
    other = TOKENS[:, ::-1]
    both, _ = m.prefill(np.concatenate([TOKENS, other]))
    assert np.array_equal(both[0], m.prefill(TOKENS)[0][0])
    assert np.array_equal(both[1], m.prefill(other)[0][0])


def test_logits_are_integers_in_range(tiny_weights):
    logits, _ = IntegerModel(tiny_weights).prefill(TOKENS)
    assert logits.dtype == np.int64
    assert logits.min() >= nx.ACT_MIN and logits.max() <= nx.ACT_MAX


@pytest.mark.parametrize("shape", [(256, 64, 1, 256), (300, 96, 2, 256)])
def test_spike_train_form_gives_identical_model(shape):
    vocab, d, layers, inter = shape
    cfg = ModelConfig(vocab_size=vocab, hidden_size=d, num_layers=layers, intermediate_size=inter)
    for i, name in enumerate(cfg.ternary_layers()):  # mixed timesteps and shifts
        cfg.quant[name].D = (1, 3, 7, 15)[i % 4]
        cfg.quant[name].delta = (0.0, 0.5, 1.25)[i % 3]
    w = random_weights(cfg, seed=3)
    a, b = Trace(), Trace()
    IntegerModel(w).prefill(TOKENS, trace=a)
    IntegerModel(w, spike_form="train").prefill(TOKENS, trace=b)
    assert a.compare(b) is None
    assert a.names() == b.names()


def test_mismatch_names_layer_unit_and_index(tiny_weights):
    import copy

    broken = copy.deepcopy(tiny_weights)
    broken.linears["layers.2.attn.o_proj"].trits[17] *= -1  # flip every weight of output 17
    a, b = Trace(), Trace()
    IntegerModel(tiny_weights).step(5, IntegerModel(tiny_weights).init_state(), trace=a)
    IntegerModel(broken).step(5, IntegerModel(broken).init_state(), trace=b)
    mismatch = a.compare(b)
    assert mismatch.layer == 2 and mismatch.unit == "attn.o_proj.out"
    assert mismatch.index == (17,)
    assert str(mismatch) == (f"layer 2, attn.o_proj.out, index 17: expected {mismatch.expected}, "
                             f"got {mismatch.got}")


def test_greedy_takes_the_first_maximum():
    assert greedy(np.array([[1, 5, 5, 2]])).tolist() == [1]


def test_bad_tokens_are_rejected(tiny_weights):
    m = IntegerModel(tiny_weights)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 256\)"):
        m.prefill(np.array([[1, 256]]))
    with pytest.raises(ValueError, match="time ≥ 1"):
        m.prefill(np.zeros((1, 0), dtype=int))


# --- integer vs float ---------------------------------------------------------------------------
# Bounds documented in docs/numerics.md ("Error against the float model").
FIXED_POINT_BOUND = 0.002  # per block, same spike counts: the fixed-point arithmetic alone
BLOCK_BOUND = 0.2  # per block, own spike counts: rounding-boundary flips included
HEAD_BOUND = 0.05


class _CountForcedFloat(FloatArithmetic):
    """Float arithmetic that takes its spike counts from the integer model."""

    counts: dict[str, np.ndarray] = {}

    def spikes(self, layer, xn):
        return self.counts[layer].astype(np.float32)


def block_errors(weights, tokens):
    """Per-block relative error of the integer model against the float model, teacher-forced:
    every block gets the float model's input (converted to fixed point)."""
    im, fm = IntegerModel(weights), FloatModel(weights)
    forced = _CountForcedFloat(weights)
    fcm = LanguageModel(forced)
    tf = Trace()
    fm.prefill(tokens, trace=tf)
    x = tf["embed"]
    own, fixed = [], []
    for li in range(weights.config.num_layers):
        ti = Trace()
        xi, _ = im.block(li, nx.to_fixed(x), im.init_state(1)[li], ti)
        xf, _ = fm.block(li, x, fm.init_state(1)[li])
        forced.counts = {k[: -len(".spikes")]: v[-1] for k, v in ti.records.items()
                         if k.endswith(".spikes")}
        xc, _ = fcm.block(li, x, fcm.init_state(1)[li])
        scale = np.linalg.norm(xf - x)  # relative to what the block adds to the residual
        own.append(np.linalg.norm(nx.from_fixed(xi) - xf) / scale)
        fixed.append(np.linalg.norm(nx.from_fixed(xi) - xc) / scale)
        x = xf
    head = np.linalg.norm(nx.from_fixed(im.head(nx.to_fixed(x))) - fm.head(x))
    return np.array(own), np.array(fixed), head / np.linalg.norm(fm.head(x))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("d, layers, inter", [(128, 4, 512), (256, 2, 768)])
def test_integer_model_error_against_float_is_bounded(seed, d, layers, inter):
    cfg = ModelConfig(hidden_size=d, num_layers=layers, intermediate_size=inter)
    w = random_weights(cfg, seed)
    tokens = np.random.default_rng(seed).integers(0, 256, size=(1, 48))
    own, fixed, head = block_errors(w, tokens)
    assert np.all(fixed < FIXED_POINT_BOUND), fixed
    assert np.all(own < BLOCK_BOUND), own
    assert head < HEAD_BOUND
    assert np.all(fixed > 0)  # the measurement can see a difference at all


def test_out_of_range_multiplier_is_refused(tiny_weights):
    import copy

    from nsllm.model.config import ConfigError

    broken = copy.deepcopy(tiny_weights)
    broken.config.quant["layers.1.attn.f_proj"].theta = 1e-6  # g/θ = 1e6 cannot be represented
    with pytest.raises(ConfigError, match=r"layers.1.attn.f_proj \(norm weight / theta\): "
                                          r"multiplier 1e\+06 exceeds the fixed-point range"):
        IntegerModel(broken)
