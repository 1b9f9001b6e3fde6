"""Per-epoch cost of `fit` with FuPruner against a plain `fit`, measured side by side.

Three variants of the same residual CNN on shipped MNIST, trained in alternating chunks in one
process (so machine noise hits all of them): the plain model; the wrapped model with FuPruner
updating masks every epoch; and with FuPruner updating 4× per epoch. Each chunk's first epoch
(tracing) and a first warm-up round are dropped, the order rotates each round; the median epoch time is reported, and its ratio to the plain model's.

Run:  python benchmarks/fit_overhead.py [--rounds 4] [--epochs 2] [--n-train 4000]
Goal: ratio ≤ 1.15.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfm_fuse  # noqa: E402
from mnist_pruning import compile_, residual_cnn  # noqa: E402
from tfm_fuse import callbacks  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch, hooks of earlier callbacks included."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t)


def variants(n_train: int, batch: int):
    steps = int(np.ceil(n_train / batch))
    plain = compile_(residual_cnn())
    per_epoch = compile_(tfm_fuse.prune(residual_cnn(), method="fupruner", rate=0.3))
    per_quarter = compile_(tfm_fuse.prune(residual_cnn(), method="fupruner", rate=0.3))
    return {
        "plain fit": (plain, []),
        "FuPruner, update per epoch": (per_epoch, [callbacks.FuPruner(0.3, criterion="fused")]),
        "FuPruner, 4 updates per epoch": (per_quarter, [callbacks.FuPruner(
            0.3, criterion="fused", update_freq=max(steps // 4, 1))]),
    }


def measure(rounds: int, epochs: int, n_train: int, batch: int = 64) -> dict[str, list[float]]:
    (x, y), _ = tfm_fuse.app.data.load_mnist(n_train=n_train, n_test=0)
    runs = variants(n_train, batch)
    times: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    for r in range(rounds + 1):  # round 0 warms up (tracing, caches) and is not recorded
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
            model, cbs = runs[name]
            timer = EpochTimer()
            model.fit(x, y, epochs=epochs + 1, batch_size=batch, verbose=0, callbacks=[*cbs, timer])
            if r:
                times[name].extend(timer.times[1:])
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=4000)
    args = ap.parse_args()
    times = measure(args.rounds, args.epochs, args.n_train)
    base = float(np.median(times["plain fit"]))
    print(f"{'variant':<32} {'median s/epoch':>15} {'ratio':>7}  (n={len(times['plain fit'])} epochs each)")
    for name, t in times.items():
        med = float(np.median(t))
        print(f"{name:<32} {med:>15.3f} {med / base:>7.3f}")


if __name__ == "__main__":
    main()
