"""`FuPruner`: fusion-catalyzed dynamic filter pruning during `fit`, with an accuracy requirement.

The callback orchestrates; the mask math is `tfm_fuse.pruning.fupruner.MaskUpdater`. Every
`update_freq` (epochs, or batches when an integer) it asks the schedule for a rate, lowers it by
the accuracy guard's back-off, and re-masks the model (soft filter pruning: masked filters are
zeroed but keep training and may come back). The pruning step (batches seen) is written into the
wrappers, so `model.save` → `keras.models.load_model` → `fit` resumes where it stopped.

It adds `prune_rate`, `prune_target`, `prune_params`, `prune_macs`, `prune_macs_removed` (of the
would-be-stripped model) to the logs: the progress bar, `CSVLogger` and `TensorBoard` show them
when they come after `FuPruner` in the callbacks list.

Example:
    >>> masked = tfm_fuse.prune(model, method="fupruner", rate=0.5, align=8)
    >>> masked.fit(x, y, validation_data=(xv, yv), epochs=10,
    ...            callbacks=[callbacks.FuPruner(PolynomialDecay(0.0, 0.5, 0, 500), max_drop=0.01)])
    >>> small = tfm_fuse.strip(masked)
"""

from __future__ import annotations

import inspect

import keras

from tfm_fuse.errors import ConfigError, UnsupportedModelError
from tfm_fuse.graph import functional_view
from tfm_fuse.pruning import allocation, criteria
from tfm_fuse.pruning.fupruner import MaskUpdater, defaults_for, wrappers
from tfm_fuse.pruning.schedules import Schedule, as_schedule


