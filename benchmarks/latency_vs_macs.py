"""Latency speed-up against MAC reduction, per runtime, for structured and unstructured pruning.

One run, all cases timed side by side (`tfm_fuse.app.latency.compare`: interleaved rounds, batch 1,
one thread, median) on LiteRT int8 (full-integer), OpenVINO CPU, ONNX Runtime and LiteRT fp32,
for a CIFAR-sized residual CNN (`tfm_fuse.app.models.residual_cnn`, 32×32×3, stage widths 64/128/256
by default, random weights — latency does not depend on them) with about half its MACs removed:

- baseline                 the unpruned model, fused (`tfm_fuse.fuse`)
- fupruner                 FuPruner masks (`scope="layer"`, one `MaskUpdater` update at the
                           rate `rate_for_macs` gives), stripped and fused
- fupruner align=8         the same with `align=8`
- complexity PA / FA / MA  `prune(method="complexity", mode=..., target=...)`, fused
- hand-thinned             `residual_cnn` built directly with the stage widths the aligned
                           FuPruner model ended with: the ceiling a perfect structured
                           pruner reaches
- hand-thinned unaligned   the same with the unaligned FuPruner model's widths
- tfmot sparsity           tensorflow-model-optimization `prune_low_magnitude` at the same rate
                           (unstructured, 50 % zero weights) on a tf_keras copy of the baseline
                           with the same weights, in its own process (`_tfmot_sparsity.py`);
                           its MACs column counts non-zero weights only — the kernels stay dense

tfmot must not be imported here (it sets `TF_USE_LEGACY_KERAS=1` in-process). It is run with
`--tfmot-python` (default: `/tmp/tfmot_venv/bin/python` if present, else this interpreter); set up
with `python -m venv --system-site-packages /tmp/tfmot_venv &&
/tmp/tfmot_venv/bin/pip install tensorflow-model-optimization==0.8.1 tf-keras==2.21.0`.
Without it the row reads "not available: <reason>".

Prints one table (case, widths, MACs, MAC ratio, per runtime median ms, speed-up, speed-up / MAC
ratio), then the same as Markdown, and writes a plot of speed-up against MAC ratio per runtime.
Compare rows within one run: the machine is shared and noisy.

Run:  python benchmarks/latency_vs_macs.py [--runs 200] [--rounds 5] [--widths 64 128 256]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import tfm_fuse  # noqa: E402
from tfm_fuse.app import latency  # noqa: E402
from tfm_fuse.pruning import updater  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNTIMES = ("litert_int8", "openvino_cpu", "onnxruntime", "litert_fp32")
GOAL_RUNTIMES = ("litert_int8", "openvino_cpu", "onnxruntime")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def widths_of(model) -> str:
    """Conv filters as `stem · conv1/out per stage` (out = the residual width of the stage)."""
    f = {layer.name: layer.filters for layer in model.layers if hasattr(layer, "filters")}
    stages = sorted({n.split("_block")[0] for n in f if n.startswith("stage")})
    parts = [str(f.get("stem_conv", "?"))]
    for s in stages:
        parts.append(f"{f.get(f'{s}_block1_conv1', '?')}/{f.get(f'{s}_block1_conv2', '?')}")
    return " · ".join(parts)


def stage_widths(model) -> tuple[int, ...]:
    f = {layer.name: layer.filters for layer in model.layers if hasattr(layer, "filters")}
    inner = [f[n] for n in sorted(f) if n.endswith("_block1_conv1")]
    outer = [f[n] for n in sorted(f) if n.endswith("_block1_conv2")]
    if inner != outer:
        log(f"note: inner widths {inner} differ from residual widths {outer}; hand-thinned "
            "uses the residual widths")
    return tuple(outer)


def build_models(widths, macs_removed: float, shape: tuple) -> tuple[dict, dict, object]:
    """{case: fused Keras model}, {case: note}, and the unfused baseline."""
    base = tfm_fuse.app.models.randomize_weights(
        tfm_fuse.app.models.residual_cnn(input_shape=shape, widths=tuple(widths)), seed=0)
    models, notes = {"baseline": tfm_fuse.fuse(base)}, {"baseline": ""}
    for align in (None, 8):
        name = "fupruner" if align is None else f"fupruner align={align}"
        rate = updater.rate_for_macs(base, macs_removed, align=align)
        masked = tfm_fuse.prune(base, method="fupruner", rate=rate, scope="layer", align=align)
        stats = updater.MaskUpdater(masked, scope="layer", align=align).update(rate)
        models[name] = tfm_fuse.fuse(tfm_fuse.strip(masked))
        notes[name] = f"rate {rate:.3f}, {stats['prune_macs_removed']:.1%} MACs removed"
        log(f"{name}: {notes[name]}, widths {widths_of(models[name])}")
    for mode in ("PA", "FA", "MA"):
        name = f"complexity {mode}"
        models[name] = tfm_fuse.fuse(tfm_fuse.prune(base, method="complexity", mode=mode,
                                                    target=macs_removed))
        notes[name] = f"target {macs_removed}"
        log(f"{name}: widths {widths_of(models[name])}")
    for name, source in (("hand-thinned", "fupruner align=8"),
                         ("hand-thinned unaligned", "fupruner")):
        thin = stage_widths(models[source])
        hand = tfm_fuse.app.models.randomize_weights(
            tfm_fuse.app.models.residual_cnn(input_shape=shape, widths=thin), seed=1)
        models[name] = tfm_fuse.fuse(hand)
        notes[name] = f"residual_cnn(widths={thin}), the widths of {source}"
    return models, notes, base


def default_tfmot_python() -> str:
    venv = Path("/tmp/tfmot_venv/bin/python")
    return str(venv) if venv.exists() else sys.executable


def tfmot_case(base, widths, sparsity: float, python: str, out: Path,
               calib: np.ndarray) -> tuple[dict, dict]:
    """Artefact paths and stats of the tfmot-sparse model; raises RuntimeError with a reason."""
    weights = out / "baseline_weights.npz"
    np.savez(weights, **{f"{layer.name}/{i}": w for layer in base.layers
                         for i, w in enumerate(layer.get_weights())})
    cmd = [python, str(HERE / "_tfmot_sparsity.py"), "--weights", str(weights),
           "--widths", *map(str, widths), "--input-shape", *map(str, calib.shape[1:]),
           "--sparsity", str(sparsity), "--out", str(out / "tfmot")]
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode:
        lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
        raise RuntimeError(lines[-1] if lines else f"exit code {proc.returncode}")
    stats = json.loads((out / "tfmot" / "stats.json").read_text())
    paths = {"litert_int8": str(out / "tfmot" / "model_int8.tflite"),
             "litert_fp32": str(out / "tfmot" / "model_fp32.tflite")}
    try:  # OpenVINO and ONNX from the SavedModel, with the same converters as the other cases
        from tfm_fuse.converters import convert_all

        reports = convert_all(str(out / "tfmot" / "saved_model"), out / "tfmot" / "converted",
                              representative_data=calib, targets=("openvino", "onnx"),
                              overwrite=True, keep_failed=True)
        for rt, target, key in (("openvino_cpu", "openvino", "openvino_xml"),
                                ("onnxruntime", "onnx", "onnx_fp32")):
            p = reports.get(target) and reports[target].artefacts.get(key)
            if p:
                paths[rt] = str(p)
    except Exception as e:  # noqa: BLE001 - the LiteRT rows are the point; go on
        log(f"tfmot: OpenVINO/ONNX conversion failed: {type(e).__name__}: {e}")
    return paths, stats


def fmt_row(cells, widths) -> str:
    return "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths)))


def build_rows(table, macs, widths_txt, missing):
    ups = latency.speedups(table, "baseline") if "baseline" in table else {}
    base_macs = macs["baseline"]
    rows = []
    for case in list(macs) + [c for c in missing if c not in macs]:
        if case in missing:
            rows.append([case, "not available: " + missing[case]])
            continue
        ratio = base_macs / macs[case]
        row = [case, widths_txt[case], f"{macs[case] / 1e6:.2f} M", f"{ratio:.2f}x"]
        for rt in RUNTIMES:
            if rt in table.get(case, {}):
                up = ups[case][rt]
                row += [f"{table[case][rt]:.3f}", f"{up:.2f}x", f"{up / ratio:.2f}"]
            else:
                row += ["-", "-", "-"]
        rows.append(row)
    return rows


def header():
    h = ["case", "widths (stem · conv1/out per stage)", "MACs", "MAC ratio"]
    for rt in RUNTIMES:
        h += [f"{rt} ms", f"{rt} speed-up", f"{rt} speed-up / MAC ratio"]
    return h


def print_text(rows) -> None:
    short = ["case", "widths", "MACs", "MACx"]
    for rt in RUNTIMES:
        short += [f"{rt} ms", "up", "up/MACx"]
    full = [r for r in rows if len(r) == len(short)]
    w = [max(len(short[i]), *(len(r[i]) for r in full)) for i in range(len(short))]
    print(fmt_row(short, w))
    print("-" * (sum(w) + 2 * (len(w) - 1)))
    for r in rows:
        print(fmt_row(r, w) if len(r) == len(short) else f"{r[0]}  {r[1]}")


def markdown(rows) -> str:
    h = header()
    lines = ["| " + " | ".join(h) + " |", "|" + "---|" * len(h)]
    for r in rows:
        r = r if len(r) == len(h) else r + [""] * (len(h) - len(r))
        lines.append("| " + " | ".join(r) + " |")
    return "\n".join(lines)


def goal_check(table, macs) -> list[str]:
    """The issue's goal: speed-up >= 0.9 x MAC ratio on int8/OpenVINO/ORT, not below hand-thinned.

    "Not below hand-thinned" compares speed-up / MAC ratio (the cases end at different MAC
    ratios), and for FuPruner also the plain speed-up of the hand-thinned model of its widths."""
    ups = latency.speedups(table, "baseline")
    same_widths = {"fupruner": "hand-thinned unaligned", "fupruner align=8": "hand-thinned"}
    eff = {c: {rt: u / (macs["baseline"] / macs[c]) for rt, u in row.items()}
           for c, row in ups.items()}
    out = []
    for case in macs:
        if case == "baseline" or case.startswith("hand-thinned") or case not in ups:
            continue
        ratio = macs["baseline"] / macs[case]
        parts = []
        for rt in GOAL_RUNTIMES:
            if rt not in ups[case]:
                continue
            up = ups[case][rt]
            text = (f"{rt} {up:.2f}x vs 0.9×{ratio:.2f}={0.9 * ratio:.2f} "
                    f"{'met' if up >= 0.9 * ratio else 'MISSED'}; speed-up/MAC ratio "
                    f"{eff[case][rt]:.2f} vs hand-thinned {eff['hand-thinned'][rt]:.2f}")
            twin = same_widths.get(case)
            if twin in ups and rt in ups[twin]:
                text += f"; vs {twin} (same widths) {up / ups[twin][rt]:.2f}×"
            parts.append(text)
        if parts:
            out.append(f"{case}:\n      " + "\n      ".join(parts))
    return out


def plot(table, macs, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ups = latency.speedups(table, "baseline")
    fig, axes = plt.subplots(1, len(RUNTIMES), figsize=(4.2 * len(RUNTIMES), 4.2), sharey=True)
    top = max([macs["baseline"] / m for m in macs.values()]
              + [u for row in ups.values() for u in row.values()]) * 1.1
    colors = dict(zip(macs, plt.cm.tab10.colors))
    for ax, rt in zip(axes, RUNTIMES):
        ax.plot([0.8, top], [0.8, top], "k--", lw=1, label="y = x")
        for case in macs:
            if rt in ups.get(case, {}):
                ax.scatter(macs["baseline"] / macs[case], ups[case][rt], s=45, alpha=0.85,
                           color=colors[case], label=case)
        ax.set(title=rt, xlabel="MAC ratio (baseline / case)", xlim=(0.8, top), ylim=(0.5, top))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("speed-up (baseline ms / case ms)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8)
    fig.suptitle("Latency speed-up vs MAC reduction (batch 1, 1 thread, median)")
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs=3, default=(64, 128, 256),
                    help="stage widths of the baseline (32 64 128 is overhead-dominated here)")
    ap.add_argument("--size", type=int, default=32,
                    help="input height and width (3 channels); 64 makes compute dominate more")
    ap.add_argument("--macs-removed", type=float, default=0.5)
    ap.add_argument("--runs", type=int, default=200, help="timed runs per case and runtime")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tfmot-python", default=default_tfmot_python(),
                    help="interpreter with tensorflow-model-optimization and tf-keras")
    ap.add_argument("--out", default=None, help="artefact folder (default: a temporary one)")
    ap.add_argument("--plot", default=str(HERE / "latency_vs_macs.png"))
    args = ap.parse_args()

    start = time.time()
    tmp = None if args.out else tempfile.TemporaryDirectory()
    out = Path(args.out or tmp.name)
    out.mkdir(parents=True, exist_ok=True)
    shape = (args.size, args.size, 3)
    calib = np.random.default_rng(0).normal(size=(64, *shape)).astype(np.float32)

    log(f"building models: residual_cnn{shape} widths {tuple(args.widths)}, "
        f"{args.macs_removed:.0%} MACs removed")
    models, notes, base = build_models(args.widths, args.macs_removed, shape)
    macs = {name: tfm_fuse.profile(m).macs for name, m in models.items()}
    widths_txt = {name: widths_of(m) for name, m in models.items()}

    cases, missing = {}, {}
    for i, (name, model) in enumerate(models.items(), 1):
        log(f"export {i}/{len(models) + 1}: {name}")
        cases[name] = latency.export(model, out / f"case{i}", calib, runtimes=RUNTIMES)
        lost = [rt for rt in RUNTIMES if rt not in cases[name]]
        if lost:
            log(f"  {name}: no artefact for {lost}")

    log(f"export {len(models) + 1}/{len(models) + 1}: tfmot sparsity (own process, "
        f"{args.tfmot_python})")
    try:
        paths, stats = tfmot_case(base, args.widths, args.macs_removed, args.tfmot_python,
                                  out, calib)
        cases["tfmot sparsity"] = paths
        macs["tfmot sparsity"] = stats["macs_nonzero"]
        widths_txt["tfmot sparsity"] = widths_txt["baseline"] + \
            f" ({stats['weight_sparsity']:.0%} zero weights)"
        log(f"  tfmot {stats['tfmot']}, tf_keras {stats['tf_keras']}: weight sparsity "
            f"{stats['weight_sparsity']:.1%}, dense MACs {stats['macs_dense']:,}, non-zero "
            f"{stats['macs_nonzero']:,}")
    except Exception as e:  # noqa: BLE001 - report and go on without the row
        missing["tfmot sparsity"] = f"{type(e).__name__}: {e}"
        log(f"  tfmot sparsity not available: {missing['tfmot sparsity']}")

    log(f"timing {len(cases)} cases × {len(RUNTIMES)} runtimes, {args.runs} runs in "
        f"{args.rounds} rounds")
    table = latency.compare(cases, runs=args.runs, rounds=args.rounds)

    rows = build_rows(table, macs, widths_txt, missing)
    print()
    print_text(rows)
    print()
    print("goal (50 % MACs removed): speed-up >= 0.9 × MAC ratio on LiteRT int8, OpenVINO, "
          "ONNX Runtime, and not below the hand-thinned model")
    for line in goal_check(table, macs):
        print("  " + line)
    print("\nnotes: " + "; ".join(f"{k}: {v}" for k, v in notes.items() if v))
    if "tfmot sparsity" in macs:
        print("tfmot sparsity: MACs counts non-zero weights only; its kernels run dense.")
    plot(table, macs, Path(args.plot))
    log(f"plot: {args.plot}")
    print("\nMarkdown:\n")
    print(markdown(rows))
    log(f"total {time.time() - start:.0f} s")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
