"""FuPruner during `fit`: prune a residual CNN on the shipped MNIST while it trains, then strip it.

Masks follow a PolynomialDecay schedule from epoch 2 on, held back whenever validation accuracy
drops more than 1 point below epoch 1's; the stripped model is physically smaller and computes
what the masked one did. Writes `training.csv`, `pruned.keras` and `summary.json` to OUT.

Run:  python examples/fupruner_fit.py [--out fupruner_out] [--rate 0.5] [--epochs 6] [--quick]
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402

import tfm_fuse  # noqa: E402
from tfm_fuse.callbacks import FuPruner  # noqa: E402
from tfm_fuse.pruning.schedules import PolynomialDecay  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--out", type=Path, default=Path("fupruner_out"))
ap.add_argument("--rate", type=float, default=0.5, help="final fraction of channels masked")
ap.add_argument("--epochs", type=int, default=6)
ap.add_argument("--quick", action="store_true", help="tiny data and 3 epochs (for tests)")
args = ap.parse_args()
epochs, n_train, n_test = (3, 1024, 512) if args.quick else (args.epochs, 8000, 2000)
args.out.mkdir(parents=True, exist_ok=True)

keras.utils.set_random_seed(0)
(x, y), (x_test, y_test) = tfm_fuse.data.load_mnist(n_train=n_train, n_test=n_test)
model = tfm_fuse.models.residual_cnn()
masked = tfm_fuse.prune(model, method="fupruner", rate=args.rate, scope="layer", align=8)
masked.compile(keras.optimizers.Adam(2e-3), metrics=["accuracy"],
               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
steps = -(-n_train // 64)  # batches per epoch
# epoch 1 sets the accuracy reference; prune from there to 2/3 of training, then fine-tune
schedule = PolynomialDecay(0.0, args.rate, begin_step=steps, end_step=max(2 * steps * epochs // 3, steps + 1))
history = masked.fit(x, y, batch_size=64, epochs=epochs, validation_data=(x_test, y_test), verbose=2,
                     callbacks=[FuPruner(schedule, criterion="fused", max_drop=0.01,
                                         update_freq=max(steps // 4, 1)),
                                keras.callbacks.CSVLogger(str(args.out / "training.csv"))])

small = tfm_fuse.strip(masked)
small.compile(metrics=["accuracy"], loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
small.save(args.out / "pruned.keras")
reduction = tfm_fuse.profile(model).reduction(tfm_fuse.profile(small))
summary = {"val_accuracy_before_pruning": history.history["val_accuracy"][0],
           "accuracy_masked": masked.evaluate(x_test, y_test, verbose=0)[1],
           "accuracy_stripped": small.evaluate(x_test, y_test, verbose=0)[1],
           **{f"{k}_removed": v for k, v in reduction.items()}}
(args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"val accuracy after epoch 1 (before pruning): {summary['val_accuracy_before_pruning']:.4f}")
print(f"test accuracy masked {summary['accuracy_masked']:.4f} -> stripped {summary['accuracy_stripped']:.4f}")
print("removed: " + ", ".join(f"{k} {v:.1%}" for k, v in reduction.items()))
print(f"saved {args.out / 'pruned.keras'}")
