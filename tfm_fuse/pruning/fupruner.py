"""FuPruner's mask math (Li et al., arXiv 2010.16165): rank, allocate, mask, zero — no Keras loop.

`MaskUpdater` holds what one model's updates share (its analysis and cost model) and performs one
soft-filter-pruning update: rank every prunable group's channels by the criterion on the
*current* weights, allocate the rate (globally or per layer, aligned), write the masks, and zero
the newly masked filters. Zeroed filters keep their gradient (the wrappers are soft), so they may
outrank others at the next update and come back. The callback `tfm_fuse.callbacks.FuPruner`
decides when to call it.

Example:
    >>> updater = MaskUpdater(masked, criterion="fused", scope="global", align=8)
    >>> stats = updater.update(0.3)
    >>> stats["prune_rate"], stats["prune_macs"]
    (0.29, 1234567)
"""

from __future__ import annotations

import dataclasses
import functools
import weakref

import keras
import numpy as np

from tfm_fuse.graph import analyze
from tfm_fuse.pruning import allocation, criteria
from tfm_fuse.pruning.cost import CostModel
from tfm_fuse.pruning.masks import group_mask, removable
from tfm_fuse.pruning.wrapper import PruneWrapper


@dataclasses.dataclass(frozen=True)
class FuPrunerDefaults:
    """Options given to `prune(method="fupruner")`, picked up by a `FuPruner` left unconfigured."""

    rate: float = 0.5
    criterion: str = "fused"
    scope: str = "global"
    align: int | None = None


_DEFAULTS: "weakref.WeakKeyDictionary[keras.Model, FuPrunerDefaults]" = weakref.WeakKeyDictionary()


def remember_defaults(model: keras.Model, defaults: FuPrunerDefaults) -> None:
    _DEFAULTS[model] = defaults


def defaults_for(model: keras.Model) -> FuPrunerDefaults:
    return _DEFAULTS.get(model, FuPrunerDefaults())


def wrappers(model: keras.Model) -> list[PruneWrapper]:
    return [layer for layer in model.layers if isinstance(layer, PruneWrapper)]


class MaskUpdater:
    """One model's soft-filter-pruning updates.

    Args:
        model: a model holding `PruneWrapper`s (from `tfm_fuse.prune(..., method="fupruner")`).
        criterion: `"l1"`, `"l2"` or `"fused"`. Defaults to `"fused"`.
        scope: `"global"` or `"layer"`. Defaults to `"global"`.
        align: keep a multiple of this many channels per group. Defaults to `None`.
        max_group_rate: at most this fraction of one group is masked (global scope).
            Defaults to `0.9`.
        zero_masked: write zeros into masked filters at each update. Defaults to `True`.
    """

    def __init__(self, model: keras.Model, *, criterion: str = "fused", scope: str = "global",
                 align: int | None = None, max_group_rate: float = 0.9, zero_masked: bool = True):
        self.model = model
        self.criterion = criteria.get(criterion)
        self.scope = allocation.parse_scope(scope)
        self.align = allocation.check_align(align)
        self.max_group_rate = max_group_rate
        self.zero_masked = zero_masked
        self.graph = analyze(model)
        self.cost = CostModel(self.graph)
        self.full = self.cost.totals(self.cost.full())
        self.wrappers = wrappers(model)
        self._by_name = {w.name: w for w in self.wrappers}
        self._removable = sorted(removable(model, self.graph))  # fixed by which layers are wrapped
        prunable = [g.channels for g in self.graph.groups if g.prunable]
        self._prunable = np.concatenate(prunable) if prunable else np.zeros(0, np.int64)

    def update(self, rate: float) -> dict[str, float]:
        """Re-rank and re-mask at `rate`; returns the statistics `stats()` gives."""
        scores = allocation.group_scores(self.model, self.graph, self.criterion)
        masks = allocation.allocate(scores, rate, scope=self.scope, align=self.align,
                                    max_group_rate=self.max_group_rate)
        self._reset_revived_statistics(masks)
        self._write(masks)
        if self.zero_masked:
            for w in self.wrappers:
                w.zero_masked_weights(sides=("out",))
        keep = self.cost.full()
        for gid in self._removable:
            keep[self.graph.groups[gid].channels[masks[gid] == 0]] = False
        return self.stats(keep)

    def _reset_revived_statistics(self, masks: dict[int, np.ndarray]) -> None:
        """BatchNorm moving statistics of channels that come back restart at mean 0, variance 1.

        While masked, a channel's BN sees zeros and its moving variance decays towards 0; left so,
        a revived filter's output would be divided by ~sqrt(eps) in inference mode."""
        for gid, mask in masks.items():
            group = self.graph.groups[gid]
            revived = (mask == 1) & (group_mask(self.model, group) == 0)
            if not revived.any():
                continue
            for (name, side), positions in group.members.items():
                layer = self.model.get_layer(name)
                if side != "in" or not isinstance(layer, keras.layers.BatchNormalization):
                    continue
                for var, value in ((layer.moving_mean, 0.0), (layer.moving_variance, 1.0)):
                    v = keras.ops.convert_to_numpy(var).copy()
                    v[positions[revived].ravel()] = value
                    var.assign(v)

    def _write(self, masks: dict[int, np.ndarray]) -> None:
        """`set_group_mask` for every group, with one read and one assign per mask variable."""
        values = {(w.name, side): keras.ops.convert_to_numpy(var).copy()
                  for w in self.wrappers for side, var in (("in", w.in_mask), ("out", w.out_mask))}
        for gid, mask in masks.items():
            for key, positions in self.graph.groups[gid].members.items():
                if key in values:
                    values[key][positions] = mask[:, None]
        for (name, side), value in values.items():
            w = self._by_name[name]
            (w.in_mask if side == "in" else w.out_mask).assign(value)

    def stats(self, keep: np.ndarray | None = None) -> dict[str, float]:
        """Masked channel rate, and params / MACs the stripped model would have."""
        if keep is None:
            keep = self.cost.keep_from_masks(self.model)
        totals = self.cost.totals(keep)
        rate = 1.0 - float(keep[self._prunable].mean()) if len(self._prunable) else 0.0
        return {"prune_rate": rate, "prune_params": float(totals["params"]),
                "prune_macs": float(totals["macs"]),
                "prune_macs_removed": 1.0 - totals["macs"] / max(self.full["macs"], 1)}

    def read_step(self) -> int:
        if not self.wrappers:
            return 0
        return int(keras.ops.convert_to_numpy(self.wrappers[0].pruning_step))

    def write_step(self, step: int) -> None:
        for w in self.wrappers:
            w.pruning_step.assign(np.int64(step))


