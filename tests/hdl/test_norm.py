"""amaranth.sim tests of RMSNormUnit and the units it is built from — SumOfSquares, RsqrtFactor,
ChannelScale (also at the requantiser's widths) — against numerics.rmsnorm_q / rsqrt_factor /
norm_q / requant_q."""

from __future__ import annotations

import numpy as np
import pytest

from nsllm.hdl.norm import (
    ChannelScale,
    RMSNormUnit,
    RsqrtFactor,
    SumOfSquares,
    factor_bits,
    sum_sq_bits,
)
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
    with pytest.raises(ValueError, match=r"^max_d must be a positive integer, not 0$"):
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


def test_norm_equals_integer_arithmetic(tiny_weights, tiny_arith):
    """RMSNormUnit → ChannelScale with a real norm weight equals IntegerArithmetic.norm."""
    ar = tiny_arith
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
    with pytest.raises(TypeError, match=r"^shift must be an integer, not 1\.5$"):
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


# --- SumOfSquares -------------------------------------------------------------------------------
# one line per case: lanes, max_d, words per vector (lanes · words ≤ max_d), gap, stall
SUM_SQ_CASES = [(1, 16, 16, 0.3, 0.3), (4, 64, 16, 0.0, 0.0), (8, 512, 64, 0.4, 0.5),
                (3, 30, 10, 0.2, 0.6), (16, 5632, 352, 0.0, 0.3)]


@pytest.mark.parametrize("lanes,max_d,words,gap,stall", SUM_SQ_CASES)
def test_sum_of_squares_is_exact(lanes, max_d, words, gap, stall):
    dut = SumOfSquares(lanes, max_d)
    rng = np.random.default_rng(lanes + words)
    vectors = [np.full((words, lanes), A_MIN), np.zeros((words, lanes), np.int64),  # widest, 0
               rng.integers(A_MIN, A_MAX + 1, (1, lanes)),  # one beat
               rng.integers(-5, 6, (words, lanes)), rng.integers(A_MIN, A_MAX + 1, (words, lanes))]
    items = [{"x": v[k].tolist(), "last": int(k == len(v) - 1)} for v in vectors
             for k in range(len(v))]
    got = run_stream(dut, items, len(vectors), gap=gap, stall=stall, seed=lanes)
    assert [r.payload.sum_sq for r in got] == [int(np.sum(v.astype(object) ** 2))
                                               for v in vectors]


def test_sum_of_squares_total_leaves_three_cycles_after_last():
    dut = SumOfSquares(2, 8)
    items = [{"x": [3, 4], "last": 0}, {"x": [1, -1], "last": 1}, {"x": [2, 2], "last": 1}]
    got = run_stream(dut, items, 2, gap=0.0, stall=0.0)
    assert [(r.cycle, r.payload.sum_sq) for r in got] == [(5, 27), (6, 8)]


def test_sum_of_squares_width_holds_the_largest_sum():
    assert SumOfSquares(16, 5632).ss_bits == sum_sq_bits(5632) == (5632 * A_MIN ** 2).bit_length()


