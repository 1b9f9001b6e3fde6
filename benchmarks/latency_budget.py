"""Pruning to a measured latency budget: MAC-uniform vs latency-aware vs the hand-thinned twin.

For each model and runtime, three ways to reach the same measured latency (`--budget`, the
fraction of the full model's latency to remove; 0.5 = twice as fast). First the runtime's limit
is measured (latency-aware masks with every group at `max_group_rate`): where it removes less
than the budget + 5 points, the budget becomes 60 % of that limit (the table says so). Then:

- latency-aware   `MaskUpdater.meet_latency`: the least important channels first, in chunks of
                  the runtime's measured channel block, only where the measured per-layer
                  table (`tfm_fuse.pruning.latency_model`) says fewer channels are faster, until
                  it predicts the budget (`cost_exponent`, default 0, chosen on validation
                  digits by `latency_allocation_choice.py`); closed on the measured whole model
                  (NetAdapt-style), each candidate timed side by side with the full model in
                  one worker process
- mac-uniform     at the latency the latency-aware model measured: a MAC budget, allocated the
                  way `prune(method="fupruner", macs=...)` does (one global L2 ranking, every
                  MAC worth the same) with the hand-chosen `align=8`; the MAC fraction bisected
                  on the *measured* latency of the stripped model until it removes within 1
                  point of what the latency-aware model measured (or the nearest reached)
- hand-thinned    the mac-uniform model's architecture and channel counts, freshly initialised
                  and trained from scratch: the twin a person would build by hand

Training, the same for all on the shipped digits (28×28 MNIST resized to the model's input,
grey copied to 3 channels): the base model trains `--epochs` epochs (its initial weights
and batches drawn from `--base-seed`; before that option they were not seeded); each pruned
model is allocated from the trained weights, stripped and fine-tuned `--epochs` more, once per
`--seeds` from the same start; the hand-thinned twin trains `2 × --epochs` from scratch, once
per seed.
Accuracy: inference mode on `--n-test` held-out digits that no decision saw (allocation uses
weights only; no option is chosen on them), the mean over seeds, and for the pruned models also
before fine-tuning (BatchNorm statistics re-estimated on training inputs): that figure has no
training noise and shows what the allocation alone costs. Latency-aware minus MAC-uniform is
also given per seed (paired: one seed orders the same batches for both).

Speed: every artefact converted by `tfm_fuse.converters` (what would be deployed) and timed side
by side in one run (`tfm_fuse.app.latency.compare`, one thread, batch 1, interleaved rounds).
Speed-up ÷ MAC ratio = (full ms / pruned ms) / (full MACs / pruned MACs): 1 means the runtime
turns every MAC removed into time. What stops it: the time a runtime spends per inference
whatever the MACs (dispatch, memory traffic of inputs and outputs, layers pruning does not
shrink). It is measured, not assumed: four untrained MAC-uniform copies (75/50/30/15 % of the
MACs kept) are timed in the same run, and a straight line through (MACs kept, ms) gives the
fixed share f of the full model's time; a 2× speed-up then has a ratio of at most
(1 - 2f) / (1 - f) (column "fixed share").

Prints one table per model and writes `benchmarks/latency_budget.json` and `.md`. The latency
tables are cached (`~/.cache/tfm_fuse/latency`), so a second run measures only what changed.
Run alone: the timings are only meaningful on an otherwise idle machine.

Run:  python benchmarks/latency_budget.py [--models residual_cnn mobilenet_v2 resnet50]
        [--runtimes litert_int8 openvino_cpu onnxruntime] [--budget 0.5] [--epochs 2]
        [--seeds 0 1 2] [--base-seed 0] [--align N  (the latency-aware block; default measured)]
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
# TensorFlow 2.21's oneDNN kernels crash (SIGSEGV / "free(): invalid pointer") training a model
# with 8-channel convolutions on this AMX Xeon (`residual_cnn(widths=(8, 16, 16))` at 64×64);
# the stock kernels do not. Only training is affected, not what is timed (other runtimes).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfm_fuse  # noqa: E402
from tfm_fuse.app import latency as app_latency  # noqa: E402
from tfm_fuse.app.data import load_mnist  # noqa: E402
from tfm_fuse.pruning import allocation  # noqa: E402
from tfm_fuse.pruning.budget import Kind  # noqa: E402
from tfm_fuse.pruning.updater import MaskUpdater  # noqa: E402

HERE = Path(__file__).parent
UNIFORM_ALIGN = 8  # what MAC-uniform pruning was given by hand before (x86 timings)
SWEEP_MACS_KEPT = (0.75, 0.5, 0.3, 0.15)  # MAC-uniform copies timed for the fixed-time fit
# model -> (builder of an untrained model for an input shape, input size)
MODELS = {
    "residual_cnn": (lambda shape: tfm_fuse.app.models.residual_cnn(shape, widths=(32, 64, 128)),
                     64),
    "mobilenet_v2": (lambda shape: keras.applications.MobileNetV2(
        weights=None, input_shape=shape, classes=10), 96),
    "resnet50": (lambda shape: keras.applications.ResNet50(
        weights=None, input_shape=shape, classes=10), 32),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def digits(size: int, n_train: int, n_test: int):
    """Shipped MNIST at `size`×`size`×3: (x, y) for training and for the held-out test."""
    import tensorflow as tf

    (x, y), (xt, yt) = load_mnist(n_train=n_train, n_test=n_test)

    def resize(a):
        return np.repeat(tf.image.resize(a, (size, size)).numpy(), 3, axis=-1)
    return (resize(x), y), (resize(xt), yt)


def train(model, data, epochs: int, seed: int = 0):
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(*data, epochs=epochs, batch_size=64, verbose=0)
    # a short fit leaves moving statistics behind the weights: set them from the training
    # inputs, as before any deployment (inference mode is what is measured)
    tfm_fuse.app.models.reestimate_batchnorm(model, data[0][:2048])
    return model


def accuracy(model, test) -> float:
    x, y = test
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras: "the structure of inputs doesn't match"
        predicted = model.predict(x, batch_size=250, verbose=0)
    return float(np.mean(np.argmax(predicted, -1) == y))


def with_softmax(build, shape):
    """The builder's model; classification heads of keras.applications end in softmax already,
    the residual CNN gives logits: one softmax added so that all train with the same loss."""
    model = build(shape)
    if model.layers[-1].get_config().get("activation") == "softmax":
        return model
    return keras.Model(model.inputs, keras.layers.Softmax()(model.outputs[0]))


def mac_budget_for(updater: MaskUpdater, scores, budget: float,
                   tolerance: float = 0.01, steps: int = 10) -> tuple[dict, float]:
    """Masks for a MAC budget (FuPruner's `macs=` allocation: one global ranking, `align=8`)
    whose measured latency removes `budget`: the MAC fraction bisected on measured times.
    Within 1 point: near the runtime's limit a point of latency is many MACs (MobileNetV2 on
    OpenVINO CPU, fixed share 44 %: 51.1 % removed kept 12.5 % of the MACs, 48.4 % kept 16.3 %;
    with 3 points allowed the two sides differed by 2.7 and the one removing more lost)."""
    full = updater.time_masks(allocation.allocate(scores, 0.0))
    lo, hi, best = 0.0, 0.95, None
    for _ in range(steps):
        macs = (lo + hi) / 2
        rate = updater.rate_for(scores, macs, Kind.MACS)
        masks = updater._allocate(scores, rate)
        removed = 1.0 - updater.time_masks(masks) / full
        if best is None or abs(removed - budget) < abs(best[1] - budget):
            best = (masks, removed)
        if abs(removed - budget) <= tolerance:
            break
        lo, hi = (macs, hi) if removed < budget else (lo, macs)
    return best


def reachable(base, runtime: str) -> float:
    """The measured latency fraction that latency-aware pruning removes at its limit (every
    group down to `max_group_rate`): how far the runtime lets pruning go at all."""
    updater = MaskUpdater(tfm_fuse.wrap(base), runtime=runtime)
    scores = allocation.group_scores(updater.model, updater.graph, updater.criterion)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "can remove at most": what is measured here
        masks = updater.allocate_to(scores, 0.95, Kind.LATENCY)
    full = updater.time_masks(allocation.allocate(scores, 0.0))
    return 1.0 - updater.time_masks(masks) / full


def masked_copy(trained, runtime: str, budget: float, method: str, *, align: int | None = None,
                **options):
    """A wrapped copy of `trained` with the masks `method` allocates for the budget (`align`:
    the latency-aware block, None for the runtime's measured one; mac-uniform always has
    `UNIFORM_ALIGN`. `options`: more `MaskUpdater` arguments)."""
    wrapped = tfm_fuse.wrap(trained)
    updater = MaskUpdater(wrapped, runtime=runtime,
                          align=UNIFORM_ALIGN if method == "mac-uniform" else align, **options)
    scores = allocation.group_scores(wrapped, updater.graph, updater.criterion)
    if method == "latency-aware":
        result = updater.meet_latency(budget)
        removed = result["removed"]
        log(f"{runtime}: closed loop, [aim, measured removed] per round: "
            + ", ".join(f"[{a:.3f}, {r:.3f}]" for a, r in result["rounds"]))
    else:
        masks, removed = mac_budget_for(updater, scores, budget)
        updater._write(masks)
    return wrapped, removed, updater.latency_align()


def mac_sweep(trained, fractions=SWEEP_MACS_KEPT):
    """Stripped MAC-uniform copies of `trained` keeping each fraction of the MACs (`align=8`),
    untrained: they are only timed, to measure the runtime's fixed per-inference time."""
    models = {}
    for kept in fractions:
        wrapped = tfm_fuse.wrap(trained)
        updater = MaskUpdater(wrapped, align=UNIFORM_ALIGN)
        scores = allocation.group_scores(wrapped, updater.graph, updater.criterion)
        updater._write(updater._allocate(scores, updater.rate_for(scores, 1.0 - kept, Kind.MACS)))
        models[kept] = tfm_fuse.strip(wrapped)
    return models


