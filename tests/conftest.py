import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_weights():
    from nsllm.model import preset, random_weights

    return random_weights(preset("tiny"), seed=0)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
