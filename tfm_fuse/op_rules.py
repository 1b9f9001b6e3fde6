"""Rules for `keras.ops` calls recorded in functional models (`x / 127.5`, `x[..., :3]`, ...).

Keras 3 records every `keras.ops` function applied to a symbolic tensor as a node whose
operation is a `keras.src.ops` class (`TrueDivide`, `GetItem`, `Mean`, ...), with its constant
operands among the node's arguments. Each class gets a rule like any layer's:

- element-wise functions of one or several tensors (`relu6(x + 3) / 6`, `x * y`) pass channels
  and tie the channels of equal-width tensors, as a `Multiply` layer does; a per-channel constant
  operand (an array, not a scalar) pins the channels it touches;
- reductions, transposes, reshapes, expand/squeeze, padding, resizing and concatenation pass or
  concatenate channels when the channel (last) axis stays last and whole, and pin them otherwise;
- `x[...]` passes channels when the index leaves the channel axis whole, and a slice of the
  channel axis (`x[..., 8:24]`) takes those channels, like one input of a `Concatenate`; a
  strided slice or an index on the channel axis pins the sliced tensor.

Any other `keras.ops` call is unknown: refused, or pinned with a warning under
`allow_unknown=True`.

Example:
    >>> inputs = keras.Input((32, 32, 3))
    >>> x = keras.layers.Conv2D(16, 3)(inputs / 127.5 - 1.0)
    >>> x = x * keras.ops.relu6(x + 3.0) / 6.0                    # hard-swish
    >>> [g.size for g in tfm_fuse.analyze(keras.Model(inputs, x)).groups if g.prunable]
    []
"""

from __future__ import annotations

import keras
import numpy as np
from keras.src import ops as kops

from tfm_fuse.rules import (PassThrough, Pinned, TensorRef, cut_target_shape, last_axis,
                            rule_for)


def _classes(module, names: str) -> list[type]:
    """The named operation classes this Keras version has (older releases lack a few)."""
    return [getattr(module, n) for n in names.split() if hasattr(module, n)]


UNARY = (
    _classes(kops.numpy, "Abs Absolute Fabs Negative Square Sqrt Cbrt Exp Exp2 Expm1 Log Log1p "
                         "Log2 Log10 Sign Round Floor Ceil Trunc Clip Reciprocal Sin Cos Tanh "
                         "Sinh Cosh Arctan NanToNum Copy")
    + _classes(kops.nn, "Relu Relu6 Sigmoid HardSigmoid HardSilu Silu Gelu Elu Selu Celu LeakyRelu "
                        "Softplus Softsign LogSigmoid HardTanh HardShrink SoftShrink TanhShrink "
                        "Squareplus SparsePlus SparseSigmoid Threshold")
    + _classes(kops.math, "Erf Rsqrt")
    + _classes(kops.core, "Cast SaturateCast StopGradient"))
BINARY = _classes(kops.numpy, "Add Subtract Multiply TrueDivide Divide DivideNoNan FloorDivide "
                              "Mod Fmod Maximum Minimum Fmax Fmin Power Arctan2 Hypot Logaddexp "
                              "Heaviside Where")
REDUCTIONS = _classes(kops.numpy, "Mean Sum Max Min Amax Amin Prod Std Var Median Nanmean "
                                  "Nansum Nanmax Nanmin Logsumexp") + _classes(kops.math,
                                                                               "Logsumexp")


def _constants(ctx) -> list[np.ndarray]:
    """The node's non-tensor array operands (scalars excluded)."""
    leaves = keras.tree.flatten((ctx.args, ctx.kwargs))
    return [np.asarray(a) for a in leaves
            if not isinstance(a, (TensorRef, str, type(None), slice, type(Ellipsis)))
            and np.ndim(a) > 0]


@rule_for(*UNARY, *BINARY)
class ElementwiseOpRule(PassThrough):
    """`f(x)`, `x + 3.0`, `x * y`: channels pass; tensors of equal width share their channels."""

    def flow(self, op, ins, ctx):
        widest = max(ins, key=len)
        if any(c.shape[-1] > 1 for c in _constants(ctx)):
            for ids in ins:
                ctx.pin(ids, "element-wise with a per-channel constant operand")
        for ids in ins:
            if len(ids) == len(widest):
                ctx.union(ids, widest)
            else:
                ctx.pin(ids, "broadcast over channels in an element-wise operation")
        return [widest]


def _pin_through(op, ins, ctx, reason: str):
    """Pin every input channel and give the output new pinned channels."""
    rule = Pinned()
    rule.reason = reason
    return rule.flow(op, ins, ctx)


@rule_for(*REDUCTIONS)
class ReductionOpRule(PassThrough):
    """`mean(x, axis=(1, 2))` keeps channels; a reduction over the channel axis pins them."""

    def flow(self, op, ins, ctx):
        axis = getattr(op, "axis", None)
        if axis is None or last_axis(axis, len(ctx.in_shapes[0])):
            return _pin_through(op, ins, ctx, "reduces over the channel axis")
        return [ins[0]]


@rule_for(kops.numpy.Transpose)
class TransposeOpRule(PassThrough):
    def flow(self, op, ins, ctx):
        rank, axes = len(ctx.in_shapes[0]), op.axes
        if axes is None or axes[-1] not in (-1, rank - 1):
            return _pin_through(op, ins, ctx, "moves the channel axis")
        return [ins[0]]