# --- RsqrtFactor --------------------------------------------------------------------------------
def factor_inputs(max_d, rng):
    """Σx² of every bit length up to the unit's width (each exponent and table region), the
    extremes, and sqrt_d values from 1 to the port's largest."""
    ss_bits = sum_sq_bits(max_d)
    port_max = (1 << nx.sqrt_d_const(max_d).bit_length()) - 1
    sums = [0, 1, 2, 3, (1 << ss_bits) - 1, max_d * A_MIN ** 2]
    for bits in range(1, ss_bits + 1):
        sums += [1 << (bits - 1), int(rng.integers(1 << (bits - 1), 1 << bits))]
    sqrt_ds = [nx.sqrt_d_const(d) for d in (1, 2, max_d // 2 or 1, max_d)] + [1, port_max]
    return [(ss, sqrt_ds[k % len(sqrt_ds)]) for k, ss in enumerate(sums)]


@pytest.mark.parametrize("max_d,gap,stall", [(16, 0.3, 0.3), (512, 0.0, 0.0), (5632, 0.5, 0.4)])
def test_rsqrt_factor_equals_numerics(max_d, gap, stall):
    dut = RsqrtFactor(max_d)
    cases = factor_inputs(max_d, np.random.default_rng(max_d))
    got = run_stream(dut, [{"sum_sq": ss, "sqrt_d": q} for ss, q in cases], len(cases),
                     gap=gap, stall=stall, seed=max_d & 0xFF)
    for (ss, q), r in zip(cases, got, strict=True):
        want_r, want_shift = nx.rsqrt_factor(np.array([ss], dtype=np.int64), 1, sqrt_d=q)
        assert (r.payload.r, r.payload.shift) == (int(want_r[0]), int(want_shift[0])), (
            f"RsqrtFactor: sum_sq={ss} sqrt_d={q}: got ({r.payload.r}, {r.payload.shift}), "
            f"expected ({int(want_r[0])}, {int(want_shift[0])})")
        assert r.payload.shift <= dut.max_shift


def test_rsqrt_factor_width_holds_every_sqrt_d_port_value():
    for max_d in (1, 16, 512, 5632):
        port_max = (1 << nx.sqrt_d_const(max_d).bit_length()) - 1
        r, _ = nx.rsqrt_factor(np.array([1]), 1, sqrt_d=port_max)  # the largest table entry
        assert int(r[0]).bit_length() == factor_bits(max_d)


def test_rsqrt_factor_takes_four_cycles_per_vector_and_waits_for_the_sink():
    dut = RsqrtFactor(16)
    items = [{"sum_sq": 1000 * k + 1, "sqrt_d": 1024} for k in range(4)]
    fast = run_stream(dut, items, 4, gap=0.0, stall=0.0)
    assert [r.cycle for r in fast] == [5, 9, 13, 17]
    slow = run_stream(RsqrtFactor(16), items, 4, gap=0.0, stall=0.8, seed=3)
    assert [(r.payload.r, r.payload.shift) for r in slow] == [
        (r.payload.r, r.payload.shift) for r in fast]


@pytest.mark.parametrize("factory,message", [
    (lambda: RsqrtFactor(0), r"^max_d must be a positive integer, not 0$"),
    (lambda: SumOfSquares(0, 16), r"^lanes and max_d must be positive integers, not 0, 16$"),
    (lambda: SumOfSquares(4, -1), r"^lanes and max_d must be positive integers, not 4, -1$"),
    (lambda: ChannelScale(mant_bits=1), r"^mant_bits and x_bits must be integers ≥ 2, not 1, 24$"),
    (lambda: ChannelScale(x_bits=0), r"^mant_bits and x_bits must be integers ≥ 2, not 16, 0$"),
])
def test_init_wrong_arguments(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


# --- ChannelScale at other widths (the requantiser's: accumulator sums × int32 mantissas) -------
# one line per case: x_bits, mant_bits, shift
WIDE_SCALE_CASES = [(20, 32, 1), (20, 32, 17), (20, 32, 40), (30, 32, 50), (30, 32, 63),
                    (30, 32, 100), (14, 32, 24), (12, 8, 3), (12, 8, -2), (30, 32, 0),
                    (20, 32, -30)]


@pytest.mark.parametrize("x_bits,mant_bits,shift", WIDE_SCALE_CASES)
def test_channel_scale_other_widths_equals_requant_q(x_bits, mant_bits, shift):
    dut = ChannelScale(mant_bits=mant_bits, x_bits=x_bits)
    rng = np.random.default_rng(x_bits * 64 + shift)
    x_lo, x_hi = -(1 << (x_bits - 1)), (1 << (x_bits - 1)) - 1
    m_lo, m_hi = -(1 << (mant_bits - 1)), (1 << (mant_bits - 1)) - 1
    x = [x_lo, x_hi, x_lo, x_hi, 0, 1, -1] + [int(v) for v in rng.integers(x_lo, x_hi + 1, 40)]
    mant = [m_lo, m_hi, m_hi, m_lo, m_hi, 1, m_hi] + [
        int(v) for v in rng.integers(m_lo, m_hi, 40, endpoint=True)]
    items = [{"x": a, "mant": b, "last": int(k % 6 == 5)}
             for k, (a, b) in enumerate(zip(x, mant, strict=True))]
    got = run_stream(dut, items, len(items), gap=0.3, stall=0.3, seed=shift & 0xFF,
                     setup=lambda ctx: ctx.set(dut.shift, dut.port_shift(shift)))
    # Python integers: the products are wider than int64 for the widest cases
    expect = [int(nx.saturate(nx.shift_round(a * b, shift))) for a, b in zip(x, mant, strict=True)]
    assert [r.payload.x for r in got] == expect
    assert [r.payload.last for r in got] == [k % 6 == 5 for k in range(len(items))]
