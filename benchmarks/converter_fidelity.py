"""Converter fidelity: every artefact's size and agreement with Keras, for three trained models.

Models, trained here on the shipped digits so that top-1 agreement means something:
- `thin ResNet`: the demo's model, `tfm_fuse.app.models.residual_cnn(widths=(32, 64, 128))` on
  28×28 digits, trained under FuPruner to half its MACs (the demo's schedule, without its
  `align=8` and accuracy guard), stripped and fused;
- `MobileNetV2` and `ResNet50`: `keras.applications`, `weights=None`, 10 classes, digits as
  32×32 RGB (`tfm_fuse.app.data.as_rgb`), BatchNorm statistics re-estimated after training.

Each goes through `tfm_fuse.converters.convert_all` (Edge TPU int8 `.tflite`, Jetson FP32 +
INT8 Q/DQ ONNX, OpenVINO FP16 IR — also run in OpenVINO 2022.3.2 when `python3.10` exists —
and ONNX), calibrated on 500 training images and validated on held-out ones, with
`keep_failed=True` so a failed check is reported, not raised.

Run:  python benchmarks/converter_fidelity.py [--epochs 6] [--models thin MobileNetV2 ResNet50]
Prints a table (one row per artefact) and writes `--out`/fidelity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfm_fuse  # noqa: E402
from tfm_fuse.callbacks import FuPruner  # noqa: E402
from tfm_fuse.converters import convert_all  # noqa: E402
from tfm_fuse.converters._ov_legacy import python310_available  # noqa: E402
from tfm_fuse.app.models import reestimate_batchnorm  # noqa: E402
from tfm_fuse.pruning.updater import rate_for_macs  # noqa: E402
from tfm_fuse.pruning.schedules import PolynomialDecay  # noqa: E402

APPLICATION_SIZE = 32
N_CALIBRATION = 500


def train(model: keras.Model, x, y, epochs: int, callbacks=()) -> keras.Model:
    """Adam with a cosine-decayed learning rate, batch 64 (the data is a multiple of 64)."""
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, epochs * (len(x) // 64), alpha=0.05)
    model.compile(keras.optimizers.Adam(schedule),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=2, callbacks=list(callbacks))
    return model


def thin_resnet(x, y, epochs: int) -> keras.Model:
    """The demo's schedule (FuPruner during `fit`, half the MACs; unaligned, no accuracy
    guard), then `strip` and `fuse`."""
    keras.utils.set_random_seed(0)
    model = tfm_fuse.app.models.residual_cnn(widths=(32, 64, 128))
    rate = rate_for_macs(model, 0.5)
    masked = tfm_fuse.prune(model, method="fupruner", rate=rate, scope="layer",
                            criterion="fused")
    steps = len(x) // 64
    schedule = PolynomialDecay(0.0, rate, begin_step=steps,
                               end_step=max(steps * 2 * epochs // 3, steps + 1))
    train(masked, x, y, epochs, [FuPruner(schedule, update_freq=max(steps // 4, 1))])
    thin = tfm_fuse.fuse(tfm_fuse.strip(masked))
    print(f"thin ResNet: MACs {tfm_fuse.profile(model).macs:,} -> "
          f"{tfm_fuse.profile(thin).macs:,}, params {model.count_params():,} -> "
          f"{thin.count_params():,}")
    return thin


def application(name: str, x, y, epochs: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(APPLICATION_SIZE, APPLICATION_SIZE, 3), classes=10,
        classifier_activation=None)
    train(model, x, y, epochs)
    return reestimate_batchnorm(model, x[:1024])


def size_of(path: str) -> int:
    p = Path(path)
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*"))


def rows_for(name: str, accuracy: float, reports: dict) -> list[dict]:
    rows = []
    for target, report in reports.items():
        for key, m in report.fidelity.items():
            # OpenVINO's fidelity keys (FP16 IR in 2026.4 and in 2022.3.2) share one .bin.
            artefact = report.artefacts.get(key) or report.artefacts.get("openvino_bin")
            rows.append({
                "model": name, "keras_acc": accuracy, "target": target, "artefact": key,
                "bytes": size_of(artefact) if artefact else None,
                "top1": m.get("top1_agreement"), "rel_err": m["max_abs_error_rel"],
                "fp16_floor": m.get("fp16_weights_floor_rel"),
                "vs_2026": m.get("vs_current_openvino_max_abs"), "ok": report.ok,
            })
    return rows


def edgetpu_line(name: str, report) -> str:
    check = report.details["edgetpu_check"]
    return (f"{name}: Edge TPU ops eligible {check['tpu_ops']}/{len(check['ops'])} "
            f"({check['tpu_fraction']:.0%}), parameters {check['parameter_bytes'] / 2**20:.2f} "
            f"MiB, fits on-chip memory: {check['fits_sram']}")


def table(rows: list[dict]) -> str:
    head = ("| model | Keras acc | target: artefact | size | top-1 agreement | "
            "max-abs err / scale | FP16 floor | OV 2022.3.2 − 2026.4 | report ok |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        size = f"{r['bytes'] / 1024:.0f} KiB" if r["bytes"] else "–"
        top1 = f"{r['top1']:.2%}" if r["top1"] is not None else "–"
        floor = f"{r['fp16_floor']:.2e}" if r["fp16_floor"] is not None else "–"
        legacy = f"{r['vs_2026']:.1e}" if r["vs_2026"] is not None else "–"
        lines.append(f"| {r['model']} | {r['keras_acc']:.2%} | {r['target']}: {r['artefact']} "
                     f"| {size} | {top1} | {r['rel_err']:.2e} | {floor} | {legacy} | {r['ok']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["thin", "MobileNetV2", "ResNet50"])
    ap.add_argument("--epochs", type=int, default=6, help="training epochs per model")
    ap.add_argument("--out", default=None, help="artefact folder (default: a temporary one)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="tfm_fuse_fidelity_"))
    (x, y), (x_test, y_test) = tfm_fuse.app.data.load_mnist(n_train=8000, n_test=2000)
    rows, lines, start = [], [], time.time()
    for name in args.models:
        if name == "thin":
            name, model, data, held = "thin ResNet", thin_resnet(x, y, args.epochs), x, x_test
        else:
            data = tfm_fuse.app.data.as_rgb(x, APPLICATION_SIZE)
            held = tfm_fuse.app.data.as_rgb(x_test, APPLICATION_SIZE)
            model = application(name, data, y, args.epochs)
        logits = model.predict(held, verbose=0, batch_size=256)
        accuracy = float(np.mean(np.argmax(logits, -1) == y_test))
        reports = convert_all(model, out / name.replace(" ", "_"),
                              representative_data=data[:N_CALIBRATION], validation_data=held,
                              overwrite=True, keep_failed=True,
                              legacy_openvino=python310_available())
        for report in reports.values():
            for issue in report.issues:
                print(f"{name} {report.target}: ISSUE {issue}")
        new_rows = rows_for(name, accuracy, reports)
        rows += new_rows
        lines.append(edgetpu_line(name, reports["edgetpu"]))
        print(table(new_rows), flush=True)
    print(f"\n{table(rows)}\n\n" + "\n".join(lines))
    print(f"\nheld-out images: {len(x_test)}; calibration: {N_CALIBRATION} training images; "
          f"{time.time() - start:.0f} s; artefacts in {out}")
    (out / "fidelity.json").write_text(json.dumps({"rows": rows, "edgetpu": lines}, indent=2))


if __name__ == "__main__":
    main()
