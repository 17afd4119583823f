"""The on-chip memory of builds with an SLA unit against the XCVC1902 (issue 14's board-fit
line): the state memory computed from the build (nsllm.perf.resources.sla_state_memory), the
rest of the core from the board snapshot."""

import pytest

from nsllm.boards import get_board
from nsllm.hdl.core import CoreParams
from nsllm.model import numerics as nx
from nsllm.perf.resources import memory_fit, sla_state_memory


def test_board_core_with_sla_layers_fits_the_xcvc1902():
    """nsllm-1.5b class: 7 of 28 layers SLA, d 2048, d_h 128 (16 heads), 32 entries a word."""
    p = CoreParams.board(sla=True)
    assert (p.max_layers, p.max_sla_layers, p.max_hidden, p.max_head_dim) == (28, 7, 2048, 128)
    fit = memory_fit(p, get_board("vck190").capacity)
    sla = fit["sla_state"]
    # a layer: 16 heads × 128² entries of 24 bits (docs/numerics.md, "State bytes per layer")
    assert sla["bytes_per_layer"] == 16 * 128 * 128 * nx.SLA_STATE_BITS // 8 == 786_432
    assert sla["bytes"] == 7 * 786_432
    # 768-bit words (11 URAMs wide), 57,344 words (14 deep)
    assert (sla["word_bits"], sla["words"], sla["URAM"]) == (768, 57_344, 154)
    assert sla["URAM"] * 4096 * 72 >= sla["bytes"] * 8  # the blocks hold the state
    assert fit["fits"], fit
    assert fit["URAM"] == pytest.approx(fit["core_URAM"] + 154)


def test_a_build_without_sla_has_no_state_memory():
    assert sla_state_memory(CoreParams.board())["URAM"] == 0


def test_too_many_sla_layers_do_not_fit():
    p = CoreParams.board(sla=True, max_sla_layers=28)  # every layer SLA: 616 URAMs of state
    fit = memory_fit(p, get_board("vck190").capacity)
    assert fit["sla_state"]["URAM"] > 463 and not fit["fits"]
