"""The power model (nsllm.perf.power): which terms depend on what, the DRAM term, the band, and
the coefficient table's completeness."""

import pytest

from nsllm.perf.activity import Activity
from nsllm.perf.power import (
    BANDS,
    COEFFICIENTS,
    MemoryAccesses,
    PowerInputs,
    dram_kind,
    estimate_power,
)

RESOURCES = {"weight path": {"LUT": 50_000, "FF": 20_000, "BRAM": 0, "URAM": 96, "DSP": 0},
             "vector unit": {"LUT": 30_000, "FF": 25_000, "BRAM": 8, "URAM": 0, "DSP": 120},
             "control": {"LUT": 4_000, "FF": 3_000, "BRAM": 2, "URAM": 0, "DSP": 0}}


def inputs(rate_factor=1.0, dram=None):
    return PowerInputs(
        clock_hz=300e6, resources=RESOURCES,
        toggle_rate={"weight path": 0.2 * rate_factor, "vector unit": 0.05 * rate_factor,
                     "control": 0.02 * rate_factor},
        dsp_duty={"vector unit": 0.1 * rate_factor},
        memories=[MemoryAccesses("banks", 1e9 * rate_factor, 5760, "URAM"),
                  MemoryAccesses("scratch", 1e8 * rate_factor, 384, "BRAM")],
        dram_bytes_per_s=dram or {"DDR4": 15e9, "LPDDR4_0": 12e9},
        dram_kinds={"DDR4": "ddr4", "LPDDR4_0": "lpddr4"})


def test_doubling_the_activity_raises_only_the_activity_terms():
    one = estimate_power(inputs(1.0))
    two = estimate_power(inputs(2.0))
    changed = 0
    for name, kind in one.kinds.items():
        for band in BANDS:
            a, b = one.terms[name][band], two.terms[name][band]
            if kind == "activity":
                assert b == pytest.approx(2 * a), name
                changed += a > 0
            else:
                assert b == pytest.approx(a), name  # static, clock, DRAM, background, NoC
    assert changed >= 4
    assert two.dynamic() > one.dynamic() and two.total() - one.total() == pytest.approx(
        two.dynamic() - one.dynamic())
    # the measured activity's own scaling does the same through the per-event rates
    act = Activity({"weight path": 0.1}, {"weight path": 10}, {"weight beats per port": 0.5},
                   100, 1, "test")
    assert act.scaled(2.0).at({"weight beats per port": 0.5})["weight path"] == pytest.approx(
        2 * act.at({"weight beats per port": 0.5})["weight path"])


def test_the_dram_term_is_bytes_per_second_times_energy_per_byte():
    est = estimate_power(inputs(dram={"DDR4": 10e9, "LPDDR4_0": 4e9}))
    for band in BANDS:
        assert est.terms["DRAM reads: DDR4"][band] == pytest.approx(
            10e9 * COEFFICIENTS["ddr4_pj_per_byte"].at(band) * 1e-12)
        assert est.terms["DRAM reads: LPDDR4_0"][band] == pytest.approx(
            4e9 * COEFFICIENTS["lpddr4_pj_per_byte"].at(band) * 1e-12)
    # twice the bytes: twice the term, the background unchanged
    est2 = estimate_power(inputs(dram={"DDR4": 20e9, "LPDDR4_0": 4e9}))
    assert est2.terms["DRAM reads: DDR4"]["typical"] == pytest.approx(
        2 * est.terms["DRAM reads: DDR4"]["typical"])
    assert est2.terms["DRAM background: DDR4"] == est.terms["DRAM background: DDR4"]


def test_band_is_ordered_and_dynamic_excludes_static_and_background():
    est = estimate_power(inputs())
    assert est.total("low") < est.total("typical") < est.total("high")
    assert est.dynamic() == pytest.approx(
        est.total() - est.terms["static"]["typical"]
        - sum(v["typical"] for k, v in est.terms.items() if est.kinds[k] == "background"))
    d = est.as_dict()
    assert d["estimate"] is True and set(d["total"]) == set(BANDS)


def test_every_coefficient_has_a_source_and_an_ordered_range():
    assert len(COEFFICIENTS) >= 15
    for name, c in COEFFICIENTS.items():
        assert c.low <= c.typical <= c.high, name
        assert c.source and c.unit, name


def test_memory_kinds():
    assert dram_kind({"name": "LPDDR4_0", "kind": "LPDDR4 controller"}) == "lpddr4"
    assert dram_kind({"name": "DDR4", "kind": "DDR4-3200 64-bit DIMM"}) == "ddr4"
    with pytest.raises(ValueError, match="DDR4 and LPDDR4"):
        dram_kind({"name": "HBM", "kind": "HBM2e"})
