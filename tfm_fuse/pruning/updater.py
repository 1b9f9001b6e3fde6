"""FuPruner's mask math (Li et al., arXiv 2010.16165): rank, allocate, mask, zero — no Keras loop.

`MaskUpdater` holds what one model's updates share (its analysis and cost model) and performs one
soft-filter-pruning update: rank every prunable group's channels by the criterion on the
*current* weights, allocate the rate (globally or per layer, aligned), write the masks, and zero
the newly masked filters. Zeroed filters keep their gradient (the wrappers are soft), so they may
outrank others at the next update and come back. The callback `tfm_fuse.callbacks.FuPruner`
decides when to call it.

It also holds `PruningOptions`, what `prune(method="fupruner")` was asked, saved in every
wrapper's config so that the callback finds them again after `load_model`.

Example:
    >>> updater = MaskUpdater(masked, criterion="l2", scope="global", align=8)
    >>> stats = updater.update(0.5, "macs")        # or updater.update(0.3) for a channel rate
    >>> stats["prune_macs_removed"]
    0.498
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Callable, NamedTuple

import keras
import numpy as np

from tfm_fuse.errors import ConfigError
from tfm_fuse.graph import analyze
from tfm_fuse.pruning import allocation, criteria
from tfm_fuse.pruning.budget import COST_METRIC, Budget, Kind, solve_rate
from tfm_fuse.pruning.cost import INT8, CostModel, MetricCost
from tfm_fuse.pruning.latency_model import (RUNTIMES, LatencyCost, LatencyModel,
                                            block_counts, block_designs, context_designs)
from tfm_fuse.pruning.masks import group_mask, removable
from tfm_fuse.pruning.wrapper import PruneWrapper
from tfm_fuse.pruning.wrapping import wrap
from tfm_fuse.validation import check_fraction

# chosen on the validation split of benchmarks/fupruner_matrix.py (README, 'Pruning during fit'):
# "l2" scored 0.996 / 0.915 (residual CNN / MobileNetV2), "fused" 0.992 / 0.888, "l1" 0.975 /
# 0.919; "fused" also depends on BatchNorm statistics (0.944 on MobileNetV2 in another run).
DEFAULT_CRITERION = "l2"
DEFAULT_SCOPE = "global"
# the widths a latency model is calibrated at: the whole model, and half its channels per layer
CALIBRATION_RATES = (0.0, 0.5)
SPEEDUP_SLACK = 0.05  # how far past a latency budget the measured speed-up may land (issue 14)
# how much a latency budget's allocation weighs the milliseconds a chunk saves against the score
# it loses (`allocation.allocate_to_cost`): 0, importance first. Chosen on validation digits,
# never the test ones (benchmarks/latency_allocation_choice.md, MobileNetV2 at 96×96, half the
# latency): exponents 0 / 0.5 / 1 gave 0.910 / 0.899 / 0.889 on ONNX Runtime and 0.891 / 0.885 /
# 0.885 on LiteRT int8. The knapsack's 1 drains the layers whose channels cost the most time.
# The int8-bytes budget (`fits="edgetpu"`) keeps 1: it was measured that way.
LATENCY_COST_EXPONENT = 0.0


@dataclasses.dataclass(frozen=True)
class PruningOptions:
    """What `prune(method="fupruner")` was asked, saved in every wrapper's config.

    `callbacks.FuPruner` takes each option it is not given from here, and writes back the
    schedule it resolved, so `model.save` -> `keras.models.load_model` -> `fit` resumes with the
    same budget, ranking, alignment and schedule position (the step is a wrapper weight).
    """

    budget: Budget = Budget()
    criterion: str = DEFAULT_CRITERION
    scope: str = DEFAULT_SCOPE
    align: int | None = None
    schedule: dict | None = None     # `schedules.schedule_to_config` of the resolved schedule
    update_freq: int | str | None = None
    allow_unknown: bool = False
    reference: float | None = None   # the accuracy guard's reference, once measured
    input_shape: list | None = None  # the size costs are counted at (dynamic-size models)
    runtime: str | None = None       # where a latency budget is measured

    def get_config(self) -> dict:
        return {"budget": self.budget.get_config(), "criterion": self.criterion,
                "scope": self.scope, "align": self.align, "schedule": self.schedule,
                "update_freq": self.update_freq, "allow_unknown": self.allow_unknown,
                "reference": self.reference, "input_shape": self.input_shape,
                "runtime": self.runtime}

    @classmethod
    def from_config(cls, config: dict) -> "PruningOptions":
        config = dict(config)
        config["budget"] = Budget(**config.get("budget", {}))
        return cls(**config)


def read_options(model: keras.Model) -> PruningOptions:
    """The options saved in `model`'s wrappers, or the defaults if none were saved."""
    for w in wrappers(model):
        if w.pruning_options:
            return PruningOptions.from_config(w.pruning_options)
    return PruningOptions()


