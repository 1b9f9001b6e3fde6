"""Tiny models and data shared by the pruning and callback tests."""

import keras
import numpy as np


def small_resnet(input_shape=(12, 12, 1), classes=4, width=8) -> keras.Model:
    """A conv-BN-ReLU stem, one residual block, a depthwise/pointwise pair and a Dense head."""
    i = keras.Input(input_shape)
    x = keras.layers.Conv2D(width, 3, padding="same")(i)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    y = keras.layers.Conv2D(width, 3, padding="same")(x)
    y = keras.layers.BatchNormalization()(y)
    x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.Conv2D(2 * width, 1)(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    return keras.Model(i, keras.layers.Dense(classes, activation="softmax")(x))


def toy_data(n: int = 64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 12, 12, 1)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0).astype("int32") + 2 * (x[:, :6].mean(axis=(1, 2, 3)) > 0)
    return x, y


def compiled(model):
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model
