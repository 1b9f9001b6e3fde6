"""Choosing how a latency budget's allocation weighs milliseconds against importance, on a
validation split (never on the test digits that `latency_budget.py` reports).

`allocation.allocate_to_cost` drops, chunk by chunk, the channels with the smallest offer:
score per channel ÷ (cost saved per channel) ** `cost_exponent`. 1 is the knapsack's "score
lost per millisecond saved" (HALP, NetAdapt); 0 ranks by score alone and lets the measured
latency decide only where nothing is saved, the alignment and when to stop. For each runtime
and exponent: allocate with `MaskUpdater.meet_latency(budget)` from the same trained model,
strip, fine-tune the same epochs as `latency_budget.py`, and measure accuracy on validation
digits (images 3,000-3,999 of the shipped set: neither the benchmark's training images, the
first `--n-train`, nor its test images, the last 2,000). The MAC budget with `align=8`, bisected
on the measured latency, is the reference every exponent must match.

Run alone (timings):  python benchmarks/latency_allocation_choice.py [--models mobilenet_v2]
    [--runtimes onnxruntime litert_int8 openvino_cpu] [--exponents 0 0.5 1] [--seeds 0 1]
Writes benchmarks/latency_allocation_choice.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import latency_budget as lb  # noqa: E402  (sets the TensorFlow environment first)

import numpy as np  # noqa: E402

import tfm_fuse  # noqa: E402

HERE = Path(__file__).parent


def splits(size: int, n_train: int, n_val: int):
    """(train, validation) at `size`: the benchmark's training images and the next `n_val`."""
    (x, y), _ = lb.digits(size, n_train + n_val, 1)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def run(name: str, runtimes, exponents, seeds, budget: float, epochs: int, n_train: int,
        n_val: int) -> list[dict]:
    build, size = lb.MODELS[name]
    train_data, val = splits(size, n_train, n_val)
    base = lb.train(lb.with_softmax(build, (size, size, 3)), train_data, epochs)
    base_macs = tfm_fuse.profile(base).macs
    lb.log(f"{name}: base validation accuracy {lb.accuracy(base, val):.3f}")
    rows = []
    for runtime in runtimes:
        methods = [("latency-aware", e) for e in exponents] + [("mac-uniform", None)]
        for method, exponent in methods:
            options = {} if exponent is None else {"cost_exponent": exponent}
            wrapped, removed, _ = lb.masked_copy(base, runtime, budget, method, **options)
            thin = tfm_fuse.strip(wrapped)
            weights = thin.get_weights()
            accs = []
            for seed in seeds:  # the same allocation fine-tuned from the same weights
                thin.set_weights(weights)
                accs.append(lb.accuracy(lb.train(thin, train_data, epochs, seed=seed), val))
            rows.append({"model": name, "runtime": runtime, "method": method,
                         "cost_exponent": exponent, "val_accuracy": float(np.mean(accs)),
                         "val_accuracies": accs, "loop_removed": removed,
                         "macs_kept": tfm_fuse.profile(thin).macs / base_macs})
            lb.log(f"{name} / {runtime} / {method} {exponent}: validation {np.mean(accs):.3f} "
                   f"{accs}, loop measured {removed:.1%} removed, "
                   f"{rows[-1]['macs_kept']:.1%} of MACs kept")
    return rows


def markdown(rows) -> str:
    lines = ["| model | runtime | method | cost exponent | validation accuracy (per seed) | "
             "latency removed (loop) | MACs kept |", "|" + "---|" * 7]
    for r in rows:
        exponent = "" if r["cost_exponent"] is None else f"{r['cost_exponent']:g}"
        lines.append(f"| {r['model']} | {r['runtime']} | {r['method']} | {exponent} | "
                     f"{r['val_accuracy']:.3f} ({', '.join(f'{a:.3f}' for a in r['val_accuracies'])})"
                     f" | {r['loop_removed']:.1%} | {r['macs_kept']:.1%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2"], choices=list(lb.MODELS))
    parser.add_argument("--runtimes", nargs="+", default=["onnxruntime", "litert_int8"])
    parser.add_argument("--exponents", nargs="+", type=float, default=[0.0, 0.5, 1.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-val", type=int, default=1000)
    parser.add_argument("--out", default=str(HERE / "latency_allocation_choice"))
    args = parser.parse_args()
    rows = []
    for name in args.models:
        rows += run(name, args.runtimes, args.exponents, args.seeds, args.budget, args.epochs,
                    args.n_train, args.n_val)
        print(markdown(rows), flush=True)
        Path(args.out + ".json").write_text(json.dumps({"budget": args.budget, "rows": rows},
                                                       indent=1))
        Path(args.out + ".md").write_text(markdown(rows) + "\n")


if __name__ == "__main__":
    main()
