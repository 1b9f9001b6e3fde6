"""Bad inputs get a tfm_fuse error naming the model or layer and the reason; models never mutate."""

import keras
import numpy as np
import pytest

import tfm_fuse
from tests.models import CASES, assert_equivalent, sample

L = keras.layers


class TinySubclassed(keras.Model):
    def __init__(self, name="tiny_subclassed"):
        super().__init__(name=name)
        self.conv = L.Conv2D(4, 3)
        self.head = L.Dense(2)

    def call(self, x):
        return self.head(keras.ops.mean(self.conv(x), axis=(1, 2)))


class Doubler(L.Layer):
    def call(self, x):
        return 2.0 * x


def custom_layer_model() -> keras.Model:
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, name="before")(inp)
    x = Doubler(name="doubler")(x)
    x = L.Conv2D(5, 3, name="after")(x)
    out = L.Dense(2)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out, name="with_custom")


ENTRY_POINTS = {
    "analyze": tfm_fuse.analyze,
    "wrap": tfm_fuse.wrap,
    "prune": tfm_fuse.prune,
    "strip": tfm_fuse.strip,
    "profile": tfm_fuse.profile,
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_subclassed_model_is_refused(entry):
    model = TinySubclassed()
    model(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(tfm_fuse.UnsupportedModelError, match="tiny_subclassed.*subclassed"):
        ENTRY_POINTS[entry](model)


@pytest.mark.parametrize("entry", ["analyze", "wrap", "prune", "strip"])
def test_unknown_layer_is_refused_by_name(entry):
    with pytest.raises(tfm_fuse.UnsupportedLayerError, match="doubler.*Doubler.*allow_unknown") as e:
        ENTRY_POINTS[entry](custom_layer_model())
    assert e.value.layer_name == "doubler"


def test_allow_unknown_warns_pins_and_strips_equal():
    model = custom_layer_model()
    with pytest.warns(UserWarning, match="doubler"):
        graph = tfm_fuse.analyze(model, allow_unknown=True)
    for key in (("before", "out"), ("after", "in")):  # both sides of the unknown layer
        grp = next(g for g in graph.groups if key in g.members)
        assert not grp.prunable and "doubler" in grp.reason
    with pytest.warns(UserWarning, match="doubler"):
        pruned = tfm_fuse.prune(model, rate=0.3, allow_unknown=True)
        small = tfm_fuse.strip(pruned, allow_unknown=True)
    assert small.get_layer("before").filters == 6  # pinned by the unknown layer
    assert small.get_layer("after").filters == 4  # 5 → 4 at rate 0.3
    assert_equivalent(small, pruned, sample(model))


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, "a", True, float("nan")])  # None: the default
def test_rate_outside_unit_interval(rate):
    with pytest.raises(tfm_fuse.ConfigError, match=r"rate.*\[0, 1\).*Received: rate="):
        tfm_fuse.prune(CASES["sequential"](), rate=rate)


def test_unknown_method_lists_accepted():
    with pytest.raises(tfm_fuse.ConfigError, match="method='l3'.*'l1'"):
        tfm_fuse.prune(CASES["sequential"](), method="l3")


@pytest.mark.parametrize("align", [0, -8, 2.5])
def test_bad_align(align):
    with pytest.raises(tfm_fuse.ConfigError, match="align"):
        tfm_fuse.prune(CASES["sequential"](), align=align)


def test_unknown_layer_names_to_wrap():
    with pytest.raises(tfm_fuse.ConfigError, match="no_such_layer.*sequential_cnn"):
        tfm_fuse.prune(CASES["sequential"](), layers=["no_such_layer"])


@pytest.mark.parametrize("entry", ["wrap", "prune"])
def test_model_without_prunable_layer(entry):
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(3, name="only_dense")(inp), name="single_dense")
    with pytest.raises(tfm_fuse.UnsupportedModelError, match="single_dense.*no prunable.*output"):
        ENTRY_POINTS[entry](model)


class Untraceable(L.Layer):
    """A composite layer calling TensorFlow directly: Keras builds it (in a tf graph), but its
    call cannot run on Keras's symbolic tensors."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(4, 3)

    def call(self, x):
        import tensorflow as tf

        return tf.nn.depth_to_space(self.conv(x), 2)


@pytest.mark.parametrize("entry", ["analyze", "prune", "strip", "profile"])
def test_untraceable_composite_layer_is_refused_by_name(entry):
    inp = keras.Input((8, 8, 3))
    x = Untraceable(name="branchy")(L.Conv2D(6, 1)(L.Conv2D(5, 1)(inp)))
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(x)))
    if entry != "profile":  # profile counts unknown layers as 0 MACs by default
        with pytest.raises(tfm_fuse.UnsupportedLayerError, match="branchy.*could not be traced"):
            ENTRY_POINTS[entry](model)
    if entry != "strip":  # pinned whole when allowed (strip of an unwrapped model: nothing to do)
        with pytest.warns(UserWarning, match="branchy"):
            ENTRY_POINTS[entry](model, allow_unknown=True)


def test_unbuilt_sequential_is_refused():
    model = keras.Sequential([L.Conv2D(4, 3), L.Dense(2)], name="not_built_yet")
    with pytest.raises(tfm_fuse.UnsupportedModelError, match="not_built_yet.*input shape"):
        tfm_fuse.prune(model)


@pytest.mark.parametrize("thing", ["model.keras", L.Conv2D(4, 3), None])
def test_not_a_model(thing):
    with pytest.raises(tfm_fuse.UnsupportedModelError, match="Expected a keras.Model"):
        tfm_fuse.prune(thing)


def test_errors_are_one_hierarchy():
    for cls in (tfm_fuse.ConfigError, tfm_fuse.UnsupportedModelError,
                tfm_fuse.UnsupportedLayerError, tfm_fuse.ConversionError):
        assert issubclass(cls, tfm_fuse.TfmFuseError)
    assert issubclass(tfm_fuse.ConfigError, ValueError)


# --- the caller's model is never mutated ---------------------------------------------------------
def snapshot(model: keras.Model):
    return (
        [w.copy() for w in model.get_weights()],
        [len(layer._inbound_nodes) for layer in model.layers],
        [layer.name for layer in model.layers],
        [type(layer) for layer in model.layers],
    )


@pytest.mark.parametrize("name", ["residual_add", "shared_layers", "sequential"])
def test_caller_model_is_never_mutated(name):
    model = CASES[name]()
    x = sample(model)
    y = keras.ops.convert_to_numpy(model(x))
    weights, nodes, names, types = snapshot(model)
    wrapped = tfm_fuse.wrap(model)
    pruned = tfm_fuse.prune(model, rate=0.5)
    small = tfm_fuse.strip(pruned)
    tfm_fuse.profile(model)
    tfm_fuse.strip(model)
    after_weights, after_nodes, after_names, after_types = snapshot(model)
    assert (after_nodes, after_names, after_types) == (nodes, names, types)
    for a, b in zip(weights, after_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)), y)
    assert not any(layer in model.layers for m in (wrapped, pruned, small) for layer in m.layers)


def test_strip_does_not_mutate_the_masked_model():
    pruned = tfm_fuse.prune(CASES["concat_offsets"](), rate=0.3)
    x = sample(pruned)
    y = keras.ops.convert_to_numpy(pruned(x))
    weights, nodes, _, _ = snapshot(pruned)
    tfm_fuse.strip(pruned)
    after_weights, after_nodes, _, _ = snapshot(pruned)
    assert after_nodes == nodes
    for a, b in zip(weights, after_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(pruned(x)), y)
