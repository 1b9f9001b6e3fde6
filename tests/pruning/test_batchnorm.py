"""`StatisticsRestart`: after a restart, BatchNorm's moving statistics are the batches' average."""

import keras
import numpy as np
import pytest

from tfm_fuse.pruning.batchnorm import StatisticsRestart


def _model(momentum):
    i = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(5, 3, padding="same")(i)
    x = keras.layers.BatchNormalization(momentum=momentum)(x)
    model = keras.Model(i, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")  # lr 0: inputs to BN fixed
    return model


@pytest.mark.parametrize("momentum", [0.9, 0.99, 0.999])
def test_moving_statistics_become_the_average_of_the_batches_since_the_restart(momentum):
    model = _model(momentum)
    bn = model.layers[2]
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=k, size=(8, 4, 4, 3)).astype("float32") for k in range(5)]
    conv = keras.Model(model.input, model.layers[1].output)
    restart = StatisticsRestart(model)
    restart.restart()
    means, variances = [], []
    for x in batches:
        model.train_on_batch(x, np.zeros((8, 2), "float32"))
        restart.after_batch()
        h = conv.predict(x, verbose=0).reshape(-1, 5)
        means.append(h.mean(0))
        variances.append(h.var(0))
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean(means, 0), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean(variances, 0), rtol=1e-3,
                               atol=1e-4)


def test_hands_back_to_the_momentum_after_its_horizon():
    model = _model(0.5)  # horizon: 2 batches
    bn = model.layers[2]
    restart = StatisticsRestart(model)
    restart.restart()
    x = np.ones((8, 4, 4, 3), "float32")
    for _ in range(2):
        model.train_on_batch(x, np.zeros((8, 2), "float32"))
        restart.after_batch()
    assert not restart.active
    before = bn.moving_mean.numpy().copy()
    model.train_on_batch(2 * x, np.zeros((8, 2), "float32"))
    restart.after_batch()  # no longer averaging: BatchNorm's own update stands
    conv = keras.Model(model.input, model.layers[1].output)
    batch_mean = conv.predict(2 * x, verbose=0).reshape(-1, 5).mean(0)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.5 * before + 0.5 * batch_mean, rtol=1e-5)


def test_without_restart_nothing_changes():
    model = _model(0.9)
    bn = model.layers[2]
    restart = StatisticsRestart(model)
    model.train_on_batch(np.ones((8, 4, 4, 3), "float32"), np.zeros((8, 2), "float32"))
    before = bn.moving_mean.numpy().copy()
    restart.after_batch()
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)


def test_overflowing_statistics_are_left_to_batchnorm():
    """An exploding network's variance overflows to inf; inverting BatchNorm's update would
    then give inf - inf = NaN, and NaN statistics poison every inference-mode output."""
    model = _model(0.999)
    bn = model.layers[2]
    restart = StatisticsRestart(model)
    restart.restart()
    x = np.full((8, 4, 4, 3), 1e30, "float32")
    x[::2] = -1e30
    for _ in range(3):
        model.train_on_batch(x, np.zeros((8, 2), "float32"))
        restart.after_batch()
    assert not np.isnan(bn.moving_variance.numpy()).any()
    assert not np.isnan(bn.moving_mean.numpy()).any()


def test_recovered_variance_is_never_negative():
    """Inverting `new = m * old + (1 - m) * batch` in float32 amplifies round-off by 1 / (1 - m):
    a large old variance and a tiny batch one can give a negative average, and inference-mode
    BatchNorm then computes sqrt(negative + eps) = NaN."""
    model = _model(0.999)
    bn = model.layers[2]
    bn.moving_variance.assign(np.random.default_rng(1).uniform(1e7, 1e8, 5).astype("float32"))
    restart = StatisticsRestart(model)
    restart.restart()
    x = np.random.default_rng(0).normal(scale=1e-3, size=(8, 4, 4, 3)).astype("float32")
    for _ in range(3):
        model.train_on_batch(x, np.zeros((8, 2), "float32"))
        restart.after_batch()
    assert (bn.moving_variance.numpy() >= 0).all()
    assert not np.isnan(model.predict(x, verbose=0)).any()


def test_a_slow_momentum_is_held_to_the_default_horizon(monkeypatch):
    """Momentum 0.999 (keras.applications): after MAX_HORIZON batches the statistics keep
    following the recent batches (here a horizon of 2: each new batch weighs 1/2)."""
    from tfm_fuse.pruning import batchnorm

    monkeypatch.setattr(batchnorm, "MAX_HORIZON", 2)
    model = _model(0.999)
    bn = model.layers[2]
    conv = keras.Model(model.input, model.layers[1].output)
    restart = StatisticsRestart(model)
    restart.restart()
    rng = np.random.default_rng(0)
    expected = None
    for k in range(5):
        x = rng.normal(loc=k, size=(8, 4, 4, 3)).astype("float32")
        model.train_on_batch(x, np.zeros((8, 2), "float32"))
        restart.after_batch()
        batch = conv.predict(x, verbose=0).reshape(-1, 5).mean(0)
        expected = batch if expected is None else 0.5 * expected + 0.5 * batch
    assert restart.active  # still tracking: the layer's own momentum would lag 1,000 batches
    np.testing.assert_allclose(bn.moving_mean.numpy(), expected, rtol=1e-3, atol=1e-4)
