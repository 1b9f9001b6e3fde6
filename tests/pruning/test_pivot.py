import keras
import numpy as np
import pytest

import tfm_fuse
from tests.models import randomize
from tests.pruning.helpers import small_resnet
from tfm_fuse.pruning import group_mask
from tfm_fuse.pruning.pivoting import pivot


def _flatten_net():
    i = keras.Input((8, 8, 2))
    a = keras.layers.Conv2D(6, 3, padding="same")(i)
    b = keras.layers.Conv2D(4, 1)(i)
    x = keras.layers.Concatenate()([keras.layers.BatchNormalization()(a), b])
    x = keras.layers.MaxPooling2D()(keras.layers.ReLU()(x))
    return keras.Model(i, keras.layers.Dense(3)(keras.layers.Flatten()(x)))


@pytest.mark.parametrize("build", [lambda: small_resnet(width=16), _flatten_net])
def test_pivot_is_equivalent_and_kept_first(build):
    model = randomize(build())
    masked = tfm_fuse.prune(model, method="l2", rate=0.5)
    pivoted = pivot(masked)
    x = np.random.default_rng(0).normal(size=(3, *model.input_shape[1:])).astype("float32")
    np.testing.assert_allclose(pivoted(x), masked(x), atol=1e-5)
    graph = tfm_fuse.analyze(pivoted)
    for g in graph.groups:
        if g.prunable:
            m = group_mask(pivoted, g)
            assert np.array_equal(m, np.sort(m)[::-1])  # ones, then zeros
    np.testing.assert_allclose(tfm_fuse.strip(pivoted)(x), tfm_fuse.strip(masked)(x), atol=1e-5)
