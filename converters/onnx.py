"""ONNX: a `.onnx` from tf2onnx, validated in ONNX Runtime against Keras.

The plain export keeps Keras's dynamic batch (`session.run` on any number of samples); pass
`batch=1` for the static shape edge runtimes need. The same helpers build and check the FP32
ONNX of the Jetson (TensorRT) path, always at batch 1: an engine for the board is built for
one shape.

Example:
    >>> from tfm_fuse.converters import onnx
    >>> r = onnx.convert(model, "out/onnx", validation_data=x_test[:64])
    >>> r.fidelity["onnx_fp32"]["max_abs_error_rel"] < 1e-3
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tfm_fuse._quiet import quiet_tools
from tfm_fuse.converters import runtimes
from tfm_fuse.converters._fidelity import check_float, compare
from tfm_fuse.converters._source import ModelLike, Samples, Source, call_tool, prepare
from tfm_fuse.converters._staging import Staging
from tfm_fuse.converters.report import Report
from tfm_fuse.errors import ConfigError
from tfm_fuse.validation import check_positive_int

ONNX_NAME = "model.onnx"
MIN_OPSET, MAX_OPSET = 13, 18  # tf2onnx 1.17 emits up to 18; TensorRT 8.5+ parses 13...17


@quiet_tools
def convert(model: ModelLike, out_dir: str | os.PathLike, *, opset: int = 17,
            batch: int | None = None, validation_data: Any = None,
            max_rel_error: float = 1e-3, overwrite: bool = False,
            keep_failed: bool = False) -> Report:
    """Writes `model.onnx` (NHWC input) and checks it in ONNX Runtime.

    Args:
        model: a `keras.Model`, a `.keras` file or a SavedModel directory.
        out_dir: output directory; must not exist unless `overwrite=True`.
        opset: ONNX opset, 13 to 18. Defaults to `17`.
        batch: a static batch size, or `None` to keep the batch dimension dynamic (validated
            then on all of `validation_data` in one run). Defaults to `None`.
        validation_data: inputs to compare with Keras. Defaults to seeded random inputs.
        max_rel_error: largest accepted max-abs error relative to the output scale.
            Defaults to `1e-3`.
        overwrite: replace an existing `out_dir`. Defaults to `False`.
        keep_failed: keep a failing artefact (its report says `ok=False`). Defaults to `False`.

    Returns:
        A `Report`; `report.json` and `report.txt` are in `out_dir`.

    Raises:
        ConfigError: bad model input, data, opset or existing output path.
        ConversionError: conversion or validation failed (nothing is left in `out_dir`).
    """
    check_opset(opset)
    if batch is not None:
        batch = check_positive_int(batch, "batch")
    start = prepare(model, out_dir, target="onnx", overwrite=overwrite,
                    validation_data=validation_data)
    src, x_val, report = start.src, start.x_val, start.report
    if batch is None:  # kept dynamic: the note that says it was fixed does not apply
        report.notes = [n for n in report.notes if n != src.batch_note] + [
            f"Input{'s' if len(src.inputs) > 1 else ''} '{src.input_name}': batch dimension kept "
            "dynamic (pass batch=1 for the static shape edge runtimes need)."]
    with Staging(out_dir, overwrite=overwrite, keep_failed=keep_failed) as stage:
        add_fp32(src, stage, report, opset, x_val, max_rel_error, batch=batch)
        report.ok = not report.issues
        return stage.commit(report)


def check_opset(opset: int) -> None:
    """Raises `ConfigError` for an opset outside what tf2onnx and TensorRT 8.5+ accept."""
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(f"opset must be an integer from {MIN_OPSET} to {MAX_OPSET} "
                          f"(TensorRT 8.5+ parses up to 17). Received: opset={opset!r}")


def add_fp32(src: Source, stage: Staging, report: Report, opset: int, x_val: Samples,
             max_rel_error: float, name: str = ONNX_NAME, batch: int | None = 1) -> Path:
    """Exports `name` into the staging directory, validates it, and records it in `report`.

    With `batch=None` the batch dimension stays dynamic and the check runs all of `x_val` at
    once; with a static batch, `batch` samples per run (and a last, partial run is padded)."""
    path = export_onnx(src, stage.path / name, opset, batch=batch)
    key = "onnx_fp32"
    report.artefacts[key] = stage.final(name)
    metrics = compare(src.predict(x_val), run_onnx(path, x_val, batch=batch or 512))
    report.details["onnx_batch"] = "dynamic" if batch is None else batch
    report.fidelity[key] = metrics
    report.issues += check_float(key, metrics, max_rel_error)
    report.details["onnx_opset"] = opset
    report.details["onnx_ops"] = onnx_op_counts(path)
    return path


def export_onnx(src: Source, path: Path, opset: int, batch: int | None = 1) -> Path:
    """Converts the Keras model with tf2onnx to `path`: static spatial shape, batch `batch`
    (`None`: dynamic)."""
    import tf2onnx

    specs = src.tensor_specs(batch)
    shapes = ", ".join(str(tuple(spec.shape)) for spec in specs)
    call_tool(f"tf2onnx conversion (opset {opset}) of input '{src.input_name}' {shapes}",
              lambda: tf2onnx.convert.from_keras(src.model, input_signature=specs,
                                                 opset=opset, output_path=str(path)))
    return path


def run_onnx(path: str | os.PathLike, x: Samples, batch: int = 1, *,
             literal_qdq: bool = False) -> np.ndarray | list[np.ndarray]:
    """Runs an ONNX model in ONNX Runtime (CPU) on `x`, `batch` samples at a time; a list of
    arrays (the graph's output order, which tf2onnx keeps from Keras) for several outputs.
    `literal_qdq`: Q/DQ nodes run as written, the int8 arithmetic a TensorRT engine does
    (`runtimes.OnnxRuntime`).

    Example:
        >>> y = run_onnx("out/onnx/model.onnx", x_test[:10])
    """
    return runtimes.OnnxRuntime(path, literal_qdq=literal_qdq).outputs(x, batch=batch)


def fp16_onnx(fp32: Path, out: Path) -> Path:
    """`fp32` with its weights and arithmetic in FP16 (inputs and outputs kept float32), as a
    `trtexec --fp16` engine or the NCS2's MYRIAD plugin computes; runs in ONNX Runtime's CPU
    kernels (an emulation of FP16 hardware, not shipped)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = call_tool("FP16 conversion of the ONNX (ONNX Runtime's float16 tool)",
                      lambda: convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True))
    onnx.save(model, str(out))
    return out


def run_fp16(fp32: Path, x: Samples) -> np.ndarray | list[np.ndarray]:
    """Outputs of `fp32` computed with FP16 weights and arithmetic (`fp16_onnx`), the FP16
    copy written beside it for the run and removed after it."""
    fp16 = fp16_onnx(fp32, fp32.with_name("_fp16_check.onnx"))
    try:
        return run_onnx(fp16, x)
    finally:
        fp16.unlink(missing_ok=True)


def onnx_op_counts(path: str | os.PathLike) -> dict[str, int]:
    """How many nodes of each op type the ONNX graph holds."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts
