"""Wrapping: a copy of a model whose prunable layers sit in `PruneWrapper`s (masks at 1).

Example:
    >>> wrapped = wrap(model)                      # computes exactly what `model` computes
    >>> prunable_layers(tfm_fuse.analyze(model))
    ['conv2d', 'conv2d_1', 'dense']
"""

from __future__ import annotations

from typing import Iterable

import keras

from tfm_fuse import rules
from tfm_fuse.errors import ConfigError, UnsupportedModelError
from tfm_fuse.graph import ModelGraph, analyze
from tfm_fuse.pruning.wrapper import PruneWrapper
from tfm_fuse.rebuild import rebuild


def prunable_layers(graph: ModelGraph) -> list[str]:
    """Names of the layers holding channels of a prunable group that a `PruneWrapper` can mask."""
    names = []
    for group in graph.groups:
        if not group.prunable:
            continue
        for name, _ in group.members:
            layer = graph.model.get_layer(name)
            if isinstance(layer, PruneWrapper) or getattr(rules.get_rule(layer), "wrappable", False):
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
