"""Prune four keras.applications models at a 30 % channel rate, strip them, and print a table.

Columns: max-abs difference between the stripped and the masked model (inference mode, random
input), that difference relative to max(1, output scale), and parameters / MACs before and after
as `tfm_fuse.profile` counts them.

Usage:
    python benchmarks/core_equivalence.py [--rate 0.3] [--size 32] [MODEL ...]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfm_fuse  # noqa: E402
from tfm_fuse.app.models import randomize_weights as randomize  # noqa: E402

MODELS = ("ResNet50", "MobileNetV2", "EfficientNetB0", "DenseNet121")


def measure(name: str, rate: float, size: int) -> dict:
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None)
    randomize(model)
    x = np.random.default_rng(1).normal(size=(4, size, size, 3)).astype("float32")
    start = time.perf_counter()
    pruned = tfm_fuse.prune(model, rate=rate)
    small = tfm_fuse.strip(pruned)
    seconds = time.perf_counter() - start
    ref = keras.ops.convert_to_numpy(pruned(x, training=False))
    out = keras.ops.convert_to_numpy(small(x, training=False))
    diff = float(np.max(np.abs(out - ref)))
    before, after = tfm_fuse.profile(model), tfm_fuse.profile(small)
    return {"model": name, "diff": diff, "rel": diff / max(1.0, float(np.max(np.abs(ref)))),
            "params": (before.params, after.params), "macs": (before.macs, after.macs),
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    head = (f"{'model':<15} {'max-abs diff':>12} {'rel. diff':>10} {'params before':>14} "
            f"{'params after':>13} {'-params':>8} {'MACs before':>13} {'MACs after':>13} "
            f"{'-MACs':>6} {'prune+strip':>11}")
    print(f"rate={args.rate}, input {args.size}x{args.size}x3, batch 4, inference mode")
    print(head)
    print("-" * len(head))
    for name in args.models:
        r = measure(name, args.rate, args.size)
        (p0, p1), (m0, m1) = r["params"], r["macs"]
        print(f"{name:<15} {r['diff']:>12.2e} {r['rel']:>10.2e} {p0:>14,} {p1:>13,} "
              f"{1 - p1 / p0:>8.1%} {m0:>13,} {m1:>13,} {1 - m1 / m0:>6.1%} "
              f"{r['seconds']:>10.1f}s", flush=True)


if __name__ == "__main__":
    main()
