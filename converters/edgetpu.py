"""Coral Edge TPU: full-integer `.tflite`, a static op check, LiteRT validation, the compiler.

Example:
    >>> from tfm_fuse.converters import edgetpu
    >>> r = edgetpu.convert(model, "out/edgetpu", representative_data=x_train[:200],
    ...                     validation_data=x_test[:200])
    >>> r.fidelity["tflite_int8"]["top1_agreement"], r.details["edgetpu_check"]["tpu_fraction"]
    (0.996, 1.0)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tfm_fuse._quiet import quiet_tools
from tfm_fuse.converters import _edgetpu_ops, runtimes
from tfm_fuse.converters._edgetpu_rewrite import board_compatible, keras_for_board
from tfm_fuse.converters._fidelity import check_top1, compare
from tfm_fuse.converters._source import ModelLike, Samples, Source, call_tool, count, prepare, rows
from tfm_fuse.converters._staging import Staging
from tfm_fuse.converters.report import Report
from tfm_fuse.errors import ConfigError

TFLITE_NAME = "model_int8.tflite"
RUNNER_NAME = "run_on_coral.py"  # converters/coral_board_runner.py, copied beside the model
BOARD_SAMPLES = 8  # validated inputs shipped with it (quantized), and their outputs here


@quiet_tools
def convert(model: ModelLike, out_dir: str | os.PathLike, *, representative_data: Any = None,
            validation_data: Any = None, io_dtype: Literal["uint8", "int8"] = "uint8",
            min_top1: float | None = 0.99, require_full_tpu: bool = True,
            max_samples: int = 500, overwrite: bool = False,
            keep_failed: bool = False) -> Report:
    """Writes a full-integer `.tflite` for the Edge TPU, checked op by op and against Keras.

    Args:
        model: a `keras.Model`, a `.keras` file or a SavedModel directory.
        out_dir: output directory; must not exist unless `overwrite=True`.
        representative_data: calibration inputs (`tf.data.Dataset`, array, generator or
            callable), shaped like the model input, preprocessed.
        validation_data: held-out inputs to compare with Keras. Defaults to the
            representative data.
        io_dtype: the `.tflite` input/output type, `"uint8"` or `"int8"`. Defaults to `"uint8"`.
        min_top1: lowest accepted top-1 agreement with Keras (classifiers); `None` only
            reports it. Defaults to `0.99`.
        require_full_tpu: an op that would fall back to the CPU fails the conversion.
            Defaults to `True`.
        max_samples: samples kept from the representative data. Defaults to `500`
            (NVIDIA: "about 500 images are sufficient for calibrating ImageNet
            classification networks"; on a MobileNetV2 here 256 samples gave 98.9 %
            Q/DQ top-1 agreement, 500 gave 99.3 %).
        overwrite: replace an existing `out_dir`. Defaults to `False`.
        keep_failed: keep a failing artefact (its report says `ok=False`). Defaults to `False`.

    Returns:
        A `Report`; `report.json` and `report.txt` are in `out_dir`.

    Raises:
        ConfigError: bad model input, data, option or existing output path.
        ConversionError: conversion or validation failed (nothing is left in `out_dir`).
    """
    if io_dtype not in ("uint8", "int8"):
        raise ConfigError(f"io_dtype must be 'uint8' or 'int8'. Received: io_dtype={io_dtype!r}")
    start = prepare(model, out_dir, target="edgetpu", overwrite=overwrite,
                    validation_data=validation_data, representative_data=representative_data,
                    needs_calibration=True, max_samples=max_samples)
    src, rep, x_val, report = start.src, start.rep, start.x_val, start.report
    with Staging(out_dir, overwrite=overwrite, keep_failed=keep_failed) as stage:
        tflite = stage.path / TFLITE_NAME
        board_model, rewrites = keras_for_board(src.model)  # validated against src.model
        converted = _to_tflite(dataclasses.replace(src, model=board_model), rep, io_dtype,
                               stage.path / "_saved_model")
        report.notes += rewrites
        board_bytes, rewrites = board_compatible(converted)
        report.notes += rewrites
        tflite.write_bytes(board_bytes)
        report.artefacts["tflite_int8"] = stage.final(TFLITE_NAME)
        _check_ops(tflite.read_bytes(), report, require_full_tpu)
        outputs = run_tflite(tflite, x_val)
        metrics = compare(src.predict(x_val), outputs)
        report.fidelity["tflite_int8"] = metrics
        if not isinstance(outputs, list) and not isinstance(x_val, dict):
            # the board runner feeds one input and compares one output
            _board_runner(tflite, x_val[:BOARD_SAMPLES], outputs[:BOARD_SAMPLES], stage, report)
        report.issues += check_top1("tflite_int8", metrics, min_top1)
        _compile(tflite, stage, report)
        report.ok = not report.issues
        return stage.commit(report)


def _to_tflite(src: Source, rep: Samples, io_dtype: str, export_dir: Path) -> bytes:
    import tensorflow as tf

    export_dir = src.export_saved_model(export_dir)
    converter = tf.lite.TFLiteConverter.from_saved_model(export_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: _one_by_one(rep)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = getattr(tf, io_dtype)
    converter.inference_output_type = getattr(tf, io_dtype)
    model_bytes = call_tool(f"TF Lite full-integer conversion of input '{src.input_name}'",
                            converter.convert)
    shutil.rmtree(export_dir, ignore_errors=True)
    return model_bytes


def _one_by_one(rep: Samples):
    """Calibration samples one at a time, as the converter reads them: `[x]`, or a dict by
    input name (the serving signature's) for several inputs."""
    for i in range(count(rep)):
        sample = rows(rep, i, i + 1)
        yield sample if isinstance(sample, dict) else [sample]


def _check_ops(model_bytes: bytes, report: Report, require_full_tpu: bool) -> None:
    check = _edgetpu_ops.check_tflite(model_bytes)
    report.details["edgetpu_check"] = check
    cpu_rows = [r for r in check["ops"] if r["reasons"]]
    for r in cpu_rows:
        msg = f"Op #{r['index']} {r['op']} (v{r['version']}) falls back to the CPU: " + \
              "; ".join(r["reasons"])
        (report.issues if require_full_tpu else report.notes).append(msg)
    if check["first_cpu_op"]:
        msg = (f"First op left on the CPU: {check['first_cpu_op']}; it and the "
               f"{check['cpu_ops'] - 1} op(s) after it run on the CPU, {check['tpu_ops']} "
               f"before it on the Edge TPU.")
        (report.issues if require_full_tpu else report.notes).append(msg)
    for r in check["ops"]:
        for caveat in r["caveats"] if r["on_tpu"] else []:
            report.notes.append(f"Op #{r['index']} {r['op']} {caveat}.")
    report.notes.append(f"Edge TPU op check: {check['tpu_ops']}/{len(check['ops'])} ops "
                        f"eligible ({check['tpu_fraction']:.0%}).")
    mb = check["parameter_bytes"] / 2**20
    if check["fits_sram"]:
        report.notes.append(f"Parameters {check['parameter_bytes']:,} bytes ({mb:.2f} MiB) fit the ~8 MiB on-chip memory.")
    else:
        report.notes.append(f"Parameters {mb:.2f} MiB exceed the ~8 MiB on-chip memory: the "
                            f"rest is streamed from the host on every inference (slower).")


def run_tflite(path: str | os.PathLike, x: Samples) -> np.ndarray | list[np.ndarray]:
    """Runs a `.tflite` in LiteRT one sample at a time; returns dequantized float outputs (a
    list in the Keras model's output order when there are several).

    Example:
        >>> y = run_tflite("out/edgetpu/model_int8.tflite", x_test[:10])
    """
    return runtimes.LiteRT(path).outputs(x)


def _compile(tflite: Path, stage: Staging, report: Report) -> None:
    exe = shutil.which("edgetpu_compiler")
    command = f"edgetpu_compiler -s -o {stage.out_dir} {stage.final(tflite.name)}"
    if exe is None:
        report.notes.append("edgetpu_compiler is not on PATH (it ships only in Coral's apt "
                            "repository); the static op check above stands in for it.")
        report.next_steps.append(command)
    else:
        proc = subprocess.run([exe, "-s", "-o", str(stage.path), str(tflite)],
                              capture_output=True, text=True, timeout=600)
        (stage.path / "edgetpu_compiler.log").write_text(proc.stdout + proc.stderr)
        report.artefacts["edgetpu_compiler_log"] = stage.final("edgetpu_compiler.log")
        report.details["edgetpu_compiler"] = _edgetpu_ops.parse_compiler_log(proc.stdout)
        compiled = tflite.with_name(tflite.stem + "_edgetpu.tflite")
        if proc.returncode != 0 or not compiled.exists():
            report.issues.append(f"edgetpu_compiler exited with {proc.returncode}: "
                                 f"{proc.stderr.strip()[-300:]}")
        else:
            report.artefacts["edgetpu_tflite"] = stage.final(compiled.name)
    name = report.artefacts.get("edgetpu_tflite", stage.final(tflite.stem + "_edgetpu.tflite"))
    if "board_runner" in report.artefacts:
        report.next_steps.append(
            f"On the board (Python 3.7+, pycoral or tflite_runtime; no TensorFlow or tfm_fuse): "
            f"copy {stage.out_dir.name}/ over and run `python3 {RUNNER_NAME} {Path(name).name}` "
            f"in it: it runs the shipped sample inputs and compares with this machine's outputs.")
    else:  # several inputs or outputs: the runner feeds one and compares one
        report.next_steps.append(f"On the board: load {Path(name).name} with pycoral's "
                                 f"edgetpu.make_interpreter (Coral's apt repository).")


def _board_runner(tflite: Path, x: np.ndarray, outputs: np.ndarray, stage: Staging,
                  report: Report) -> None:
    """Ships the board-side runner with a few validated inputs (in the model's input type) and
    the outputs LiteRT gave for them here, so the board's run can be compared."""
    from tfm_fuse.converters import coral_board_runner

    details = runtimes.LiteRT(tflite).input
    np.save(stage.path / "sample_inputs.npy", coral_board_runner._quantize(x, details))
    np.save(stage.path / "expected_outputs.npy", outputs.astype(np.float32))
    shutil.copyfile(coral_board_runner.__file__, stage.path / RUNNER_NAME)
    report.artefacts["board_runner"] = stage.final(RUNNER_NAME)