class _ShapeKeepingRule(PassThrough):
    """Channels pass when the output's last axis is still the input's channel axis, whole."""

    reason = "moves or reshapes the channel axis"

    def keeps_channels(self, op, ctx) -> bool:
        c_in, c_out = ctx.in_shapes[0][-1], ctx.out_shapes[0][-1]
        return c_in is not None and c_in == c_out and len(ctx.out_shapes[0]) > 1

    def flow(self, op, ins, ctx):
        if self.keeps_channels(op, ctx):
            return [ins[0]]
        return _pin_through(op, ins, ctx, self.reason)


@rule_for(kops.numpy.Reshape)
class ReshapeOpRule(_ShapeKeepingRule):
    """`reshape(x, (-1, H * W, C))`: row-major order keeps every element's channel index."""

    config_channels = True

    def cut(self, op, keep_in, keep_out, weights=None):
        return cut_target_shape(op, "newshape", keep_out), {}


@rule_for(kops.numpy.ExpandDims, kops.numpy.Squeeze)
class ExpandSqueezeOpRule(_ShapeKeepingRule):
    def keeps_channels(self, op, ctx):
        rank = len(ctx.in_shapes[0])
        axis = op.axis
        touches_last = axis is None and ctx.in_shapes[0][-1] == 1 or (
            axis is not None and last_axis(axis, rank if isinstance(op, kops.numpy.Squeeze)
                                           else rank + 1))
        return not touches_last and super().keeps_channels(op, ctx)


@rule_for(kops.numpy.Pad)
class PadOpRule(PassThrough):
    def flow(self, op, ins, ctx):
        width = np.asarray(op.pad_width)
        if width.ndim != 2 or len(width) != len(ctx.in_shapes[0]) or width[-1].any():
            return _pin_through(op, ins, ctx, "pads the channel axis")
        return [ins[0]]


@rule_for(kops.numpy.Concatenate)
class ConcatenateOpRule(PassThrough):
    def flow(self, op, ins, ctx):
        if last_axis(op.axis, len(ctx.in_shapes[0])):
            return [np.concatenate(ins)]
        return ElementwiseOpRule.flow(self, op, ins, ctx)


@rule_for(*_classes(kops.image, "Resize"))
class ResizeOpRule(PassThrough):
    def flow(self, op, ins, ctx):
        if getattr(op, "data_format", "channels_last") == "channels_first":
            return _pin_through(op, ins, ctx, "channels_first image operation")
        return [ins[0]]


@rule_for(*_classes(kops.nn, "Softmax LogSoftmax"))
class SoftmaxOpRule(PassThrough):
    def flow(self, op, ins, ctx):
        if last_axis(op.axis, len(ctx.in_shapes[0])):
            ctx.pin(ins[0], "softmax over channels (each output depends on every channel)")
        return [ins[0]]


@rule_for(kops.numpy.GetItem)
class GetItemOpRule(PassThrough):
    """`x[:, 1:-1]` passes channels; `x[..., 8:24]` takes channels 8 to 23, like one input of a
    `Concatenate` (cut at strip time: the slice is re-counted over the kept channels); a strided
    slice or an index on the channel axis (`x[..., ::2]`, `x[..., 0]`) pins `x`."""

    call_channels = True

    def flow(self, op, ins, ctx):
        key = _key(ctx.args, ctx.kwargs)
        entry = _channel_entry(key, len(ctx.in_shapes[0]))
        if entry == slice(None) and ctx.out_shapes[0][-1] == ctx.in_shapes[0][-1]:
            return [ins[0]]
        if isinstance(entry, slice) and entry.indices(len(ins[0]))[2] == 1:
            return [ins[0][entry]]
        return _pin_through(op, ins, ctx, "indexes the channel axis with a step or an index "
                                          "(its positions would change with removed channels)")

    def cut_arguments(self, node, keep_in: list[np.ndarray]) -> tuple[tuple, dict] | None:
        """The call's arguments for the stripped input: the channel slice re-counted."""
        key = _key(node.args, node.kwargs)
        entry = _channel_entry(key, 0)
        if not isinstance(entry, slice) or entry == slice(None):
            return None
        start, stop, _ = entry.indices(len(keep_in[0]))
        kept_before = np.concatenate([[0], np.cumsum(keep_in[0])])
        new_entry = slice(int(kept_before[start]), int(kept_before[max(start, stop)]))
        key = key if isinstance(key, tuple) else (key,)
        key = key[:-1] + (new_entry,)
        if len(node.args) > 1:
            return (node.args[0], key, *node.args[2:]), node.kwargs
        return node.args, {**node.kwargs, "key": key}


def _key(args, kwargs):
    return args[1] if len(args) > 1 else kwargs.get("key")


def _channel_entry(key, rank: int):
    """What the index `key` does to the channel (last) axis: `slice(None)` (kept whole and
    last), another `slice`, or `None` (an index, a new axis, a tensor: not reasoned about).
    `rank=0` skips the check that the key reaches the last axis (it is known to)."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is None for k in key) or not all(
            isinstance(k, (int, np.integer, slice, type(Ellipsis))) for k in key):
        return None
    if Ellipsis in key:
        after = key[key.index(Ellipsis) + 1:]
        return slice(None) if not after else (after[-1] if isinstance(after[-1], slice) else None)
    if rank and len(key) < rank:
        return slice(None)
    return key[-1] if isinstance(key[-1], slice) else None


def _channel_axis_whole(key, rank: int) -> bool:
    """Whether the index `key` takes the channel (last) axis whole and leaves it last."""
    return _channel_entry(key, rank) == slice(None)