def rate_for_macs(model: keras.Model, macs_removed: float, *, align: int | None = None,
                  scope: str = "layer", criterion: str = "l2") -> float:
    """The channel rate at which the stripped model has `macs_removed` (a fraction) fewer MACs.

    A bisection over the rate, on a wrapped copy of `model` (not modified), with the same
    allocation FuPruner will use. Use it to turn a compute budget into `prune(..., rate=)`.
    With `align`, MACs removed is a staircase of the rate (a 64-channel group keeps 48 or 40,
    nothing between): the rate of whichever step lands nearer the budget is returned, so the
    result may fall slightly short of `macs_removed` rather than overshoot it by a whole step.

    Example:
        >>> rate = rate_for_macs(model, 0.5)            # about 0.3 for a plain CNN
        >>> masked = tfm_fuse.prune(model, method="fupruner", rate=rate, scope="layer")
    """
    from tfm_fuse.pruning.prune import prune, validate_rate

    validate_rate(macs_removed, "macs_removed")
    # zero_masked=False: the weights, hence the scores, stay those of `model` at every probe,
    # so MACs removed is a fixed, monotone function of the rate.
    updater = MaskUpdater(prune(model, method="fupruner"), criterion=criterion, scope=scope,
                          align=align, zero_masked=False)

    @functools.cache
    def removed(rate: float) -> float:
        return updater.update(rate)["prune_macs_removed"]

    lo, hi = _bisect(lambda r: removed(r) < macs_removed, 0.0, 0.95)
    nearer = hi if removed(hi) - macs_removed <= macs_removed - removed(lo) else lo
    # Return the middle of that step, not its edge, so rounding the rate keeps the result.
    level = removed(nearer)
    left = _bisect(lambda r: removed(r) < level, 0.0, nearer)[1]
    right = _bisect(lambda r: removed(r) <= level, nearer, 0.95)[0]
    return (left + right) / 2


def _bisect(below, lo: float, hi: float, steps: int = 20) -> tuple[float, float]:
    """Narrows `[lo, hi]` around where the monotone predicate `below(rate)` turns false."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if below(mid) else (lo, mid)
    return lo, hi
