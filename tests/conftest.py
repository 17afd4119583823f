import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_weights():
    from nsllm.model import preset, random_weights

    return random_weights(preset("tiny"), seed=0)


@pytest.fixture(scope="session")
def tiny_arith(tiny_weights):
    """The integer arithmetic of the tiny model (quantised once per session)."""
    from nsllm.model.integer import IntegerArithmetic

    return IntegerArithmetic(tiny_weights)


@pytest.fixture(scope="session")
def tiny_file(tiny_weights, tmp_path_factory):
    """The tiny model saved as a .nsllm file (once per session; do not modify it)."""
    from nsllm.model import save_model

    return save_model(tiny_weights, tmp_path_factory.mktemp("tiny") / "tiny.nsllm")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
