"""Nested functional and Sequential models are analysed through (`tfm_fuse.nesting`).

The results of `fuse`, `prune` and `strip` are flat; they compute what the nested model does,
a backbone called twice stays shared, and the caller's model is untouched.
"""

import keras
import numpy as np
import pytest

import tfm_fuse
from tests.models import assert_equivalent, randomize, sample

L = keras.layers


def _block(shape, width, name):
    inp = keras.Input(shape)
    x = L.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv")(inp)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    x = L.ReLU(name=f"{name}_relu")(x)
    skip = L.Conv2D(width, 1, name=f"{name}_skip")(inp)
    return keras.Model(inp, L.Add(name=f"{name}_add")([x, skip]), name=name)


def three_levels() -> keras.Model:
    """A Sequential stage inside a functional backbone inside the model: three levels."""
    stage = keras.Sequential([keras.Input((12, 12, 8)), L.Conv2D(8, 3, padding="same", name="s_conv"),
                              L.BatchNormalization(name="s_bn"), L.ReLU(name="s_relu")],
                             name="stage")
    inp = keras.Input((12, 12, 3))
    x = _block((12, 12, 3), 8, "block_a")(inp)
    backbone = keras.Model(inp, stage(x), name="backbone")
    outer_in = keras.Input((12, 12, 3))
    y = L.Conv2D(6, 1, name="head_conv")(backbone(outer_in))
    y = L.GlobalAveragePooling2D(name="gap")(y)
    return randomize(keras.Model(outer_in, L.Dense(4, name="logits")(y), name="three_levels"))


def siamese() -> keras.Model:
    """One backbone called on two inputs: its weights are shared."""
    block = _block((10, 10, 3), 8, "shared")
    a, b = keras.Input((10, 10, 3), name="left"), keras.Input((10, 10, 3), name="right")
    merged = L.Concatenate(name="both")([block(a), block(b)])
    out = L.Dense(3, name="score")(L.GlobalAveragePooling2D(name="gap")(merged))
    return randomize(keras.Model([a, b], out, name="siamese"))


@pytest.mark.parametrize("build", [three_levels, siamese])
def test_fuse_prune_strip_through_nested_models(build):
    model = build()
    config, weights = model.get_config(), [w.copy() for w in model.get_weights()]
    x = sample(model, batch=4)
    fused = tfm_fuse.fuse(model)
    assert_equivalent(fused, model, x)
    pruned = tfm_fuse.prune(model, method="l1", rate=0.5)
    small = tfm_fuse.strip(pruned)
    assert_equivalent(small, pruned, x)
    assert not any(isinstance(layer, keras.Model) for layer in small.layers)
    assert tfm_fuse.profile(small).macs < 0.8 * tfm_fuse.profile(model).macs
    # the caller's model: same config, same weights, still computes what it did
    assert model.get_config() == config
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


def test_shared_backbone_stays_shared():
    model = siamese()
    small = tfm_fuse.strip(tfm_fuse.prune(model, method="l1", rate=0.5))
    conv = small.get_layer("shared_conv")
    assert len(conv._inbound_nodes) == 2  # one layer, called on both inputs
    assert [type(layer) for layer in small.layers].count(L.Conv2D) == 2  # shared_conv, shared_skip


def test_training_argument_of_a_backbone_call_behaves_as_in_keras():
    """`base(x, training=False)`: the flat model matches the nested one in both modes (Keras 3's
    functional call passes the outer `training` to every layer, overriding the recorded one)."""
    base = randomize(_block((8, 8, 3), 4, "frozen"))
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, L.Conv2D(2, 1, name="head")(base(inp, training=False)))
    flat = tfm_fuse.wrap(model)
    x = sample(model, batch=4)
    for training in (True, False, None):
        np.testing.assert_allclose(flat(x, training=training), model(x, training=training),
                                   atol=1e-5)
    assert not np.allclose(model(x, training=True), model(x, training=False), atol=1e-3)


class ResidualBlock(L.Layer):
    """A user's composite layer: sublayers and keras.ops inside call()."""

    def __init__(self, width, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(width, 3, padding="same", use_bias=False)
        self.bn = L.BatchNormalization()

    def call(self, x):
        return keras.ops.relu(x + self.bn(self.conv(keras.ops.relu(x))))


class SubclassedHead(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(6, 1)
        self.dense = L.Dense(3)

    def call(self, x):
        return self.dense(keras.ops.mean(self.conv(x), axis=(1, 2)))


def test_composite_layers_and_subclassed_models_are_traced_through():
    inp = keras.Input((10, 10, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(inp)
    x = ResidualBlock(8, name="res")(ResidualBlock(8, name="res0")(x))
    model = randomize(keras.Model(inp, SubclassedHead(name="head")(x)))
    x = sample(model, batch=4)
    assert_equivalent(tfm_fuse.fuse(model), model, x)
    pruned = tfm_fuse.prune(model, method="l1", rate=0.5)
    small = tfm_fuse.strip(pruned)
    assert_equivalent(small, pruned, x)
    # the blocks' inner convolutions were pruned (not pinned whole)
    convs = [layer for layer in small.layers if isinstance(layer, L.Conv2D)]
    assert len(convs) == 4 and convs[-1].filters < 6


def test_one_constructor_twice_is_refused_with_the_name():
    inp = keras.Input((8, 8, 3))
    a, b = _block((8, 8, 3), 4, "twin"), _block((8, 8, 3), 4, "twin")
    b = keras.Model(b.input, b.output, name="twin_b")  # same layer names, another model name
    model = keras.Model(inp, L.Add()([a(inp), b(inp)]), name="twins")
    with pytest.raises(tfm_fuse.UnsupportedModelError, match="twin_conv.*share it"):
        tfm_fuse.analyze(model)


def test_fupruner_on_a_nested_backbone():
    """The transfer-learning idiom, trained with FuPruner for a few steps, then stripped."""
    from tfm_fuse import callbacks

    keras.utils.set_random_seed(0)
    base_in = keras.Input((12, 12, 3))
    features = _block((12, 12, 16), 16, "b2")(_block((12, 12, 3), 16, "b1")(base_in))
    base = keras.Model(base_in, features, name="backbone")
    inp = keras.Input((12, 12, 3))
    out = L.Dense(3, name="logits")(L.GlobalAveragePooling2D()(base(inp)))
    model = keras.Model(inp, out)
    masked = tfm_fuse.prune(model, method="fupruner", macs=0.5)
    masked.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(128, 12, 12, 3)).astype("float32"), rng.integers(0, 3, 128)
    masked.fit(x, y, batch_size=32, epochs=4, validation_split=0.25, verbose=0,
               callbacks=[callbacks.FuPruner()])
    small = tfm_fuse.strip(masked)
    assert_equivalent(small, masked, x[:8])
    assert tfm_fuse.profile(small).macs < 0.6 * tfm_fuse.profile(model).macs
