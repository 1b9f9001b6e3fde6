"""Complexity-driven pruning at initialisation: thin a residual CNN before training, train it once.

`complexity_prune` removes filters, sampled by each group's share of the chosen complexity
(PA: parameters, FA: FLOPs/MACs, MA: activation memory), until that total has dropped by
`--target`; it reports the reductions of all three. Writes `thin.keras` and `summary.json` to OUT.

Run:  python examples/complexity_pruning.py [--out complexity_out] [--mode FA] [--target 0.5]
                                            [--epochs 6] [--quick]
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402

import tfm_fuse  # noqa: E402
from tfm_fuse.pruning import complexity_prune  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--out", type=Path, default=Path("complexity_out"))
ap.add_argument("--mode", choices=["PA", "FA", "MA"], default="FA")
ap.add_argument("--target", type=float, default=0.5, help="reduction of the mode's metric")
ap.add_argument("--epochs", type=int, default=6)
ap.add_argument("--quick", action="store_true", help="tiny data and 1 epoch (for tests)")
args = ap.parse_args()
epochs, n_train, n_test = (1, 1024, 512) if args.quick else (args.epochs, 8000, 2000)
args.out.mkdir(parents=True, exist_ok=True)

keras.utils.set_random_seed(0)
(x, y), (x_test, y_test) = tfm_fuse.app.data.load_mnist(n_train=n_train, n_test=n_test)
model = tfm_fuse.app.models.residual_cnn()
# the same as tfm_fuse.prune(model, method="complexity", mode=..., target=...), plus the report
thin, report = complexity_prune(model, mode=args.mode, target=args.target, seed=0)
print(report)

thin.compile(keras.optimizers.Adam(2e-3), metrics=["accuracy"],
             loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
# n_train is a multiple of the batch size: TF 2.21 CPU (oneDNN) can crash on a partial batch in
# training narrow convolutions (seen on MNIST at widths 8-12)
thin.fit(x, y, batch_size=64, epochs=epochs, validation_data=(x_test, y_test), verbose=2)
accuracy = thin.evaluate(x_test, y_test, verbose=0)[1]
thin.save(args.out / "thin.keras")

summary = {"mode": report.mode, "target": report.target, "accuracy": accuracy,
           **{f"{k}_removed": v for k, v in report.reduction.items()}}
(args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"mode {report.mode}, target {report.target:.0%}: removed "
      + ", ".join(f"{k} {v:.1%}" for k, v in report.reduction.items()))
print(f"test accuracy of the thin model after {epochs} epoch(s): {accuracy:.4f}")
print(f"saved {args.out / 'thin.keras'}")