def fixed_fraction(points: list[tuple[float, float]]) -> dict:
    """The fixed (MAC-independent) share of the full model's time, from a straight line through
    (MACs kept, ms) points: with time = f + (1 - f) × MACs kept, a 2× speed-up needs
    MACs kept = (0.5 - f) / (1 - f), so its speed-up ÷ MAC ratio is at most (1 - 2f) / (1 - f)
    (≥ 0.95 needs f ≤ 0.048)."""
    kept, ms = np.array(points).T
    slope, intercept = np.polyfit(kept, ms, 1)
    full = ms[np.argmax(kept)]
    f = float(intercept / full)
    return {"fixed_fraction": f, "ratio_bound_at_2x": (1 - 2 * f) / (1 - f),
            "fit_points": [[float(k), float(m)] for k, m in points]}


def thinned_twin(masks_model, seed: int = 0):
    """The architecture with the channel counts of `masks_model`'s strip, freshly initialised
    (`clone_model` builds new layers from the configs: new initial weights, drawn from `seed`)."""
    thin = tfm_fuse.strip(masks_model)
    keras.utils.set_random_seed(seed)
    return keras.models.clone_model(thin)


def fine_tune(thin, data, epochs: int, seeds, test) -> list[float]:
    """Test accuracy of `thin` fine-tuned `epochs` from its current weights once per seed
    (the same start each time: only the batches' order and dropout differ); `thin` is left
    with the last seed's weights (timing does not depend on them)."""
    start = thin.get_weights()
    accs = []
    for seed in seeds:
        thin.set_weights(start)
        accs.append(accuracy(train(thin, data, epochs, seed=seed), test))
    return accs


