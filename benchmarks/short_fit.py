"""The README's shortest pruning call on a short fit, against what a user could do instead.

3 epochs on 3,000 training digits (`validation_split=0.1`, as the README's call), Adam's
defaults, batch 32 (Keras's default) and 64; accuracy on the 2,000 held-out digits after every
epoch (inference mode) and after `strip`. Rows: the unpruned residual CNN (16/32/64); its
hand-thinned twin (8/16/32, about the MACs `rate=0.5` leaves) trained from scratch in the same
fit; FuPruner with `rate=0.5` and with the README's `macs=0.5`. Mean, minimum and maximum over
seeds. Nothing here was chosen on the held-out digits: FuPruner's defaults were chosen on the
validation split of `fupruner_matrix.py` (and the ramp power checked on digits 3,000-3,999, see
benchmarks/README.md).

Run:  python benchmarks/short_fit.py      (about 15 minutes alone on 2 cores; --seeds 0 for 5)
Writes benchmarks/short_fit.{md,json} (or --out PREFIX).
"""
import argparse, json, time, warnings
import keras, numpy as np, tfm_fuse
from tfm_fuse import callbacks
from tfm_fuse.app.models import residual_cnn

ROWS = {"unpruned 16/32/64": ((16, 32, 64), None),
        "hand-thinned twin 8/16/32": ((8, 16, 32), None),
        "FuPruner rate=0.5": ((16, 32, 64), {"rate": 0.5}),
        "FuPruner macs=0.5 (README)": ((16, 32, 64), {"macs": 0.5})}


def run(widths, prune_kw, batch, seed, data):
    (x, y), (xt, yt) = data
    acc = lambda m: float(np.mean(np.argmax(m.predict(xt, verbose=0, batch_size=500), -1) == yt))
    keras.utils.set_random_seed(seed)
    model = residual_cnn(widths=widths)
    full = tfm_fuse.profile(residual_cnn()).macs
    masked = model if prune_kw is None else tfm_fuse.prune(model, method="fupruner", **prune_kw)
    masked.compile(optimizer="adam", metrics=["accuracy"],
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    curve = []
    held = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: curve.append(acc(masked)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masked.fit(x, y, validation_split=0.1, epochs=3, batch_size=batch, verbose=0,
                   callbacks=([] if prune_kw is None else [callbacks.FuPruner()]) + [held])
    small = masked if prune_kw is None else tfm_fuse.strip(masked)
    return {"curve": curve, "test": acc(small),
            "macs_removed": 1 - tfm_fuse.profile(small).macs / full}


def table(results, seeds):
    lines = [f"| batch | row | held-out acc after strip, mean ({len(seeds)} seeds) | min … max "
             "| per epoch (mean) | MACs removed |", "|---|---|---|---|---|---|"]
    for key, runs in results.items():
        batch, row = key.split(" | ")
        tests = [r["test"] for r in runs]
        curve = np.mean([r["curve"] for r in runs], axis=0)
        lines.append(f"| {batch} | {row} | {np.mean(tests):.3f} | {min(tests):.3f} … "
                     f"{max(tests):.3f} | {' / '.join(f'{v:.3f}' for v in curve)} | "
                     f"{np.mean([r['macs_removed'] for r in runs]):.1%} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--batches", default="32,64")
    parser.add_argument("--out", default="benchmarks/short_fit")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    data = tfm_fuse.app.data.load_mnist(n_train=3000, n_test=2000)
    results = {}
    for batch in (int(b) for b in args.batches.split(",")):
        for row, (widths, prune_kw) in ROWS.items():
            runs = results.setdefault(f"{batch} | {row}", [])
            for seed in seeds:
                start = time.perf_counter()
                runs.append(run(widths, prune_kw, batch, seed, data))
                print(f"batch {batch}, {row}, seed {seed}: {runs[-1]['test']:.3f} "
                      f"({time.perf_counter() - start:.0f} s)", flush=True)
    text = table(results, seeds)
    print(text)
    with open(args.out + ".md", "w") as f:
        f.write(text + "\n")
    with open(args.out + ".json", "w") as f:
        json.dump({"seeds": seeds, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
