"""Reading and writing channel-group masks in a model of `PruneWrapper`s.

A group's mask has one entry per group channel (1 keep, 0 prune). Writing it sets the matching
positions of every wrapper that holds the group's channels, on its input or output side, so one
decision removes a channel everywhere it flows.

Example:
    >>> g = analyze(masked_model)
    >>> set_group_mask(masked_model, g, g.groups[1], np.array([1, 0, 1, 1]))
    >>> removable(masked_model, g)[1]
    array([False,  True, False, False])
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from tfm_fuse.graph import ChannelGroup, ModelGraph
from tfm_fuse.pruning.wrapper import PruneWrapper


def _mask_variable(model: keras.Model, layer_name: str, side: str):
    layer = model.get_layer(layer_name)
    if not isinstance(layer, PruneWrapper):
        return None
    return layer.in_mask if side == "in" else layer.out_mask


def set_group_mask(model: keras.Model, graph: ModelGraph, group: ChannelGroup,
                   mask: np.ndarray) -> None:
    """Write `mask` (length `group.size`) into every wrapper member of `group`."""
    mask = np.asarray(mask, dtype="float32")
    if mask.shape != (group.size,):
        raise ValueError(f"Mask for group {group.id} must have shape ({group.size},). "
                         f"Received: {mask.shape}")
    for (name, side), positions in group.members.items():
        var = _mask_variable(model, name, side)
        if var is None:
            continue
        values = keras.ops.convert_to_numpy(var).copy()
        values[positions] = mask[:, None]
        var.assign(values)


def group_mask(model: keras.Model, group: ChannelGroup) -> np.ndarray:
    """The group's current mask: 1 where any wrapper member still keeps the channel."""
    keep = np.zeros(group.size, dtype=bool)
    wrapped = False
    for (name, side), positions in group.members.items():
        var = _mask_variable(model, name, side)
        if var is None:
            continue
        wrapped = True
        keep |= (keras.ops.convert_to_numpy(var)[positions] != 0).any(axis=1)
    return keep.astype("float32") if wrapped else np.ones(group.size, "float32")


def removable(model: keras.Model, graph: ModelGraph) -> dict[int, np.ndarray]:
    """Per prunable group, the channels `strip` may remove without changing the output.

    A channel is removable when every wrapper holding it masks it and no unwrapped layer reads
    it through weights (an unwrapped reader would still see its value).
    """
    out = {}
    for group in graph.groups:
        if not group.prunable:
            continue
        readers_unwrapped = [
            name for name, side in group.members
            if side == "in" and _mask_variable(model, name, side) is None
            and not _is_elementwise(model.get_layer(name))
        ]
        drop = group_mask(model, group) == 0
        if readers_unwrapped:
            if drop.any():
                warnings.warn(
                    f"tfm_fuse: {int(drop.sum())} masked channels of group {group.id} stay, "
                    f"because unwrapped layers {readers_unwrapped} still read them. Wrap those "
                    "layers too (prune(..., layers=[...])) to remove the channels.", stacklevel=3)
            continue
        out[group.id] = drop
    return out


def _is_elementwise(layer) -> bool:
    from tfm_fuse import rules

    return isinstance(rules.get_rule(layer), rules.PerChannel)