def write_options(model: keras.Model, options: PruningOptions) -> None:
    for w in wrappers(model):
        w.pruning_options = options.get_config()


def wrappers(model: keras.Model) -> list[PruneWrapper]:
    return [layer for layer in model.layers if isinstance(layer, PruneWrapper)]


class MaskUpdater:
    """One model's soft-filter-pruning updates.

    Args:
        model: a model holding `PruneWrapper`s (from `tfm_fuse.prune(..., method="fupruner")`).
        criterion: `"l1"`, `"l2"` or `"fused"`. Defaults to `"l2"`.
        scope: `"global"` or `"layer"`. Defaults to `"global"`.
        align: keep a multiple of this many channels per group. Defaults to `None`.
        max_group_rate: at most this fraction of one group is masked (global scope).
            Defaults to `0.9`.
        zero_masked: write zeros into masked filters at each update. Defaults to `True`.
        allow_unknown: analyse layers of unknown type as pinned. Defaults to `False`.
        input_shape: count costs at this input size (models of unknown spatial size).
        runtime: the runtime a `latency` budget is measured on (`latency_model.RUNTIMES`).
        cost_exponent: for a `latency` budget, how much the milliseconds saved weigh against
            the score lost (`allocation.allocate_to_cost`). Defaults to `LATENCY_COST_EXPONENT`.
    """

    def __init__(self, model: keras.Model, *, criterion: str = DEFAULT_CRITERION,
                 scope: str = DEFAULT_SCOPE,
                 align: int | None = None, max_group_rate: float = 0.9, zero_masked: bool = True,
                 allow_unknown: bool = False, input_shape=None, runtime: str | None = None,
                 cost_exponent: float = LATENCY_COST_EXPONENT):
        self.model = model
        self.runtime = runtime
        self.cost_exponent = cost_exponent
        self._latency = None  # built by the first latency budget (`latency_model`)
        self._warned: set = set()
        self.criterion_name = criterion
        self.criterion = criteria.get(criterion)
        self.scope = allocation.parse_scope(scope)
        self.align = allocation.check_align(align)
        self.max_group_rate = max_group_rate
        self.zero_masked = zero_masked
        self.graph = analyze(model, allow_unknown=allow_unknown, input_shape=input_shape)
        self.cost = CostModel(self.graph)
        self.full = self.cost.totals(self.cost.full())
        self.wrappers = wrappers(model)
        self._by_name = {w.name: w for w in self.wrappers}
        self._removable = sorted(removable(model, self.graph))  # fixed by which layers are wrapped
        prunable = [g.channels for g in self.graph.groups if g.prunable]
        self._prunable = np.concatenate(prunable) if prunable else np.zeros(0, np.int64)

    def update(self, target: float, kind: Kind | str = Kind.RATE) -> dict[str, float]:
        """Re-rank and re-mask so that `target` of `kind` is removed; returns `stats()`.

        `kind="rate"` masks that fraction of channels; `"macs"`, `"params"`, `"memory"` find the
        channel rate whose stripped model is reduced by `target` (see `budget.solve_rate`)."""
        kind = Kind(kind)
        scores = allocation.group_scores(self.model, self.graph, self.criterion)
        if kind in (Kind.LATENCY, Kind.INT8_BYTES):
            masks = self.allocate_to(scores, target, kind)
        else:
            rate = target if kind is Kind.RATE else self.rate_for(scores, target, kind)
            masks = self._allocate(scores, rate)
        self._write(masks)
        if self.zero_masked:
            for w in self.wrappers:
                w.zero_masked_weights(sides=("out",))
        return self.stats(self._keep(masks))

    def rate_for(self, scores: dict[int, np.ndarray], target: float, kind: Kind) -> float:
        """The channel rate whose masks (for `scores`) remove `target` of `kind`."""
        metric = COST_METRIC[Kind(kind)]
        full = max(self.full[metric], 1)

        @functools.cache
        def removed(rate: float) -> float:
            return 1.0 - self.cost.totals(self._keep(self._allocate(scores, rate)))[metric] / full

        return solve_rate(removed, target)

    def allocate_to(self, scores: dict[int, np.ndarray], target: float, kind: Kind
                    ) -> dict[int, np.ndarray]:
        """Masks removing `target` of the measured latency (least important channels first,
        where fewer channels are faster) or of the int8 parameter bytes (least score lost per
        byte saved): `allocation.allocate_to_cost`."""
        cost = (LatencyCost(self.latency_model(), self.graph) if kind is Kind.LATENCY
                else MetricCost(self.cost, INT8))
        full = cost.predict(self.cost.full())
        removable_ids = set(self._removable)
        wanted = {g: s for g, s in scores.items() if g in removable_ids}
        align = self.latency_align() if kind is Kind.LATENCY else self.align
        masks = allocation.allocate_to_cost(
            wanted, {g: self.graph.groups[g].channels for g in wanted}, cost,
            (1.0 - target) * full, n_ids=self.cost.n_ids, align=align,
            max_group_rate=self.max_group_rate,
            cost_exponent=self.cost_exponent if kind is Kind.LATENCY else 1.0)
        masks = {g: masks.get(g, np.ones(len(s), "float32")) for g, s in scores.items()}
        reached = 1.0 - cost.predict(self._keep(masks)) / max(full, 1e-12)
        if reached < target - 0.02 and (kind, round(target, 2)) not in self._warned:
            self._warned.add((kind, round(target, 2)))
            where = f"on {self.runtime}" if kind is Kind.LATENCY else "of int8 parameter bytes"
            blocks = f", layers run in blocks of {align} channels" if (align or 1) > 1 else ""
            warnings.warn(
                f"Pruning can remove at most about {reached:.0%} {where}, not {target:.0%}: "
                f"the rest is spent where fewer channels are not faster (per-inference "
                f"overhead{blocks}) or in groups already at "
                f"max_group_rate={self.max_group_rate:g}.", stacklevel=3)
        return masks

    def latency_align(self) -> int:
        """The channel block latency budgets allocate in: `align` if given, else the runtime's
        measured block (`LatencyModel.alignment`)."""
        return self.align if self.align is not None else self.latency_model().block

    def latency_model(self) -> LatencyModel:
        """The measured latency model on `runtime` (on OpenVINO its table read inside whole
        models: `LatencyModel.fit_in_context`), calibrated on the whole model at full width and
        thinned to half its channels per layer (built once; measurements cached on disk)."""
        if self._latency is None:
            if self.runtime is None:
                raise ConfigError("A latency budget is measured on a runtime; give one, e.g. "
                                  "prune(model, method='fupruner', latency=0.5, "
                                  f"runtime='litert_int8'). Accepted: {', '.join(RUNTIMES)}.")
            self._latency = LatencyModel(self.graph, self.runtime)
            if self.runtime == "openvino_cpu":  # its one-layer counters misplace the time
                designs = self._context_designs()
                self._latency.fit_in_context(designs)
                # then the costliest layer at every block count, for its block in context; the
                # tables are refitted on all the readings (the block models' too)
                self._latency.fit_in_context(designs + self._block_designs())
            scores = allocation.group_scores(self.model, self.graph, self.criterion)
            for rate in CALIBRATION_RATES:
                self.time_masks(allocation.allocate(scores, rate, scope="layer",
                                                    align=self._latency.block))
            self._latency.calibrate()  # on every point measured, this process or an earlier one
        return self._latency

    def _context_designs(self) -> list[tuple[np.ndarray, Callable[[], keras.Model]]]:
        """`latency_model.context_designs` over the removable groups, as `(keep, builder of the
        model stripped to it)` (every other group whole)."""
        whole = self._whole_masks()
        return self._built(context_designs({gid: len(whole[gid]) for gid in self._removable}))

    def _built(self, designs: list[dict[int, np.ndarray]]
               ) -> list[tuple[np.ndarray, Callable[[], keras.Model]]]:
        """`(keep, builder of the model stripped to it)` for each of `designs` (masks of some
        groups; every other group whole)."""
        whole = self._whole_masks()
        return [(self._keep({**whole, **design}),
                 functools.partial(self._stripped, {**whole, **design})) for design in designs]

    def _block_designs(self) -> list[tuple[np.ndarray, Callable[[], keras.Model]]]:
        """The model stripped to each of `latency_model.block_counts` of one group (every other
        group whole), as `(keep, builder)`: the group that the costliest layer writes whole, of
        at least 6 channels, removable, so that `LatencyModel.alignment` reads that layer's
        block inside the model. [] if no layer has such a group."""
        for layer in self._latency.costliest_layers():
            size = int(layer.out_counts[-1])
            written = set(np.unique(layer.out_ids).tolist())
            gid = next((g for g in self._removable
                        if set(self.graph.groups[g].channels.tolist()) == written), None)
            if gid is not None and len(block_counts(size)) >= 3:
                return self._built(block_designs(gid, size))
        return []

    def time_masks(self, masks: dict[int, np.ndarray]) -> float:
        """Measured ms on `runtime` of the model stripped with `masks` (cached); the latency
        model is recalibrated with it, and timed side by side with the full model. The model's
        own masks are left as they were."""
        latency, keep = self.latency_model(), self._keep(masks)
        key = latency.model_key(keep)
        if key in latency.cache.entries:
            return latency.cache.entries[key]
        return latency.time_model(self._stripped(masks), keep,
                                  reference=lambda: self._stripped(self._whole_masks()))

    def _whole_masks(self) -> dict[int, np.ndarray]:
        """Every prunable group's mask with all its channels kept."""
        return {gid: np.ones_like(mask) for gid, mask in self.masks().items()}

    def _stripped(self, masks: dict[int, np.ndarray]) -> keras.Model:
        """The model stripped as if `masks` were written; its own masks are left as they were."""
        from tfm_fuse.pruning.stripping import strip

        saved = self.masks()
        try:
            self._write(masks)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "FuPruner never ran": not the point here
                return strip(self.model)
        finally:
            self._write(saved)

    def meet_latency(self, target: float, *, slack: float = SPEEDUP_SLACK, rounds: int = 6
                     ) -> dict[str, float]:
        """Closes the loop on a latency budget, the way NetAdapt does: allocate with the model,
        measure the stripped result, recalibrate on it and correct the target the allocation
        aims at (`next_aim`; when an aim gives masks already measured and the budget is
        bracketed, split the bracket's masks instead: `masks_between`), at most `rounds` times
        (ResNet50 at 32×32 on LiteRT int8 went 29 / 78 / 41 / 61 % removed in four rounds for a
        50 % budget). A budget is a ceiling (`latency=0.5`: at most half the time), so the
        loop stops once the measured speed-up is between the budget's and `1 + slack` times it
        (`band`; it aims at the middle). When the allocation has nothing new between the
        bracket's masks, the bracket is split, in halved chunks if need be (the measurement,
        not the block rule, decides: the residual CNN on OpenVINO CPU at a 33 % budget had
        nothing between 30.7 % and 38.3 % removed in blocks of 16). The masks left in place
        are those of `meeting_budget` among the measured ones. Returns `{"measured_ms", "full_ms",
        "removed"}` for them, and `"rounds"`: `[aim, removed]` of every round."""
        latency = self.latency_model()
        full = latency.cache.entries[latency.model_key(self.cost.full())]
        scores = allocation.group_scores(self.model, self.graph, self.criterion)
        align = self.latency_align()
        aim, measured_rounds = target, []
        with warnings.catch_warnings():  # the table's limit at aims past the budget: the
            warnings.filterwarnings("ignore", "Pruning can remove at most")  # verdict is below
            for _ in range(rounds):
                masks = self.allocate_to(scores, aim, Kind.LATENCY)
                between = bracket(measured_rounds, target, slack)
                if between and any(same_masks(masks, r.masks) for r in measured_rounds):
                    # the table gives nothing between the bracket's masks: split their difference
                    masks = split_bracket(between, measured_rounds, scores, align)
                    if masks is None:
                        break  # not a channel left between them
                measured = self.time_masks(masks)
                measured_rounds.append(LatencyRound(aim, 1.0 - measured / full, measured, masks))
                if band_side(measured_rounds[-1].removed, target, slack) == 0:
                    break
                aim = next_aim(measured_rounds, target, slack)
        kept = meeting_budget(measured_rounds, target)
        if kept.removed < target:
            warnings.warn(
                f"The latency budget is not met on {self.runtime}: the closest model measured "
                f"removes {kept.removed:.0%} of the time, not {target:.0%} (the rest is "
                f"per-inference time and layers where fewer channels are not faster). It is "
                f"kept; a budget of at most {kept.removed:.0%} can be met.", stacklevel=2)
        self._write(kept.masks)
        if self.zero_masked:
            for w in self.wrappers:
                w.zero_masked_weights(sides=("out",))
        return {"measured_ms": kept.ms, "full_ms": full, "removed": kept.removed,
                "rounds": [[r.aim, r.removed] for r in measured_rounds]}

    def _allocate(self, scores, rate: float) -> dict[int, np.ndarray]:
        return allocation.allocate(scores, rate, scope=self.scope, align=self.align,
                                   max_group_rate=self.max_group_rate)

    def _keep(self, masks: dict[int, np.ndarray]) -> np.ndarray:
        keep = self.cost.full()
        for gid in self._removable:
            keep[self.graph.groups[gid].channels[masks[gid] == 0]] = False
        return keep

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

    def stats(self, keep: np.ndarray | None = None) -> dict[str, float | int]:
        """Masked channel rate, and params / MACs the stripped model would have (and removed)."""
        if keep is None:
            keep = self.cost.keep_from_masks(self.model)
        totals = self.cost.totals(keep)
        rate = 1.0 - float(keep[self._prunable].mean()) if len(self._prunable) else 0.0
        out = {"prune_rate": rate, "prune_params": int(totals["params"]),
               "prune_macs": int(totals["macs"])}
        for kind, metric in COST_METRIC.items():
            out[f"prune_{kind.value}_removed"] = 1.0 - totals[metric] / max(self.full[metric], 1)
        out["prune_int8_bytes"] = int(totals["int8_param_bytes"])
        out["prune_int8_bytes_removed"] = 1.0 - totals["int8_param_bytes"] / max(
            self.full["int8_param_bytes"], 1)
        if self.runtime is not None:  # predicted by the measured table, calibrated
            latency = self.latency_model()
            full = latency.predict(self.cost.full())
            out["prune_latency_removed"] = 1.0 - latency.predict(keep) / max(full, 1e-12)
        return out

    def masks(self) -> dict[int, np.ndarray]:
        """The current mask of every prunable group (to tell whether an update changed any)."""
        return {g.id: group_mask(self.model, g) for g in self.graph.groups if g.prunable}

    def read_step(self) -> int:
        return self.read_step_of(self.model)

    @staticmethod
    def read_step_of(model: keras.Model) -> int:
        """The pruning step (batches trained under FuPruner) saved in `model`'s wrappers."""
        found = wrappers(model)
        return int(keras.ops.convert_to_numpy(found[0].pruning_step)) if found else 0

    def write_step(self, step: int) -> None:
        for w in self.wrappers:
            w.pruning_step.assign(np.int64(step))


