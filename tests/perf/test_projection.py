"""Projections (nsllm.perf.projection): port placement, the roofline bound, firing profiles."""

import pytest

from nsllm.boards import get_board
from nsllm.model import preset
from nsllm.perf.firing import FiringProfile, role
from nsllm.perf.projection import ASSUMPTIONS, place_ports, project


@pytest.fixture(scope="module")
def board():
    return get_board("vck190")


def test_ports_go_where_the_slowest_port_is_fastest(board):
    three = place_ports(board, 3)
    assert sorted(three.memories) == ["DDR4", "LPDDR4_0", "LPDDR4_1"]
    four = place_ports(board, 4)
    assert four.memories.count("DDR4") == 2  # two on the DIMM, one on each LPDDR4
    eff = ASSUMPTIONS["dram_efficiency"].value
    assert min(four.gbytes_per_s) == pytest.approx(25.6 * eff / 2)
    assert 4 * min(four.gbytes_per_s) > 3 * min(three.gbytes_per_s)
    for p in (place_ports(board, n) for n in (1, 2, 3, 4)):
        assert max(p.gbytes_per_s) <= min(board.axi_port_bytes * board.pl_clock_mhz / 1e3,
                                          ASSUMPTIONS["nmu_gbytes_per_s"].value)


@pytest.mark.parametrize("name, rates", [("tiny", (0.05, 0.5, 1.0)),
                                         ("mmfree-370m", (0.1, 0.9)),
                                         ("nsllm-1.5b", (0.35,))])
@pytest.mark.parametrize("ports", [1, 3, 4])
@pytest.mark.parametrize("packing", ["2bit", "base3"])
def test_the_projection_never_exceeds_the_roofline(board, name, rates, ports, packing):
    cfg = preset(name)
    for r in rates:
        for latency in (0.0, None):
            p = project(cfg, board, FiringProfile.given(r), weight_ports=ports,
                        packing=packing, latency_ns=latency)
            assert 0 < p.tokens_per_s <= p.roofline_tokens_per_s * (1 + 1e-9), (r, latency)
            assert p.roofline_fraction <= 1
            assert p.weight_bytes <= p.dense_weight_bytes
            assert p.firing_rate == pytest.approx(r, abs=0.05)


def test_lower_firing_rate_and_latency_are_faster(board):
    cfg = preset("mmfree-370m")
    slow = project(cfg, board, FiringProfile.given(0.8))
    fast = project(cfg, board, FiringProfile.given(0.3))
    assert fast.tokens_per_s > slow.tokens_per_s
    assert fast.weight_bytes < slow.weight_bytes
    near = project(cfg, board, FiringProfile.given(0.8), latency_ns=50)
    assert near.tokens_per_s > slow.tokens_per_s
    with pytest.raises(ValueError, match="batch 1"):
        project(cfg, board, FiringProfile.given(0.5), batch=2)


def test_block_extrapolation_matches_the_full_program(board):
    """Four blocks simulated and the mean of the last three repeated ≈ every block simulated
    (the mean of three draws: the blocks' times vary a few per cent with the drawn columns)."""
    from dataclasses import replace

    from nsllm.hdl.core import CoreParams
    from nsllm.host.program import program_outline
    from nsllm.perf.projection import _model, sample_fired

    cfg = replace(preset("mmfree-370m"), num_layers=8)
    firing = FiringProfile.given(0.4)
    p = project(cfg, board, firing, weight_ports=3)
    params = CoreParams.for_model(cfg, port_bytes=64, vector=16, weight_ports=3,
                                  packings=("2bit", "base3"), max_D=15)
    model = _model(params, p.placement, 300e6, ASSUMPTIONS["dram_latency_ns"].value,
                   ASSUMPTIONS["read_bytes_in_flight"].value)
    _, prog = program_outline(cfg, 64, "base3", 3)
    full = [model.program(prog, sample_fired(prog, firing.rates_for(prog), s)).cycles
            for s in (5, 6, 7)]
    assert p.cycles_per_token == pytest.approx(sum(full) / len(full), rel=0.02)


def test_firing_profiles_map_by_role():
    prof = FiringProfile(rates={"layers.0.attn.i_proj": 0.8, "layers.1.attn.i_proj": 0.6,
                                "lm_head": 0.9}, source="test", model="m")
    assert role("layers.12.mlp.down_proj") == "mlp.down_proj"
    assert prof.rate("layers.0.attn.i_proj") == 0.8  # same model: its own layer
    assert prof.rate("layers.27.attn.i_proj") == pytest.approx(0.7)  # another shape: the role
    assert prof.rate("lm_head") == 0.9
    with pytest.raises(ValueError, match="no firing rate"):
        prof.rate("layers.0.mlp.gate_proj")
    with pytest.raises(ValueError, match="fraction"):
        FiringProfile.given(1.5)


def test_measured_rates_come_from_the_golden_model(tmp_path):
    from nsllm.model import load_model, resolve_model_path
    from nsllm.model.integer import IntegerModel
    from nsllm.model.stats import firing_rates
    from nsllm.perf.firing import measure

    w = load_model(resolve_model_path(None))
    text = tmp_path / "t.txt"
    text.write_text("def f(x):\n    return x + 1\n" * 4)
    prof = measure(w, str(text), max_tokens=64)
    ids = list(text.read_bytes())[:64]
    assert prof.rates == pytest.approx(firing_rates(IntegerModel(w), ids))
    assert prof.tokens == 64 and "golden model" in prof.source and str(text) in prof.source
