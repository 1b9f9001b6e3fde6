"""Pruning budgets in the user's terms: a channel rate, or a reduction of MACs, params or memory.

A channel rate is what allocation works with, but it is not what users mean: `rate=0.5` removes
48-75 % of a residual CNN's MACs depending on scope and criterion. `Budget` names the quantity
to reduce; `solve_rate` finds the channel rate that reaches it for the current scores, by
bisection over the (monotone) reduction the cost model predicts for the stripped model.

Example:
    >>> Budget.from_options(macs=0.5)
    Budget(kind='macs', value=0.5)
    >>> Budget.from_options(default=Budget("rate", 0.3))   # nothing asked: the default
    Budget(kind=<Kind.RATE: 'rate'>, value=0.3)
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import Callable

from tfm_fuse.errors import ConfigError, parse_choice
from tfm_fuse.validation import check_fraction


class Kind(StrEnum):
    """What a budget reduces: `rate` is the fraction of channels; the others a cost fraction."""

    RATE = "rate"
    MACS = "macs"
    PARAMS = "params"
    MEMORY = "memory"
    LATENCY = "latency"        # measured on a runtime (`latency.LatencyModel`)
    INT8_BYTES = "int8_bytes"  # the full-integer .tflite's parameter bytes (Edge TPU memory)


# the cost model's name of each quantity reduced through a channel rate (`CostModel.totals`
# keys); LATENCY and INT8_BYTES are allocated by their cost per channel instead
COST_METRIC = {Kind.MACS: "macs", Kind.PARAMS: "params", Kind.MEMORY: "activation_bytes"}


@dataclasses.dataclass(frozen=True)
class Budget:
    """A pruning target: `value` (in [0, 1)) of `kind` removed by the end of the schedule."""

    kind: Kind = Kind.MACS
    value: float = 0.5

    def __post_init__(self):
        object.__setattr__(self, "kind", parse_choice(Kind, self.kind, "kind", "budget kind"))
        object.__setattr__(self, "value", check_fraction(self.value, self.kind.value))

    @classmethod
    def from_options(cls, *, rate=None, macs=None, params=None, memory=None, latency=None,
                     default: "Budget | None" = None) -> "Budget | None":
        """The one budget given as keyword, or `default` when none is.

        Raises:
            ConfigError: more than one budget, or a value outside [0, 1).
        """
        given = {k: v for k, v in (("rate", rate), ("macs", macs), ("params", params),
                                   ("memory", memory), ("latency", latency)) if v is not None}
        if len(given) > 1:
            raise ConfigError(f"Give one pruning budget, not {len(given)}. Received: "
                              + ", ".join(f"{k}={v!r}" for k, v in given.items())
                              + "; accepted: one of rate=, macs=, params=, memory=, latency=, fits=.")
        if not given:
            return default
        (kind, value), = given.items()
        return cls(Kind(kind), value)

    def with_value(self, value: float) -> "Budget":
        return dataclasses.replace(self, value=value)

    def get_config(self) -> dict:
        return {"kind": self.kind.value, "value": self.value}

    def __str__(self) -> str:
        what = "of channels" if self.kind is Kind.RATE else f"of {self.kind.value}"
        return f"{self.value:.1%} {what}"


def solve_rate(removed: Callable[[float], float], target: float, *, hi: float = 0.95) -> float:
    """The channel rate at which `removed(rate)` (monotone, a fraction) is nearest `target`.

    With `align`, the reduction is a staircase of the rate: the middle of the step nearest the
    target is returned (not its edge), so a re-ranking that moves the step slightly keeps it.
    If `target` is beyond reach, the highest rate probed (`hi`) is returned.
    """
    if target <= 0:
        return 0.0
    lo, up = _bisect(lambda r: removed(r) < target, 0.0, hi)
    nearer = up if removed(up) - target <= target - removed(lo) else lo
    level = removed(nearer)
    left = _bisect(lambda r: removed(r) < level, 0.0, nearer)[1]
    right = _bisect(lambda r: removed(r) <= level, nearer, hi)[0]
    return (left + right) / 2


def _bisect(below, lo: float, hi: float, steps: int = 20) -> tuple[float, float]:
    """Narrows `[lo, hi]` around where the monotone predicate `below(rate)` turns false."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if below(mid) else (lo, mid)
    return lo, hi