def rate_for_macs(model: keras.Model, macs_removed: float, *, align: int | None = None,
                  scope: str = "layer", criterion: str = "l2", allow_unknown: bool = False,
                  input_shape=None) -> float:
    """The channel rate at which the stripped model has `macs_removed` (a fraction) fewer MACs.

    A bisection over the rate, on a wrapped copy of `model` (not modified), with the same
    allocation FuPruner will use (`budget.solve_rate`: with `align`, the middle of the MAC step
    nearest the budget). `prune(..., macs=0.5)` does this at every update during `fit`; use this
    function to turn a compute budget into a fixed `rate=`.

    Example:
        >>> rate = rate_for_macs(model, 0.5)            # about 0.3 for a plain CNN
        >>> masked = tfm_fuse.prune(model, method="fupruner", rate=rate, scope="layer")
    """
    check_fraction(macs_removed, "macs_removed")
    updater = MaskUpdater(wrap(model, allow_unknown=allow_unknown), criterion=criterion,
                          scope=scope, align=align, zero_masked=False,
                          allow_unknown=allow_unknown, input_shape=input_shape)
    scores = allocation.group_scores(updater.model, updater.graph, updater.criterion)
    return updater.rate_for(scores, macs_removed, Kind.MACS)


class LatencyRound(NamedTuple):
    """One round of `MaskUpdater.meet_latency`: the allocation's target, the measured fraction
    of latency removed, the measured ms and the masks."""
    aim: float
    removed: float
    ms: float | None = None
    masks: dict | None = None


