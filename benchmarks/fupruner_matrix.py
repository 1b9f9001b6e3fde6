"""User-style FuPruner calls, each trained as a user would, against a baseline trained the same way.

Every case is the shortest call a user writes — `tfm_fuse.prune(model, method="fupruner",
**options)`, then `fit(..., callbacks=[callbacks.FuPruner(**options)])` — varying one option at a
time from the defaults. Data: the shipped digits; 8,000 for training, of which 1,024 are the
validation split `fit` gets (the guard and every choice of default read only those), and 2,000
held-out digits no decision sees, on which the table's accuracies are measured (inference mode,
after `strip` for the final figure, after each epoch's callbacks for the per-epoch curve).

Two comparisons per case, both published. *As returned*: the stripped model as a user gets
it, against the baseline's better figure — its own (inference mode) or a copy's whose BatchNorm
statistics are re-estimated on 2,048 training images (MobileNetV2's momentum 0.999 leaves the
plain baseline at chance, which would flatter every pruned case). *Like for like*: both the
baseline and the stripped model with their statistics re-estimated on the same 2,048 images, so
that the end-of-fit noise of moving statistics under a constant learning rate (up to 5 points
between two epochs of the same unpruned model) counts on neither side; the goal is judged on it.

Run:  python benchmarks/fupruner_matrix.py [--models resnet,mobilenetv2] [--epochs 4] [--seeds 0,1,2]
      python benchmarks/fupruner_matrix.py --merge a.json b.json   # one table from two runs
Writes benchmarks/fupruner_matrix.{json,md} and benchmarks/fupruner_matrix.png (accuracy curves).
Goal per case: within 1 point of the baseline (like for like) at >= 45 % of MACs removed, and no epoch after the
first more than 5 points below the baseline's first epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfm_fuse  # noqa: E402
from tfm_fuse import callbacks, files  # noqa: E402
from tfm_fuse.app.models import reestimate_batchnorm, residual_cnn  # noqa: E402

HERE = Path(__file__).parent
BATCH, LR = 64, 2e-3
EPOCHS = "resnet=4,mobilenetv2=8"

# (name, options for prune(), options for FuPruner())
CASES = [
    ("defaults", {}, {}),                                 # l2, global, auto, macs=0.5
    ("scope=layer", {"scope": "layer"}, {}),
    ("criterion=l1", {"criterion": "l1"}, {}),
    ("criterion=fused", {"criterion": "fused"}, {}),
    ("update_freq=epoch", {}, {"update_freq": "epoch"}),
    ("max_drop=0.01", {}, {"max_drop": 0.01}),
]


def build(name: str) -> tuple[keras.Model, int]:
    """The model and its input size (the digits are resized to it)."""
    if name == "resnet":  # stem + 3 stages x 2 residual blocks, 16/32/64, BN momentum 0.9
        return residual_cnn(widths=(16, 32, 64), blocks_per_stage=2), 28
    if name == "mobilenetv2":
        return keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3),
                                              classes=10), 32
    raise SystemExit(f"unknown model {name!r}; accepted: resnet, mobilenetv2")


def data(size: int):
    (x, y), test = tfm_fuse.app.data.load_mnist(n_train=8000, n_test=2000)
    if size != 28:
        x, test = tfm_fuse.app.data.as_rgb(x, size), (tfm_fuse.app.data.as_rgb(test[0], size), test[1])
    # whole batches only: TF 2.21's oneDNN can crash fit on a partial last batch
    n_fit = (len(x) - 1024) // BATCH * BATCH
    return (x[:n_fit], y[:n_fit]), (x[-1024:], y[-1024:]), test


def accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(x, verbose=0, batch_size=500), -1) == y))


class TestCurve(keras.callbacks.Callback):
    """Held-out accuracy in inference mode after each epoch's other callbacks (reported only).

    With `reestimate`, also that of a copy whose BatchNorm statistics are re-estimated on the
    training images (the baseline's honest figure when its momentum is 0.999)."""

    def __init__(self, test, reestimate=None):
        super().__init__()
        self.test, self.reestimate, self.values, self.reestimated = test, reestimate, [], []

    def on_epoch_end(self, epoch, logs=None):
        self.values.append(accuracy(self.model, *self.test))
        if self.reestimate is not None:
            self.reestimated.append(accuracy(reestimate_batchnorm(_copy(self.model),
                                                                  self.reestimate), *self.test))


def train(model, train_xy, val, test, epochs: int, extra=(), reestimate=None) -> dict:
    head = getattr(model.layers[-1], "layer", model.layers[-1])  # unwrap a PruneWrapper
    logits = head.get_config().get("activation") != "softmax"
    model.compile(optimizer=keras.optimizers.Adam(LR),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=logits),
                  metrics=["accuracy"])
    curve = TestCurve(test, reestimate)
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hist = model.fit(*train_xy, validation_data=val, epochs=epochs, batch_size=BATCH,
                         verbose=0, callbacks=[*extra, curve])
    return {"val_curve": [float(v) for v in hist.history["val_accuracy"]],
            "test_curve": curve.values, "test_curve_bn_reestimated": curve.reestimated,
            "seconds": time.perf_counter() - t,
            "warnings": [str(w.message) for w in caught if "FuPruner" in str(w.message)],
            "logs": {k: [float(v) for v in vs] for k, vs in hist.history.items()
                     if k.startswith("prune_")}}


