"""Complexity-driven pruning at initialisation (Zawish, Davy, Abraham, arXiv 2208.12816).

Each prunable group gets a complexity in the chosen mode — parameters (PA), MACs/FLOPs (FA) or
activation memory (MA) of the layers that produce its channels. Repeatedly, a group is sampled
with probability proportional to its share of the total, and `step` of its filters are removed,
until the model's total of that metric has dropped by `target`. No ranking: the weights are an
initialisation, so the last filters go. The result is a thin model, to be trained once.

Example:
    >>> thin, report = complexity_prune(model, mode="FA", target=0.5, seed=0)
    >>> print(report)          # reductions of params, MACs and activation memory
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum

import keras
import numpy as np

from tfm_fuse.complexity import profile
from tfm_fuse.errors import ConfigError, parse_choice
from tfm_fuse.graph import analyze
from tfm_fuse.pruning.allocation import apply_masks, check_align
from tfm_fuse.pruning.cost import METRICS, CostModel
from tfm_fuse.pruning.wrapping import wrap
from tfm_fuse.pruning.stripping import strip


class Mode(StrEnum):
    """Which complexity decides: parameter-, FLOPs- or memory-aware."""

    PA = "PA"
    FA = "FA"
    MA = "MA"

    @property
    def metric(self) -> str:
        return {"PA": "params", "FA": "macs", "MA": "activation_bytes"}[self.value]


@dataclasses.dataclass(frozen=True)
class PruneReport:
    """Before/after totals of all three metrics, whatever the mode, and channels kept per group."""

    mode: str
    target: float
    before: dict[str, int]
    after: dict[str, int]
    kept: dict[int, tuple[int, int]]  # group id -> (kept, size)

    @property
    def reduction(self) -> dict[str, float]:
        return {m: 1.0 - self.after[m] / max(self.before[m], 1) for m in METRICS}

    def __str__(self) -> str:
        rows = [f"complexity-driven pruning, mode {self.mode}, target {self.target:.0%}",
                f"{'metric':<18} {'before':>14} {'after':>14} {'reduction':>10}"]
        for m in METRICS:
            rows.append(f"{m:<18} {self.before[m]:>14,} {self.after[m]:>14,} {self.reduction[m]:>10.1%}")
        return "\n".join(rows)


def parse_mode(mode: str) -> Mode:
    return parse_choice(Mode, str(mode).upper(), "mode", "complexity mode")


def check_target(target) -> float:
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise ConfigError(f"`target` must be a number in (0, 1). Received: target={target!r}")
    return float(target)


def complexity_prune(model: keras.Model, *, mode: str = "FA", target: float = 0.5,
                     align: int | None = None, step: int | None = None, seed: int | None = 0,
                     allow_unknown: bool = False) -> tuple[keras.Model, PruneReport]:
    """Prune `model` at initialisation until its `mode` metric has dropped by `target`.

    Args:
        model: a Sequential or functional Keras 3 model (untrained). Not modified.
        mode: `"PA"`, `"FA"` or `"MA"`. Defaults to `"FA"`.
        target: the reduction to reach, in (0, 1). Defaults to `0.5`.
        align: keep multiples of this many channels per group. Defaults to `None`.
        step: filters removed per draw. Defaults to `align` or 1.
        seed: seed of the sampling. Defaults to `0`.
        allow_unknown: pin unknown layer types instead of raising. Defaults to `False`.

    Returns:
        `(thin_model, PruneReport)`.

    Raises:
        ConfigError: bad mode or target, or a target the prunable groups cannot reach.
    """

    mode, target, align = parse_mode(mode), check_target(target), check_align(align)
    step = step or align or 1
    wrapped = wrap(model, allow_unknown=allow_unknown)
    graph = analyze(wrapped, allow_unknown=allow_unknown)
    kept = _sample(graph, mode, target, align, step, np.random.default_rng(seed))
    masks = {}
    for g, k in kept.items():
        masks[g] = np.zeros(graph.groups[g].size, "float32")
        masks[g][:k] = 1.0
    apply_masks(wrapped, graph, masks)
    thin = strip(wrapped)
    before, after = profile(model), profile(thin)
    report = PruneReport(mode.value, target, {m: getattr(before, m) for m in METRICS},
                         {m: getattr(after, m) for m in METRICS},
                         {g: (k, graph.groups[g].size) for g, k in kept.items()})
    return thin, report


def _sample(graph, mode: Mode, target: float, align, step: int, rng) -> dict[int, int]:
    cost = CostModel(graph)
    metric = METRICS.index(mode.metric)
    keep = cost.full()
    values = cost.values(keep)
    of_metric = np.array([t.metric == metric for t in cost.terms])
    total0 = float(values[of_metric].sum())
    goal = (1 - target) * total0
    groups = {g.id: g for g in graph.groups if g.prunable}
    kept = {g: groups[g].size for g in groups}
    floor = {g: min(groups[g].size, align or 1) for g in groups}
    share_terms = {g: np.flatnonzero(of_metric & np.isin([t.layer for t in cost.terms],
                                                         list(_producers(groups[g]))))
                   for g in groups}
    while float(values[of_metric].sum()) > goal:
        open_ = [g for g in groups if kept[g] > floor[g]]
        if not open_:
            reached = 1 - float(values[of_metric].sum()) / max(total0, 1)
            raise ConfigError(f"target={target} {mode.metric} reduction is out of reach: pruning "
                              f"every prunable group to its minimum removes {reached:.1%}.")
        share = np.array([values[share_terms[g]].sum() for g in open_]) + 1e-12
        g = open_[rng.choice(len(open_), p=share / share.sum())]
        new = max(floor[g], kept[g] - step)
        if align and new % align:
            new = max(floor[g], int(np.ceil(new / align)) * align)
        keep[groups[g].channels[new:kept[g]]] = False
        kept[g] = new
        for i in cost.terms_of_group.get(g, []):
            values[i] = cost.terms[i].value(keep)
    return kept


def _producers(group) -> set[str]:
    out = {name for name, side in group.members if side == "out"}
    return out or {name for name, _ in group.members}
