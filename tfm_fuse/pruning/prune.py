"""User-facing entry points: wrap a model for pruning, and prune it.

Example:
    >>> masked = tfm_fuse.prune(model, method="l1", rate=0.3)   # one-shot, masks set now
    >>> masked = tfm_fuse.prune(model, method="fupruner", rate=0.5, align=8)  # for the callback
    >>> thin = tfm_fuse.prune(model, method="complexity", mode="FA", target=0.5)  # prune at init
    >>> small = tfm_fuse.strip(masked)
"""

from __future__ import annotations

from enum import StrEnum
from typing import Iterable

import keras
import numpy as np

from tfm_fuse.errors import ConfigError, UnsupportedModelError, parse_choice
from tfm_fuse.graph import ModelGraph, analyze
from tfm_fuse.pruning import criteria
from tfm_fuse.pruning.allocation import (aligned_keep, allocate, apply_masks, check_align,
                                         group_scores, parse_scope)
from tfm_fuse.pruning.fupruner import FuPrunerDefaults, remember_defaults
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
    return aligned_keep(size, size - int(np.floor(rate * size)), align)


def validate_rate(rate: float, name: str = "rate") -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) < 1.0:
        raise ConfigError(f"`{name}` must be a number in [0, 1). Received: {name}={rate!r}")
    return float(rate)


class Method(StrEnum):
    """What `prune` does: one-shot magnitude masks, FuPruner preparation, or prune-at-init."""

    L1 = "l1"
    L2 = "l2"
    FUSED = "fused"
    FUPRUNER = "fupruner"
    COMPLEXITY = "complexity"


def _parse_method(method: str) -> Method:
    return parse_choice(Method, method, "method", "pruning method")


def prune(model: keras.Model, *, method: str = "l1", rate: float = 0.3, align: int | None = None,
          criterion: str = "fused", scope: str = "global", mode: str = "FA",
          target: float | None = None, seed: int | None = 0,
          layers: Iterable[str] | None = None, allow_unknown: bool = False) -> keras.Model:
    """Prune `model`: one-shot, prepared for the `FuPruner` callback, or complexity-driven.

    Args:
        model: a Sequential or functional Keras 3 model. Not modified.
        method: `"l1"`, `"l2"`, `"fused"`: mask the `rate` lowest-norm channels of each group
            now. `"fupruner"`: wrap with masks at 1; `callbacks.FuPruner` moves them during
            `fit` (and takes `rate`, `criterion`, `scope`, `align` from here unless given).
            `"complexity"`: prune at initialisation to a thin model (see `complexity_prune`).
            Defaults to `"l1"`.
        rate: fraction of channels to mask, in [0, 1). Defaults to `0.3`.
        align: keep a multiple of this many channels per group. Defaults to `None`.
        criterion: FuPruner's ranking, `"l1"`, `"l2"` or `"fused"`. Defaults to `"fused"`.
        scope: FuPruner's allocation, `"global"` or `"layer"`. Defaults to `"global"`.
        mode: complexity mode, `"PA"`, `"FA"` or `"MA"`. Defaults to `"FA"`.
        target: complexity reduction to reach, in (0, 1). Defaults to `rate`.
        seed: complexity sampling seed. Defaults to `0`.
        layers: restrict wrapping to these layer names. Defaults to all prunable layers.
        allow_unknown: pin unknown layer types instead of raising. Defaults to `False`.

    Returns:
        A wrapped model (`tfm_fuse.strip` makes it smaller), or for `"complexity"` a thin model.

    Raises:
        ConfigError: an unknown method, criterion, scope or mode, or a rate/target out of range.

    Example:
        >>> masked = prune(model, method="fupruner", rate=0.5, align=8, criterion="fused")
        >>> thin = prune(model, method="complexity", mode="PA", target=0.5)
    """
    method = _parse_method(method)
    rate = validate_rate(rate)
    align = check_align(align)
    if method is Method.COMPLEXITY:
        from tfm_fuse.pruning.complexity_prune import complexity_prune

        thin, _ = complexity_prune(model, mode=mode, target=rate if target is None else target,
                                   align=align, seed=seed, allow_unknown=allow_unknown)
        return thin
    if method is Method.FUPRUNER:
        criteria.get(criterion)
        parse_scope(scope)
        wrapped = wrap(model, layers=layers, allow_unknown=allow_unknown)
        remember_defaults(wrapped, FuPrunerDefaults(rate, criterion, scope, align))
        return wrapped
    wrapped = wrap(model, layers=layers, allow_unknown=allow_unknown)
    graph = analyze(wrapped, allow_unknown=allow_unknown)
    scores = group_scores(wrapped, graph, criteria.get(method.value))
    apply_masks(wrapped, graph, allocate(scores, rate, scope="layer", align=align))
    return wrapped
