"""`rebuild(graph, rewrite)`: the one way every transform emits a new model."""

import keras
import numpy as np
import pytest

from tfm_fuse.errors import UnsupportedLayerError
from tfm_fuse.graph import analyze
from tfm_fuse.rebuild import rebuild

L = keras.layers
X = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32")


def _model():
    inputs = keras.Input((8, 8, 3))
    conv = L.Conv2D(4, 3, padding="same", name="shared")
    x = conv(inputs)
    x = L.Dropout(0.5, name="drop")(L.ReLU()(x))
    x = conv(L.Conv2D(3, 1, name="back")(x))  # the same layer called twice
    return keras.Model(inputs, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(x)))


def test_plain_rebuild_is_a_fresh_equal_copy():
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    copy = rebuild(analyze(model))
    np.testing.assert_array_equal(copy(X, training=False), model(X, training=False))
    ours = {id(layer) for layer in model.layers}
    assert not any(id(layer) in ours for layer in copy.layers)  # fresh objects
    assert len([l for l in copy.layers if l.name == "shared"]) == 1  # still one shared layer
    copy.get_layer("head").kernel.assign(np.zeros((4, 2), "float32"))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_a_rewrite_replaces_a_node():
    model = _model()

    def drop_dropout(node, inputs, builder):
        return inputs if isinstance(node.layer, L.Dropout) else None

    copy = rebuild(analyze(model), drop_dropout)
    assert "drop" not in [l.name for l in copy.layers] and "drop" in [l.name for l in model.layers]
    np.testing.assert_allclose(copy(X, training=False), model(X, training=False), atol=1e-6)


class Unrebuildable(L.Layer):
    """A layer with a weight whose constructor cannot take its own config back."""

    def __init__(self, width, **kwargs):
        super().__init__(**kwargs)
        self.width = width

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), name="w")

    def call(self, x):
        return x * self.w

    def get_config(self):
        return {**super().get_config(), "wrong_name": self.width}


def test_a_layer_that_cannot_be_recreated_is_named():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, Unrebuildable(3, name="odd")(inputs))
    with pytest.raises(UnsupportedLayerError, match="odd.*cannot be re-created from its config"):
        rebuild(analyze(model, allow_unknown=True))


def test_a_weightless_lambda_is_carried_over_as_it_is():
    inputs = keras.Input((8, 8, 3))
    lam = L.Lambda(lambda t: t * 2.0, name="double")
    model = keras.Model(inputs, lam(L.Conv2D(2, 1)(inputs)))
    copy = rebuild(analyze(model, allow_unknown=True))
    assert copy.get_layer("double") is lam
    np.testing.assert_allclose(copy(X), model(X), atol=1e-6)
