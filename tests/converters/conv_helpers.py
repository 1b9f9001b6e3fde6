"""Helpers for the converter tests: a tiny residual CNN, leftovers check, the markers for the
old OpenVINO releases' Pythons (imported by name)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfm_fuse.converters._ov_legacy import OV2021, python310_available, python_available  # noqa: E402

# the old OpenVINO releases' venvs need pyenv's Pythons (first use builds the venv: slow)
needs_py310 = pytest.mark.skipif(not python310_available(),
                                 reason="python3.10 (PYENV_VERSION=3.10.13) is not available")
needs_py39 = pytest.mark.skipif(not python_available(OV2021),
                                reason="needs pyenv's python3.9 for OpenVINO 2021.4.2")


def residual_cnn(input_shape=(16, 16, 3), classes: int = 10, width: int = 8,
                 seed: int = 0, random_bn: bool = True) -> keras.Model:
    """Conv/BN/ReLU, one residual block with Add, GAP and Dense: the ops the demo models use."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    y = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.ReLU()(y)
    y = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(y)
    y = keras.layers.BatchNormalization()(y)
    x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(classes)(x)
    model = keras.Model(inp, out, name="tiny_resnet")
    if random_bn:
        _randomise_bn(model, seed)
    return model


def _randomise_bn(model: keras.Model, seed: int) -> None:
    """Non-trivial BatchNorm statistics so that folding them is actually exercised."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])


def assert_nothing_left(path) -> None:
    """The output directory and any staging sibling of it are gone."""
    from pathlib import Path

    path = Path(path)
    assert not path.exists(), f"{path} was left behind"
    if path.parent.exists():
        leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]
        assert not leftovers, f"staging directories left behind: {leftovers}"


def mnist_resnet(width: int = 16, seed: int = 0) -> keras.Model:
    """A small ResNet for 28×28×1 digits: three stages of Conv/BN/ReLU with residual Adds."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28, 1), name="digit")
    x = inp
    for stage, filters in enumerate((width, 2 * width, 4 * width)):
        x = _conv_bn(x, filters, stride=1 if stage == 0 else 2)
        y = _conv_bn(x, filters, stride=1)
        y = _conv_bn(y, filters, stride=1, relu=False)
        x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(10)(x), name="mnist_resnet")


def _conv_bn(x, filters: int, stride: int, relu: bool = True):
    x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)  # settles within a short training
    return keras.layers.ReLU()(x) if relu else x
