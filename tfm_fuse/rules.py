"""How channels flow through each Keras layer type, and how to cut it: one small rule a type.

The graph analysis (`tfm_fuse.graph`) asks a layer's rule which input channels its output
channels are (`flow`); stripping asks it for a narrower copy (`cut`); profiling asks it for its
multiply-accumulates (`macs`). A new layer type is one new rule registered with `@rule_for`.

Channels are described by integer ids, one per position of a tensor's last axis. Equal ids (after
the analysis merges them) are channels that must be removed together.

Example:
    >>> @rule_for(MyScaleLayer)
    ... class MyScaleRule(PerChannel):
    ...     axes = (WeightAxis("scale", 0),)
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from typing import Callable, Protocol

import keras
import numpy as np

from tfm_fuse.errors import ConfigError, UnsupportedLayerError

layers = keras.layers


class FlowContext(Protocol):
    """What a rule may do while channels flow: create ids, merge them, pin them."""

    layer_name: str
    in_shapes: list[tuple]
    out_shapes: list[tuple]
    args: tuple   # the call's arguments, input tensors as `graph.TensorRef`s (constants as given)
    kwargs: dict

    def fresh(self, n: int) -> np.ndarray: ...
    def union(self, a: np.ndarray, b: np.ndarray) -> None: ...
    def pin(self, ids: np.ndarray, reason: str) -> None: ...


@dataclasses.dataclass(frozen=True)
class WeightAxis:
    """Axis `axis` of weight `name` runs over the layer's input (`side="in"`) or output channels."""

    name: str
    axis: int
    side: str = "in"
    repeat: int = 1  # each channel owns `repeat` consecutive positions on that axis


@dataclasses.dataclass(frozen=True)
class TensorRef:
    """Placeholder for the `index`-th input tensor of a node inside its call arguments."""

    index: int


_RULES: dict[type, "Rule"] = {}
# composite layers whose call could not be traced (`nesting`), with the reason
UNTRACEABLE: "weakref.WeakKeyDictionary[keras.Layer, str]" = weakref.WeakKeyDictionary()


def rule_for(*classes: type, override: bool = False) -> Callable[[type], type]:
    """Class decorator: register a rule for these layer classes (subclasses inherit it).

    Example:
        >>> @rule_for(MyScale)          # a layer that scales each channel by its own weight
        ... class MyScaleRule(PerChannel):
        ...     axes = (WeightAxis("scale", -1, "in"),)

    Raises:
        ConfigError: a class already has a rule and `override` is not `True`.
    """

    def register(rule_cls: type) -> type:
        for cls in classes:
            if cls in _RULES and not override:
                raise ConfigError(
                    f"{cls.__name__} already has the rule {type(_RULES[cls]).__name__}; "
                    f"registering {rule_cls.__name__} would replace it silently. Pass "
                    "override=True to rule_for to replace it.")
            _RULES[cls] = rule_cls()
        return rule_cls

    return register


def get_rule(layer: keras.Operation) -> "Rule | None":
    """The rule for `layer`'s class or its nearest registered base class, else `None`."""
    for cls in type(layer).__mro__:
        if cls in _RULES:
            return _RULES[cls]
    return None


def last_axis(axis, rank: int) -> bool:
    """True if `axis` (an int or list, as Keras configs hold it) is the channel (last) axis."""
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return any(a == -1 or a == rank - 1 for a in axes)


