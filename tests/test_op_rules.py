"""`keras.ops` calls in functional models: channels flow through them or are pinned, never a crash."""

import keras
import numpy as np
import pytest

import tfm_fuse
from tests.models import assert_equivalent, randomize, sample
from tfm_fuse.op_rules import _channel_axis_whole

L = keras.layers


def ops_zoo() -> keras.Model:
    """Scaling, hard-swish, squeeze-and-excite, reshape round trip, concat, pad, crop, resize."""
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(inp / 127.5 - 1.0)
    x = x * keras.ops.relu6(x + 3.0) / 6.0
    y = L.Conv2D(8, 1, name="expand")(x)
    y = y * keras.ops.sigmoid(keras.ops.mean(y, axis=(1, 2), keepdims=True))
    y = keras.ops.reshape(keras.ops.reshape(y, (-1, 256, 8)), (-1, 16, 16, 8))
    y = keras.ops.concatenate([y, x], axis=-1)
    y = keras.ops.pad(y, [[0, 0], [1, 1], [1, 1], [0, 0]])
    y = L.Conv2D(6, 3, name="mix")(y[:, 1:-1, 1:-1, :])
    y = keras.ops.image.resize(y, (8, 8))
    out = L.Dense(4, name="logits")(keras.ops.mean(y, axis=(1, 2)))
    return randomize(keras.Model(inp, out, name="ops_zoo"))


def test_ops_zoo_fuses_prunes_and_strips():
    model = ops_zoo()
    x = sample(model, batch=4)
    assert_equivalent(tfm_fuse.fuse(model), model, x)
    pruned = tfm_fuse.prune(model, method="l1", rate=0.5)
    small = tfm_fuse.strip(pruned)
    assert_equivalent(small, pruned, x)
    assert tfm_fuse.profile(small).macs < 0.6 * tfm_fuse.profile(model).macs
    # every convolution's filters were prunable through the ops around them
    groups = tfm_fuse.analyze(model).groups
    for name in ("stem", "expand", "mix"):
        assert any(g.prunable and (name, "out") in g.members for g in groups), name


def _conv_then(op, width=8):
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(width, 3, name="conv")(L.Conv2D(6, 1, name="first")(inp))
    return keras.Model(inp, L.Conv2D(2, 1, name="head")(op(x)))


@pytest.mark.parametrize("op, reason", [
    (lambda x: x * np.arange(8, dtype="float32"), "per-channel constant"),
    (lambda x: x[..., ::2], "indexes the channel axis with a step"),
    (lambda x: keras.ops.repeat(keras.ops.sum(x, axis=-1, keepdims=True), 8, axis=-1), None),
    (lambda x: keras.ops.transpose(keras.ops.transpose(x, (0, 3, 1, 2)), (0, 2, 3, 1)),
     "moves the channel axis"),
])
def test_channel_dependent_ops_pin_the_channels(op, reason):
    model = _conv_then(op)
    if reason is None:  # an op without a rule (Repeat): refused by name, pinned when allowed
        with pytest.raises(tfm_fuse.UnsupportedLayerError, match="keras.ops call Repeat"):
            tfm_fuse.analyze(model)
        with pytest.warns(UserWarning, match="unknown to the analysis"):
            graph = tfm_fuse.analyze(model, allow_unknown=True)
        reason = "reduces over the channel axis"
    else:
        graph = tfm_fuse.analyze(model)
    conv = next(g for g in graph.groups if ("conv", "out") in g.members)
    assert not conv.prunable and reason in conv.reason


def test_unknown_op_is_pinned_through_prune_and_strip():
    model = randomize(_conv_then(lambda x: keras.ops.sort(x, axis=1)))
    with pytest.warns(UserWarning, match="unknown to the analysis"):
        pruned = tfm_fuse.prune(model, method="l1", rate=0.5, allow_unknown=True)
        small = tfm_fuse.strip(pruned, allow_unknown=True)
    assert_equivalent(small, pruned, sample(model))


@pytest.mark.parametrize("key, whole", [
    ((slice(None), slice(1, -1)), True),
    ((Ellipsis, slice(None)), True),
    ((Ellipsis,), True),
    ((slice(None), 0), True),
    ((Ellipsis, slice(None, 3)), False),
    ((Ellipsis, slice(0, None)), False),
    ((Ellipsis, 0), False),
    ((slice(None),) * 3 + (slice(2, None),), False),
    ((Ellipsis, None), False),
])
def test_which_indices_keep_the_channel_axis(key, whole):
    assert _channel_axis_whole(key, rank=4) is whole


class _Halves(L.Layer):
    """An unknown layer with two outputs."""

    def call(self, x):
        return x[..., :4] * 2.0, x[..., 4:] + 1.0


def test_unknown_layer_with_several_outputs_is_pinned():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, name="conv")(L.Conv2D(6, 1, name="first")(inp))
    a, b = _Halves(name="halves")(x)
    model = randomize(keras.Model(inp, [L.Conv2D(2, 1)(a), L.Conv2D(3, 1)(b)]))
    with pytest.raises(tfm_fuse.UnsupportedLayerError, match="halves"):
        tfm_fuse.analyze(model)
    with pytest.warns(UserWarning, match="halves"):
        pruned = tfm_fuse.prune(model, method="l1", rate=0.5, allow_unknown=True)
        small = tfm_fuse.strip(pruned)
    assert_equivalent(small, pruned, sample(model))
    assert small.get_layer("first").filters < 6


def test_channel_slices_are_cut_with_their_offsets():
    """`x[..., :5]` and `x[..., 5:]` of one convolution feed two heads: each slice keeps its
    channels prunable, and strip re-counts the slices over the kept channels."""
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(12, 3, name="conv")(L.Conv2D(6, 1, name="first")(inp))
    a = L.Conv2D(4, 1, name="head_a")(keras.ops.relu(x[..., :5]))
    b = L.Conv2D(4, 1, name="head_b")(x[:, :, :, 5:])
    model = randomize(keras.Model(inp, L.Add()([a, b])))
    conv = [g for g in tfm_fuse.analyze(model).groups if ("conv", "out") in g.members]
    assert [(g.prunable, g.size) for g in conv] == [(True, 5), (True, 7)]  # one per head
    pruned = tfm_fuse.prune(model, method="l1", rate=0.5)
    small = tfm_fuse.strip(pruned)
    assert small.get_layer("conv").filters < 12
    assert_equivalent(small, pruned, sample(model, batch=4))
