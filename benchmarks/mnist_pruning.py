"""MNIST, a small residual CNN: baseline vs FuPruner (~50 % MACs removed after strip) vs
complexity-driven pruning (PA / FA / MA at 50 %), every model trained for the same epochs.

Run:  python benchmarks/mnist_pruning.py [--epochs 6] [--n-train 8000] [--n-test 2000]
Prints one table row per method: test accuracy, drop against the baseline, and the reductions
of params / MACs / activation memory of the stripped (physically smaller) model.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfm_fuse  # noqa: E402
from tfm_fuse import callbacks  # noqa: E402
from tfm_fuse.pruning import complexity_prune  # noqa: E402

L = keras.layers


def residual_cnn(widths=(16, 32, 64)) -> keras.Model:
    """Stem conv, then per stage a (strided) conv-BN-ReLU and an identity residual block.

    BatchNorm momentum 0.9: the moving statistics settle within a short training run."""
    i = keras.Input((28, 28, 1))

    def bn():
        return L.BatchNormalization(momentum=0.9)

    x = L.ReLU()(bn()(L.Conv2D(widths[0], 3, padding="same", use_bias=False)(i)))
    for k, w in enumerate(widths):
        if k:
            x = L.Conv2D(w, 3, strides=2, padding="same", use_bias=False)(x)
            x = L.ReLU()(bn()(x))
        y = L.ReLU()(bn()(L.Conv2D(w, 3, padding="same", use_bias=False)(x)))
        y = bn()(L.Conv2D(w, 3, padding="same", use_bias=False)(y))
        x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(i, L.Dense(10, activation="softmax")(x), name="mnist_resnet")


def compile_(model: keras.Model, total_steps: int = 1000) -> keras.Model:
    """Adam with a cosine-decayed learning rate (a stable end point for every variant)."""
    lr = keras.optimizers.schedules.CosineDecay(2e-3, max(total_steps, 1), alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def evaluate(model, test, reference_macs) -> dict:
    p = tfm_fuse.profile(model)
    acc = float(model.evaluate(*test, verbose=0, batch_size=256)[1])
    return {"acc": acc, "params": p.params, "macs": p.macs, "act": p.activation_bytes,
            "macs_removed": 1 - p.macs / reference_macs}


def run(epochs: int = 6, n_train: int = 8000, n_test: int = 2000, seed: int = 0,
        modes=("PA", "FA", "MA"), verbose: int = 0) -> list[dict]:
    """Train every variant and return rows (dicts) for the table."""
    (x, y), test = tfm_fuse.app.data.load_mnist(n_train=n_train, n_test=n_test)
    # hold out ~10 % for validation, and keep the training part a whole number of batches:
    # TF 2.21's oneDNN kernels can crash fit on a partial last batch of narrow convolutions
    n_fit = max(64, int(0.9 * len(x)) // 64 * 64)
    train, val = (x[:n_fit], y[:n_fit]), (x[n_fit:], y[n_fit:])
    rows = []
    keras.utils.set_random_seed(seed)
    base = residual_cnn()
    init = base.get_weights()
    ref = tfm_fuse.profile(base)
    fit = dict(epochs=epochs, batch_size=64, verbose=verbose, validation_data=val)
    steps = n_fit // 64
    total = steps * epochs
    t = time.perf_counter()
    compile_(base, total).fit(*train, **fit)
    rows.append({"method": "baseline", **evaluate(base, test, ref.macs), "s": time.perf_counter() - t})

    keras.utils.set_random_seed(seed)
    fresh = residual_cnn()
    fresh.set_weights(init)
    # the library's defaults: the schedule comes from fit's length; the guard reads `val` only
    masked = compile_(tfm_fuse.prune(fresh, method="fupruner", macs=0.5), total)
    t = time.perf_counter()
    masked.fit(*train, **fit, callbacks=[callbacks.FuPruner(max_drop=0.01, verbose=verbose)])
    small = tfm_fuse.strip(masked)
    rows.append({"method": "FuPruner (macs=0.5, max_drop=0.01)",
                 **evaluate(compile_(small, total), test, ref.macs), "s": time.perf_counter() - t})

    for mode in modes:
        keras.utils.set_random_seed(seed)
        fresh = residual_cnn()
        fresh.set_weights(init)
        thin, report = complexity_prune(fresh, mode=mode, target=0.5, seed=seed)
        t = time.perf_counter()
        compile_(thin, total).fit(*train, **fit)
        rows.append({"method": f"complexity {mode} 50%", **evaluate(thin, test, ref.macs),
                     "s": time.perf_counter() - t})
    for r in rows:
        r["params_removed"] = 1 - r["params"] / ref.params
        r["act_removed"] = 1 - r["act"] / ref.activation_bytes
        r["drop"] = rows[0]["acc"] - r["acc"]
    return rows


def table(rows: list[dict]) -> str:
    head = (f"{'method':<30} {'test acc':>8} {'drop':>7} {'params-':>8} {'MACs-':>7} "
            f"{'act-':>7} {'MACs':>10} {'train s':>8}")
    out = [head, "-" * len(head)]
    for r in rows:
        out.append(f"{r['method']:<30} {r['acc']:>8.4f} {100 * r['drop']:>6.2f}p "
                   f"{r['params_removed']:>8.1%} {r['macs_removed']:>7.1%} {r['act_removed']:>7.1%} "
                   f"{r['macs']:>10,} {r['s']:>8.1f}")
    return "\n".join(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--n-train", type=int, default=8000)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(table(run(args.epochs, args.n_train, args.n_test, args.seed)))
