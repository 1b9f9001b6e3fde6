"""Rules for the custom layers `keras.applications` models are built with.

- ConvNeXt's `LayerScale` multiplies each channel by its own weight (`x * gamma`): a per-channel
  layer, cut with the channels it scales.
- InceptionResNetV2's `CustomScaleLayer` computes `inputs[0] + inputs[1] * scale` with a scalar
  `scale`: an element-wise merge, tying the channels of its two inputs like `Add`.

Example:
    >>> model = keras.applications.ConvNeXtTiny(weights=None, input_shape=(32, 32, 3))
    >>> small = tfm_fuse.strip(tfm_fuse.prune(model, rate=0.5))   # LayerScale cut too
"""

from __future__ import annotations

from keras.src.applications import convnext, inception_resnet_v2

from tfm_fuse.rules import MergeRule, PerChannel, WeightAxis, rule_for


@rule_for(convnext.LayerScale)
class LayerScaleRule(PerChannel):
    size_key = "projection_dim"
    config_channels = True

    def weight_axes(self, layer):
        return (WeightAxis(layer.gamma.path.split("/")[-1], -1, "in"),)


@rule_for(inception_resnet_v2.CustomScaleLayer)
class CustomScaleRule(MergeRule):
    pass
