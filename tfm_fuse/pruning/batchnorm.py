"""Keep BatchNorm's moving statistics true to the masks in place, without extra data.

Every mask change moves the distribution that each BatchNormalization downstream sees: a
revived channel comes back with new weights, and every layer after a changed channel gets new
inputs. In training mode BatchNorm normalises with the batch's own statistics, so the change
does not show; in inference mode it uses moving averages that still describe the old masks,
and with Keras's default momentum 0.99 (0.999 in `keras.applications`) they need hundreds to
thousands of batches to forget them. Measured on the MNIST residual CNN: an update that swaps
18 of 240 channels took inference-mode accuracy from 1.00 to 0.20 while training mode stayed at
0.89 (`benchmarks/fupruner_matrix.py` reproduces the matrix this was found in).

`StatisticsRestart` fixes this the way BatchNorm re-estimation does, on the training batches
themselves: after `restart()`, each moving statistic becomes the plain average of the batch
statistics seen since the restart (recovered exactly from BatchNorm's own update,
`new = m * old + (1 - m) * batch`), and hands back to the layer's momentum once that average
spans `1 / (1 - m)` batches, as many as the momentum itself remembers.

A slower momentum is held to `MAX_HORIZON` = 10 batches (momentum 0.9's memory) for as long
as training runs: the statistics then describe the weights of the last ten batches. With
`keras.applications`' 0.999, an average over the thousand batches since a mask change describes
weights that training has long moved away from: MobileNetV2 (32x32 digits, 8 epochs, FuPruner
defaults) ended `fit` at 0.765 held-out accuracy in inference mode that way, 0.917 with a
100-batch horizon, 0.962 with 10 — and 0.967 for the same weights with statistics re-estimated
on 2,048 training digits, so what remained was the statistics, not the pruning.

Example:
    >>> restart = StatisticsRestart(masked_model)
    >>> restart.restart()              # right after writing new masks
    >>> ...                            # after every training batch:
    >>> restart.after_batch()
"""

from __future__ import annotations

import math

import keras
import numpy as np

# batches: momentum 0.9's memory. Chosen on the validation split (MobileNetV2, 32x32 digits,
# 8 epochs, FuPruner defaults): final val_accuracy 0.966 with 10, 0.964 with 30, 0.910 with
# 100; the same weights with re-estimated statistics reach 0.967 on held-out digits.
MAX_HORIZON = 10


def batchnorm_layers(model: keras.Model) -> list:
    """The BatchNormalization layers of `model` whose moving statistics training updates."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization) and not layer.renorm
            and 0.0 < layer.momentum < 1.0]


class StatisticsRestart:
    """Restart the moving statistics of every BatchNorm of `model` as batch averages.

    Args:
        model: the model being trained (not copied: its variables are updated in place).
    """

    def __init__(self, model: keras.Model):
        self.layers = batchnorm_layers(model)
        own = [math.ceil(1.0 / (1.0 - layer.momentum)) for layer in self.layers]
        self._horizon = [min(h, MAX_HORIZON) for h in own]
        self._tracked = [h > MAX_HORIZON for h in own]  # averaged over MAX_HORIZON until fit ends
        self._count = 0
        self._last: list | None = None  # per layer: (mean, variance) as last written

    @property
    def active(self) -> bool:
        return self._last is not None

    def restart(self) -> None:
        """Start averaging from the next batch on (call after a mask change)."""
        if not self.layers:
            return
        self._count = 0
        self._last = [(_read(layer.moving_mean), _read(layer.moving_variance))
                      for layer in self.layers]

    def after_batch(self) -> None:
        """Fold the batch just trained into the averages (call after every training batch)."""
        if self._last is None:
            return
        self._count += 1
        n = self._count
        for i, layer in enumerate(self.layers):
            if self._last[i] is None or (n > self._horizon[i] and not self._tracked[i]):
                continue
            window = min(n, self._horizon[i])
            m = layer.momentum
            pairs = list(zip((layer.moving_mean, layer.moving_variance), self._last[i]))
            averages = []
            for var, old in pairs:
                batch = (_read(var) - m * old) / (1.0 - m)  # BatchNorm's own update, inverted
                averages.append(batch if n == 1 else old + (batch - old) / window)
            # a variance is >= 0; float32 round-off amplified by 1 / (1 - m) can make the
            # recovered one slightly negative, and sqrt(negative + eps) is NaN in inference
            averages[1] = np.maximum(averages[1], 0.0)
            if not all(np.isfinite(a).all() for a in averages):
                self._last[i] = None  # overflowing statistics: keep BatchNorm's own update
                continue
            stored = []
            for (var, _), average in zip(pairs, averages):
                value = average.astype(var.dtype)
                var.assign(value)
                stored.append(value.astype("float64"))  # what the next update starts from
            self._last[i] = tuple(stored)
        if n >= max(self._horizon) and not any(self._tracked):
            self._last = None


def _read(variable) -> np.ndarray:
    return keras.ops.convert_to_numpy(variable).astype("float64")