class Rule:
    """Base rule: a layer without channel-indexed weights whose output channels are its input's."""

    axes: tuple[WeightAxis, ...] = ()
    size_key: str | None = None  # config key holding the number of output channels
    config_channels: bool = False  # the config names a channel count even without weights
    call_channels: bool = False    # the call's arguments name channel positions (`cut_arguments`)
    wrappable: bool = False  # filters a `PruneWrapper` can mask (mixing and depthwise layers)

    def flow(self, layer, ins: list[np.ndarray], ctx: FlowContext) -> list[np.ndarray]:
        return [ins[0]]

    def weight_axes(self, layer) -> tuple[WeightAxis, ...]:
        return self.axes

    def inner(self, layer):
        """The layer that holds the weights and computes (a wrapper's rule returns the wrapped)."""
        return layer

    def cut(self, layer, keep_in: list[np.ndarray], keep_out: list[np.ndarray],
            weights: dict[str, np.ndarray] | None = None):
        """A config and weights (by name) for a copy of `layer` that keeps only those channels.

        `weights` overrides the layer's own values (e.g. with masks applied).
        """
        config = layer.get_config()
        if self.size_key is not None:
            config[self.size_key] = int(keep_out[0].sum())
        weights = dict(weights) if weights is not None else weights_by_name(layer)
        for ax in self.weight_axes(layer):
            if ax.name in weights:
                keep = keep_in[0] if ax.side == "in" else keep_out[0]
                keep = np.repeat(keep, ax.repeat)
                weights[ax.name] = np.compress(keep, weights[ax.name], axis=ax.axis)
        return config, weights

    def macs(self, layer, in_shapes: list[tuple], out_shapes: list[tuple]) -> int:
        return 0

    def cut_arguments(self, node, keep_in: list[np.ndarray]) -> "tuple[tuple, dict] | None":
        """New call arguments `(args, kwargs)` for the stripped inputs, or `None` to keep them
        (a channel slice `x[..., a:b]` re-counts `a` and `b` over the kept channels)."""
        return None

    def mac_terms(self, layer, in_shapes, out_shapes) -> list[tuple[float, tuple[str, ...]]]:
        """`macs` as a sum of `(constant, sides)` terms, each `constant x` the product of the
        kept channel counts on `sides` (the pruning cost model). Default: one term over the
        sides the weights run over (a convolution: `spatial x k x C_in x C_out`)."""
        macs = self.macs(layer, in_shapes, out_shapes)
        if not macs:
            return []
        sides = tuple(s for s in ("in", "out") if any(ax.side == s for ax in self.weight_axes(layer)))
        channels = {"in": in_shapes[0][-1], "out": out_shapes[0][-1]}
        return [(macs / math.prod(max(int(channels[s]), 1) for s in sides), sides)]


def weight_name(variable) -> str:
    """A weight's short name, as rules refer to it: `"conv/kernel"` -> `"kernel"`."""
    return variable.path.split("/")[-1]


def has_weights(layer) -> bool:
    """Whether a node's operation holds weights (a `keras.ops` call has none)."""
    return bool(getattr(layer, "weights", ()))


def weights_by_name(layer) -> dict[str, np.ndarray]:
    """`{"kernel": array, "bias": array, ...}`: a layer's weights by their short names."""
    return {weight_name(v): keras.ops.convert_to_numpy(v) for v in getattr(layer, "weights", ())}


def _spatial(shape: tuple) -> int:
    return math.prod(int(d) for d in shape[1:-1])


class PassThrough(Rule):
    """Channels pass unchanged (activations, pooling, padding, dropout...)."""


class PerChannel(PassThrough):
    """Channels pass unchanged, and some weights hold one entry per channel (BatchNorm, PReLU)."""


class Pinned(Rule):
    """A layer whose output channels depend on each other: its inputs must keep every channel."""

    reason = "mixes channels without per-channel weights"

    def flow(self, layer, ins, ctx):
        for ids in ins:
            ctx.pin(ids, self.reason)
        outs = [ctx.fresh(int(shape[-1] or 1) if shape else 1) for shape in ctx.out_shapes]
        for out in outs:
            ctx.pin(out, self.reason)
        return outs


@rule_for(
    layers.Activation, layers.ReLU, layers.LeakyReLU, layers.ELU,
    layers.Dropout, layers.SpatialDropout1D, layers.SpatialDropout2D, layers.SpatialDropout3D,
    layers.GaussianNoise, layers.GaussianDropout, layers.AlphaDropout, layers.Identity,
    layers.ActivityRegularization,
    layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D,
    layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D,
    layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D, layers.GlobalAveragePooling3D,
    layers.GlobalMaxPooling1D, layers.GlobalMaxPooling2D, layers.GlobalMaxPooling3D,
    layers.ZeroPadding1D, layers.ZeroPadding2D, layers.ZeroPadding3D,
    layers.Cropping1D, layers.Cropping2D, layers.Cropping3D,
    layers.UpSampling1D, layers.UpSampling2D, layers.UpSampling3D,
    # spatial preprocessing and augmentation: each channel is moved, never mixed
    *(getattr(layers, n) for n in ("Resizing", "CenterCrop", "RandomCrop", "RandomFlip",
                                   "RandomRotation", "RandomZoom", "RandomTranslation")
      if hasattr(layers, n)),
)
class ElementwiseRule(PassThrough):
    def flow(self, layer, ins, ctx):
        fmt = getattr(layer, "data_format", "channels_last")
        if fmt == "channels_first":
            return Pinned.flow(self, layer, ins, ctx)
        return [ins[0]]


