"""Helpers in tfm_fuse.app.models and tfm_fuse.app.data used by the benchmarks and slow tests."""

import keras
import numpy as np
import pytest

import tfm_fuse
from tfm_fuse.app.models import reestimate_batchnorm


def test_reestimate_batchnorm_sets_the_data_statistics():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(4, 3, use_bias=False)
    bn = keras.layers.BatchNormalization(momentum=0.99)
    model = keras.Model(inp, bn(conv(inp)))
    x = np.random.default_rng(0).normal(2.0, 3.0, (80, 8, 8, 3)).astype("float32")
    x[:32] += 5.0  # batches with different statistics: 32, 32 and a short one of 16
    reestimate_batchnorm(model, x, batch_size=32)
    features = np.asarray(conv(x)).astype("float64")
    np.testing.assert_allclose(np.asarray(bn.moving_mean), features.mean(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(bn.moving_variance), features.var(axis=(0, 1, 2)),
                               rtol=1e-3)
    assert bn.momentum == 0.99  # restored
    out = np.asarray(model(x, training=False))
    assert abs(out.mean()) < 0.05 and out.std() == pytest.approx(1.0, abs=0.05)


def test_reestimate_batchnorm_refuses_empty_data():
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.BatchNormalization()(inp))
    with pytest.raises(tfm_fuse.errors.ConfigError, match="at least one sample"):
        reestimate_batchnorm(model, np.zeros((0, 4), "float32"))


def test_as_rgb_shape_and_range():
    (x, _), _ = tfm_fuse.app.data.load_mnist(n_train=16, n_test=0)
    rgb = tfm_fuse.app.data.as_rgb(x, 32)
    assert rgb.shape == (16, 32, 32, 3) and rgb.dtype == np.float32
    assert rgb.min() >= -1.0 - 1e-6 and rgb.max() <= 1.0 + 1e-6
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
