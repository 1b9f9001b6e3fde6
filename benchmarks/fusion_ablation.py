"""Fusion before pruning (FuPruner's catalysis), switch by switch: accuracy at equal MACs and at
equal measured latency, on the shipped digits.

Each variant is `prune(base, method="fupruner", fuse=<switches>, <budget>)` trained with
`callbacks.FuPruner()` for `--epochs` epochs from the same trained base, then stripped:

- as given         `fuse=False`: rank and mask the model as built (BatchNorm in place)
- fused            `fuse=True`: BatchNorm (both directions), padding and activations folded
                   first; the fused filters are ranked, masked and trained
- fused, no BN     `fuse={"batchnorm": False, "batchnorm_backward": False}`: padding and
                   activations only (BatchNorm keeps normalising during the fine-tune)
- fused+shortcuts  `fuse={"shortcuts": True}`: also identity shortcuts as 1×1 convolutions, so
                   each residual block's channels are their own group
- shortcuts only   `fuse={... all False, "shortcuts": True}`

Budgets: `macs=--budget` (equal MACs) and `latency=--budget` on `--runtime` (equal measured
latency). Accuracy in inference mode, BatchNorm statistics set from the training inputs
(`reestimate_batchnorm`) where any is left. The decision (the default of `prune(fuse=)`) reads
the *validation* accuracy (`--n-val` digits); the *test* accuracy (`--n-test` other digits) is
reported and decides nothing. Latency: every stripped model converted for the runtime by
`tfm_fuse.converters` and timed side by side (`app.latency.compare`). Run alone.

Run:  python benchmarks/fusion_ablation.py [--models residual_cnn mobilenet_v2] [--epochs 2]
        [--budget 0.5] [--runtime onnxruntime]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # see benchmarks/latency_budget.py

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfm_fuse  # noqa: E402
from tfm_fuse import callbacks  # noqa: E402
from tfm_fuse.app import latency as app_latency  # noqa: E402
from tfm_fuse.app.data import load_mnist  # noqa: E402
from tfm_fuse.pruning.updater import MaskUpdater  # noqa: E402

HERE = Path(__file__).parent
NO_BN = {"batchnorm": False, "batchnorm_backward": False}
VARIANTS = {
    "as given": False,
    "fused": True,
    "fused, no BN": NO_BN,
    "fused+shortcuts": {"shortcuts": True},
    "shortcuts only": {**NO_BN, "padding": False, "activation": False, "shortcuts": True},
}
MODELS = {  # name -> (builder for an input shape, input side, grey or RGB)
    "residual_cnn": (lambda shape: tfm_fuse.app.models.residual_cnn(shape), 28, 1),
    "mobilenet_v2": (lambda shape: keras.applications.MobileNetV2(
        weights=None, input_shape=shape, classes=10, classifier_activation=None), 32, 3),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def digits(size: int, channels: int, n_train: int, n_val: int, n_test: int):
    import tensorflow as tf

    (x, y), (xh, yh) = load_mnist(n_train=n_train, n_test=n_val + n_test)
    if size != 28 or channels != 1:
        def resize(a):
            return np.repeat(tf.image.resize(a, (size, size)).numpy(), channels, axis=-1)
        x, xh = resize(x), resize(xh)
    return (x, y), (xh[:n_val], yh[:n_val]), (xh[n_val:], yh[n_val:])


def compile_(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def fit(model, data, epochs: int, extra=()):
    compile_(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(*data, epochs=epochs, batch_size=64, verbose=0, callbacks=list(extra))


def accuracy(model, data) -> float:
    x, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted = model.predict(x, batch_size=250, verbose=0)
    return float(np.mean(np.argmax(predicted, -1) == y))


def run_model(name, args) -> list[dict]:
    build, size, channels = MODELS[name]
    train, val, test = digits(size, channels, args.n_train, args.n_val, args.n_test)
    keras.utils.set_random_seed(0)
    base = build((size, size, channels))
    fit(base, train, args.epochs)
    tfm_fuse.app.models.reestimate_batchnorm(base, train[0][:2048])
    base_macs = tfm_fuse.profile(base).macs
    log(f"{name}: base val {accuracy(base, val):.3f}, {base_macs / 1e6:.1f} M MACs")
    rows, models = [], {"base": tfm_fuse.fuse(base)}
    for budget in ("macs", "latency"):
        for variant, switches in VARIANTS.items():
            keras.utils.set_random_seed(1)
            kwargs = {budget: args.budget, "fuse": switches}
            if budget == "latency":
                kwargs["runtime"] = args.runtime
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                masked = tfm_fuse.prune(base, method="fupruner", **kwargs)
            groups = sum(g.prunable for g in tfm_fuse.analyze(masked).groups)
            fit(masked, train, args.epochs, [callbacks.FuPruner()])
            stats = MaskUpdater(masked).stats()
            thin = tfm_fuse.strip(masked)
            tfm_fuse.app.models.reestimate_batchnorm(thin, train[0][:2048])
            key = f"{budget}={args.budget} / {variant}"
            models[key] = tfm_fuse.fuse(thin)
            rows.append({"model": name, "budget": budget, "variant": variant,
                         "switches": switches, "prunable_groups": groups,
                         "val": accuracy(thin, val), "test": accuracy(thin, test),
                         "macs": tfm_fuse.profile(thin).macs, "base_macs": base_macs,
                         "channel_rate": stats["prune_rate"]})
            log(f"{name} {key}: val {rows[-1]['val']:.3f}, MACs kept "
                f"{rows[-1]['macs'] / base_macs:.1%}, {groups} prunable groups")
    with tempfile.TemporaryDirectory() as tmp:
        cases = {key: app_latency.export(m, Path(tmp) / f"case{i}", train[0][:64],
                                         runtimes=(args.runtime,))
                 for i, (key, m) in enumerate(models.items())}
        log(f"{name}: timing {len(cases)} models side by side on {args.runtime}")
        table = app_latency.compare(cases, runs=args.runs, rounds=5)
    base_ms = table["base"][args.runtime]
    for row in rows:
        ms = table[f"{row['budget']}={args.budget} / {row['variant']}"][args.runtime]
        row.update(ms=ms, base_ms=base_ms, speedup=base_ms / ms)
    return rows


def markdown(rows, runtime: str) -> str:
    lines = [f"| model | budget | variant | prunable groups | val | test | MACs kept | "
             f"speed-up ({runtime}) |", "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['model']} | {r['budget']} | {r['variant']} | {r['prunable_groups']} "
                     f"| {r['val']:.3f} | {r['test']:.3f} | {r['macs'] / r['base_macs']:.1%} | "
                     f"{r['speedup']:.2f}× |")
    return "\n".join(lines)


def decision(rows) -> str:
    """The variant with the best mean validation accuracy over models and budgets."""
    means = {}
    for variant in VARIANTS:
        vals = [r["val"] for r in rows if r["variant"] == variant]
        means[variant] = float(np.mean(vals)) if vals else float("nan")
    best = max(means, key=means.get)
    listing = ", ".join(f"{v} {m:.3f}" for v, m in means.items())
    return f"mean validation accuracy: {listing}; chosen default: {best!r} ({VARIANTS[best]!r})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--runtime", default="onnxruntime",
                        choices=list(app_latency.RUNTIMES[1:]))
    parser.add_argument("--n-train", type=int, default=6000)
    parser.add_argument("--n-val", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", default=str(HERE / "fusion_ablation"))
    args = parser.parse_args()
    rows = []
    for name in args.models:
        rows += run_model(name, args)
        text = markdown(rows, args.runtime) + "\n\n" + decision(rows)
        print(text, flush=True)
        Path(args.out + ".json").write_text(json.dumps({"args": vars(args), "rows": rows},
                                                       indent=1, default=str))
        Path(args.out + ".md").write_text(text + "\n")


if __name__ == "__main__":
    main()
