"""`FuPruner`: fusion-catalyzed dynamic filter pruning during `fit`, with an accuracy requirement.

The callback orchestrates; the mask math is `tfm_fuse.pruning.updater.MaskUpdater`. With no
schedule given it derives one from `fit`'s length: no pruning for the first 20 % of the steps
(or the guard's reference epochs), a gradual ramp to the budget `prune()` was given until halfway
through the rest, then masks fixed while the model recovers. Every mask change restarts the
BatchNorm moving statistics (`pruning.batchnorm.StatisticsRestart`), so the model is right in
inference mode — the mode it is validated and deployed in — a few batches after each change.

Logs, kept short for the progress bar: after every batch one entry, the fraction of the budget's
own cost removed so far (`prune_macs_removed` for `macs=`; `prune_rate` for `rate=`); after every
epoch the fractions `prune_rate`, `prune_macs_removed`, `prune_params_removed`,
`prune_memory_removed` and the controls `prune_target`, `prune_backoff` (`CSVLogger` and
`TensorBoard` record them when they come after `FuPruner`). The stripped model's absolute
counts are `FuPruner.stats` (integers: `{"prune_macs": 10069813, ...}`).

Example:
    >>> masked = tfm_fuse.prune(model, method="fupruner", macs=0.5)
    >>> masked.fit(x, y, validation_split=0.1, epochs=4, callbacks=[callbacks.FuPruner()])
    >>> small = tfm_fuse.strip(masked)
"""

from __future__ import annotations

import dataclasses
import warnings

import keras
import numpy as np

from tfm_fuse.errors import ConfigError, UnsupportedModelError
from tfm_fuse.graph import functional_view
from tfm_fuse.pruning import allocation, criteria
from tfm_fuse.pruning.batchnorm import StatisticsRestart
from tfm_fuse.pruning.budget import Kind
from tfm_fuse.pruning.updater import MaskUpdater, read_options, write_options, wrappers
from tfm_fuse.pruning.guard import AccuracyGuard
from tfm_fuse.pruning.schedules import (PolynomialDecay, Schedule, as_schedule, gradual,
                                        schedule_from_config, schedule_to_config)
from tfm_fuse.validation import check_number, check_positive_int, is_number

WARMUP = 0.2        # fraction of fit's steps before the derived schedule starts pruning
RAMP_SHARE = 0.5    # of the steps after the warm-up: the derived ramp; the rest recovers
UPDATES = 20        # mask updates over the derived schedule's ramp ("auto" update_freq)
# The derived ramp's power: cubic (Zhu & Gupta), and quadratic under the accuracy guard, which
# starts pruning only after its reference epoch: a cubic ramp then applied 96 % of the budget
# within the next epoch, before the guard's first look. Chosen on the validation split of
# benchmarks/fupruner_matrix.py (residual CNN, max_drop=0.01, 3 seeds; lowest val_accuracy of
# epochs 2-4, mean / final): power 3 0.917 / 0.988, power 2 0.945 / 0.989, power 1 0.900 / 0.972;
# a longer ramp (2/3 of the rest, power 3) 0.764 / 0.986.
RAMP_POWER, GUARDED_RAMP_POWER = 3.0, 2.0
MIN_RECOVERY = 0.2  # a schedule leaving less than this fraction of fit after its end warns
RATE_SURPRISE = 0.15  # `rate=` removing this much more of the MACs than its value is explained
COUNTS = ("prune_params", "prune_macs", "prune_int8_bytes")  # integers: in `stats`, not logs
# logged only under their own budget: the Edge TPU's bytes, the latency measured on a runtime
OWN_BUDGET_ONLY = {"prune_int8_bytes_removed": Kind.INT8_BYTES,
                   "prune_latency_removed": Kind.LATENCY}