def run_model(name: str, epochs: int, cases, seed: int = 0) -> list[dict]:
    keras.utils.set_random_seed(seed)
    base, size = build(name)
    init = base.get_weights()
    train_xy, val, test = data(size)
    full = tfm_fuse.profile(base).macs
    row = {"model": name, "case": "baseline", "seed": seed,
           **train(base, train_xy, val, test, epochs, reestimate=train_xy[0][:2048])}
    row["test"] = accuracy(base, *test)
    row["val"] = accuracy(base, *val)
    row["test_bn_reestimated"] = row["test_curve_bn_reestimated"][-1]
    row["val_bn_reestimated"] = accuracy(reestimate_batchnorm(_copy(base), train_xy[0][:2048]),
                                         *val)
    row["macs_removed"] = 0.0
    rows = [row]
    print(_line(row, rows[0]), flush=True)
    for case, prune_kw, cb_kw in cases:
        keras.utils.set_random_seed(seed)
        model, _ = build(name)
        model.set_weights(init)
        masked = tfm_fuse.prune(model, method="fupruner", **prune_kw)
        pruner = callbacks.FuPruner(**cb_kw)
        row = {"model": name, "case": case, "seed": seed,
               **train(masked, train_xy, val, test, epochs, [pruner])}
        small = tfm_fuse.strip(masked)
        row["test"], row["val"] = accuracy(small, *test), accuracy(small, *val)
        row["macs_removed"] = 1 - tfm_fuse.profile(small).macs / full
        # like for like with the baseline: the same weights, statistics re-estimated the same way
        reestimated = reestimate_batchnorm(_copy(small), train_xy[0][:2048])
        row["test_bn_reestimated"] = accuracy(reestimated, *test)
        row["val_bn_reestimated"] = accuracy(reestimated, *val)
        rows.append(row)
        print(_line(row, rows[0]), flush=True)
    return rows


def _copy(model: keras.Model) -> keras.Model:
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _line(r: dict, base: dict) -> str:
    low = min(r["test_curve"][1:], default=float("nan"))
    reference = max(base["test"], base["test_bn_reestimated"])
    first = max(base["test_curve"][0], base["test_curve_bn_reestimated"][0])
    return (f"{r['model']:<12} {r['case']:<26} test {r['test']:.4f} "
            f"drop {100 * (reference - r['test']):+6.2f}p  val {r['val']:.4f}  "
            f"MACs- {r['macs_removed']:6.1%}  lowest epoch>1 {low:.4f}  "
            f"(baseline epoch 1 {first:.4f})  {r['seconds']:.0f}s"
            + f"  BN re-estimated: test {r['test_bn_reestimated']:.4f} "
              f"val {r['val_bn_reestimated']:.4f}"
            + (", curve " + " ".join(f"{v:.3f}" for v in r["test_curve_bn_reestimated"])
               if r["case"] == "baseline" else "")
            + (f"  warnings: {len(r['warnings'])}" if r.get("warnings") else ""))


def summary(rows: list[dict]) -> list[dict]:
    """Per model and case, each figure averaged over the seeds run (with its range).

    Per seed, a case is compared with the baseline trained from the same initial weights:
    `drop` like for like (both with BatchNorm statistics re-estimated on the same 2,048
    training digits: what pruning cost the weights), `drop_returned` the model as `strip`
    returns it against the baseline's better final figure (plain or re-estimated), `low` the
    lowest held-out accuracy after any epoch but the first, `first` the baseline's first
    epoch. The goal is judged like for like; both drops are published."""
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        seeds = sorted({r.get("seed", 0) for r in rows if r["model"] == name})
        bases = {r.get("seed", 0): r for r in rows if r["model"] == name and r["case"] == "baseline"}
        for case in dict.fromkeys(r["case"] for r in rows if r["model"] == name):
            per_seed = []
            for seed in seeds:
                r = next(r for r in rows if r["model"] == name and r["case"] == case
                         and r.get("seed", 0) == seed)
                base = bases[seed]
                reference = max(base["test"], base["test_bn_reestimated"])
                first = max(base["test_curve"][0], base["test_curve_bn_reestimated"][0])
                per_seed.append({"test": r["test"], "drop_returned": reference - r["test"],
                                 "drop": base["test_bn_reestimated"] - r["test_bn_reestimated"],
                                 "macs": r["macs_removed"], "first": first,
                                 "low": min(r["test_curve"][1:], default=float("nan")),
                                 "reestimated": r["test_bn_reestimated"]})
            mean = {k: float(np.mean([p[k] for p in per_seed])) for k in
                    ("test", "drop", "drop_returned", "macs", "first", "low", "reestimated")}
            spread = {k: (min(p[k] for p in per_seed), max(p[k] for p in per_seed))
                      for k in ("test", "drop", "drop_returned", "low", "reestimated")}
            ok = mean["drop"] <= 0.01 and mean["macs"] >= 0.45 and mean["low"] >= mean["first"] - 0.05
            out.append({"model": name, "case": case, "seeds": len(per_seed), **mean,
                        "range": spread, "goal_met": ok if case != "baseline" else None})
    return out


