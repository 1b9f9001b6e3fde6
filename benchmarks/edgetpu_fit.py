"""ResNet50 (small input) pruned until its int8 parameters fit the Edge TPU's on-chip memory.

`prune(model, method="fupruner", fits="edgetpu")` removes, during `fit`, the channels whose
importance per int8 parameter byte is lowest until the full-integer parameters fit the 8 MiB
the Edge TPU caches on chip (coral.ai/docs/edgetpu/compiler, "Parameter data caching"); what
does not fit streams from the host on every inference. The same short training on the shipped
digits for both rows: the base trains `--epochs`, then the unpruned model trains `--epochs` more
and the pruned one `--epochs` more under `FuPruner()`. Both are converted by
`tfm_fuse.converters.edgetpu` (full-integer `.tflite`, Coral's op table, int8 vs Keras on the
held-out digits); parameters before/after and `parameter_bytes` / `fits_sram` are read from the
artefact's check. Accuracy: inference mode on `--n-test` digits no decision saw.

Run:  python benchmarks/edgetpu_fit.py [--epochs 2] [--size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # see benchmarks/latency_budget.py

import keras  # noqa: E402

import tfm_fuse  # noqa: E402
from tfm_fuse import callbacks  # noqa: E402
from tfm_fuse.converters import edgetpu  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from latency_budget import accuracy, digits  # noqa: E402  (the same data and metric)


def fit(model, data, epochs, extra=()):
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(*data, epochs=epochs, batch_size=64, verbose=0, callbacks=list(extra))


def converted(model, train, test, folder: Path) -> dict:
    report = edgetpu.convert(model, folder, representative_data=train[0][:256],
                             validation_data=test[0][:500], keep_failed=True, min_top1=None)
    check = report.details["edgetpu_check"]
    return {"parameter_bytes": check["parameter_bytes"], "fits_sram": check["fits_sram"],
            "tpu_fraction": check["tpu_fraction"], "int8": report.fidelity.get("tflite_int8", {}),
            "ok": report.ok, "issues": report.issues}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--n-train", type=int, default=6000)
    parser.add_argument("--n-test", type=int, default=3000)
    args = parser.parse_args()
    train, test = digits(args.size, args.n_train, args.n_test)
    keras.utils.set_random_seed(0)
    base = keras.applications.ResNet50(weights=None, input_shape=(args.size, args.size, 3),
                                       classes=10)
    fit(base, train, args.epochs)
    rows = {}
    unpruned = keras.models.clone_model(base)
    unpruned.set_weights(base.get_weights())
    fit(unpruned, train, args.epochs)
    tfm_fuse.app.models.reestimate_batchnorm(unpruned, train[0][:2048])
    masked = tfm_fuse.prune(base, method="fupruner", fits="edgetpu")
    fit(masked, train, args.epochs, [callbacks.FuPruner()])
    pruned = tfm_fuse.strip(masked)
    tfm_fuse.app.models.reestimate_batchnorm(pruned, train[0][:2048])
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in (("ResNet50 unpruned", unpruned), ("ResNet50 fits='edgetpu'", pruned)):
            rows[name] = {"params": model.count_params(), "accuracy": accuracy(model, test),
                          **converted(model, train, test, Path(tmp) / name.split()[1])}
    lines = ["| model | params | int8 parameter bytes | fits 8 MiB | ops on TPU | accuracy | "
             "int8 top-1 agreement |", "|" + "---|" * 7]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['params']:,} | {r['parameter_bytes']:,} | {r['fits_sram']} | "
                     f"{r['tpu_fraction']:.0%} | {r['accuracy']:.3f} | "
                     f"{r['int8'].get('top1_agreement', float('nan')):.4f} |")
    text = "\n".join(lines)
    print(text)
    (HERE / "edgetpu_fit.md").write_text(text + "\n")
    (HERE / "edgetpu_fit.json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
