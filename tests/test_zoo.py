"""The model zoo (`tests/zoo.py`): fuse ≈, strip(prune) ≈, MACs cut, caller untouched.

Each model with BatchNorm statistics re-estimated on the shipped digits. The test suite checks
one constructor of every `keras.applications` family (the smallest that has each family's
blocks; ResNet50 also exercises the float64-twin judgement of deep nets) and every
Keras-examples and keras-hub model. The deeper and wider variants of a family add no new layer
or block, only minutes (26 min for all 48 models on 2 cores): `TFM_FUSE_FULL=1 pytest
tests/test_zoo.py` runs them too, and `python benchmarks/zoo.py` prints all 48 as the README's
table.
"""

import os
import re

import pytest

from tests.zoo import ALL, APPLICATIONS, check, fuse_ok

# one constructor per keras.applications family (the rest: TFM_FUSE_FULL=1)
FAMILIES = ("ConvNeXtTiny", "DenseNet121", "EfficientNetB0", "EfficientNetV2B0", "MobileNet",
            "MobileNetV2", "MobileNetV3Small", "NASNetMobile", "ResNet50", "ResNet50V2",
            "VGG16", "InceptionV3", "InceptionResNetV2", "Xception")
CHECKED = list(ALL) if os.environ.get("TFM_FUSE_FULL") else [
    name for name in ALL if name in FAMILIES or name not in APPLICATIONS]
# minutes rather than seconds on 2 cores, and gigabytes: never two at once
HEAVY = {"ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtXLarge", "EfficientNetB5", "EfficientNetB6",
         "EfficientNetB7", "EfficientNetV2M", "EfficientNetV2L", "NASNetLarge", "ResNet152",
         "ResNet152V2", "InceptionResNetV2", "DenseNet201", "EfficientNetV2S"}


def _family(name: str) -> str:
    """'ResNet101V2' -> 'ResNetV2', 'EfficientNetB3' -> 'EfficientNet', 'ConvNeXtTiny' -> 'ConvNeXt'."""
    for prefix in ("EfficientNetV2", "EfficientNet", "MobileNetV3", "MobileNetV2", "ConvNeXt",
                   "DenseNet", "NASNet", "VGG"):
        if name.startswith(prefix):
            return prefix
    return re.sub(r"(?<=[a-z])\d+", "", name)  # ResNet50V2 -> ResNetV2, InceptionV3 stays


def test_every_family_is_checked():
    """Each keras.applications family keeps a representative here when models are added."""
    assert set(FAMILIES) <= set(APPLICATIONS)
    missing = {_family(n) for n in APPLICATIONS} - {_family(n) for n in FAMILIES}
    assert not missing, missing


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=[pytest.mark.slow, pytest.mark.xdist_group("heavy_zoo")])
    if n in HEAVY else n for n in CHECKED])
def test_zoo_model(name):
    row = check(name)
    assert fuse_ok(row), row  # ≤ 1e-4, or float32 round-off of the model (float64 twin)
    assert row["strip_err"] <= 1e-4, row
    assert row["pruning_changed"] > 1e-3, row  # pruning moved the outputs: the checks can fail
    assert row["macs_cut"] >= 0.3, row
    assert row["caller_untouched"], row