@rule_for(layers.Rescaling)
class RescalingRule(PassThrough):
    def flow(self, layer, ins, ctx):
        if np.size(layer.scale) > 1 or np.size(layer.offset) > 1:
            ctx.pin(ins[0], "per-channel rescaling constants")
        return [ins[0]]


@rule_for(layers.Normalization)
class NormalizationRule(PassThrough):
    def flow(self, layer, ins, ctx):
        if any(np.size(getattr(layer, n, 0)) > 1 for n in ("mean", "variance")):
            ctx.pin(ins[0], "per-channel normalization statistics")
        return [ins[0]]


@rule_for(layers.Softmax)
class SoftmaxRule(PassThrough):
    def flow(self, layer, ins, ctx):
        if last_axis(layer.axis, len(ctx.in_shapes[0])):
            ctx.pin(ins[0], "softmax over channels (each output depends on every channel)")
        return [ins[0]]


@rule_for(layers.LayerNormalization, layers.GroupNormalization, layers.UnitNormalization)
class ChannelNormRule(PassThrough):
    def flow(self, layer, ins, ctx):
        axis = getattr(layer, "axis", -1)
        if isinstance(layer, layers.GroupNormalization) or last_axis(axis, len(ctx.in_shapes[0])):
            ctx.pin(ins[0], f"{type(layer).__name__} normalizes over channels")
        return [ins[0]]


@rule_for(layers.Permute, layers.RepeatVector, layers.Dot,
          layers.MultiHeadAttention, layers.Attention, layers.EinsumDense)
class ReshapingRule(Pinned):
    reason = "reshapes or mixes channels"

    def macs(self, layer, in_shapes, out_shapes):
        if isinstance(layer, layers.EinsumDense):
            return int(layer.count_params())
        return 0


@rule_for(layers.Reshape)
class ReshapeRule(ReshapingRule):
    """A reshape that keeps the channel axis (e.g. `(C,)` → `(1, 1, C)` in squeeze-and-excitation
    blocks) passes channels through: row-major order keeps every element's channel index. Any
    other reshape mixes channels and is pinned."""

    config_channels = True

    def flow(self, layer, ins, ctx):
        c_in, c_out = ctx.in_shapes[0][-1], ctx.out_shapes[0][-1]
        if c_in is not None and c_in == c_out and len(ctx.in_shapes[0]) > 1:
            return [ins[0]]
        return super().flow(layer, ins, ctx)

    def cut(self, layer, keep_in, keep_out, weights=None):
        return cut_target_shape(layer, "target_shape", keep_out), {}


def cut_target_shape(layer, key: str, keep_out: list[np.ndarray]) -> dict:
    """A reshape's config with its last (channel) size set to the kept count (`-1` stays)."""
    config = layer.get_config()
    shape = list(config[key])
    if shape[-1] != -1:
        shape[-1] = int(keep_out[0].sum())
    config[key] = tuple(shape)
    return config


@rule_for(layers.Flatten)
class FlattenRule(PassThrough):
    """Each channel owns H×W consecutive-stride positions of the flattened vector."""

    def flow(self, layer, ins, ctx):
        if getattr(layer, "data_format", "channels_last") == "channels_first":
            return Pinned.flow(self, layer, ins, ctx)
        return [np.tile(ins[0], _spatial(ctx.in_shapes[0]))]


