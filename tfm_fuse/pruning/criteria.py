"""Importance criteria: `criterion(model, group) -> scores`, one score per group channel.

A channel's score adds up the norms of every filter that produces it (the group's output-side
members); a group without producers falls back to its input-side members.

Example:
    >>> scores = l1(model, graph.groups[1])
    >>> scores.shape
    (16,)
"""

from __future__ import annotations

import numpy as np

from tfm_fuse import rules
from tfm_fuse.graph import ChannelGroup
from tfm_fuse.pruning.wrapper import PruneWrapper


def _weights(layer) -> dict[str, np.ndarray]:
    inner = layer.layer if isinstance(layer, PruneWrapper) else layer
    return rules.weights_by_name(inner)


def channel_norms(model, group: ChannelGroup, order: int) -> np.ndarray:
    """Sum over the group's producer filters of their L`order` norm, per group channel."""
    sides = ["out"] if any(side == "out" for _, side in group.members) else ["in"]
    scores = np.zeros(group.size)
    for (name, side), positions in group.members.items():
        if side not in sides:
            continue
        layer = model.get_layer(name)
        weights = _weights(layer)
        for ax in rules.get_rule(layer).weight_axes(layer):
            if ax.side != side or ax.name not in weights or ax.name == "bias":
                continue
            w = np.moveaxis(weights[ax.name], ax.axis, 0)
            w = w.reshape(len(w) // ax.repeat, -1)  # one row per channel position
            per_position = np.sum(np.abs(w) ** order, axis=1)
            scores += per_position[positions].sum(axis=1)
    return scores ** (1.0 / order)


def l1(model, group: ChannelGroup) -> np.ndarray:
    """L1 norm of each channel's filters."""
    return channel_norms(model, group, 1)


def l2(model, group: ChannelGroup) -> np.ndarray:
    """L2 norm of each channel's filters."""
    return channel_norms(model, group, 2)


CRITERIA = {"l1": l1, "l2": l2}