class FuPruner(keras.callbacks.Callback):
    """Prune filters during `fit` following a schedule, under an optional accuracy requirement.

    Args:
        schedule: a rate in [0, 1), a `tfm_fuse.pruning.schedules.Schedule`, or a tfmot
            `PruningSchedule` (sparsity read as channel rate). Defaults to the `rate` given to
            `tfm_fuse.prune(method="fupruner")`, else `0.5`.
        criterion: `"l1"`, `"l2"` or `"fused"` (filter norm × folded BN scale). Defaults to the
            model's `prune()` options, else `"fused"`.
        scope: `"global"` (one ranking over all layers) or `"layer"`. Defaults likewise, else
            `"global"`.
        align: keep a multiple of this many channels per group. Defaults likewise, else `None`.
        update_freq: `"epoch"`, or an integer number of batches between updates.
            Defaults to `"epoch"`.
        max_drop: allowed drop of `monitor` against the reference; `None` disables the guard.
            Defaults to `None`.
        baseline: the reference value; `None` takes the best `monitor` of the first
            `reference_epochs` epochs, during which masks are not updated. Defaults to `None`.
        monitor: the metric the guard watches. Defaults to `"val_accuracy"`.
        reference_epochs: see `baseline`. Defaults to `1`.
        backoff: rate removed from the schedule's each epoch the drop is exceeded, and given
            back each epoch it is not. Defaults to `0.05`.
        max_group_rate: at most this fraction of one group is masked. Defaults to `0.9`.
        verbose: print each update. Defaults to `0`.

    Raises:
        ConfigError: a bad option (at construction) or an accuracy requirement on a validation
            metric without validation data (in `on_train_begin`, before the first epoch).
        UnsupportedModelError: a model without `PruneWrapper`s or a tf_keras (Keras 2) model.
    """

    def __init__(self, schedule=None, *, criterion: str | None = None, scope: str | None = None,
                 align: int | None = None, update_freq: str | int = "epoch",
                 max_drop: float | None = None, baseline: float | None = None,
                 monitor: str = "val_accuracy", reference_epochs: int = 1, backoff: float = 0.05,
                 max_group_rate: float = 0.9, verbose: int = 0):
        super().__init__()
        self.schedule: Schedule | None = None if schedule is None else as_schedule(schedule)
        if criterion is not None:
            criteria.get(criterion)
        if scope is not None:
            allocation.parse_scope(scope)
        self.criterion, self.scope, self.align = criterion, scope, allocation.check_align(align)
        if update_freq != "epoch" and (isinstance(update_freq, bool) or not isinstance(update_freq, int)
                                       or update_freq < 1):
            raise ConfigError("`update_freq` must be 'epoch' or a positive number of batches. "
                              f"Received: update_freq={update_freq!r}")
        self.update_freq = update_freq
        if max_drop is not None and (not isinstance(max_drop, (int, float)) or max_drop < 0):
            raise ConfigError(f"`max_drop` must be a number >= 0 or None. Received: max_drop={max_drop!r}")
        if not isinstance(reference_epochs, int) or reference_epochs < 1:
            raise ConfigError("`reference_epochs` must be a positive integer. "
                              f"Received: reference_epochs={reference_epochs!r}")
        if not isinstance(backoff, (int, float)) or not 0 < backoff <= 1:
            raise ConfigError(f"`backoff` must be in (0, 1]. Received: backoff={backoff!r}")
        if not 0 < max_group_rate <= 1:
            raise ConfigError(f"`max_group_rate` must be in (0, 1]. Received: {max_group_rate!r}")
        self.max_drop, self.baseline, self.monitor = max_drop, baseline, monitor
        self.reference_epochs, self.backoff = reference_epochs, float(backoff)
        self.max_group_rate, self.verbose = max_group_rate, verbose

    # --- training hooks --------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        model = self.model
        _check_model(model)
        defaults = defaults_for(model)
        self._schedule = self.schedule or as_schedule(defaults.rate)
        self._updater = MaskUpdater(
            model, criterion=self.criterion or defaults.criterion, scope=self.scope or defaults.scope,
            align=self.align if self.align is not None else defaults.align,
            max_group_rate=self.max_group_rate)
        if self.max_drop is not None and self.baseline is None and self.monitor.startswith("val_") \
                and _fit_has_validation() is False:
            raise ConfigError(
                f"FuPruner(max_drop={self.max_drop}) watches '{self.monitor}', but fit() got no "
                "validation data. Pass validation_data= or validation_split= to fit(), a "
                "baseline= value, or a training metric as monitor=.")
        self.step = self._updater.read_step()
        self.penalty = 0.0
        self.reference = self.baseline
        self.epochs_seen = 0
        self.target = 0.0
        end = getattr(self._schedule, "end_step", -1)
        self.finished = end not in (None, -1) and self.step >= end  # resumed after the end
        self._stats = self._updater.stats()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.update_freq != "epoch" and self.step % self.update_freq == 0 and self._may_update():
            self._update()
        if logs is not None:
            logs.update(self._stats)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        self.epochs_seen += 1
        self._guard(logs)
        if self.update_freq == "epoch" and self._may_update():
            self._update()
        self._updater.write_step(self.step)
        logs.update(self._stats, prune_target=self.target, prune_backoff=self.penalty)

    def on_train_end(self, logs=None):
        self._updater.write_step(self.step)

    # --- internals -------------------------------------------------------------------------
    def _may_update(self) -> bool:
        if self.finished:  # the schedule has ended: masks stay, the model fine-tunes
            return False
        return (self.max_drop is None or self.baseline is not None
                or self.epochs_seen >= self.reference_epochs)

    def _update(self) -> None:
        self.target = max(0.0, self._schedule(self.step) - self.penalty)
        self._stats = self._updater.update(self.target)
        end = getattr(self._schedule, "end_step", -1)
        # finished once the schedule's final rate is in place (not while the guard holds it back)
        self.finished = end not in (None, -1) and self.step >= end and self.penalty == 0
        if self.verbose:
            print(f"\nFuPruner step {self.step}: target rate {self.target:.3f}, masked "
                  f"{self._stats['prune_rate']:.3f}, MACs removed {self._stats['prune_macs_removed']:.3f}")

    def _guard(self, logs: dict) -> None:
        if self.max_drop is None:
            return
        if self.monitor not in logs:
            if self.monitor.startswith("val_") and not any(k.startswith("val_") for k in logs):
                return  # validation did not run this epoch (validation_freq > 1)
            raise ConfigError(f"FuPruner watches '{self.monitor}', which the logs do not hold. "
                              f"Available: {sorted(logs)}")
        value = float(logs[self.monitor])
        sign = -1.0 if "loss" in self.monitor else 1.0
        if self.baseline is None and self.epochs_seen <= self.reference_epochs:
            best = self.reference
            self.reference = value if best is None else sign * max(sign * best, sign * value)
            return
        drop = sign * (self.reference - value)
        if drop > self.max_drop:
            self.penalty = min(1.0, self.penalty + self.backoff)
        else:
            self.penalty = max(0.0, self.penalty - self.backoff)


def _check_model(model) -> None:
    functional_view(model)  # raises UnsupportedModelError for tf_keras / subclassed models
    if not wrappers(model):
        raise UnsupportedModelError(
            f"Model '{model.name}' holds no PruneWrapper: FuPruner needs the model returned by "
            "tfm_fuse.prune(model, method='fupruner') (or tfm_fuse.wrap(model)).")


def _fit_has_validation() -> bool | None:
    """Whether the `fit` running this callback got validation data; `None` if unknown."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            if frame.f_code.co_name == "fit" and "validation_data" in frame.f_locals:
                local = frame.f_locals
                return local["validation_data"] is not None or bool(local.get("validation_split"))
            frame = frame.f_back
        return None
    finally:
        del frame
