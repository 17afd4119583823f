"""amaranth.sim tests of RMSNormUnit and ChannelScale against numerics.rmsnorm_q / norm."""

from __future__ import annotations

import numpy as np
import pytest

from nsllm.hdl.norm import ChannelScale, RMSNormUnit, sum_sq_bits
from nsllm.model import numerics as nx

from .amaranth_stream_tb import run_stream

A_MAX, A_MIN = nx.ACT_MAX, nx.ACT_MIN


def run_norm(dut, vectors, *, gap, stall, seed):
    """Stream ``vectors`` (one d per run: the sqrt_d port is static) and check every element."""
    d = len(vectors[0])
    items = [{"x": int(x), "last": int(k == d - 1)} for v in vectors for k, x in enumerate(v)]
    got = run_stream(dut, items, len(items), gap=gap, stall=stall, seed=seed,
                     setup=lambda ctx: ctx.set(dut.sqrt_d, nx.sqrt_d_const(d)))
    for j, v in enumerate(vectors):
        expect = nx.rmsnorm_q(np.asarray(v, np.int64))
        for k in range(d):
            r = got[j * d + k]
            assert (r.payload.x, r.payload.last) == (int(expect[k]), int(k == d - 1)), (
                f"RMSNormUnit: vector {j} element {k} (cycle {r.cycle}): got {r.payload.x} "
                f"last={r.payload.last}, expected {expect[k]}")


def corner_vectors(d, rng):
    return [
        np.zeros(d, np.int64),  # Σx² = 0 is treated as 1
        np.full(d, A_MAX), np.full(d, A_MIN),  # the largest Σx²: widest shift
        np.eye(1, d, 0, dtype=np.int64)[0],  # Σx² = 1: the smallest (negative) table shift
        np.eye(1, d, d - 1, dtype=np.int64)[0] * A_MIN,  # one spike: output saturates
        rng.integers(-3, 4, d),  # tiny values: left shift into the table range
        rng.integers(-(1 << 12), 1 << 12, d),  # typical activations
        rng.integers(A_MIN, A_MAX + 1, d),
    ]


# (0.0, 0.7): the next vector arrives at full rate while the previous one drains slowly, so
# the loader must wait for each element to be read before overwriting it
@pytest.mark.parametrize("d,gap,stall", [(16, 0.0, 0.0), (16, 0.4, 0.5), (7, 0.3, 0.3),
                                         (16, 0.0, 0.7)])
def test_rmsnorm_corners(d, gap, stall):
    rng = np.random.default_rng(d)
    run_norm(RMSNormUnit(max_d=16), corner_vectors(d, rng), gap=gap, stall=stall, seed=d)


def test_rmsnorm_every_sum_sq_width():
    """Vectors whose Σx² spans every bit length exercise every exponent and table region."""
    rng = np.random.default_rng(21)
    d = 8
    vectors = []
    for bits in range(0, nx.ACT_BITS):
        vectors.append(rng.integers(-(1 << bits), (1 << bits) + 1, d))
    run_norm(RMSNormUnit(max_d=8), vectors, gap=0.2, stall=0.2, seed=3)


def test_rmsnorm_one_build_many_d():
    """One build (max_d=32) normalises vectors of several lengths given the matching sqrt_d."""
    rng = np.random.default_rng(4)
    for d in (1, 2, 31, 32):
        run_norm(RMSNormUnit(max_d=32), [rng.integers(-5000, 5000, d) for _ in range(2)],
                 gap=0.3, stall=0.3, seed=d)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_rmsnorm_widths_follow_max_d():
    assert RMSNormUnit(128).ss_bits == sum_sq_bits(128) == (128 * 2**46).bit_length()
    assert RMSNormUnit(5632).ss_bits > RMSNormUnit(128).ss_bits
    assert len(RMSNormUnit(5632).sqrt_d) == nx.sqrt_d_const(5632).bit_length()


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_rmsnorm_init_wrong_max_d():
    with pytest.raises(ValueError, match="max_d must be a positive integer"):
        RMSNormUnit(0)


def golden_scale(x, mant, shift):
    """Python integers, so that shifts far beyond int64 (the clamp's claim) are checked too."""
    return [int(nx.saturate(nx.shift_round(int(a) * int(b), shift)))
            for a, b in zip(x, mant, strict=True)]


@pytest.mark.parametrize("shift", [-70, -24, -23, -5, -1, 0, 1, 2, 10, 14, 15, 24, 39, 40, 41,
                                   63, 100])
