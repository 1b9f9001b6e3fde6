"""The pruning cost model predicts exactly what `profile(strip(masked))` counts."""

import keras
import pytest

import tfm_fuse
from tests.models import CASES, randomize
from tfm_fuse.pruning.updater import MaskUpdater

L = keras.layers


def separable_mix() -> keras.Model:
    """Separable (depth multiplier 1 and 2), grouped, depthwise and transposed convolutions."""
    inp = keras.Input((10, 10, 3))
    x = L.Conv2D(16, 3, padding="same")(inp)
    x = L.SeparableConv2D(16, 3, padding="same", depth_multiplier=2)(x)
    x = L.SeparableConv2D(12, 3, padding="same")(x)
    x = L.Conv2D(16, 3, groups=4, padding="same")(L.Conv2D(16, 1)(x))
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.Conv2DTranspose(8, 3, strides=2)(x)
    out = L.Dense(4)(L.GlobalAveragePooling2D()(L.Conv2D(8, 1)(x)))
    return randomize(keras.Model(inp, out, name="separable_mix"))


@pytest.mark.parametrize("build", [separable_mix, *(CASES[n] for n in (
    "depthwise_separable", "grouped_conv", "conv_transpose", "concat_offsets", "se_conv",
    "flatten_dense", "shared_layers"))])
def test_predicted_costs_equal_the_stripped_profile(build):
    model = build()
    masked = tfm_fuse.prune(model, method="l1", rate=0.4)
    stats = MaskUpdater(masked, criterion="l1", scope="layer").stats()
    stripped = tfm_fuse.profile(tfm_fuse.strip(masked))
    assert stripped.macs < tfm_fuse.profile(model).macs  # something was removed
    assert (stats["prune_macs"], stats["prune_params"]) == (stripped.macs, stripped.params)