class FuPruner(keras.callbacks.Callback):
    """Prune filters during `fit` towards the budget of `prune()`, under an optional requirement.

    Args:
        schedule: `None` (derived from `fit`'s length, see the module docstring), a final
            budget value (same derived timing, in the budget's unit: `prune(macs=0.5)` makes
            `FuPruner(0.4)` remove 40 % of MACs), or a `tfm_fuse.pruning.schedules.Schedule` /
            tfmot `PruningSchedule` with its own timing. Defaults to `None`.
        criterion: `"l1"`, `"l2"` or `"fused"`. Defaults to the model's `prune()` options.
        scope: `"global"` or `"layer"`. Defaults to the model's `prune()` options.
        align: keep a multiple of this many channels per group. Defaults likewise.
        update_freq: `"auto"` (about 20 updates over the schedule's ramp), `"epoch"`, or a
            number of batches between updates. Defaults to `"auto"`.
        max_drop: allowed drop of `monitor` below the reference; `None` disables the guard.
            Defaults to `None`.
        baseline: the reference value; `None` takes the best `monitor` of the epochs before
            the first mask change (the derived schedule waits `reference_epochs` for them).
            Defaults to `None`.
        monitor: the metric the guard watches. Validation metrics are computed by `fit` in
            inference mode with the masks in place. Defaults to `"val_accuracy"`.
        mode: `"max"`, `"min"`, or `"auto"` (from the metric, as `EarlyStopping` does).
            Defaults to `"auto"`.
        reference_epochs: see `baseline`. Defaults to `1`.
        backoff: budget taken off the schedule each epoch the requirement is broken, and given
            back each epoch it holds. Defaults to `0.05`.
        max_group_rate: at most this fraction of one group is masked. Defaults to `0.9`.
        verbose: print each update and each decision of the guard. Defaults to `0`.

    Raises:
        ConfigError: a bad option (at construction), a guard on a metric `fit` does not log
            (at the first epoch's end), or a derived schedule on data of unknown length.
        UnsupportedModelError: a model without `PruneWrapper`s or a tf_keras (Keras 2) model.
    """

    def __init__(self, schedule=None, *, criterion: str | None = None, scope: str | None = None,
                 align: int | None = None, update_freq: str | int = "auto",
                 max_drop: float | None = None, baseline: float | None = None,
                 monitor: str = "val_accuracy", mode: str = "auto", reference_epochs: int = 1,
                 backoff: float = 0.05, max_group_rate: float = 0.9, verbose: int = 0):
        super().__init__()
        self.final = None if not is_number(schedule) else check_number(schedule, "schedule",
                                                                       high=0.99)
        self.schedule: Schedule | None = None if schedule is None or self.final is not None \
            else as_schedule(schedule)
        if criterion is not None:
            criteria.get(criterion)
        if scope is not None:
            allocation.parse_scope(scope)
        self.criterion, self.scope, self.align = criterion, scope, allocation.check_align(align)
        if update_freq not in ("auto", "epoch"):
            update_freq = check_positive_int(update_freq, "update_freq")
        self.update_freq = update_freq
        self.guard = None if max_drop is None else AccuracyGuard(
            max_drop=max_drop, baseline=baseline, monitor=monitor, mode=mode, backoff=backoff)
        self.reference_epochs = check_positive_int(reference_epochs, "reference_epochs")
        self.max_group_rate = check_number(max_group_rate, "max_group_rate", high=1.0,
                                           low_open=True)
        self.verbose = verbose

    # --- training hooks --------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        _check_model(self.model)
        options = read_options(self.model)
        self.step = MaskUpdater.read_step_of(self.model)
        self.budget = options.budget if self.final is None else options.budget.with_value(self.final)
        self._schedule, self._freq = self._resolve_schedule(options)
        self._updater = MaskUpdater(
            self.model, criterion=self.criterion or options.criterion,
            scope=self.scope or options.scope,
            align=self.align if self.align is not None else options.align,
            max_group_rate=self.max_group_rate, allow_unknown=options.allow_unknown,
            input_shape=options.input_shape, runtime=options.runtime)
        self._options = dataclasses.replace(
            options, budget=self.budget, schedule=schedule_to_config(self._schedule),
            update_freq=self._freq, criterion=self._updater.criterion_name,
            scope=self._updater.scope.value, align=self._updater.align)
        write_options(self.model, self._options)
        # Restart at the start too: with Keras's default momentum (0.99; 0.999 in
        # keras.applications) the moving statistics of a young network still describe its
        # initialisation for hundreds of batches, so the guard's reference epoch would measure a
        # model at chance in inference mode (MobileNetV2: 0.09 after one epoch, 0.68 with this).
        self._restart = StatisticsRestart(self.model)
        self._restart.restart()
        self.penalty, self.target, self.epochs_seen = 0.0, 0.0, 0
        self._pending = self._epoch_start = False
        self._measured_end = False
        end = getattr(self._schedule, "end_step", -1)
        self._reached_end = end not in (None, -1) and self.step > end  # resumed after the end
        self.changed_at: int | None = None
        self._stats = self._updater.stats()
        self.pruning_started = self._stats["prune_rate"] > 0
        if self.guard is not None:
            self.guard.reset(self.model, reference_allowed=not self.pruning_started,
                             reference=options.reference)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = True
        if self.epochs_seen == 0 and epoch and _fit_steps(self.params):  # fit(initial_epoch=)
            self._fit_end = self.step + (int(self.params["epochs"]) - epoch) * int(self.params["steps"])

    def on_train_batch_begin(self, batch, logs=None):
        # Masks change only here, before a batch trains: that batch restarts the BatchNorm
        # statistics, so no evaluation (validation, the end of fit) ever sees stale ones.
        due = self._pending or (self._due() and (self._freq != "epoch" or self._epoch_start))
        self._epoch_start = self._pending = False
        if due and self.step < self._fit_end:
            self._update()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        self._restart.after_batch()
        self._updater.write_step(self.step)  # a checkpoint saved at any batch resumes exactly
        if logs is not None:
            key = "prune_rate" if self.budget.kind is Kind.RATE else \
                f"prune_{self.budget.kind.value}_removed"
            logs[key] = self._stats[key]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        self.epochs_seen += 1
        if self.guard is not None:
            penalty = self.guard.observe(logs, epoch, reference=not self.pruning_started,
                                         penalty=self.penalty)
            if self.step <= self._freeze:
                # act at the next batch: the next epoch trains under the new target
                self._pending = penalty != self.penalty and self.pruning_started
                self.penalty = penalty
            if self.guard.reference != self._options.reference:  # saved for a resumed fit
                self._options = dataclasses.replace(self._options, reference=self.guard.reference)
                write_options(self.model, self._options)
        logs.update({k: v for k, v in self._stats.items() if k not in COUNTS
                     and OWN_BUDGET_ONLY.get(k, self.budget.kind) is self.budget.kind},
                    prune_target=self.target, prune_backoff=self.penalty)

    def on_train_end(self, logs=None):
        self._updater.write_step(self.step)
        if not self.pruning_started:
            begin = getattr(self._schedule, "begin_step", 0)
            warnings.warn(
                f"FuPruner: fit ended at step {self.step} before any channel was masked (the "
                f"schedule starts at step {begin}); the model is not pruned. Train for more "
                "epochs, or give a schedule that starts earlier.", stacklevel=2)
        else:
            if self.guard is not None:
                self.guard.conclude(self.budget, self._stats, verbose=self.verbose)
            self._explain_channel_rate()

    def _explain_channel_rate(self) -> None:
        """`rate=` counts channels; a layer loses compute on both its sides, so `rate=0.5`
        removes 48-80 % of MACs. Say so when it removed far more than the number suggests."""
        removed = self._stats.get("prune_macs_removed", 0.0)
        if self.budget.kind is Kind.RATE and removed > self.budget.value + RATE_SURPRISE:
            warnings.warn(
                f"FuPruner: rate={self.budget.value:g} is a fraction of channels; it removed "
                f"{removed:.0%} of the MACs (a layer loses channels on its input and its output). "
                f"For a compute budget, ask for it: prune(model, method='fupruner', "
                f"macs={self.budget.value:g}).", stacklevel=2)

    @property
    def stats(self) -> dict:
        """What the masks in place remove, and the stripped model's parameter and MAC counts."""
        return dict(self._stats)

    # --- internals -------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """The schedule has ended (and the guard holds nothing back, or may no longer act):
        masks stay as they are while the model fine-tunes."""
        end = getattr(self._schedule, "end_step", -1)
        past_end = end not in (None, -1) and self.step > end and self._reached_end
        return past_end and (self.penalty == 0 or self.step > self._freeze)

    def _due(self) -> bool:
        begin = getattr(self._schedule, "begin_step", 0)
        if self.finished or self.step < begin:
            return False
        if self.guard is not None and not self.guard.ready(self.pruning_started):
            return False  # the guard still needs its reference epochs
        if self._freq == "epoch":
            return True
        end = getattr(self._schedule, "end_step", -1)
        return (self.step - begin) % self._freq == 0 or self.step == end

    def _update(self) -> None:
        before = self._updater.masks()
        end = getattr(self._schedule, "end_step", -1)
        self._reached_end = self._reached_end or (end not in (None, -1) and self.step >= end)
        self.target = max(0.0, self._schedule(self.step) - self.penalty)
        if self.budget.kind is Kind.LATENCY and self._reached_end and not self._measured_end:
            # at the budget: close the loop on the measured stripped model once (NetAdapt);
            # later updates use the table, recalibrated near this point
            self._measured_end = True
            self._updater.meet_latency(self.target)
            self._stats = self._updater.stats()
        else:
            self._stats = self._updater.update(self.target, self.budget.kind)
        after = self._updater.masks()
        if any(not np.array_equal(before[g], after[g]) for g in after):
            self.changed_at, self.pruning_started = self.step, True
            self._restart.restart()
        if self.verbose:
            print(f"\nFuPruner step {self.step}: target {self.target:.3f} ({self.budget.kind.value}"
                  f"), channels masked {self._stats['prune_rate']:.3f}, MACs removed "
                  f"{self._stats['prune_macs_removed']:.3f}")

    def _resolve_schedule(self, options) -> tuple[Schedule, int | str]:
        """The schedule and update frequency of this `fit`: the user's, the saved one, or derived."""
        total = _fit_steps(self.params)
        self._fit_end = self.step + total if total else np.iinfo(np.int64).max
        saved = schedule_from_config(options.schedule) if self.final is None else None
        schedule = self.schedule or saved
        if schedule is None:
            if not total:
                raise ConfigError(
                    "FuPruner derives its schedule from fit's length, which is unknown here (a "
                    "dataset without a known size). Pass steps_per_epoch= to fit(), or a "
                    "schedule, e.g. FuPruner(PolynomialDecay(0.0, 0.5, begin_step=0, "
                    "end_step=1000)).")
            warmup = round(WARMUP * total)
            if self.guard is not None and self.guard.baseline is None:
                warmup = max(warmup, self.reference_epochs * int(self.params["steps"]))
                if warmup >= total:
                    raise ConfigError(
                        f"FuPruner(max_drop={self.guard.max_drop}) measures its reference over "
                        f"the first {self.reference_epochs} epoch(s) before pruning, but this "
                        f"fit has {self.params['epochs']}. Train for more epochs, or give the "
                        "reference as baseline=.")
            schedule = gradual(self.budget.value, begin_step=self.step + warmup,
                               fit_end_step=self._fit_end, ramp_share=RAMP_SHARE,
                               power=RAMP_POWER if self.guard is None else GUARDED_RAMP_POWER)
            if self.update_freq == "epoch":
                schedule = self._on_epoch_starts(schedule)
        freq = self.update_freq
        if freq == "auto":
            freq = options.update_freq if saved is not None and options.update_freq else None
            end = getattr(schedule, "end_step", -1)
            if freq is None:
                span = end - getattr(schedule, "begin_step", 0) if end not in (None, -1) else 0
                freq = max(1, round(span / UPDATES)) if span > 0 else "epoch"
        self._warn_without_recovery(schedule, total)
        return schedule, freq

    def _on_epoch_starts(self, schedule: PolynomialDecay) -> PolynomialDecay:
        """The derived ramp with its ends moved back to epoch starts, where per-epoch updates
        happen: the last update then lands on the ramp's end and the masks stay fixed after it
        (with an end inside an epoch, the final target came one epoch later and re-ranked every
        channel one epoch before fit ended: 4.05 points lost on the residual CNN)."""
        steps = int(self.params["steps"])
        begin = self.step + (schedule.begin_step - self.step) // steps * steps
        end = self.step + (schedule.end_step - self.step) // steps * steps
        return PolynomialDecay(schedule.initial_rate, schedule.final_rate, begin_step=begin,
                               end_step=max(end, begin + steps), power=schedule.power)

    @property
    def _freeze(self) -> int:
        """The last step at which the guard may still change masks: halfway from the
        schedule's end to the end of fit, so that the rest of fit recovers from it."""
        end = getattr(self._schedule, "end_step", -1)
        last = end if end not in (None, -1) else self._fit_end
        return last + max(0, self._fit_end - last) // 2

    def _warn_without_recovery(self, schedule, total: int | None) -> None:
        if not total:
            return
        end = getattr(schedule, "end_step", -1)
        left = (self._fit_end - end) if end not in (None, -1) else 0
        if end in (None, -1) or left < MIN_RECOVERY * total:
            warnings.warn(
                f"FuPruner: the schedule {schedule!r} changes masks until "
                f"{'the end of fit' if end in (None, -1) else f'step {end}'}, leaving "
                f"{max(left, 0)} of this fit's {total} steps to recover (fewer than "
                f"{MIN_RECOVERY:.0%}): the model may end fit below its accuracy. Give the "
                "schedule an end_step well before the last step, or let FuPruner() derive one.",
                stacklevel=2)


def _fit_steps(params: dict | None) -> int | None:
    params = params or {}
    if params.get("epochs") and params.get("steps"):
        return int(params["epochs"]) * int(params["steps"])
    return None


def _check_model(model) -> None:
    functional_view(model)  # raises UnsupportedModelError for tf_keras / subclassed models
    if not wrappers(model):
        raise UnsupportedModelError(
            f"Model '{model.name}' holds no PruneWrapper: FuPruner needs the model returned by "
            "tfm_fuse.prune(model, method='fupruner') (or tfm_fuse.wrap(model)).")
