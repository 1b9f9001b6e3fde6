"""`PruneWrapper`: a layer whose channel-indexed weights are multiplied by channel masks.

The wrapper owns two non-trainable mask vectors, `in_mask` (one entry per position of the
input's last axis) and `out_mask` (one per output channel), and the pruning step. In the forward
pass every weight axis that runs over channels is multiplied by its mask, so a masked model
computes exactly what `strip` will build. With `soft=True` (the default) gradients still reach
masked weights (straight-through), so a filter masked now can come back at the next update.

Example:
    >>> wrapped = PruneWrapper(keras.layers.Conv2D(16, 3))
    >>> y = wrapped(x)                       # masks are all ones: same as the plain layer
    >>> wrapped.out_mask.assign(mask)        # what the pruning callbacks do
"""

from __future__ import annotations

import keras
import numpy as np

from tfm_fuse import rules
from tfm_fuse.errors import UnsupportedLayerError

@keras.saving.register_keras_serializable(package="tfm_fuse")
class PruneWrapper(keras.layers.Wrapper):
    """Applies channel masks to the weights of a Conv / Dense / Depthwise / Separable layer.

    Args:
        layer: the layer to wrap; its type must have a mixing or depthwise rule.
        soft: let gradients reach masked weights (soft filter pruning). Defaults to `True`.
        pruning_options: the options `prune(method="fupruner")` was given (a dict, see
            `tfm_fuse.pruning.updater.PruningOptions`), saved with the model so that a
            `FuPruner` after `load_model` resumes with them. Defaults to `None`.
        **kwargs: passed to `keras.layers.Wrapper` (e.g. `name`).

    Raises:
        UnsupportedLayerError: the layer has no channel-indexed weights to mask.
    """

    def __init__(self, layer, soft: bool = True, pruning_options: dict | None = None, **kwargs):
        rule = rules.get_rule(layer)
        if not getattr(rule, "wrappable", False):
            raise UnsupportedLayerError(
                getattr(layer, "name", str(layer)),
                f"{type(layer).__name__} has no filters to mask; PruneWrapper wraps "
                "Conv1D/2D/3D, Conv*Transpose, Dense, DepthwiseConv and SeparableConv layers.",
            )
        kwargs.setdefault("name", f"pruned_{layer.name}")
        super().__init__(layer, **kwargs)
        self.soft = bool(soft)
        self.pruning_options = dict(pruning_options) if pruning_options else None
        self._rule = rule

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        n_out = int(self.layer.compute_output_shape(input_shape)[-1])
        self.in_mask = self.add_weight(
            name="in_mask", shape=(int(input_shape[-1]),), initializer="ones", trainable=False)
        self.out_mask = self.add_weight(
            name="out_mask", shape=(n_out,), initializer="ones", trainable=False)
        self.pruning_step = self.add_weight(
            name="pruning_step", shape=(), dtype="int64", initializer="zeros", trainable=False)
        self.built = True

    def call(self, inputs, *args, **kwargs):
        if self.soft:  # input mask on the activation, straight-through: see `_masked`
            inputs = _straight_through(inputs, keras.ops.cast(self.in_mask, inputs.dtype))
        mapping = [(v, self._masked(v, name)) for v, name in self._channel_weights()]
        with keras.StatelessScope(state_mapping=mapping):
            return self.layer(inputs, *args, **kwargs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "soft": self.soft,
                "pruning_options": self.pruning_options}

    # --- masks ------------------------------------------------------------------------------
    def _channel_weights(self):
        names = {ax.name for ax in self._rule.weight_axes(self.layer)}
        return [(v, rules.weight_name(v)) for v in self.layer.weights
                if rules.weight_name(v) in names]

    def _factor(self, name: str, shape: tuple, as_numpy: bool = False, sides=("in", "out"),
                in_kernels: bool = True):
        """The product of the masks that apply to weight `name`, broadcastable to `shape`."""
        ops = np if as_numpy else keras.ops
        factor = None
        for ax in self._rule.weight_axes(self.layer):
            if ax.name != name or ax.side not in sides:
                continue
            if not in_kernels and ax.side == "in" and ax.name != "bias":
                continue  # applied to the input activation instead (soft mode)
            mask = self.in_mask if ax.side == "in" else self.out_mask
            mask = keras.ops.convert_to_numpy(mask) if as_numpy else keras.ops.cast(mask, self.compute_dtype)
            if ax.repeat > 1:
                mask = ops.repeat(mask, ax.repeat)
            axis = ax.axis % len(shape)
            mask = ops.reshape(mask, [-1 if i == axis else 1 for i in range(len(shape))])
            factor = mask if factor is None else factor * mask
        return factor

    def _masked(self, variable, name: str):
        """Soft: forward masked values, backward the gradient of every weight. The input mask
        then multiplies the input activation (straight-through) instead of the input-side
        kernels: the same forward (the layer is linear in its input), but a masked channel's
        producer still receives gradient through this layer, so it can grow back."""
        w = keras.ops.cast(variable, self.compute_dtype)
        factor = self._factor(name, tuple(variable.shape), in_kernels=not self.soft)
        if factor is None:
            return w
        if self.soft:
            return _straight_through(w, factor)
        return w * factor

    def masked_weights(self) -> dict[str, np.ndarray]:
        """The inner layer's weights by short name, with the masks multiplied in (numpy)."""
        out = rules.weights_by_name(self.layer)
        for name, value in out.items():
            factor = self._factor(name, value.shape, as_numpy=True)
            if factor is not None:
                out[name] = value * factor
        return out

    def zero_masked_weights(self, sides: tuple[str, ...] = ("in", "out")) -> None:
        """Write the masks of `sides` into the weights themselves (masked filters restart from
        zero). Soft filter pruning zeroes `("out",)` only: the filters, not their consumers."""
        for v, name in self._channel_weights():
            value = keras.ops.convert_to_numpy(v)
            factor = self._factor(name, value.shape, as_numpy=True, sides=sides)
            if factor is not None:
                v.assign(value * factor)


@keras.ops.custom_gradient
def _straight_through(x, mask):
    """`x * mask` forward; the gradient passes to `x` unmasked (one op instead of three)."""

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        return upstream, keras.ops.zeros_like(mask)

    return x * mask, grad


@rules.rule_for(PruneWrapper)
class PruneWrapperRule(rules.Rule):
    """Channels flow through a wrapper as through the layer it wraps."""

    def flow(self, layer, ins, ctx):
        return rules.get_rule(layer.layer).flow(layer.layer, ins, ctx)

    def weight_axes(self, layer):
        return rules.get_rule(layer.layer).weight_axes(layer.layer)

    def inner(self, layer):
        return layer.layer

    def cut(self, layer, keep_in, keep_out, weights=None):
        inner = rules.get_rule(layer.layer)
        return inner.cut(layer.layer, keep_in, keep_out, weights or layer.masked_weights())

    def macs(self, layer, in_shapes, out_shapes):
        return rules.get_rule(layer.layer).macs(layer.layer, in_shapes, out_shapes)

    def mac_terms(self, layer, in_shapes, out_shapes):
        return rules.get_rule(layer.layer).mac_terms(layer.layer, in_shapes, out_shapes)
