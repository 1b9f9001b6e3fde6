"""Checks for option values, shared by every entry point: one wording, numpy numbers accepted.

A value from numpy arithmetic or a config file (`np.float32(0.3)`, `np.int64(8)`) is as good as a
Python number; `bool`, NaN and strings are not numbers here.

Example:
    >>> check_fraction(np.float32(0.3), "rate")
    0.30000001192092896
    >>> check_fraction(1.5, "rate")
    Traceback (most recent call last):
    tfm_fuse.errors.ConfigError: `rate` must be a number in [0, 1). Received: rate=1.5
"""

from __future__ import annotations

import math
import numbers

from tfm_fuse.errors import ConfigError


def is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and math.isfinite(float(value))


def check_fraction(value, name: str) -> float:
    """`value` as a float in [0, 1), or a `ConfigError` naming it."""
    if not is_number(value) or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"`{name}` must be a number in [0, 1). Received: {name}={value!r}")
    return float(value)


def check_number(value, name: str, *, low: float = 0.0, high: float = math.inf,
                 low_open: bool = False) -> float:
    """`value` as a float in [low, high] (or (low, high] with `low_open`), or a `ConfigError`."""
    bad = not is_number(value) or float(value) > high or float(value) < low \
        or (low_open and float(value) == low)
    if bad:
        interval = f"{'(' if low_open else '['}{low}, {high}]"
        raise ConfigError(f"`{name}` must be a number in {interval}. Received: {name}={value!r}")
    return float(value)


def check_positive_int(value, name: str, *, allow_none: bool = False) -> int | None:
    """`value` as an int >= 1 (or `None` when allowed), or a `ConfigError` naming it."""
    if value is None and allow_none:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or int(value) < 1:
        accepted = "a positive integer" + (" or None" if allow_none else "")
        raise ConfigError(f"`{name}` must be {accepted}. Received: {name}={value!r}")
    return int(value)


def check_finite_weights(model, what: str) -> None:
    """A `ConfigError` naming the first layer whose weights hold NaN or infinite values.

    Example:
        >>> check_finite_weights(model, "pruning")   # silent when every weight is finite
    """
    import keras
    import numpy as np

    if not hasattr(model, "_flatten_layers"):
        return  # not a Keras 3 model: the analysis refuses it with its own message
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for variable in layer._trainable_variables + layer._non_trainable_variables:
            if not str(variable.dtype).startswith(("float", "bfloat")):
                continue
            values = keras.ops.convert_to_numpy(variable)
            if not np.isfinite(values).all():
                count = int(values.size - np.isfinite(values).sum())
                raise ConfigError(
                    f"Layer '{layer.name}': weight '{variable.name}' holds {count} NaN or "
                    f"infinite value(s); {what} needs finite weights (a diverged training run "
                    "leaves these: restore a checkpoint from before the loss became NaN).")
