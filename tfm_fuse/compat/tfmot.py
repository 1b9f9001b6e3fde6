"""tfmot's pruning names, on tfm_fuse: the code shape of TensorFlow Model Optimization's pruning
guide runs on a Keras 3 model (tfmot itself refuses Keras 3 models: `prune_low_magnitude can only
prune an object of the following types ...`, its issues #1141 and #1167).

The semantics are structured, not element-wise: a **sparsity is read as the fraction of MACs
removed**, by masking whole channels (the filters of a convolution together with everything
downstream that reads them), so that `strip_pruning` returns a model that is physically smaller
and faster, not a dense model full of zeros. The schedule's steps are training batches, as in
tfmot; `frequency` is the number of batches between mask updates. BatchNorm, padding and
activations are analysed with the convolutions they belong to (FuPruner's fusion-aware groups).

| tfmot | here |
|---|---|
| `prune_low_magnitude(model, pruning_schedule=s)` | `tfm_fuse.prune(model, method="fupruner", macs=s.final)`, `s` saved with the model |
| `UpdatePruningStep()` | `tfm_fuse.callbacks.FuPruner()` (reads the saved schedule) |
| `PruningSummaries(log_dir)` | `keras.callbacks.TensorBoard(log_dir)` (or a CSV file without TensorBoard): FuPruner's `prune_*` logs |
| `strip_pruning(model)` | `tfm_fuse.strip(model)` |
| `PolynomialDecay`, `ConstantSparsity` | `pruning.schedules.PolynomialDecay`, `Constant`, in MAC fractions |

Example (the guide's code, with this import instead of `tensorflow_model_optimization`):
    >>> from tfm_fuse.compat import tfmot
    >>> schedule = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0,
    ...     final_sparsity=0.5, begin_step=0, end_step=end_step)
    >>> model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(model,
    ...     pruning_schedule=schedule)
    >>> model_for_pruning.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    >>> model_for_pruning.fit(x, y, epochs=2, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    >>> model_for_export = tfmot.sparsity.keras.strip_pruning(model_for_pruning)
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import keras

import tfm_fuse
from tfm_fuse.callbacks import FuPruner
from tfm_fuse.errors import ConfigError
from tfm_fuse.pruning import schedules
from tfm_fuse.pruning.updater import read_options, write_options
from tfm_fuse.validation import check_positive_int


class PruningSchedule:
    """A tfmot-style schedule: sparsity (fraction of MACs removed) per training step."""

    def __init__(self, schedule: schedules.Schedule, final: float, frequency: int):
        self.schedule, self.final = schedule, final
        self.frequency = check_positive_int(frequency, "frequency")

    def __call__(self, step: int) -> float:
        return self.schedule(step)


def PolynomialDecay(initial_sparsity: float, final_sparsity: float, begin_step: int,
                    end_step: int, power: float = 3, frequency: int = 100) -> PruningSchedule:
    """tfmot's `PolynomialDecay`, in fractions of MACs removed."""
    return PruningSchedule(schedules.PolynomialDecay(initial_sparsity, final_sparsity, begin_step,
                                                     end_step, power=power),
                           float(final_sparsity), frequency)


def ConstantSparsity(target_sparsity: float, begin_step: int, end_step: int = -1,
                     frequency: int = 100) -> PruningSchedule:
    """tfmot's `ConstantSparsity`, in fractions of MACs removed (masks move from `begin_step`
    to `end_step`; with -1, until `fit` ends — FuPruner warns that no recovery is left)."""
    return PruningSchedule(schedules.Constant(target_sparsity, begin_step, end_step),
                           float(target_sparsity), frequency)


def prune_low_magnitude(to_prune: keras.Model, pruning_schedule: PruningSchedule | None = None,
                        **kwargs) -> keras.Model:
    """A copy of `to_prune` whose prunable layers carry channel masks (all 1 until `fit` runs
    with `UpdatePruningStep()`), with `pruning_schedule` saved in it.

    Raises:
        ConfigError: a tfmot option with no structured meaning (`block_size`,
            `block_pooling_type`, `pruning_policy`, `sparsity_m_by_n`), or a model that is not
            a Keras 3 functional or Sequential model.
    """
    if kwargs:
        raise ConfigError(f"prune_low_magnitude here prunes whole channels; the tfmot options "
                          f"{sorted(kwargs)} describe element-wise sparsity and have no meaning "
                          "for it. Accepted: pruning_schedule only.")
    if not isinstance(to_prune, keras.Model):
        raise ConfigError("prune_low_magnitude accepts a Keras 3 functional or Sequential "
                          f"model. Received: {type(to_prune).__name__}")
    schedule = pruning_schedule or ConstantSparsity(0.5, begin_step=0)
    if not isinstance(schedule, PruningSchedule):
        raise ConfigError("pruning_schedule must come from tfm_fuse.compat.tfmot "
                          "(PolynomialDecay or ConstantSparsity). Received: "
                          f"{type(schedule).__name__}")
    masked = tfm_fuse.prune(to_prune, method="fupruner", macs=schedule.final)
    options = dataclasses.replace(read_options(masked),
                                  schedule=schedules.schedule_to_config(schedule.schedule),
                                  update_freq=schedule.frequency)
    write_options(masked, options)
    return masked


def UpdatePruningStep() -> FuPruner:
    """tfmot's step callback: FuPruner with the schedule saved by `prune_low_magnitude`."""
    return FuPruner()


def PruningSummaries(log_dir: str, update_freq: str = "epoch") -> keras.callbacks.Callback:
    """FuPruner's `prune_*` values logged with the other metrics (put it after
    `UpdatePruningStep()`): TensorBoard scalars when `tensorboard` is installed, else a CSV file
    `log_dir/pruning_summaries.csv` (one row per epoch)."""
    import importlib.util
    from pathlib import Path

    if importlib.util.find_spec("tensorboard") is not None:
        return keras.callbacks.TensorBoard(log_dir=log_dir, update_freq=update_freq)
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    return keras.callbacks.CSVLogger(str(Path(log_dir) / "pruning_summaries.csv"))


def strip_pruning(model: keras.Model) -> keras.Model:
    """The physically smaller model, numerically equal to the masked one."""
    return tfm_fuse.strip(model)


sparsity = SimpleNamespace(keras=SimpleNamespace(
    prune_low_magnitude=prune_low_magnitude, UpdatePruningStep=UpdatePruningStep,
    PruningSummaries=PruningSummaries, strip_pruning=strip_pruning,
    PolynomialDecay=PolynomialDecay, ConstantSparsity=ConstantSparsity))
