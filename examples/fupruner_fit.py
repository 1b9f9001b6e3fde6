"""FuPruner during `fit`: prune a residual CNN on the shipped MNIST while it trains, then strip it.

The shortest correct call: a MAC budget for `prune()`, a bare `FuPruner()` with an accuracy
requirement. The schedule comes from fit's length (warm-up, gradual pruning, then the masks stay
fixed for the second half), the guard watches the validation split only, and the test digits are
seen by no decision. Writes `training.csv`, `pruned.keras` and `summary.json` to OUT.

Run:  python examples/fupruner_fit.py [--out fupruner_out] [--macs 0.5] [--epochs 6] [--quick]
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402

import tfm_fuse  # noqa: E402
from tfm_fuse.callbacks import FuPruner  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--out", type=Path, default=Path("fupruner_out"))
ap.add_argument("--macs", type=float, default=0.5, help="fraction of MACs to remove")
ap.add_argument("--epochs", type=int, default=6)
ap.add_argument("--quick", action="store_true", help="tiny data and 3 epochs (for tests)")
args = ap.parse_args()
epochs, n_train, n_test = (3, 1024 + 256, 512) if args.quick else (args.epochs, 8000, 2000)
args.out.mkdir(parents=True, exist_ok=True)

keras.utils.set_random_seed(0)
(x, y), (x_test, y_test) = tfm_fuse.app.data.load_mnist(n_train=n_train, n_test=n_test)
n_fit = (n_train - n_train // 8) // 64 * 64  # the rest is the validation split
model = tfm_fuse.app.models.residual_cnn()
masked = tfm_fuse.prune(model, method="fupruner", macs=args.macs, align=8)
masked.compile(optimizer=keras.optimizers.Adam(2e-3), metrics=["accuracy"],
               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = masked.fit(x[:n_fit], y[:n_fit], validation_data=(x[n_fit:], y[n_fit:]), batch_size=64,
                     epochs=epochs, verbose=2,
                     callbacks=[FuPruner(max_drop=0.01),
                                keras.callbacks.CSVLogger(str(args.out / "training.csv"))])

small = tfm_fuse.strip(masked)
small.compile(metrics=["accuracy"], loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
small.save(args.out / "pruned.keras")
reduction = tfm_fuse.profile(model).reduction(tfm_fuse.profile(small))
summary = {"val_accuracy_before_pruning": history.history["val_accuracy"][0],
           "val_accuracy_last_epoch": history.history["val_accuracy"][-1],
           "accuracy_masked": masked.evaluate(x_test, y_test, verbose=0)[1],
           "accuracy_stripped": small.evaluate(x_test, y_test, verbose=0)[1],
           **{f"{k}_removed": v for k, v in reduction.items()}}
(args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"val accuracy after epoch 1 (before pruning): {summary['val_accuracy_before_pruning']:.4f}")
print(f"test accuracy masked {summary['accuracy_masked']:.4f} -> stripped {summary['accuracy_stripped']:.4f}")
print("removed: " + ", ".join(f"{k} {v:.1%}" for k, v in reduction.items()))
print(f"saved {args.out / 'pruned.keras'}")
