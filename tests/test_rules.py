"""Extending tfm_fuse for a user's own layer and criterion: one rule, one registered callable."""

import keras
import numpy as np
import pytest

import tfm_fuse
from tfm_fuse import rules
from tfm_fuse.pruning import criteria


@keras.saving.register_keras_serializable(package="tests")
class ChannelScale(keras.layers.Layer):
    """A user's layer: multiplies each channel by its own trainable weight."""

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.scale


@rules.rule_for(ChannelScale)
class ChannelScaleRule(rules.PerChannel):
    axes = (rules.WeightAxis("scale", -1, "in"),)


def _model():
    i = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(i)
    x = ChannelScale()(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    return keras.Model(i, keras.layers.Dense(2)(x))


def test_a_registered_rule_makes_a_custom_layer_prunable():
    model = _model()
    scale = model.layers[2]
    scale.scale.assign(np.linspace(0.5, 2.0, 8).astype("float32"))
    masked = tfm_fuse.prune(model, method="l2", rate=0.5)
    small = tfm_fuse.strip(masked)
    assert small.layers[2].scale.shape == (4,)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(small(x), masked(x), atol=1e-5)


def test_a_second_registration_is_refused_unless_asked():
    with pytest.raises(tfm_fuse.ConfigError, match="already has the rule ChannelScaleRule"):
        @rules.rule_for(ChannelScale)
        class Again(rules.PerChannel):
            pass

    @rules.rule_for(ChannelScale, override=True)
    class Replacement(ChannelScaleRule):
        pass

    assert isinstance(rules.get_rule(ChannelScale()), Replacement)
    rules.rule_for(ChannelScale, override=True)(ChannelScaleRule)  # restore


def test_a_registered_criterion_is_used_by_name(monkeypatch):
    monkeypatch.setattr(criteria, "CRITERIA", dict(criteria.CRITERIA))  # unregistered afterwards
    calls = []

    def first_channels(model, group, graph=None):
        calls.append(group.id)
        return -np.arange(group.size, dtype="float64")  # keep the first channels

    criteria.register("first", first_channels, override=True)
    masked = tfm_fuse.prune(_model(), method="fupruner", criterion="first", rate=0.5)
    from tfm_fuse.pruning.updater import MaskUpdater

    updater = MaskUpdater(masked, criterion="first", scope="layer")
    updater.update(0.5)
    assert calls
    conv = masked.layers[1]
    np.testing.assert_array_equal(conv.out_mask.numpy(), [1, 1, 1, 1, 0, 0, 0, 0])
    with pytest.raises(tfm_fuse.ConfigError, match="exists already"):
        criteria.register("first", first_channels)
    with pytest.raises(tfm_fuse.ConfigError, match="callable"):
        criteria.register("nothing", None)
