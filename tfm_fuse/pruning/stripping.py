"""`strip`: turn a masked model into a physically smaller, numerically equal `keras.Model`.

Example:
    >>> masked = tfm_fuse.prune(model, method="l1", rate=0.3)
    >>> small = tfm_fuse.strip(masked)
    >>> np.allclose(small(x), masked(x), atol=1e-5)
    True
"""

from __future__ import annotations

import dataclasses
import warnings

import keras
import numpy as np

from tfm_fuse import rules
from tfm_fuse.graph import ModelGraph, analyze
from tfm_fuse.pruning.masks import removable
from tfm_fuse.pruning.wrapper import PruneWrapper
from tfm_fuse.rebuild import Builder, rebuild
from tfm_fuse.validation import check_finite_weights


def strip(model: keras.Model, *, allow_unknown: bool | None = None) -> keras.Model:
    """Remove masked channels everywhere they flow and unwrap every `PruneWrapper`.

    Args:
        model: a model returned by `tfm_fuse.prune` (or any model holding `PruneWrapper`s).
            Not modified.
        allow_unknown: keep layers of unknown type as they are (their channels pinned, with a
            warning). Defaults to `None`: `True` for a model holding `PruneWrapper`s (`prune`
            already accepted its layers, under the caller's `allow_unknown`), else `False`.

    Returns:
        A new functional model without wrappers, whose output equals the masked model's.
    """
    if allow_unknown is None:
        allow_unknown = any(isinstance(layer, PruneWrapper)
                            for layer in getattr(model, "layers", ()))
    check_finite_weights(model, "strip")  # a NaN masked away would hide a broken model
    graph = analyze(model, allow_unknown=allow_unknown)
    dropped = _dropped_channels(model, graph)
    _warn_if_fupruner_never_ran(model, dropped)
    cut_layers: dict[int, keras.Layer] = {}

    def rewrite(node, inputs, builder: Builder):
        layer = node.layer
        rule = rules.get_rule(layer)
        moved = (rule.cut_arguments(node, _keep(graph, node.inputs, dropped))
                 if rule and rule.call_channels else None)
        if moved is not None:  # the same operation, called with re-counted arguments
            node = dataclasses.replace(node, args=moved[0], kwargs=moved[1])
        if not rules.has_weights(layer) and not (rule and rule.config_channels):
            return None if moved is None else builder.call(node, builder.copy(layer), inputs)
        if id(layer) not in cut_layers:
            cut_layers[id(layer)] = _cut(graph, node, dropped, builder)
        return builder.call(node, cut_layers[id(layer)], inputs)

    return rebuild(graph, rewrite)


def _warn_if_fupruner_never_ran(model: keras.Model, dropped: np.ndarray) -> None:
    wrappers = [layer for layer in model.layers if isinstance(layer, PruneWrapper)]
    if len(dropped) or not wrappers or not wrappers[0].pruning_options:
        return
    if int(keras.ops.convert_to_numpy(wrappers[0].pruning_step)) == 0:
        warnings.warn(
            f"tfm_fuse.strip: model '{model.name}' was prepared by prune(method='fupruner') but "
            "never trained with callbacks.FuPruner(): every mask is still 1, so nothing is "
            "removed. Run fit(..., callbacks=[callbacks.FuPruner()]) first.", stacklevel=3)


def _dropped_channels(model: keras.Model, graph: ModelGraph) -> np.ndarray:
    ids = [graph.groups[g].channels[drop] for g, drop in removable(model, graph).items()]
    return np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)


def _keep(graph: ModelGraph, tensors, dropped: np.ndarray) -> list[np.ndarray]:
    """Per tensor, which of its channels `strip` keeps."""
    return [~np.isin(graph.tensors[t].channels, dropped) for t in tensors]


def _cut(graph: ModelGraph, node, dropped: np.ndarray, builder: Builder) -> keras.Layer:
    layer = node.layer
    keep_in, keep_out = _keep(graph, node.inputs, dropped), _keep(graph, node.outputs, dropped)
    rule = rules.get_rule(layer)
    if not isinstance(layer, PruneWrapper) and not (
            rule and (rule.weight_axes(layer) or rule.config_channels)):
        return builder.copy(layer)  # weights without channel axes (pinned layers)
    inner = rule.inner(layer)  # a wrapper's rule gives the wrapped layer
    config, weights = rule.cut(layer, keep_in, keep_out)
    return builder.make(type(inner), config, weights)