def test_channel_scale_shift(shift):
    rng = np.random.default_rng(shift + 100)
    mmax = (1 << (nx.MULT_BITS - 1)) - 1
    x = np.concatenate([[0, 1, -1, A_MAX, A_MIN, A_MAX, A_MIN, 3, -3],
                        rng.integers(A_MIN, A_MAX + 1, 20), rng.integers(-50, 50, 10)])
    mant = np.concatenate([[mmax, mmax, mmax, mmax, mmax, -mmax, -mmax, 1, 1],
                           rng.integers(-mmax, mmax + 1, 30)])
    items = [{"x": int(a), "mant": int(b), "last": int(k % 5 == 4)}
             for k, (a, b) in enumerate(zip(x, mant, strict=True))]
    dut = ChannelScale()
    got = run_stream(dut, items, len(items), gap=0.3, stall=0.3, seed=shift & 0xFF,
                     setup=lambda ctx: ctx.set(dut.shift, ChannelScale.port_shift(shift)))
    expect = golden_scale(x, mant, shift)
    for k, r in enumerate(got):
        assert (r.payload.x, r.payload.last) == (int(expect[k]), int(k % 5 == 4)), (
            f"ChannelScale: element {k} (cycle {r.cycle}) shift {shift}: got {r.payload.x}, "
            f"expected {expect[k]} for x={x[k]} mant={mant[k]}")


def test_norm_equals_integer_arithmetic(tiny_weights):
    """RMSNormUnit → ChannelScale with a real norm weight equals IntegerArithmetic.norm."""
    from nsllm.model.integer import IntegerArithmetic

    ar = IntegerArithmetic(tiny_weights)
    name = "layers.0.attn_norm.weight"
    mult = ar.params.norms[name]
    d = tiny_weights.config.hidden_size
    x = np.random.default_rng(8).integers(-(4 << nx.ACT_FRAC), 4 << nx.ACT_FRAC, d)
    norm = RMSNormUnit(max_d=d)
    items = [{"x": int(v), "last": int(k == d - 1)} for k, v in enumerate(x)]
    xn = [r.payload.x for r in run_stream(
        norm, items, d, gap=0.2, stall=0.2,
        setup=lambda ctx: ctx.set(norm.sqrt_d, nx.sqrt_d_const(d)))]
    scale = ChannelScale()
    items = [{"x": v, "mant": int(w), "last": int(k == d - 1)}
             for k, (v, w) in enumerate(zip(xn, mult.mant, strict=True))]
    out = [r.payload.x for r in run_stream(
        scale, items, d, gap=0.2, stall=0.2,
        setup=lambda ctx: ctx.set(scale.shift, ChannelScale.port_shift(mult.shift)))]
    np.testing.assert_array_equal(out, ar.norm(x[None], name)[0])


def test_channel_scale_port_shift_rejects_non_integers():
    with pytest.raises(TypeError, match="shift must be an integer"):
        ChannelScale.port_shift(1.5)


def test_rmsnorm_overlaps_vectors():
    """Back-to-back vectors load while the previous one leaves: d + 7 cycles per vector."""
    d, n = 16, 6
    rng = np.random.default_rng(12)
    vectors = [rng.integers(-4000, 4000, d) for _ in range(n)]
    dut = RMSNormUnit(max_d=d)
    items = [{"x": int(x), "last": int(k == d - 1)} for v in vectors for k, x in enumerate(v)]
    got = run_stream(dut, items, len(items), gap=0.0, stall=0.0,
                     setup=lambda ctx: ctx.set(dut.sqrt_d, nx.sqrt_d_const(d)))
    first_out = [got[j * d].cycle for j in range(n)]
    per_vector = (first_out[-1] - first_out[0]) / (n - 1)
    assert per_vector <= d + 7, f"{per_vector} cycles per vector, expected at most {d + 7}"
    np.testing.assert_array_equal([r.payload.x for r in got],
                                  np.concatenate([nx.rmsnorm_q(v) for v in vectors]))


def test_rmsnorm_cuts_overlong_vectors():
    """Element max_d closes the vector, as documented; the rest starts a new one."""
    x = np.arange(1, 7) * 1000
    dut = RMSNormUnit(max_d=4)
    items = [{"x": int(v), "last": int(k == 5)} for k, v in enumerate(x)]
    got = run_stream(dut, items, 6, gap=0.2, stall=0.2,
                     setup=lambda ctx: ctx.set(dut.sqrt_d, nx.sqrt_d_const(4)))
    # the remainder is normalised with the sqrt_d on the port (that of d = 4)
    r, shift = nx.rsqrt_factor(np.sum(x[4:] ** 2, keepdims=True), 4)
    rest = nx.saturate(nx.shift_round_array(x[4:] * r, shift))
    expect = np.concatenate([nx.rmsnorm_q(x[:4]), rest])
    assert [g.payload.x for g in got] == [int(v) for v in expect]
    assert [g.payload.last for g in got] == [1 if k == 3 else 0 for k in range(4)] + [0, 1]


def test_channel_scale_full_rate():
    """Without gaps or stalls one element leaves per cycle."""
    dut = ChannelScale()
    items = [{"x": 1000 * k, "mant": 7 * k, "last": 0} for k in range(40)]
    got = run_stream(dut, items, 40, gap=0.0, stall=0.0,
                     setup=lambda ctx: ctx.set(dut.shift, 3))
    cycles = [r.cycle for r in got]
    assert cycles == list(range(cycles[0], cycles[0] + 40))
