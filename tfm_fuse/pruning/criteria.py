"""Importance criteria: `criterion(model, group, graph=None) -> scores`, one score per group channel.

A channel's score adds up the norms of every filter that produces it (the group's output-side
members); a group without producers falls back to its input-side members. `fused` scores the
filter of the *fused* operator: a producer's filter norm times the scale |gamma| / sqrt(var + eps)
of the BatchNormalization that directly follows it, i.e. the norm the filter has once BN is folded.

Example:
    >>> scores = l1(model, graph.groups[1])
    >>> scores.shape
    (16,)
    >>> get("fused")(model, graph.groups[1], graph).shape
    (16,)
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from tfm_fuse import rules
from tfm_fuse.errors import ConfigError
from tfm_fuse.graph import ChannelGroup, ModelGraph

Criterion = Callable[..., np.ndarray]


def position_norms(layer, side: str, order: int) -> np.ndarray | None:
    """Sum of |w| ** order over each channel position of `layer`'s `side` (bias excluded)."""
    weights = rules.weights_by_name(rules.unwrap(layer))
    total = None
    for ax in rules.get_rule(layer).weight_axes(layer):
        if ax.side != side or ax.name not in weights or ax.name == "bias":
            continue
        w = np.moveaxis(weights[ax.name], ax.axis, 0)
        w = w.reshape(len(w) // ax.repeat, -1)  # one row per channel position
        per_position = np.sum(np.abs(w) ** order, axis=1)
        total = per_position if total is None else total + per_position
    return total


def _score(model, group: ChannelGroup, order: int, scale=None) -> np.ndarray:
    sides = ["out"] if any(side == "out" for _, side in group.members) else ["in"]
    scores = np.zeros(group.size)
    for (name, side), positions in group.members.items():
        if side not in sides:
            continue
        norms = position_norms(model.get_layer(name), side, order)
        if norms is None:
            continue
        if scale is not None:
            norms = norms * scale(name) ** order
        scores += norms[positions].sum(axis=1)
    return scores ** (1.0 / order)


def channel_norms(model, group: ChannelGroup, order: int) -> np.ndarray:
    """Sum over the group's producer filters of their L`order` norm, per group channel."""
    return _score(model, group, order)


def l1(model, group: ChannelGroup, graph: ModelGraph | None = None) -> np.ndarray:
    """L1 norm of each channel's filters."""
    return _score(model, group, 1)


def l2(model, group: ChannelGroup, graph: ModelGraph | None = None) -> np.ndarray:
    """L2 norm of each channel's filters."""
    return _score(model, group, 2)


def bn_scale(graph: ModelGraph, layer_name: str) -> np.ndarray | None:
    """|gamma| / sqrt(var + eps) of the BatchNormalization that alone consumes `layer_name`'s output.

    A channel that `layer_name` masks feeds its BatchNorm a constant zero, so that channel's
    moving variance decays towards 0 and its scale towards |gamma| / sqrt(eps) (31.6x for the
    default eps): left so, every masked filter would outrank the kept ones at the next update and
    each update would swap the model's channels wholesale (measured: 139 of 167 per update,
    inference-mode accuracy at chance). Masked channels are therefore scaled with the median
    variance of the channels that are kept.
    """
    for node in graph.nodes:
        if node.layer.name != layer_name:
            continue
        consumers = graph.consumers(node.outputs[0])
        if len(consumers) != 1 or not isinstance(consumers[0].layer, keras.layers.BatchNormalization):
            return None
        bn = consumers[0].layer
        w = rules.weights_by_name(bn)
        gamma = w.get("gamma", np.ones_like(w["moving_variance"]))
        variance = np.array(w["moving_variance"], dtype="float64")
        masked = _masked_outputs(node.layer)
        if masked is not None and masked.any() and not masked.all():
            variance[masked] = np.median(variance[~masked])
        return np.abs(gamma) / np.sqrt(variance + bn.epsilon)
    return None


def _masked_outputs(layer) -> np.ndarray | None:
    mask = getattr(layer, "out_mask", None)  # a PruneWrapper's
    return None if mask is None else keras.ops.convert_to_numpy(mask) == 0


def fused(model, group: ChannelGroup, graph: ModelGraph | None = None) -> np.ndarray:
    """L2 norm of each channel's filters after folding the following BatchNorm's scale."""
    if graph is None:
        from tfm_fuse.graph import analyze

        graph = analyze(model, allow_unknown=True)

    def scale(name: str):
        s = bn_scale(graph, name)
        return 1.0 if s is None else s

    return _score(model, group, 2, scale)


CRITERIA: dict[str, Criterion] = {"l1": l1, "l2": l2, "fused": fused}


def register(name: str, criterion: Criterion, *, override: bool = False) -> Criterion:
    """Make `criterion(model, group, graph) -> scores` available as `criterion=name`.

    Example:
        >>> register("random", lambda model, group, graph=None: np.random.rand(group.size))
        >>> tfm_fuse.prune(model, method="fupruner", criterion="random")

    Raises:
        ConfigError: `name` is taken and `override` is not `True`, or `criterion` is not callable.
    """
    if not callable(criterion):
        raise ConfigError(f"A criterion must be callable. Received: {criterion!r}")
    if name in CRITERIA and not override:
        raise ConfigError(f"Criterion {name!r} exists already; pass override=True to replace it.")
    CRITERIA[name] = criterion
    return criterion


def get(name: str) -> Criterion:
    """The criterion called `name`, or a `ConfigError` listing the accepted names."""
    if name not in CRITERIA:
        raise ConfigError(f"Unknown criterion. Received: criterion={name!r}; "
                          f"accepted: {sorted(CRITERIA)}")
    return CRITERIA[name]
