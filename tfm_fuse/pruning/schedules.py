"""Pruning schedules: pure, serializable callables `step -> rate` (fraction of channels to mask).

`step` counts training batches, like tensorflow-model-optimization's schedules, so a schedule
written for tfmot keeps its meaning. `as_schedule` also accepts a float (a constant rate) and
tfmot `PruningSchedule` objects (duck-typed: tfmot is never imported here).

Example:
    >>> s = PolynomialDecay(0.0, 0.5, begin_step=0, end_step=100)
    >>> round(s(50), 4)
    0.4375
    >>> PolynomialDecay.from_config(s.get_config())(50) == s(50)
    True
"""

from __future__ import annotations

import numbers
from typing import Any

import keras
import numpy as np

from tfm_fuse.errors import ConfigError
from tfm_fuse.validation import check_fraction, is_number


def _check_rate(value: Any, name: str) -> float:
    return check_fraction(value, name)


def _check_steps(begin_step: int, end_step: int, frequency: int = 1) -> None:
    if not _is_int(begin_step) or begin_step < 0:
        raise ConfigError(f"`begin_step` must be an integer >= 0. Received: begin_step={begin_step!r}")
    if end_step != -1 and (not _is_int(end_step) or end_step < begin_step):
        raise ConfigError(
            f"The schedule ends before it starts: end_step={end_step!r} < begin_step={begin_step}. "
            "Accepted: end_step >= begin_step, or -1 for no end.")
    if not _is_int(frequency) or frequency < 1:
        raise ConfigError(f"`frequency` must be a positive integer. Received: frequency={frequency!r}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class Schedule:
    """Base class: `schedule(step) -> rate`; subclasses implement `rate` and `get_config`."""

    def __call__(self, step: int) -> float:
        return float(self.rate(int(step)))

    def rate(self, step: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict) -> "Schedule":
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()


@keras.saving.register_keras_serializable(package="tfm_fuse")
class Constant(Schedule):
    """`rate` from `begin_step` on, 0 before. The rate holds after `end_step`; FuPruner stops
    moving masks there (-1: never).

    Example:
        >>> Constant(0.5, begin_step=10)(5), Constant(0.5, begin_step=10)(10)
        (0.0, 0.5)
    """

    def __init__(self, rate: float, begin_step: int = 0, end_step: int = -1):
        self.target = _check_rate(rate, "rate")
        _check_steps(begin_step, end_step)
        self.begin_step, self.end_step = int(begin_step), int(end_step)

    def rate(self, step: int) -> float:
        if step < self.begin_step:
            return 0.0
        return self.target

    def get_config(self) -> dict:
        return {"rate": self.target, "begin_step": self.begin_step, "end_step": self.end_step}


@keras.saving.register_keras_serializable(package="tfm_fuse")
class PolynomialDecay(Schedule):
    """From `initial_rate` at `begin_step` to `final_rate` at `end_step`, like tfmot's:
    `final + (initial - final) * (1 - progress) ** power`, held at `final_rate` afterwards
    (FuPruner stops moving masks after `end_step`).

    Example:
        >>> PolynomialDecay(0.0, 0.5, begin_step=0, end_step=100, power=1)(50)
        0.25
    """

    def __init__(self, initial_rate: float, final_rate: float, begin_step: int, end_step: int,
                 power: float = 3.0):
        self.initial_rate = _check_rate(initial_rate, "initial_rate")
        self.final_rate = _check_rate(final_rate, "final_rate")
        if end_step == -1:
            raise ConfigError("PolynomialDecay needs a finite end_step. Received: end_step=-1")
        _check_steps(begin_step, end_step)
        if not isinstance(power, (int, float)) or power <= 0:
            raise ConfigError(f"`power` must be > 0. Received: power={power!r}")
        self.begin_step, self.end_step, self.power = int(begin_step), int(end_step), float(power)

    def rate(self, step: int) -> float:
        if step < self.begin_step:
            return 0.0
        span = max(self.end_step - self.begin_step, 1)
        progress = min(1.0, (step - self.begin_step) / span)
        return self.final_rate + (self.initial_rate - self.final_rate) * (1 - progress) ** self.power

    def get_config(self) -> dict:
        return {"initial_rate": self.initial_rate, "final_rate": self.final_rate,
                "begin_step": self.begin_step, "end_step": self.end_step, "power": self.power}


@keras.saving.register_keras_serializable(package="tfm_fuse")
class Stepwise(Schedule):
    """Piecewise constant: `rates[i]` from `boundaries[i]` on (0 before the first boundary).

    Example:
        >>> s = Stepwise(boundaries=[0, 100, 200], rates=[0.1, 0.3, 0.5])
        >>> s(99), s(100), s(10_000)
        (0.1, 0.3, 0.5)
    """

    def __init__(self, boundaries: list[int], rates: list[float]):
        boundaries, rates = list(boundaries), list(rates)
        if not boundaries or len(boundaries) != len(rates):
            raise ConfigError("Stepwise needs as many boundaries as rates, at least one. Received: "
                              f"boundaries={boundaries}, rates={rates}")
        if any(not _is_int(b) or b < 0 for b in boundaries) or boundaries != sorted(boundaries):
            raise ConfigError("Stepwise boundaries must be increasing integers >= 0. "
                              f"Received: boundaries={boundaries}")
        self.boundaries = [int(b) for b in boundaries]
        self.rates = [_check_rate(r, f"rates[{i}]") for i, r in enumerate(rates)]

    def rate(self, step: int) -> float:
        i = int(np.searchsorted(self.boundaries, step, side="right")) - 1
        return 0.0 if i < 0 else self.rates[i]

    def get_config(self) -> dict:
        return {"boundaries": list(self.boundaries), "rates": list(self.rates)}


class TfmotAdapter(Schedule):
    """Wraps a tfmot `PruningSchedule`: `schedule(step) -> (should_prune, sparsity)`.

    The sparsity is read as the channel rate. tfmot's frequency gate (`should_prune`) is ignored:
    when masks update is decided by the callback's `update_freq`.
    """

    def __init__(self, schedule):
        self.schedule = schedule

    @property
    def end_step(self) -> int:
        return getattr(self.schedule, "end_step", -1)

    def rate(self, step: int) -> float:
        out = self.schedule(np.int64(step))
        sparsity = out[1] if isinstance(out, (tuple, list)) else out
        value = float(keras.ops.convert_to_numpy(sparsity))
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"tfmot schedule {type(self.schedule).__name__} returned sparsity "
                              f"{value} at step {step}; accepted: [0, 1).")
        return value

    def get_config(self) -> dict:
        return {"class_name": type(self.schedule).__name__, "config": self.schedule.get_config()}


