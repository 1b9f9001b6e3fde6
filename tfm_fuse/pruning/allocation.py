"""Allocation: from channel scores and a rate to one keep-mask per prunable group.

`scope="layer"` prunes each group at the same rate; `scope="global"` ranks every channel of the
model together (scores normalised by their group's mean, so wide and narrow layers compare) and
masks the lowest `rate` of all channels, never more than `max_group_rate` of one group. `align`
rounds each group's kept count up to a multiple (8, 16: the vector width of the target).

Example:
    >>> scores = group_scores(model, graph, criteria.l2)
    >>> masks = allocate(scores, 0.5, scope="global", align=8)
    >>> apply_masks(model, graph, masks)
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from tfm_fuse.errors import parse_choice
from tfm_fuse.graph import ModelGraph
from tfm_fuse.pruning.criteria import Criterion
from tfm_fuse.pruning.masks import set_group_mask
from tfm_fuse.validation import check_positive_int


class Scope(StrEnum):
    """How the rate is shared between groups."""

    GLOBAL = "global"
    LAYER = "layer"


def parse_scope(scope: str) -> Scope:
    return parse_choice(Scope, scope, "scope")


def check_align(align) -> int | None:
    return check_positive_int(align, "align", allow_none=True)


def aligned_keep(size: int, keep: int, align: int | None) -> int:
    """`keep` (at least 1) rounded up to a multiple of `align`, at most `size`."""
    keep = max(1, int(keep))
    if align:
        keep = int(np.ceil(keep / align)) * align
    return min(size, keep)


def group_scores(model, graph: ModelGraph, criterion: Criterion) -> dict[int, np.ndarray]:
    """`{group id: scores}` for every prunable group."""
    return {g.id: np.asarray(criterion(model, g, graph), dtype="float64")
            for g in graph.groups if g.prunable}


def allocate(scores: dict[int, np.ndarray], rate: float, *, scope: str = "global",
             align: int | None = None, max_group_rate: float = 0.9) -> dict[int, np.ndarray]:
    """Keep-masks (float32, 1 keep / 0 prune) per group: the highest-scored channels are kept."""
    scope = parse_scope(scope)
    if scope is Scope.LAYER:
        keeps = {g: len(s) - int(np.floor(rate * len(s))) for g, s in scores.items()}
    else:
        keeps = _global_keeps(scores, rate, max_group_rate)
    masks = {}
    for g, s in scores.items():
        keep = aligned_keep(len(s), keeps[g], align)
        mask = np.zeros(len(s), "float32")
        mask[np.argsort(-s, kind="stable")[:keep]] = 1.0
        masks[g] = mask
    return masks


def _global_keeps(scores: dict[int, np.ndarray], rate: float, max_group_rate: float) -> dict[int, int]:
    ids = list(scores)
    if not ids:
        return {}
    values = np.concatenate([scores[g] / max(float(np.mean(scores[g])), 1e-12) for g in ids])
    owner = np.concatenate([np.full(len(scores[g]), i) for i, g in enumerate(ids)])
    sizes = np.array([len(scores[g]) for g in ids])
    cap = np.minimum(np.floor(max_group_rate * sizes), sizes - 1).astype(int)
    budget = int(np.floor(rate * sizes.sum()))
    pruned = np.zeros(len(ids), int)
    for i in np.argsort(values, kind="stable"):
        if budget <= 0:
            break
        if pruned[owner[i]] < cap[owner[i]]:
            pruned[owner[i]] += 1
            budget -= 1
    return {g: int(sizes[i] - pruned[i]) for i, g in enumerate(ids)}


def apply_masks(model, graph: ModelGraph, masks: dict[int, np.ndarray]) -> None:
    """Write each group's mask into the model's wrappers."""
    for g, mask in masks.items():
        set_group_mask(model, graph, graph.groups[g], mask)


def channel_rate(masks: dict[int, np.ndarray]) -> float:
    """Fraction of prunable channels masked."""
    total = sum(len(m) for m in masks.values())
    return float(sum(int((m == 0).sum()) for m in masks.values()) / max(total, 1))


def sharing_groups(parts: dict[int, list[int]]) -> dict[int, list[int]]:
    """`{group: the other groups sharing any of its parts}` from `{group: parts}` (the cost
    terms, or the timed layers, that depend on each group): whose cost changes with whose."""
    owners: dict[int, set[int]] = {}
    for gid, items in parts.items():
        for i in items:
            owners.setdefault(i, set()).add(gid)
    return {gid: sorted({h for i in items for h in owners[i]} - {gid})
            for gid, items in parts.items()}


def allocate_to_cost(scores: dict[int, np.ndarray], channels: dict[int, np.ndarray], cost,
                     target: float, *, n_ids: int, align: int | None = None,
                     max_group_rate: float = 0.9, cost_exponent: float = 1.0
                     ) -> dict[int, np.ndarray]:
    """Keep-masks that bring `cost.predict(keep)` to `target` at the least loss of score.

    A greedy knapsack (NetAdapt, Yang et al. 2018; HALP, Shen et al. 2022): from the full model,
    repeatedly drop the chunk of a group's lowest-scored channels (`align` of them, else about
    1/64 of the group) with the smallest offer, until the prediction reaches `target`. The
    offer is the chunk's score (normalised by its group's mean) per channel, divided by the
    cost it saves per channel to the power `cost_exponent`: 1 is score lost per unit of cost
    saved (the knapsack's ratio), 0 ranks by score alone and lets the cost decide only where
    nothing is saved and when to stop. A chunk that saves nothing (a runtime that runs 8 and 64
    channels equally fast) is never taken, so the pruned channels go where the cost falls.

    Example (half the measured latency, importance first):
        >>> masks = allocate_to_cost(scores, channels, LatencyCost(table, graph), 0.5 * full_ms,
        ...                          n_ids=n, align=8, cost_exponent=0.0)

    Args:
        scores: `{group id: channel scores}` of the groups that may be pruned.
        channels: `{group id: the channel ids of its positions}` (`ChannelGroup.channels`).
        cost: has `predict(keep) -> float`, `partial(keep, gid) -> float` (the part of the
            prediction that depends on group `gid`) and `neighbours(gid)` (the groups whose
            part changes with `gid`'s): `latency.LatencyCost`, `cost.MetricCost`.
        target: the cost to reach (same unit as `predict`).
        n_ids: length of the keep-vector over channel ids.
        cost_exponent: how much the cost saved weighs against the score lost (0 to 1).
    """
    keep = np.ones(n_ids, dtype=bool)
    order = {g: np.argsort(s, kind="stable") for g, s in scores.items()}  # lowest first
    norm = {g: s / max(float(np.mean(s)), 1e-12) for g, s in scores.items()}
    kept = {g: len(s) for g, s in scores.items()}
    floor = {g: max(1, len(s) - min(int(np.floor(max_group_rate * len(s))), len(s) - 1))
             for g, s in scores.items()}
    step = {g: align or max(1, len(s) // 64) for g, s in scores.items()}

    def next_count(g: int) -> int:
        return (kept[g] - 1) // step[g] * step[g]

    def offer(g: int) -> tuple[float, float]:
        """(score lost per unit saved, cost saved) of dropping group `g`'s next chunk."""
        new = next_count(g)
        if new < floor[g]:
            return np.inf, 0.0
        drop = order[g][len(scores[g]) - kept[g]:len(scores[g]) - new]
        before = cost.partial(keep, g)
        keep[channels[g][drop]] = False
        saved = before - cost.partial(keep, g)
        keep[channels[g][drop]] = True
        if saved <= 1e-12:
            return np.inf, 0.0
        n = len(drop)
        return float(norm[g][drop].sum()) / n / (saved / n) ** cost_exponent, saved

    total = cost.predict(keep)
    offers = {g: offer(g) for g in scores}
    while total > target:
        g = min(offers, key=lambda k: offers[k][0], default=None)
        if g is None or not np.isfinite(offers[g][0]):
            break  # nothing left that saves cost
        new = next_count(g)
        keep[channels[g][order[g][len(scores[g]) - kept[g]:len(scores[g]) - new]]] = False
        kept[g] = new
        total -= offers[g][1]
        touched = set(cost.neighbours(g))
        offers.update({k: offer(k) for k in touched | {g} if k in scores})
    masks = {}
    for g, s in scores.items():
        mask = np.zeros(len(s), "float32")
        mask[order[g][len(s) - kept[g]:]] = 1.0
        masks[g] = mask
    return masks