def markdown(rows: list[dict]) -> str:
    """The README table: per model, each case against that model's baseline (seed means)."""
    def fig(value, lo, hi, pct=False):
        if lo == hi:
            return f"{100 * value:+.2f} pt" if pct else f"{value:.4f}"
        if pct:
            return f"{100 * value:+.2f} pt ({100 * lo:+.2f}…{100 * hi:+.2f})"
        return f"{value:.4f} ({lo:.3f}…{hi:.3f})"

    out = ["| model | case | test acc as returned | drop vs baseline's better figure | "
           "test acc, BN re-estimated | drop like for like | MACs removed | lowest epoch > 1 | "
           "goal met |", "|---|---|---|---|---|---|---|---|---|"]
    for s in summary(rows):
        if s["case"] == "baseline":
            out.append(f"| {s['model']} | baseline, {s['seeds']} seed(s) | "
                       f"{fig(s['test'], *s['range']['test'])} | – | "
                       f"{fig(s['reestimated'], *s['range']['reestimated'])} | – | – | "
                       f"first epoch {s['first']:.4f} | |")
            continue
        out.append(f"| {s['model']} | `{s['case']}` | {fig(s['test'], *s['range']['test'])} | "
                   f"{fig(s['drop_returned'], *s['range']['drop_returned'], pct=True)} | "
                   f"{fig(s['reestimated'], *s['range']['reestimated'])} | "
                   f"{fig(s['drop'], *s['range']['drop'], pct=True)} | {s['macs']:.1%} | "
                   f"{fig(s['low'], *s['range']['low'])} | {'yes' if s['goal_met'] else 'no'} |")
    return "\n".join(out)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.2), squeeze=False)
    for ax, name in zip(axes[0], models):
        for case in dict.fromkeys(r["case"] for r in rows if r["model"] == name):
            group = [r for r in rows if r["model"] == name and r["case"] == case]
            curve = np.mean([r["test_curve"] for r in group], axis=0)  # mean over seeds
            epochs = range(1, len(curve) + 1)
            style = dict(color="black", lw=2.5) if case == "baseline" else dict(lw=1.2)
            ax.plot(epochs, curve, marker="o", label=case, **style)
            if case == "baseline" and group[0].get("test_curve_bn_reestimated"):
                ax.plot(epochs, np.mean([r["test_curve_bn_reestimated"] for r in group], axis=0),
                        marker="o", ls="--", color="black", label="baseline, BN re-estimated")
        seeds = len({r.get("seed", 0) for r in rows if r["model"] == name})
        ax.set(title=f"{name}: held-out accuracy after each epoch\n(inference mode, mean of "
                     f"{seeds} seed{'s' if seeds > 1 else ''})",
               xlabel="epoch", ylabel="accuracy")
        low = min(min(r["test_curve"]) for r in rows if r["model"] == name)
        ax.set_ylim(min(0.8, low - 0.02), 1.0)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with files.atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet,mobilenetv2")
    ap.add_argument("--epochs", default=EPOCHS,
                    help="epochs for every model (4) or per model (resnet=4,mobilenetv2=8)")
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds; figures are their means")
    ap.add_argument("--out", default=str(HERE / "fupruner_matrix.json"))
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="write the table and plot of earlier runs' rows instead of running")
    args = ap.parse_args(argv)
    if args.merge:
        rows = [r for path in args.merge for r in json.loads(Path(path).read_text())]
        return _write(rows, args.out)
    wanted = [c for c in args.cases.split(",") if c]
    cases = [c for c in CASES if not wanted or c[0] in wanted]
    rows = []
    epochs = dict(e.split("=") for e in args.epochs.split(",")) if "=" in args.epochs else {}
    for name in args.models.split(","):
        for seed in (int(v) for v in args.seeds.split(",")):
            rows += run_model(name, int(epochs.get(name, args.epochs)), cases, seed=seed)
    return _write(rows, args.out)


def _write(rows: list[dict], out: str) -> int:
    files.write_text(out, json.dumps(rows, indent=1))
    files.write_text(Path(out).with_suffix(".md"), markdown(rows) + "\n")
    plot(rows, Path(out).with_suffix(".png"))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
