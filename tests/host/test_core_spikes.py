"""Issue-6 cross-check: spike counts read back from the simulated core equal the golden model's."""

import numpy as np

from nsllm.analysis.core_check import check_core_spikes
from nsllm.model import load_model, resolve_model_path


def test_core_spike_counts_equal_golden_on_default_model():
    weights = load_model(resolve_model_path(None))
    core, mismatch = check_core_spikes(weights, "The return value")
    assert mismatch is None, str(mismatch)
    assert set(core.counts) == set(weights.config.ternary_layers())
    assert all(c.shape[0] == len("The return value") for c in core.counts.values())
    assert any(np.count_nonzero(c) for c in core.counts.values())  # the readback is not empty
