"""Spike-based linear attention (SLA): config, integer kernels, the state bound, the integer model
against its float twin, files, the core program of SLA layers and the clear refusal of head
sizes the core cannot run."""

import json
import re

import numpy as np
import pytest

from nsllm.model import (
    DEFAULT_MODEL,
    FloatModel,
    IntegerModel,
    ModelConfig,
    Trace,
    load_model,
    random_weights,
    save_model,
)
from nsllm.model import numerics as nx
from nsllm.model.config import ConfigError, SLAParams, default_decay_shifts, preset
from nsllm.model.graph import LanguageModel
from nsllm.model.reference import FloatArithmetic

TOKENS = np.frombuffer(b"key q=7; key z=3; key a=5; then z=3 and q=7 again.", np.uint8)[None]


def hybrid_config(d=128, layers=2, inter=256, **kw) -> ModelConfig:
    return ModelConfig(hidden_size=d, num_layers=layers, intermediate_size=inter,
                       token_mixer=["mlgru", "sla"] * (layers // 2), **kw)


@pytest.fixture(scope="module")
def hybrid():
    cfg = hybrid_config(d=128, layers=2, sla={"layers.1.attn": SLAParams(
        head_dim=32, decay_shifts=[9, 6, 4, 2], D_q=2, D_k=3, D_v=4, delta_v=0.25)})
    return random_weights(cfg, seed=5)


# -- config -----------------------------------------------------------------------------------
def test_hybrid_config_round_trips_and_names_its_layers():
    cfg = hybrid_config(d=192, layers=4)
    assert cfg.mixers() == ["mlgru", "sla", "mlgru", "sla"] and cfg.sla_layers() == [1, 3]
    assert cfg.sla_params(1) == SLAParams(head_dim=64, decay_shifts=[9, 6, 2])
    assert cfg.ternary_layers()[6:11] == [f"layers.1.attn.{p}_proj" for p in "qkvgo"]
    back = ModelConfig.from_json(cfg.to_json())
    assert back == cfg and back.sla_params(3).decay_shifts == [9, 6, 2]
    assert ModelConfig(token_mixer=["sla"] * 4).token_mixer == "sla"  # uniform: one name


def test_mlgru_config_json_has_no_sla_fields():
    data = json.loads(preset("tiny").to_json())
    assert "sla" not in data and data["token_mixer"] == "mlgru"


def test_defaults_follow_the_architecture():
    big = ModelConfig(hidden_size=2048, intermediate_size=5632, num_layers=2, token_mixer="sla")
    assert big.sla_params(0).head_dim == 128 and big.sla_params(0).heads == 16
    assert default_decay_shifts(16)[0] == 9 and default_decay_shifts(16)[-1] == 2
    assert default_decay_shifts(1) == [9]


@pytest.mark.parametrize("params, message", [
    ({"head_dim": 48}, "head_dim must be a positive divisor of hidden_size 128"),
    ({"decay_shifts": [9, 2, 3]}, r"decay_shifts must be 2 integers \(one per head\)"),
    ({"decay_shifts": [0, 3]}, "decay_shifts must be 2 integers"),
    ({"D_k": 0}, r"D_k must be an integer in \[1, 15\]"),
    ({"D_v": 16}, r"D_v must be an integer in \[1, 15\]"),
    ({"delta_q": -1.0}, "delta_q must be a number ≥ 0"),
    ({"D_k": 4, "D_v": 4, "decay_shifts": [9, 2]},
     r"the SLA state could reach 8388864 > 8388607 \(24-bit entries\) with D_k 4, D_v 4 and "
     r"decay shift 9; lower D_k·D_v or the largest decay shift"),
])
def test_bad_sla_parameters_are_named(params, message):
    p = {"head_dim": 64, "decay_shifts": [9, 2]} | params
    with pytest.raises(ConfigError, match=f"^layers.1.attn: {message}"):
        hybrid_config(sla={"layers.1.attn": p}).validate()


@pytest.mark.parametrize("change, message", [
    ({"token_mixer": ["mlgru"]}, "^token_mixer lists 1 layers, the model has 2$"),
    ({"token_mixer": ["mlgru", "attention"]}, "^token_mixer 'attention' is not supported"),
    ({"sla": {"layers.0.attn": {}}}, r"^sla has entries for layers that are not SLA layers"),
    ({"sla": {"layers.1.attn": {"heads": 2}}}, r"^sla\['layers.1.attn'\]: unknown fields"),
])
def test_bad_mixer_config_is_named(change, message):
    data = hybrid_config().to_dict() | change
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict(data)


def test_the_core_program_runs_sla_layers(hybrid):
    from nsllm.host.image import build_image

    image = build_image(hybrid)
    ops = [ins.op.name for ins in image.token if ins.name.startswith("layers.1.")]
    assert ops.count("COUNT") == 3 and ops.count("SLA") == 1
    assert ops.count("NORM") == 1 + 4 + 1  # attn_norm, one per head (d 128 / d_h 32), mlp
    assert [ins.op.name for ins in image.reset] == ["CLEAR", "SLACLEAR", "END"]


def odd_head_hybrid():
    cfg = hybrid_config(d=192, layers=2, sla={"layers.1.attn": SLAParams(
        head_dim=96, decay_shifts=[9, 2])})
    return random_weights(cfg, seed=5)


def test_sla_shapes_the_core_cannot_run_get_a_clear_refusal():
    from nsllm.host.image import ImageError, build_image

    with pytest.raises(ImageError, match=re.escape(
            "layers.1: the core's SLA unit needs a head size that is a power of two of at "
            "least 16, not 96")):
        build_image(odd_head_hybrid())


def test_cli_refuses_the_simulated_core_for_unsupported_sla_with_a_clear_error(tmp_path, capsys):
    from nsllm.cli import main

    path = save_model(odd_head_hybrid(), tmp_path / "h.nsllm")
    assert main(["generate", "--model", str(path), "--backend", "sim", "-p", "a", "-n", "1"]) == 2
    err = capsys.readouterr().err
    assert "nsllm: error: layers.1: the core's SLA unit needs a head size that is a power" in err
    assert "Traceback" not in err


# -- integer kernels ----------------------------------------------------------------------------
@pytest.mark.parametrize("u, D, delta, expected", [
    (0, 2, 0, 0), (127, 2, 0, 0), (128, 2, 0, 1), (383, 2, 0, 1), (384, 2, 0, 2), (5000, 2, 0, 2),
    (-128, 2, 0, 0), (-5000, 2, 0, 0), (384, 2, 128, 1), (255, 1, 128, 0), (256, 1, 128, 1)])
def test_unsigned_spike_count_table(u, D, delta, expected):
    assert int(nx.spike_count_unsigned(np.int64(u), D, delta)) == expected


def test_unsigned_count_is_the_magnitude_of_the_signed_one_for_positive_input(rng):
    u = rng.integers(0, 1 << 12, size=500)
    assert np.array_equal(nx.spike_count_unsigned(u, 3, 77), nx.spike_count(u, 3, 77))


@pytest.mark.parametrize("D", [1, 2, 3, 4, 7, 15])
def test_count_times_is_the_product_by_shift_and_add(D, rng):
    c = rng.integers(0, D + 1, size=(64, 1))
    x = rng.integers(-(1 << 23), 1 << 23, size=(1, 32))
    assert np.array_equal(nx.count_times(c, x, D), c * x)


@pytest.mark.parametrize("D_k, D_v, b", [(2, 4, 9), (1, 1, 12), (3, 5, 8), (2, 4, 2), (1, 15, 9)])
def test_state_bound_holds_and_is_reached(D_k, D_v, b, rng):
    """Worst case (k = D_k, v = ±D_v every token) approaches the bound and never exceeds it;
    random inputs stay below it too."""
    bound = nx.sla_state_bound(D_k, D_v, b)
    shifts = np.array([b, b])
    S = np.zeros((1, 2, 1, 2), dtype=np.int64)
    k = np.full((1, 2, 1), D_k)
    v = np.array([[[D_v, -D_v], [D_v, -D_v]]])
    peak = 0
    for _ in range(30 << b if b < 9 else 14 << b):
        S = nx.sla_update(S, k, v, shifts)
        peak = max(peak, int(np.abs(S).max()))
    assert peak <= bound and peak >= 0.999 * bound, (peak, bound)
    S = np.zeros((1, 2, 4, 4), dtype=np.int64)
    for _ in range(2000):
        S = nx.sla_update(S, rng.integers(0, D_k + 1, (1, 2, 4)),
                          rng.integers(-D_v, D_v + 1, (1, 2, 4)), shifts)
        assert np.abs(S).max() <= bound


def test_default_sla_state_fits_24_bits_with_room():
    p = SLAParams(decay_shifts=[9, 6, 2])
    assert nx.sla_state_bound(p.D_k, p.D_v, 9) == 8 * 2**19 + 256 < nx.SLA_STATE_MAX // 1.99


def test_decay_is_the_rounded_geometric_decay():
    S = np.array([[[[1 << 20, -(1 << 20)]]]], dtype=np.int64)
    zero = np.zeros((1, 1, 1), dtype=np.int64)
    out = nx.sla_update(S, zero, np.zeros((1, 1, 2), dtype=np.int64), np.array([3]))
    assert out.tolist() == [[[[(1 << 20) * 7 // 8, -(1 << 20) * 7 // 8]]]]
    # below 2**(b−1) the rounded shift is 0: tiny entries stop decaying (documented)
    small = nx.sla_update(np.full((1, 1, 1, 1), 3), zero, zero, np.array([3]))
    assert small.item() == 3


def test_read_is_the_masked_row_sum_and_fits_its_width(rng):
    S = rng.integers(-nx.SLA_STATE_MAX, nx.SLA_STATE_MAX + 1, size=(3, 2, 16, 16))
    q = rng.integers(0, 3, size=(3, 2, 16))
    want = sum(nx.count_times(q[..., i, None], S[..., i, :], 2) for i in range(16))  # row sums
    assert np.array_equal(nx.sla_read(S, q), want)
    worst = nx.sla_read(np.full((1, 1, 128, 128), nx.SLA_STATE_MAX), np.full((1, 1, 128), 15))
    assert int(worst.max()) == 128 * 15 * nx.SLA_STATE_MAX  # exact at the largest sum
    worst = nx.sla_read(np.full((1, 1, 128, 128), nx.SLA_STATE_MAX), np.full((1, 1, 128), 2))
    assert int(worst.max()).bit_length() + 1 == nx.sla_read_bits(128, 2) == 32


def test_head_norm_of_narrow_heads_is_rmsnorm_per_head(rng):
    o = rng.integers(-(1 << 20), 1 << 20, size=(5, 4 * 32))
    want = np.concatenate([nx.rmsnorm_q(o[:, h * 32:(h + 1) * 32]) for h in range(4)], axis=1)
    assert np.array_equal(nx.head_rmsnorm_q(o, 4), want)


def test_head_norm_of_wide_heads_is_scale_free_and_accurate(rng):
    o = rng.integers(-(1 << 18), 1 << 18, size=(4, 2 * 64))
    base = nx.head_rmsnorm_q(o, 2)
    for k in (1, 5, 12):  # up to 2**30: beyond rmsnorm_q's exact range, brought back by a shift
        assert np.array_equal(nx.head_rmsnorm_q(o << k, 2), base)
    wide = rng.integers(-(1 << 31), 1 << 31, size=(4, 2 * 64))
    got = nx.from_fixed(nx.head_rmsnorm_q(wide, 2)).reshape(4, 2, 64)
    wh = wide.reshape(4, 2, 64).astype(np.float64)
    want = wh / np.sqrt(np.mean(wh * wh, axis=-1, keepdims=True))
    assert np.max(np.abs(got - want)) < 4e-3


# -- the model ---------------------------------------------------------------------------------
def test_step_equals_prefill_and_state_carries(hybrid):
    m = IntegerModel(hybrid)
    full, state_full = m.prefill(TOKENS)
    assert state_full[1].shape == (1, 4, 32, 32) and state_full[0].shape == (1, 128)
    state = m.init_state()
    for t, tok in enumerate(TOKENS[0]):
        logits, state = m.step(tok, state)
        assert np.array_equal(logits[0], full[0, t]), f"token {t}"
    for a, b in zip(state, state_full, strict=True):
        assert np.array_equal(a, b)
    first, st = m.prefill(TOKENS[:, :20])
    second, _ = m.prefill(TOKENS[:, 20:], st)
    assert np.array_equal(np.concatenate([first, second], axis=1), full)


def test_sla_state_depends_on_the_past(hybrid):
    """The same suffix after different prefixes reads a different state."""
    m = IntegerModel(hybrid)
    _, s1 = m.prefill(TOKENS[:, :25])
    _, s2 = m.prefill(TOKENS[:, ::-1][:, :25].copy())
    a, _ = m.prefill(TOKENS[:, 25:], s1)
    b, _ = m.prefill(TOKENS[:, 25:], s2)
    assert not np.array_equal(a, b)


def test_spike_train_form_gives_identical_hybrid_model(hybrid):
    a, b = Trace(), Trace()
    IntegerModel(hybrid).prefill(TOKENS, trace=a)
    IntegerModel(hybrid, spike_form="train").prefill(TOKENS, trace=b)
    assert a.compare(b) is None and "layers.1.sla.state" in a.names()


def test_counts_lie_in_their_ranges_and_the_state_in_its_bound(hybrid):
    trace = Trace()
    IntegerModel(hybrid).prefill(np.tile(TOKENS, 4), trace=trace)
    sp = hybrid.config.sla_params(1)
    q, k, v = (trace[f"layers.1.sla.{c}"] for c in "qkv")
    assert q.min() == 0 and q.max() == sp.D_q and k.min() == 0 and k.max() == sp.D_k
    assert v.min() == -sp.D_v and v.max() == sp.D_v
    assert 0 < np.abs(trace["layers.1.sla.state"]).max() <= nx.sla_state_bound(sp.D_k, sp.D_v, 9)


class _CountForcedFloat(FloatArithmetic):
    """Float arithmetic that takes every spike count (BitLinear inputs and SLA q, k, v) from a
    trace of the integer model."""

    counts: dict[str, np.ndarray] = {}

    def spikes(self, layer, xn):
        return self.counts[f"{layer}.spikes"].astype(np.float32)

    def sla_counts(self, layer, which, x):
        return self.counts[f"layers.{layer}.sla.{which}"].astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("d, inter, head_dim", [(128, 512, 64), (256, 768, 128)])
def test_integer_sla_block_matches_its_float_twin(seed, d, inter, head_dim):
    """Teacher-forced per block, as for MLGRU (docs/numerics.md): with the same counts the
    integer SLA block is its float twin up to fixed-point error; with its own counts, up to the
    documented rounding-boundary flips."""
    cfg = hybrid_config(d=d, layers=2, inter=inter, sla={"layers.1.attn": SLAParams(
        head_dim=head_dim, decay_shifts=default_decay_shifts(d // head_dim))})
    w = random_weights(cfg, seed)
    im, fm, forced = IntegerModel(w), FloatModel(w), _CountForcedFloat(w)
    # a residual-stream input the fixed-point format holds exactly, so both start equal
    x = nx.from_fixed(nx.to_fixed(np.random.default_rng(seed).standard_normal((1, 160, d))))
    ti = Trace()
    xi, si = im.block(1, nx.to_fixed(x), im.init_state(1)[1], ti)
    xf, _ = fm.block(1, x, fm.init_state(1)[1])
    forced.counts = {k: v[-1] for k, v in ti.records.items()}
    xc, sc = LanguageModel(forced).block(1, x, forced.zeros_sla_state(1, 1))
    scale = np.linalg.norm(xf - x)
    fixed = np.linalg.norm(nx.from_fixed(xi) - xc) / scale
    own = np.linalg.norm(nx.from_fixed(xi) - xf) / scale
    assert 0 < fixed < 0.002, fixed
    assert own < 0.25, own
    # the integer state is the float state in 10-bit fixed point (rounding of the decays only)
    assert np.max(np.abs(si / 2**nx.SLA_STATE_FRAC - sc)) < 0.005 * np.max(np.abs(sc))


# -- files --------------------------------------------------------------------------------------
def test_hybrid_file_round_trip(hybrid, tmp_path):
    path = save_model(hybrid, tmp_path / "h.nsllm")
    back = load_model(path)
    assert back.config == hybrid.config
    assert set(back.tensors) == set(hybrid.tensors)
    assert "layers.1.attn.q_theta" in back.tensors
    assert "layers.1.attn.g_norm.weight" not in back.tensors
    assert np.array_equal(IntegerModel(back).prefill(TOKENS)[0],
                          IntegerModel(hybrid).prefill(TOKENS)[0])


def test_mlgru_files_are_unchanged(tmp_path):
    """Re-saving the shipped MLGRU model writes the same config JSON and the same tensors."""
    from nsllm.model.fileformat import read_header

    w = load_model(DEFAULT_MODEL)
    path = save_model(w, tmp_path / "again.nsllm")
    old, new = read_header(DEFAULT_MODEL), read_header(path)
    assert new["__metadata__"]["config"] == old["__metadata__"]["config"]
    assert set(new) == set(old)