def run_model(name: str, runtimes, budget: float, epochs: int, n_train: int, n_test: int,
              runs: int, seeds=(0,), base_seed: int = 0, align: int | None = None
              ) -> list[dict]:
    build, size = MODELS[name]
    shape = (size, size, 3)
    train_data, test = digits(size, n_train, n_test)
    keras.utils.set_random_seed(base_seed)  # the base's initial weights, then its batches
    base = train(with_softmax(build, shape), train_data, epochs, seed=base_seed)
    base_acc = accuracy(base, test)
    base_macs = tfm_fuse.profile(base).macs
    log(f"{name}: base trained, accuracy {base_acc:.3f}, {base_macs / 1e6:.1f} M MACs")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"full": app_latency.export(tfm_fuse.fuse(base), Path(tmp) / "full",
                                            train_data[0][:64], runtimes=tuple(runtimes))}
        sweep = mac_sweep(base)
        sweep_macs = {kept: tfm_fuse.profile(m).macs / base_macs for kept, m in sweep.items()}
        for kept, model in sweep.items():
            cases[f"sweep/{kept}"] = app_latency.export(
                tfm_fuse.fuse(model), Path(tmp) / f"sweep_{kept}", train_data[0][:64],
                runtimes=tuple(runtimes))
        for runtime in runtimes:
            reach = reachable(base, runtime)
            asked = budget if reach >= budget + 0.05 else round(0.6 * reach, 2)
            target = asked
            log(f"{name} / {runtime}: pruning can remove {reach:.1%} of the measured latency; "
                f"budget {target:.0%}")
            for method in ("latency-aware", "mac-uniform"):  # mac-uniform at what LA measured
                log(f"{name} / {runtime}: {method} allocation")
                wrapped, removed, block = masked_copy(base, runtime, target, method, align=align)
                if method == "latency-aware":
                    target = removed
                thin = tfm_fuse.strip(wrapped)
                untuned = accuracy(tfm_fuse.app.models.reestimate_batchnorm(
                    thin, train_data[0][:2048]), test)
                accs = fine_tune(thin, train_data, epochs, seeds, test)
                key = f"{runtime}/{method}"
                cases[key] = app_latency.export(tfm_fuse.fuse(thin), Path(tmp) / key.replace("/", "_"),
                                                train_data[0][:64], runtimes=(runtime,))
                common = {"model": name, "runtime": runtime, "block": block,
                          "allocation_removed": removed, "reachable": reach,
                          "budget": asked}
                rows.append({**common, "method": method, "accuracy": float(np.mean(accs)),
                             "accuracy_per_seed": accs, "accuracy_before_fine_tuning": untuned,
                             "macs": tfm_fuse.profile(thin).macs, "params": thin.count_params()})
                log(f"{name} / {runtime}: {method} accuracy {untuned:.3f} before fine-tuning, "
                    f"{np.mean(accs):.3f} after ({', '.join(f'{a:.3f}' for a in accs)}); "
                    f"allocation measured {removed:.1%} of latency removed")
                if method == "mac-uniform":
                    twins = [train(thinned_twin(wrapped, seed), train_data, 2 * epochs, seed=seed)
                             for seed in seeds]  # the same steps as base + fine-tuning
                    key = f"{runtime}/hand-thinned"
                    cases[key] = app_latency.export(tfm_fuse.fuse(twins[0]),
                                                    Path(tmp) / key.replace("/", "_"),
                                                    train_data[0][:64], runtimes=(runtime,))
                    accs = [accuracy(twin, test) for twin in twins]
                    rows.append({**common, "method": "hand-thinned", "accuracy": float(np.mean(accs)),
                                 "accuracy_per_seed": accs, "accuracy_before_fine_tuning": None,
                                 "macs": tfm_fuse.profile(twins[0]).macs,
                                 "params": twins[0].count_params()})
        log(f"{name}: timing {len(cases)} artefact sets side by side")
        table = app_latency.compare(cases, runs=runs, rounds=5)
    fixed = {runtime: fixed_fraction([(1.0, table["full"][runtime])] + [
        (sweep_macs[kept], table[f"sweep/{kept}"][runtime]) for kept in sweep])
        for runtime in runtimes}
    for runtime, fit in fixed.items():
        log(f"{name} / {runtime}: fixed share of the full model's time {fit['fixed_fraction']:.1%}"
            f" -> speed-up ÷ MAC ratio at 2× at most {fit['ratio_bound_at_2x']:.2f}")
    for row in rows:
        full_ms = table["full"][row["runtime"]]
        ms = table[f"{row['runtime']}/{row['method']}"][row["runtime"]]
        row.update(full_ms=full_ms, ms=ms, speedup=full_ms / ms,
                   latency_removed=1.0 - ms / full_ms, mac_ratio=base_macs / row["macs"],
                   base_accuracy=base_acc, base_macs=base_macs)
        row["speedup_per_mac_ratio"] = row["speedup"] / row["mac_ratio"]
        row.update(fixed[row["runtime"]])
    return rows