def _is_tfmot(obj) -> bool:
    return type(obj).__module__.startswith("tensorflow_model_optimization") or (
        callable(obj) and hasattr(obj, "get_config") and hasattr(obj, "_should_prune_in_step"))


def as_schedule(value) -> Schedule:
    """A `Schedule` from a float (constant rate), a `Schedule`, or a tfmot `PruningSchedule`.

    Raises:
        ConfigError: anything else, or a rate outside [0, 1).
    """
    if isinstance(value, Schedule):
        return value
    if is_number(value):
        return Constant(value)
    if _is_tfmot(value):
        _check_tfmot_steps(value)
        return TfmotAdapter(value)
    raise ConfigError(
        f"Unknown schedule. Received: {value!r} ({type(value).__name__}); accepted: a rate in "
        "[0, 1), a tfm_fuse.pruning.schedules.Schedule, or a tfmot PruningSchedule.")


def _check_tfmot_steps(schedule) -> None:
    begin = getattr(schedule, "begin_step", 0)
    end = getattr(schedule, "end_step", -1)
    if end is not None and end != -1 and end < begin:
        raise ConfigError(f"The schedule ends before it starts: {type(schedule).__name__} with "
                          f"end_step={end} < begin_step={begin}.")


def gradual(final_rate: float, *, begin_step: int, fit_end_step: int,
            ramp_share: float = 0.5, power: float = 3.0) -> PolynomialDecay:
    """The schedule FuPruner derives from `fit`'s length when none is given.

    Pruning ramps up cubically by default (`power`: large steps while the network is redundant,
    small ones near the target, as Zhu & Gupta's gradual pruning) from `begin_step` to halfway
    between it and the last step of `fit`; the masks then stay fixed for the second half, so
    the model recovers its accuracy and BatchNorm its statistics before `fit` ends.

    Example:
        >>> s = gradual(0.5, begin_step=100, fit_end_step=500)
        >>> s.begin_step, s.end_step, s(300)
        (100, 300, 0.5)
    """
    end = begin_step + max(1, int((fit_end_step - begin_step) * ramp_share))
    return PolynomialDecay(0.0, final_rate, begin_step=begin_step, end_step=end, power=power)


SCHEDULES = {cls.__name__: cls for cls in (Constant, PolynomialDecay, Stepwise)}


def schedule_to_config(schedule: Schedule) -> dict | None:
    """`{"class_name", "config"}` for a tfm_fuse schedule; `None` for a tfmot adapter."""
    if type(schedule).__name__ not in SCHEDULES:
        return None
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def schedule_from_config(config: dict | None) -> Schedule | None:
    if not config:
        return None
    return SCHEDULES[config["class_name"]].from_config(config["config"])