def meeting_budget(rounds: list[LatencyRound], target: float) -> LatencyRound:
    """Of the measured rounds, the one that removes at least `target` with the least removed
    (the most channels kept within the budget); if none does, the one nearest it.

    Example:
        >>> [meeting_budget([LatencyRound(.5, r) for r in removed], .5).removed
        ...  for removed in ((.48, .53, .51), (.45, .48))]
        [0.51, 0.48]
    """
    meeting = [r for r in rounds if r.removed >= target]
    return min(meeting, key=lambda r: r.removed) if meeting else \
        max(rounds, key=lambda r: r.removed)


def bracket(rounds: list[LatencyRound], target: float, slack: float
            ) -> tuple[LatencyRound, LatencyRound] | None:
    """The tightest measured rounds below and above the loop's `band`, (ties: the one of the
    tighter aim), or None while all fall on one side."""
    below = [r for r in rounds if band_side(r.removed, target, slack) < 0]
    above = [r for r in rounds if band_side(r.removed, target, slack) > 0]
    if not (below and above):
        return None
    return (max(below, key=lambda r: (r.removed, r.aim)),
            min(above, key=lambda r: (r.removed, r.aim)))


def same_masks(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[g], b[g]) for g in a)


def masks_between(low: dict[int, np.ndarray], high: dict[int, np.ndarray],
                  scores: dict[int, np.ndarray], align: int | None) -> dict[int, np.ndarray]:
    """Masks halfway from `low` (fewer channels pruned) to `high`: of the channels `high` prunes
    and `low` keeps, taken in chunks of `align` per group (most important first within a
    group), the more important half of the chunks (by mean score over the group's mean) are
    kept: counts stay multiples of `align` above `high`'s. The latency loop's step when the
    table maps every aim between two measured rounds to one of them: on the residual CNN with
    OpenVINO CPU, aims 0.500 → 25.7 % removed and every aim from 0.528 → 56.4-60 %, for a
    budget of 50 %.

    Example:
        >>> low = {0: np.ones(4)}; high = {0: np.array([1., 0., 0., 0.])}
        >>> masks_between(low, high, {0: np.array([4., 3., 2., 1.])}, 1)[0]
        array([1., 1., 0., 0.])
    """
    size = max(1, align or 1)
    chunks = []  # (importance, group, channel indices)
    for g, mask in high.items():
        dropped = np.flatnonzero((low[g] > 0) & (mask == 0))
        if not len(dropped):
            continue
        dropped = dropped[np.argsort(-scores[g][dropped], kind="stable")]  # most important first
        mean = float(np.mean(scores[g])) or 1.0
        for start in range(0, len(dropped), size):
            part = dropped[start:start + size]
            chunks.append((float(np.mean(scores[g][part])) / mean, g, part))
    chunks.sort(key=lambda c: -c[0])
    masks = {g: m.copy() for g, m in high.items()}
    for _, g, part in chunks[:len(chunks) // 2]:
        masks[g][part] = 1.0
    return masks


def split_bracket(between: tuple[LatencyRound, LatencyRound], measured: list[LatencyRound],
                  scores: dict[int, np.ndarray], align: int) -> dict[int, np.ndarray] | None:
    """`masks_between` the bracket's masks in chunks of `align`, halved until the masks are
    new among the `measured` rounds' (None when even single channels give none)."""
    size = max(1, align)
    while True:
        masks = masks_between(between[0].masks, between[1].masks, scores, size)
        if not any(same_masks(masks, r.masks) for r in measured):
            return masks
        if size == 1:
            return None
        size //= 2


def band(target: float, slack: float) -> tuple[float, float]:
    """The fractions of latency removed the latency loop accepts for a budget of `target`: at
    least `target`, at most where the speed-up is `1 + slack` times the budget's (the issue's
    "hits the budget within 5 %"). A band of fixed width is wider than that at small budgets.

    Example:
        >>> [round(x, 4) for x in band(0.5, 0.05)], [round(x, 4) for x in band(0.33, 0.05)]
        ([0.5, 0.5238], [0.33, 0.3619])
    """
    return target, 1.0 - (1.0 - target) / (1.0 + slack)


def band_side(removed: float, target: float, slack: float) -> int:
    """-1 below the latency loop's `band`, 0 in it, 1 above."""
    low, high = band(target, slack)
    return -1 if removed < low else (1 if removed > high else 0)


def next_aim(rounds: list[LatencyRound], target: float, slack: float) -> float:
    """The allocation target for the next round of the latency loop, from the rounds so far,
    aiming at the middle of its `band`. Once rounds fell on both sides of the band, interpolate
    between the tightest two (regula falsi), or bisect their aims when the last two rounds fell
    on the same side or noise made them non-monotonic (regula falsi alone can keep one end
    fixed and repeat itself); before that, move the last aim by the last miss. Measured on
    MobileNetV2 with LiteRT int8 (an AMX Xeon), the measured fraction moved 2.3× as fast as the
    aim, and moving by the miss alone went from 0.364 (40.6 % removed) back to 0.278, below the
    0.3 that had already removed too little.
    On the residual CNN with OpenVINO CPU, aims 0.708 and 0.672 gave the same masks (56.4 %)
    and interpolating from the first of them gave 0.672 four times over.

    Example:
        >>> round(next_aim([LatencyRound(0.3, 0.256), LatencyRound(0.364, 0.406)], 0.3, 0.05), 3)
        0.326
    """
    centre = float(np.mean(band(target, slack)))

    def side(r: LatencyRound) -> int:
        return band_side(r.removed, target, slack)

    between = bracket(rounds, target, slack)
    if between:
        low, high = between
        same_side = len(rounds) >= 2 and side(rounds[-1]) == side(rounds[-2])
        if high.aim > low.aim and not same_side:
            return float(low.aim + (centre - low.removed) * (high.aim - low.aim)
                         / (high.removed - low.removed))
        return float((low.aim + high.aim) / 2)
    return float(np.clip(rounds[-1].aim + centre - rounds[-1].removed, 0.0, 0.95))