@rule_for(layers.BatchNormalization)
class BatchNormRule(PerChannel):
    axes = tuple(WeightAxis(n, 0) for n in ("gamma", "beta", "moving_mean", "moving_variance"))

    def flow(self, layer, ins, ctx):
        if not last_axis(layer.axis, len(ctx.in_shapes[0])):
            ctx.pin(ins[0], f"BatchNormalization over axis {layer.axis}, not the channel axis")
        return [ins[0]]


@rule_for(layers.PReLU)
class PReLURule(PerChannel):
    def weight_axes(self, layer):
        shared = layer.shared_axes or []
        return () if -1 in shared else (WeightAxis("alpha", -1),)


@rule_for(layers.Add, layers.Subtract, layers.Multiply, layers.Maximum, layers.Minimum,
          layers.Average)
class MergeRule(PassThrough):
    """Element-wise merges tie the channels of all inputs together."""

    def flow(self, layer, ins, ctx):
        widest = max(ins, key=len)
        for ids in ins:
            if len(ids) == len(widest):
                ctx.union(ids, widest)
            else:  # broadcast of a single channel: it must stay
                ctx.pin(ids, "broadcast over channels in an element-wise merge")
        return [widest]


@rule_for(layers.Concatenate)
class ConcatenateRule(PassThrough):
    def flow(self, layer, ins, ctx):
        if last_axis(layer.axis, len(ctx.in_shapes[0])):
            return [np.concatenate(ins)]
        return MergeRule.flow(self, layer, ins, ctx)


class MixingRule(Rule):
    """A layer whose weights map input channels to new output channels (Conv, Dense)."""

    wrappable = True

    def flow(self, layer, ins, ctx):
        return [ctx.fresh(int(getattr(layer, self.size_key)))]


@rule_for(layers.Dense)
class DenseRule(MixingRule):
    size_key = "units"
    axes = (WeightAxis("kernel", 0, "in"), WeightAxis("kernel", 1, "out"), WeightAxis("bias", 0, "out"))

    def macs(self, layer, in_shapes, out_shapes):
        rows = math.prod(int(d) for d in in_shapes[0][1:-1])
        return rows * int(in_shapes[0][-1]) * int(layer.units)


@rule_for(layers.Conv1D, layers.Conv2D, layers.Conv3D)
class ConvRule(MixingRule):
    size_key = "filters"
    axes = (WeightAxis("kernel", -2, "in"), WeightAxis("kernel", -1, "out"), WeightAxis("bias", 0, "out"))

    def flow(self, layer, ins, ctx):
        if layer.data_format == "channels_first":
            return Pinned.flow(self, layer, ins, ctx)
        groups = getattr(layer, "groups", 1)  # Conv*Transpose has no `groups`
        if _depthwise_as_grouped(layer, ins[0]):
            return [ins[0]]  # one filter per channel: channels pass, as in DepthwiseConv2D
        out = ctx.fresh(layer.filters)
        if groups > 1:
            reason = f"grouped convolution (groups={groups}) needs equal channels per group"
            ctx.pin(ins[0], reason)
            ctx.pin(out, reason)
        return [out]

    def weight_axes(self, layer):
        if getattr(layer, "groups", 1) > 1:  # the kernel's input axis spans one group, not all
            return tuple(ax for ax in self.axes if ax.side == "out")
        return self.axes

    def cut(self, layer, keep_in, keep_out, weights=None):
        config, weights = super().cut(layer, keep_in, keep_out, weights)
        if getattr(layer, "groups", 1) > 1 and layer.groups == layer.filters:
            config["groups"] = config["filters"]  # depthwise as grouped: still one per group
        return config, weights

    def macs(self, layer, in_shapes, out_shapes):
        kernel = math.prod(layer.kernel_size)
        cin = int(in_shapes[0][-1]) // layer.groups
        return _spatial(out_shapes[0]) * layer.filters * kernel * cin


def _depthwise_as_grouped(layer, in_ids) -> bool:
    """`Conv2D(C, k, groups=C)` on C channels: a depthwise convolution (keras-hub builds them so)."""
    groups = getattr(layer, "groups", 1)
    return groups > 1 and groups == layer.filters == len(in_ids)