def markdown(rows) -> str:
    lines = ["| model | runtime | method | budget (limit) | accuracy: mean (min…max) over seeds "
             "| before fine-tuning | base | MACs kept | latency removed | speed-up | speed-up ÷ MAC "
             "ratio | block | fixed share (ratio bound at 2×) |",
             "|" + "---|" * 13]
    for r in rows:
        accs = r.get("accuracy_per_seed", [r["accuracy"]])
        before = r.get("accuracy_before_fine_tuning")
        lines.append(f"| {r['model']} | {r['runtime']} | {r['method']} | {r['budget']:.0%} "
                     f"({r['reachable']:.0%}) | {r['accuracy']:.3f} ({min(accs):.3f}…{max(accs):.3f})"
                     f" | {'' if before is None else f'{before:.3f}'} | {r['base_accuracy']:.3f} | "
                     f"{r['macs'] / r['base_macs']:.1%} | {r['latency_removed']:.1%} | "
                     f"{r['speedup']:.2f}× | {r['speedup_per_mac_ratio']:.2f} | {r['block']} | "
                     f"{r['fixed_fraction']:.0%} ({r['ratio_bound_at_2x']:.2f}) |")
    lines += ["", "Latency-aware minus MAC-uniform, paired by fine-tuning seed (the same seed "
              "orders the same batches for both):", ""]
    for key in dict.fromkeys((r["model"], r["runtime"]) for r in rows):
        by = {r["method"]: r for r in rows if (r["model"], r["runtime"]) == key}
        if "latency-aware" in by and "mac-uniform" in by:
            d = np.subtract(by["latency-aware"]["accuracy_per_seed"],
                            by["mac-uniform"]["accuracy_per_seed"])
            lines.append(f"- {key[0]} / {key[1]}: {np.mean(d) * 100:+.1f} points after fine-"
                         f"tuning (per seed {', '.join(f'{x * 100:+.1f}' for x in d)}); "
                         f"{(by['latency-aware']['accuracy_before_fine_tuning'] - by['mac-uniform']['accuracy_before_fine_tuning']) * 100:+.1f} before; "
                         f"latency removed {by['latency-aware']['latency_removed']:.1%} vs "
                         f"{by['mac-uniform']['latency_removed']:.1%} side by side")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--runtimes", nargs="+", default=list(app_latency.RUNTIMES[1:]),
                        choices=list(app_latency.RUNTIMES[1:]))
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=6000)
    parser.add_argument("--n-test", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="fine-tuning (and twin) seeds; accuracy is their mean")
    parser.add_argument("--base-seed", type=int, default=0,
                        help="seed of the base model's initial weights and training")
    parser.add_argument("--align", type=int, default=None,
                        help="the latency-aware allocation's channel block (default: the "
                             "runtime's measured block)")
    parser.add_argument("--out", default=str(HERE / "latency_budget"))
    args = parser.parse_args()
    rows = []
    for name in args.models:
        rows += run_model(name, args.runtimes, args.budget, args.epochs, args.n_train,
                          args.n_test, args.runs, tuple(args.seeds), args.base_seed, args.align)
        text = markdown(rows)
        print(text, flush=True)
        Path(args.out + ".json").write_text(json.dumps(
            {"budget": args.budget, "epochs": args.epochs, "seeds": args.seeds,
             "base_seed": args.base_seed, "rows": rows}, indent=1))
        Path(args.out + ".md").write_text(text + "\n")


if __name__ == "__main__":
    main()
