"""Shared fixtures for the converter tests: a tiny residual CNN and sample inputs."""

import numpy as np
import pytest
from conv_helpers import residual_cnn


@pytest.fixture(scope="session")
def tiny_model():
    return residual_cnn()


@pytest.fixture(scope="session")
def tiny_data() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.uniform(0, 1, (64, 16, 16, 3)).astype("float32")
