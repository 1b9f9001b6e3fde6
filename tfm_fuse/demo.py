"""The `tfm-fuse demo` job: train, prune, strip, fuse and report on the shipped MNIST images.

Example:
    >>> from tfm_fuse.demo import run_demo
    >>> results = run_demo(Path("out"), epochs=1, n_train=2000)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np

import tfm_fuse
from tfm_fuse.data import load_mnist
from tfm_fuse.models import residual_cnn
from tfm_fuse.pruning.prune import validate_rate


_VERBOSE = 1 if sys.stdout.isatty() else 2  # Keras's progress bar on a terminal, a line per epoch in logs


def _compile(model: keras.Model) -> keras.Model:
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    logits = model.predict(x, batch_size=256, verbose=0)
    return float((logits.argmax(-1) == y).mean())


def _row(name: str, model: keras.Model, x, y, base: tfm_fuse.Profile | None) -> dict:
    prof = tfm_fuse.profile(model)
    row = {"model": name, "accuracy": _accuracy(model, x, y), "params": prof.params,
           "macs": prof.macs}
    if base is not None:
        row["macs_ratio"] = base.macs / max(prof.macs, 1)
    return row


def _table(rows: list[dict]) -> str:
    head = f"{'model':<22} {'accuracy':>9} {'params':>10} {'MACs':>12} {'MAC ratio':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['model']:<22} {r['accuracy']:>9.4f} {r['params']:>10,} {r['macs']:>12,} "
                     f"{r.get('macs_ratio', 1.0):>9.2f}x")
    return "\n".join(lines)


def _plot(rows: list[dict], history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    base, tuned = history.get("val_accuracy", []), history.get("pruned_val_accuracy", [])
    a.plot(range(1, len(base) + 1), base, marker="o", label="baseline training")
    a.plot(range(len(base) + 1, len(base) + len(tuned) + 1), tuned, marker="s",
           label="pruned, fine-tuning")
    a.xaxis.get_major_locator().set_params(integer=True)
    a.set_xlabel("epoch"), a.set_ylabel("validation accuracy"), a.legend()
    names = [r["model"] for r in rows]
    b.bar(names, [r["macs"] / 1e6 for r in rows], color="tab:blue")
    b.set_ylabel("MMACs per image"), b.set_title("Compute per model")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_demo(out: Path, *, epochs: int = 3, rate: float = 0.5, n_train: int = 6000) -> list[dict]:
    """Train a residual CNN, prune it, strip and fuse it; print a table and write reports.

    Args:
        out: folder for `results.json`, `demo.png` and the models.
        epochs: baseline training epochs (the pruned model fine-tunes for as many).
            Defaults to `3`.
        rate: fraction of each channel group to prune. Defaults to `0.5`.
        n_train: training images (the last 2,000 shipped images are the test set).
            Defaults to `6000`.

    Returns:
        The table's rows as dicts.
    """
    validate_rate(rate)
    out.mkdir(parents=True, exist_ok=True)
    (x, y), (xt, yt) = load_mnist(n_train=min(n_train, 8000), n_test=2000)
    keras.utils.set_random_seed(0)
    print(f"[1/4] training the baseline residual CNN on {len(x)} MNIST images")
    base = _compile(residual_cnn())
    hist = base.fit(x, y, batch_size=64, epochs=epochs, validation_data=(xt, yt), verbose=_VERBOSE)
    print(f"[2/4] pruning {rate:.0%} of the channels of every group (fusion-aware groups), "
          "fine-tuning")
    masked = _compile(tfm_fuse.prune(base, method="l1", rate=rate, align=4))
    tuned = masked.fit(x, y, batch_size=64, epochs=epochs, validation_data=(xt, yt), verbose=_VERBOSE)
    print("[3/4] stripping masked channels and fusing BatchNorm / activations")
    small = tfm_fuse.strip(masked)
    deployed = tfm_fuse.fuse(small)
    diff = float(np.abs(deployed.predict(xt[:256], verbose=0) - masked.predict(xt[:256], verbose=0)).max())
    print(f"      stripped+fused vs masked: max |difference| = {diff:.2e}")
    base_prof = tfm_fuse.profile(base)
    rows = [_row("baseline", base, xt, yt, base_prof),
            _row("pruned+stripped+fused", deployed, xt, yt, base_prof)]
    print("[4/4] results on the 2,000 held-out images\n" + _table(rows))
    history = {**hist.history, "pruned_val_accuracy": tuned.history["val_accuracy"]}
    _plot(rows, history, out / "demo.png")
    deployed.save(out / "pruned.keras")
    base.save(out / "baseline.keras")
    (out / "results.json").write_text(json.dumps({"rows": rows, "strip_fuse_max_diff": diff,
                                                  "history": history}, indent=2))
    print(f"Wrote {out}/results.json, {out}/demo.png, {out}/baseline.keras, {out}/pruned.keras")
    return rows
