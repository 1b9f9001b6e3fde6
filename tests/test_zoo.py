"""Every model of the zoo (`tests/zoo.py`): fuse ≈, strip(prune) ≈, MACs cut, caller untouched.

The 40 `keras.applications` constructors and the Keras-examples models, each with BatchNorm
statistics re-estimated on the shipped digits. The largest constructors are marked slow (still
run in CI); `python benchmarks/zoo.py` prints the same checks as a table.
"""

import pytest

from tests.zoo import ALL, check, fuse_ok

# minutes rather than seconds on 2 cores (build + fuse + prune + strip)
HEAVY = {"ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtXLarge", "EfficientNetB5", "EfficientNetB6",
         "EfficientNetB7", "EfficientNetV2M", "EfficientNetV2L", "NASNetLarge", "ResNet152",
         "ResNet152V2", "InceptionResNetV2", "DenseNet201", "EfficientNetV2S"}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=[pytest.mark.slow, pytest.mark.xdist_group("heavy_zoo")])
    if n in HEAVY else n for n in ALL])
def test_zoo_model(name):
    row = check(name)
    assert fuse_ok(row), row  # ≤ 1e-4, or float32 round-off of the model (float64 twin)
    assert row["strip_err"] <= 1e-4, row
    assert row["pruning_changed"] > 1e-3, row  # pruning moved the outputs: the checks can fail
    assert row["macs_cut"] >= 0.3, row
    assert row["caller_untouched"], row