@rule_for(layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
class ConvTransposeRule(ConvRule):
    axes = (WeightAxis("kernel", -1, "in"), WeightAxis("kernel", -2, "out"), WeightAxis("bias", 0, "out"))

    def macs(self, layer, in_shapes, out_shapes):
        kernel = math.prod(layer.kernel_size)
        return _spatial(in_shapes[0]) * layer.filters * kernel * int(in_shapes[0][-1])


@rule_for(layers.DepthwiseConv1D, layers.DepthwiseConv2D)
class DepthwiseRule(PerChannel):
    """Channels pass through one filter each (depth_multiplier=1); a larger multiplier is pinned."""

    wrappable = True

    def weight_axes(self, layer):
        return (WeightAxis("kernel", -2, "in"), WeightAxis("bias", 0, "in", layer.depth_multiplier))

    def flow(self, layer, ins, ctx):
        if layer.depth_multiplier == 1 and layer.data_format != "channels_first":
            return [ins[0]]
        reason = f"depthwise convolution with depth_multiplier={layer.depth_multiplier}"
        ctx.pin(ins[0], reason)
        out = ctx.fresh(len(ins[0]) * layer.depth_multiplier)
        ctx.pin(out, reason)
        return [out]

    def macs(self, layer, in_shapes, out_shapes):
        return _spatial(out_shapes[0]) * int(out_shapes[0][-1]) * math.prod(layer.kernel_size)


@rule_for(layers.SeparableConv1D, layers.SeparableConv2D)
class SeparableRule(MixingRule):
    """A depthwise filter per input channel, then a pointwise mix into `filters` new channels."""

    size_key = "filters"

    def weight_axes(self, layer):
        m = layer.depth_multiplier
        return (
            WeightAxis("depthwise_kernel", -2, "in"),
            WeightAxis("pointwise_kernel", -2, "in", m),
            WeightAxis("pointwise_kernel", -1, "out"),
            WeightAxis("bias", 0, "out"),
        )

    def flow(self, layer, ins, ctx):
        if layer.data_format == "channels_first":
            return Pinned.flow(self, layer, ins, ctx)
        return [ctx.fresh(layer.filters)]

    def macs(self, layer, in_shapes, out_shapes):
        return round(sum(c * math.prod(int({"in": in_shapes[0][-1], "out": layer.filters}[s])
                                       for s in sides)
                         for c, sides in self.mac_terms(layer, in_shapes, out_shapes)))

    def mac_terms(self, layer, in_shapes, out_shapes):
        # the depthwise part grows with the input channels only, the pointwise with both
        spatial, m = _spatial(out_shapes[0]), layer.depth_multiplier
        return [(spatial * m * math.prod(layer.kernel_size), ("in",)),
                (spatial * m, ("in", "out"))]


def unwrap(layer):
    """The computing layer behind `layer` (itself, unless its rule wraps another)."""
    rule = get_rule(layer)
    return rule.inner(layer) if rule is not None else layer


def require_rule(layer, *, allow_unknown: bool) -> Rule:
    """The layer's rule; for an unknown type a `Pinned` rule (if allowed) or a clear error."""
    rule = get_rule(layer)
    if rule is not None:
        return rule
    if allow_unknown:
        return _UNKNOWN
    kind = "keras.ops call" if not isinstance(layer, keras.layers.Layer) else "layer type"
    if isinstance(layer, layers.Lambda):
        raise UnsupportedLayerError(
            layer.name,
            "is a Lambda layer: its Python function is opaque to the channel analysis, so "
            "tfm_fuse cannot tell which channels it ties together. Pass allow_unknown=True to "
            "keep its channels unpruned, or write the function with keras.ops calls (analysed) "
            "or as a layer with a rule (tfm_fuse.rules.rule_for).")
    traced = f" It is built from sublayers, but {UNTRACEABLE[layer]}." if layer in UNTRACEABLE else ""
    raise UnsupportedLayerError(
        layer.name,
        f"{kind} {type(layer).__name__} is not known to the channel analysis, so tfm_fuse cannot "
        f"tell which channels it ties together.{traced} Pass allow_unknown=True to keep its "
        "channels unpruned, or register a rule with tfm_fuse.rules.rule_for.",
    )


class _UnknownRule(Pinned):
    reason = "layer type unknown to the analysis (allow_unknown=True)"


_UNKNOWN = _UnknownRule()
