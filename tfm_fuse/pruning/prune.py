"""User-facing entry points: wrap a model for pruning, and prune it.

Example:
    >>> masked = tfm_fuse.prune(model, method="l1", rate=0.3)   # one-shot, masks set now
    >>> small = tfm_fuse.strip(masked)
"""

from __future__ import annotations

from typing import Iterable

import keras
import numpy as np

from tfm_fuse.errors import ConfigError, UnsupportedModelError
from tfm_fuse.graph import ModelGraph, analyze
from tfm_fuse.pruning import criteria
from tfm_fuse.pruning.masks import set_group_mask
from tfm_fuse.pruning.wrapper import WRAPPABLE, PruneWrapper
from tfm_fuse.rebuild import rebuild
from tfm_fuse import rules


def prunable_layers(graph: ModelGraph) -> list[str]:
    """Names of the layers holding channels of a prunable group that a `PruneWrapper` can mask."""
    names = []
    for group in graph.groups:
        if not group.prunable:
            continue
        for name, _ in group.members:
            layer = graph.model.get_layer(name)
            if isinstance(layer, PruneWrapper) or isinstance(rules.get_rule(layer), WRAPPABLE):
                if name not in names:
                    names.append(name)
    return names


def wrap(model: keras.Model, *, layers: Iterable[str] | None = None, soft: bool = True,
         allow_unknown: bool = False) -> keras.Model:
    """A copy of `model` whose prunable layers (or only `layers`) sit in `PruneWrapper`s.

    Args:
        model: a Sequential or functional Keras 3 model. Not modified.
        layers: names of the layers to wrap. Defaults to every prunable layer.
        soft: gradients reach masked weights (see `PruneWrapper`). Defaults to `True`.
        allow_unknown: pin unknown layer types instead of raising. Defaults to `False`.

    Returns:
        The wrapped model, masks all ones (it computes exactly what `model` computes).

    Raises:
        UnsupportedModelError: the model has no prunable channel group.
        ConfigError: a name in `layers` is not a prunable layer of the model.
    """
    graph = analyze(model, allow_unknown=allow_unknown)
    candidates = prunable_layers(graph)
    if not candidates:
        reasons = sorted({g.reason for g in graph.groups if not g.prunable})
        raise UnsupportedModelError(
            f"Model '{model.name}' has no prunable channel group: every channel is pinned "
            f"({'; '.join(reasons) or 'no layer with filters'})."
        )
    chosen = set(candidates if layers is None else layers)
    unknown = chosen - set(candidates)
    if unknown:
        raise ConfigError(
            f"Layers {sorted(unknown)} are not prunable layers of '{model.name}'. "
            f"Prunable layers: {candidates}"
        )
    wrappers: dict[int, PruneWrapper] = {}

    def rewrite(node, inputs, builder):
        layer = node.layer
        if layer.name not in chosen or isinstance(layer, PruneWrapper):
            return None
        if id(layer) not in wrappers:
            wrappers[id(layer)] = PruneWrapper(builder.copy(layer), soft=soft)
        return builder.call(node, wrappers[id(layer)], inputs)

    return rebuild(graph, rewrite)


def keep_count(size: int, rate: float, align: int | None) -> int:
    """How many of `size` channels to keep at pruning `rate`, rounded up to a multiple of `align`."""
    keep = max(1, size - int(np.floor(rate * size)))
    if align:
        keep = min(size, int(np.ceil(keep / align)) * align)
    return keep


def validate_rate(rate: float, name: str = "rate") -> float:
    if not isinstance(rate, (int, float)) or not 0.0 <= float(rate) < 1.0:
        raise ConfigError(f"`{name}` must be a number in [0, 1). Received: {name}={rate!r}")
    return float(rate)


def prune(model: keras.Model, *, method: str = "l1", rate: float = 0.3, align: int | None = None,
          layers: Iterable[str] | None = None, allow_unknown: bool = False) -> keras.Model:
    """Wrap `model` and mask, in every prunable channel group, the `rate` least important channels.

    Args:
        model: a Sequential or functional Keras 3 model. Not modified.
        method: `"l1"` or `"l2"`: one-shot magnitude pruning of each group. Defaults to `"l1"`.
        rate: fraction of each group's channels to mask, in [0, 1). Defaults to `0.3`.
        align: keep a multiple of this many channels per group. Defaults to `None`.
        layers: restrict wrapping to these layer names. Defaults to all prunable layers.
        allow_unknown: pin unknown layer types instead of raising. Defaults to `False`.

    Returns:
        A wrapped model with masks set; `tfm_fuse.strip` makes it physically smaller.

    Raises:
        ConfigError: an unknown method or a rate outside [0, 1).
    """
    if method not in criteria.CRITERIA:
        raise ConfigError(f"Unknown pruning method. Received: method={method!r}; "
                          f"accepted: {sorted(criteria.CRITERIA)}")
    rate = validate_rate(rate)
    if align is not None and (not isinstance(align, int) or align < 1):
        raise ConfigError(f"`align` must be a positive integer. Received: align={align!r}")
    wrapped = wrap(model, layers=layers, allow_unknown=allow_unknown)
    graph = analyze(wrapped, allow_unknown=allow_unknown)
    score = criteria.CRITERIA[method]
    for group in graph.groups:
        if not group.prunable:
            continue
        keep = keep_count(group.size, rate, align)
        order = np.argsort(-score(wrapped, group), kind="stable")
        mask = np.zeros(group.size, "float32")
        mask[order[:keep]] = 1.0
        set_group_mask(wrapped, graph, group, mask)
    return wrapped
