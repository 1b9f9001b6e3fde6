"""The `tfm-fuse demo` job: FuPruner during `fit` on the shipped MNIST, then every edge target.

Trains a residual CNN (baseline), trains the same initial weights again under the FuPruner
callback with a 50 % MAC budget and an accuracy guard — the library's defaults otherwise: the
schedule comes from fit's length — strips and fuses the result, converts both
models to the Edge TPU, Jetson, OpenVINO and ONNX targets, times them side by side on LiteRT,
OpenVINO and ONNX Runtime, and prints one table. Reports, models and plots go to `out`.

Example:
    >>> from tfm_fuse.app.demo import run_demo
    >>> rows = run_demo(Path("out"), epochs=2, n_train=2000, runs=50)
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import keras
import numpy as np

import tfm_fuse
from tfm_fuse import callbacks, files
from tfm_fuse.app import latency
from tfm_fuse.converters import convert_all
from tfm_fuse.app.data import load_mnist
from tfm_fuse.errors import ConfigError
from tfm_fuse.app.models import residual_cnn
from tfm_fuse.pruning.methods import validate_rate

_VERBOSE = 1 if sys.stdout.isatty() else 2  # Keras's progress bar on a terminal, a line per epoch in logs
BATCH = 64
WIDTHS = (32, 64, 128)  # wide enough that latency follows compute, not per-call overhead
# Kept channels in multiples of 8: in benchmarks/latency_vs_macs.py unaligned widths ran at
# 0.71-0.77 of their MAC ratio on ONNX Runtime, aligned ones at 0.92-0.99.
ALIGN = 8


def _compile(model: keras.Model, total_steps: int) -> keras.Model:
    lr = keras.optimizers.schedules.CosineDecay(2e-3, total_steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float((model.predict(x, batch_size=256, verbose=0).argmax(-1) == y).mean())


def _train_pruned(init_weights, macs_removed: float, data, epochs: int, out: Path):
    (x, y), val = data
    model = residual_cnn(widths=WIDTHS)
    model.set_weights(init_weights)
    steps = math.ceil(len(x) / BATCH)
    masked = _compile(tfm_fuse.prune(model, method="fupruner", macs=macs_removed, align=ALIGN),
                      steps * epochs)
    pruner = callbacks.FuPruner(max_drop=0.01)  # the guard reads the validation split only
    history = masked.fit(x, y, batch_size=BATCH, epochs=epochs, validation_data=val,
                         verbose=_VERBOSE, callbacks=[pruner, keras.callbacks.CSVLogger(
                             str(out / "fupruner_log.csv"))])
    return masked, history.history


def _size_kb(reports: dict) -> float:
    path = reports["edgetpu"].artefacts.get("tflite_int8")
    return os.path.getsize(path) / 1024 if path else float("nan")


def _table(rows: list[dict], runtimes: list[str]) -> str:
    head = (f"{'model':<10} {'accuracy':>8} {'params':>8} {'MACs':>11} {'int8 KB':>8} "
            + " ".join(f"{rt:>20}" for rt in runtimes))
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = " ".join(f"{r['latency_ms'][rt]:>8.3f} ms {r['speedup'][rt]:>6.2f}x"
                         for rt in runtimes)
        lines.append(f"{r['model']:<10} {r['accuracy']:>8.4f} {r['params']:>8,} {r['macs']:>11,} "
                     f"{r['int8_kb']:>8.1f} {cells}")
    return "\n".join(lines)


def _plot(history: dict, pruned_history: dict, timings: dict, full_macs: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4))
    epochs = range(1, len(history["val_accuracy"]) + 1)
    a.plot(epochs, history["val_accuracy"], marker="o", label="baseline")
    a.plot(epochs, pruned_history["val_accuracy"], marker="s", label="FuPruner")
    a.set(xlabel="epoch", ylabel="validation accuracy (inference mode)",
          title="Accuracy during fit")
    a.legend()
    macs = full_macs * (1.0 - np.array(pruned_history["prune_macs_removed"]))
    b.plot(epochs, macs / 1e6, marker="s", color="tab:orange")
    b.set(xlabel="epoch", ylabel="MMACs per image (after strip)", title="FuPruner: compute")
    runtimes = list(next(iter(timings.values())))
    width = 0.8 / len(timings)
    for k, (name, row) in enumerate(timings.items()):
        b_x = np.arange(len(runtimes)) + k * width
        c.bar(b_x, [row[rt] for rt in runtimes], width, label=name)
    c.set_xticks(np.arange(len(runtimes)) + width * (len(timings) - 1) / 2, runtimes)
    c.set(ylabel="median latency, ms (batch 1, 1 thread)", title="Latency per runtime")
    c.legend()
    for axis in (a, b):
        axis.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    with files.atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def run_demo(out: Path, *, epochs: int = 6, macs_removed: float = 0.5, n_train: int = 8000,
             runs: int = 200) -> list[dict]:
    """Train, prune during fit, strip, fuse, convert to every target, time, and report.

    Args:
        out: folder for `results.json`, `demo.png`, the models and the converter reports.
        epochs: epochs for the baseline and for the pruned run. Defaults to `6`.
        macs_removed: the compute budget: fraction of MACs FuPruner removes. Defaults to `0.5`.
        n_train: training images (the last 2,000 shipped images are the test set).
            Defaults to `8000`.
        runs: timed runs per model and runtime. Defaults to `200`.

    Returns:
        The table's rows as dicts.
    """
    validate_rate(macs_removed, "macs_removed")
    if epochs < 2:
        raise ConfigError(f"The demo needs epochs >= 2 (the accuracy guard's reference epoch, "
                          f"then pruning). Received: epochs={epochs}")
    out.mkdir(parents=True, exist_ok=True)
    (x, y), (xt, yt) = load_mnist(n_train=min(n_train, 8000), n_test=2000)
    # an eighth of the training images is the validation split (the guard reads it, and only
    # it); the test images are seen by no decision. Whole batches: TF 2.21's oneDNN can crash
    # fit on a partial last batch of narrow convolutions.
    n_val = max(len(x) // 8, 1)
    n_fit = max((len(x) - n_val) // BATCH * BATCH, BATCH)
    (x, y), val = (x[:n_fit], y[:n_fit]), (x[n_fit:], y[n_fit:])
    keras.utils.set_random_seed(0)
    base = _compile(residual_cnn(widths=WIDTHS), math.ceil(len(x) / BATCH) * epochs)
    init = base.get_weights()
    print(f"[1/5] training the baseline residual CNN on {len(x)} MNIST images "
          f"({len(val[0])} more for validation, {len(xt)} held out for the test)")
    history = base.fit(x, y, batch_size=BATCH, epochs=epochs, validation_data=val,
                       verbose=_VERBOSE).history
    print(f"[2/5] training again under FuPruner: {macs_removed:.0%} of MACs to remove "
          f"(channels kept in multiples of {ALIGN}), accuracy guard 1 point on validation")
    masked, pruned_history = _train_pruned(init, macs_removed, ((x, y), val), epochs, out)
    rate = float(pruned_history["prune_rate"][-1])
    reached = float(pruned_history["prune_macs_removed"][-1])
    if reached < macs_removed - 0.02:  # the guard held back, or fit was too short to prune
        print(f"      FuPruner removed {reached:.0%} of the MACs, short of the {macs_removed:.0%}"
              f" asked: its accuracy guard kept the model within 1 point of the unpruned first "
              f"epoch (more --epochs give it room to recover between steps).")
    print("[3/5] stripping masked channels, fusing BatchNorm and activations")
    models = {"baseline": tfm_fuse.fuse(base), "pruned": tfm_fuse.fuse(tfm_fuse.strip(masked))}
    diff = float(np.abs(models["pruned"].predict(xt[:256], verbose=0)
                        - masked.predict(xt[:256], verbose=0)).max())
    print(f"      pruned (stripped+fused) vs masked model: max |difference| = {diff:.2e}")
    print("[4/5] converting both models for Edge TPU, Jetson, OpenVINO and ONNX")
    reports = {name: convert_all(m, out / name, representative_data=x[:500],
                                 validation_data=xt[:500], overwrite=True, keep_failed=True)
               for name, m in models.items()}
    print("[5/5] timing both models side by side")
    cases = {name: latency.timed_artefacts(models[name], reports[name], out / name)
             for name in models}
    timings = latency.compare(cases, runs=runs)
    speedups = latency.speedups(timings, "baseline")
    base_profile = tfm_fuse.profile(models["baseline"])
    rows = []
    for name, model in models.items():
        prof = tfm_fuse.profile(model)
        rows.append({"model": name, "accuracy": _accuracy(model, xt, yt), "params": prof.params,
                     "macs": prof.macs, "macs_ratio": base_profile.macs / prof.macs,
                     "int8_kb": _size_kb(reports[name]), "latency_ms": timings[name],
                     "speedup": speedups[name],
                     "targets_ok": {t: bool(r.ok) for t, r in reports[name].items()}})
        files.save_model(models[name], out / f"{name}.keras", overwrite=True)
    print(_table(rows, list(timings["baseline"])))
    print("checks against Keras: " + "; ".join(
        f"{r['model']}: " + ", ".join(f"{t} {'ok' if ok else 'FAILED'}" for t, ok in
                                       r["targets_ok"].items()) for r in rows))
    for name, by_target in reports.items():  # a failed check says why, in the report's words
        for target, report in by_target.items():
            for issue in [] if report.ok else report.issues:  # (the hints are the API's)
                print(f"      {name}/{target}: {re.sub(r'; pass [^)]*', '', issue)}")
    if epochs < 4 or len(x) < 2000:
        print(f"Note: {len(x)} training images and {epochs} epoch(s) leave both models far "
              "from trained, so accuracies (and int8 agreement) are not meaningful; the "
              "defaults (--n-train 8000 --epochs 6) take about 5 minutes.")
    _plot(history, pruned_history, timings, base_profile.macs, out / "demo.png")
    files.write_text(out / "results.json", json.dumps({
        "rows": rows, "channel_rate": rate, "strip_fuse_max_diff": diff,
        "history": {"baseline": history, "fupruner": pruned_history}}, indent=2, default=float))
    print(f"Wrote {out}/results.json, {out}/demo.png, the models and converter reports")
    return rows
