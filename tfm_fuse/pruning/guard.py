"""The accuracy requirement of FuPruner: a control loop on a metric `fit` logs each epoch.

`fit` computes validation metrics in inference mode, on the validation data it was given, with
the masks in place at that moment — what the stripped model will score. The guard compares the
monitored value with a reference (given, or the best value before the first mask change) and
moves a back-off: up by `backoff` each epoch the allowed drop is exceeded (the pruning target is
lowered by it), down each epoch it holds (the target comes back). It decides; the callback
applies. Its decisions go to the logs (`prune_backoff`) and, with `verbose`, to stdout.

Example:
    >>> guard = AccuracyGuard(max_drop=0.01, monitor="val_accuracy")
    >>> guard.reset(model)
    >>> guard.observe({"val_accuracy": 0.97}, epoch=0, reference=True, penalty=0.0)
    0.0
    >>> guard.observe({"val_accuracy": 0.95}, epoch=1, reference=False, penalty=0.0)
    0.05
"""

from __future__ import annotations

import math
import warnings

from tfm_fuse.errors import ConfigError
from tfm_fuse.validation import check_number, is_number

_MIN_NAMES = ("loss", "error", "mae", "mse", "mape", "msle", "rmse", "hinge", "crossentropy",
              "divergence", "poisson", "cosine_proximity")
_MAX_NAMES = ("accuracy", "acc", "auc", "precision", "recall", "iou", "f1", "score")


class AccuracyGuard:
    """Back off the pruning target while `monitor` is more than `max_drop` below the reference.

    Args:
        max_drop: allowed drop (in the metric's units, >= 0).
        baseline: the reference value; `None` takes the best value logged before pruning starts.
        monitor: a key of `fit`'s logs. Defaults to `"val_accuracy"`.
        mode: `"max"`, `"min"` or `"auto"` (the metric's declared direction, as Keras's
            `EarlyStopping` reads it, then its name). Defaults to `"auto"`.
        backoff: how much one epoch moves the back-off, in (0, 1]. Defaults to `0.05`.
    """

    def __init__(self, *, max_drop: float, baseline: float | None = None,
                 monitor: str = "val_accuracy", mode: str = "auto", backoff: float = 0.05):
        self.max_drop = check_number(max_drop, "max_drop")
        if baseline is not None and not is_number(baseline):
            raise ConfigError(f"`baseline` must be a number or None. Received: baseline={baseline!r}")
        if not isinstance(monitor, str) or not monitor:
            raise ConfigError(f"`monitor` must be the name of a logged metric. Received: {monitor!r}")
        if mode not in ("auto", "max", "min"):
            raise ConfigError(f"`mode` must be 'auto', 'max' or 'min'. Received: mode={mode!r}")
        self.baseline = None if baseline is None else float(baseline)
        self.monitor, self.mode = monitor, mode
        self.backoff = check_number(backoff, "backoff", high=1.0, low_open=True)
        self.reset(None)

    def reset(self, model, reference_allowed: bool = True, reference: float | None = None) -> None:
        """Forget the last `fit` (one guard serves several); `reference`: one measured before
        (by the `fit` this one resumes), used unless `baseline` was given."""
        self.model = model
        self.reference = self.baseline if self.baseline is not None else reference
        self.reference_allowed = reference_allowed
        self.sign: float | None = None
        self.last: dict | None = None
        self.decisions: list[str] = []

    def ready(self, pruning_started: bool) -> bool:
        """Whether pruning may start: there is a reference to compare with."""
        return pruning_started or self.reference is not None or not self.reference_allowed

    def observe(self, logs: dict, epoch: int, *, reference: bool, penalty: float) -> float:
        """The back-off after this epoch's logs (`reference`: no mask has changed yet)."""
        if self.monitor not in logs:
            self._missing(logs, epoch)
            return penalty
        value = float(logs[self.monitor])
        if self.sign is None:
            self.sign = self._direction()
        if reference and self.baseline is None and self.reference_allowed:
            best = self.reference
            self.reference = value if best is None else self.sign * max(self.sign * best,
                                                                         self.sign * value)
            return penalty
        if self.reference is None:
            return penalty
        drop = self.sign * (self.reference - value)
        broken = drop > self.max_drop or math.isnan(value)
        new = min(1.0, penalty + self.backoff) if broken else max(0.0, penalty - self.backoff)
        self.last = {"epoch": epoch, "value": value, "drop": drop, "broken": broken}
        if new != penalty:
            self.decisions.append(
                f"epoch {epoch + 1}: {self.monitor} {value:.4f} is {drop:+.4f} from the "
                f"reference {self.reference:.4f} (allowed {self.max_drop}): back-off "
                f"{penalty:.2f} -> {new:.2f}")
        return new

    def conclude(self, budget, stats: dict, verbose: int = 0) -> None:
        """Say at the end of `fit` whether the requirement holds, and what was reached."""
        if self.last is None:
            return
        removed = stats.get(f"prune_{budget.kind.value}_removed", stats.get("prune_rate", 0.0))
        unit = "channels" if budget.kind == "rate" else budget.kind.value
        where = (f"{self.monitor} {self.last['value']:.4f} against the reference "
                 f"{self.reference:.4f} (allowed drop {self.max_drop}), with "
                 f"{removed:.1%} of {unit} removed (asked {budget.value:.1%})")
        if self.last["broken"]:
            warnings.warn(f"FuPruner: the accuracy requirement is not met at the end of fit: "
                          f"{where}. Lower the budget, or train longer.", stacklevel=3)
        elif verbose:
            print(f"FuPruner: accuracy requirement met: {where}.")

    # --- internals -------------------------------------------------------------------------
    def _missing(self, logs: dict, epoch: int) -> None:
        has_val = any(k.startswith("val_") for k in logs)
        if self.monitor.startswith("val_") and not has_val:
            if self.reference is None and epoch == 0 and not self.last:
                raise ConfigError(
                    f"FuPruner(max_drop={self.max_drop}) watches '{self.monitor}', but fit() "
                    "logged no validation metric after the first epoch. Pass validation_data= "
                    "or validation_split= to fit(), a baseline= value (with validation_freq > "
                    "1), or a training metric as monitor=.")
            return  # validation did not run this epoch (validation_freq > 1)
        raise ConfigError(f"FuPruner watches '{self.monitor}', which the logs do not hold. "
                          f"Available: {sorted(logs)}")

    def _direction(self) -> float:
        """+1 when higher is better, -1 when lower is."""
        if self.mode != "auto":
            return 1.0 if self.mode == "max" else -1.0
        name = self.monitor.removeprefix("val_")
        for metric in _compiled_metrics(self.model):
            if metric.name == name and hasattr(metric, "_direction"):
                return 1.0 if metric._direction == "up" else -1.0
        if name == "loss" or name.endswith(_MIN_NAMES):
            return -1.0
        if name.endswith(_MAX_NAMES):
            return 1.0
        raise ConfigError(f"FuPruner cannot tell whether '{self.monitor}' should be maximized or "
                          "minimized. Pass mode='max' or mode='min'.")


def _compiled_metrics(model) -> list:
    out = []
    for m in getattr(model, "metrics", []) or []:
        out.extend(getattr(m, "metrics", [m]))
    return out
