"""Shared fixtures for the core tests (graph, strip, profile, properties, errors).

Model builders live in `tests/models.py` (`from tests.models import ...`); the fixtures here
build each model once per module, because Keras graph construction dominates test time.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

from tests import models  # noqa: E402


@pytest.fixture(scope="module")
def built():
    """`built(name)`: the model of `models.CASES[name]`, built once per test module."""
    cache: dict[str, keras.Model] = {}

    def get(name: str) -> keras.Model:
        if name not in cache:
            cache[name] = models.CASES[name]()
        return cache[name]

    return get
