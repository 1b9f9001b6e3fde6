"""Jetson boards: ONNX for the board's TensorRT (FP16 engines; INT8 Q/DQ where the GPU has it).

`board=` picks a profile (`tfm_fuse.converters.boards`): its TensorRT's opset ceiling and its
precision. Every board gets an FP32 ONNX at batch 1 — the `trtexec --fp16` input — checked in
ONNX Runtime twice: as exported, and converted to FP16 (`onnx_fp16_compute`, an emulation of
the FP16 engine, gated by `min_top1`). Boards whose GPU runs INT8 (Xavier, Orin) also get an
explicitly quantized INT8 ONNX — QuantizeLinear/DequantizeLinear pairs, symmetric int8
activations and per-channel weights, float biases — validated in ONNX Runtime too; an INT8
agreement below `min_top1` is reported (the FP16 engine is then the one to deploy), not a
reason to discard the other artefacts. The Nano and TX2 (JetPack 4.6, TensorRT 8.2: opset ≤ 13,
no INT8) get FP16 only. When `tensorrt` is importable an engine is built too, else the exact
`trtexec` commands go to `next_steps` and `build_engines.sh`.

When the installed TensorFlow is built with TensorRT (JetPack's builds, which have no Keras 3),
a TF-TRT SavedModel is written instead.

Example:
    >>> from tfm_fuse.converters import tensorrt
    >>> r = tensorrt.convert(model, "out/jetson", board="jetson-orin",
    ...                      representative_data=x_train[:200], validation_data=x_test[:200])
    >>> sorted(r.artefacts)
    ['onnx_fp32', 'onnx_int8_qdq', 'trtexec_script']
    >>> tensorrt.convert(model, "out/nano", board="jetson-nano").details["board"]["tensorrt"]
    '8.2'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tfm_fuse._quiet import quiet_tools
from tfm_fuse.converters import onnx as onnx_conv
from tfm_fuse.converters._fidelity import check_top1, compare
from tfm_fuse.converters._source import (ModelLike, Samples, Source, call_tool, count,
                                        in_keras_order, prepare, single_or_list)
from tfm_fuse.converters.runtimes import by_input
from tfm_fuse.converters._staging import Staging
from tfm_fuse.converters.boards import DEFAULT_JETSON, JetsonBoard, jetson_board
from tfm_fuse.converters.report import Report
from tfm_fuse.errors import ConfigError, ConversionError

INT8_NAME = "model_int8_qdq.onnx"
CALIBRATIONS = {"percentile": "Percentile", "minmax": "MinMax", "entropy": "Entropy"}
# Q/DQ on the inputs and weights of the weighted ops, as NVIDIA's quantization toolkits place
# them; TensorRT fuses the ReLUs and Adds around them. Quantizing every Relu/Add output too
# adds a rounding step per op and cost several points of top-1 agreement on small models.
QUANTIZED_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul"]


@quiet_tools
def convert(model: ModelLike, out_dir: str | os.PathLike, *, board: str = DEFAULT_JETSON,
            representative_data: Any = None, validation_data: Any = None,
            opset: int | None = None, min_top1: float | None = 0.99,
            calibration: str = "minmax", max_rel_error: float = 1e-3,
            max_samples: int = 500, overwrite: bool = False,
            keep_failed: bool = False) -> Report:
    """Writes the Jetson artefacts and checks them against Keras.

    Args:
        model: a `keras.Model`, a `.keras` file or a SavedModel directory.
        out_dir: output directory; must not exist unless `overwrite=True`.
        board: `"jetson-nano"`, `"jetson-tx2"`, `"jetson-xavier"` or `"jetson-orin"`.
            Defaults to `"jetson-orin"`.
        representative_data: calibration inputs (`tf.data.Dataset`, array, generator or
            callable), shaped like the model input, preprocessed. Needed by INT8 boards only.
        validation_data: held-out inputs to compare with Keras. Defaults to the
            representative data.
        opset: ONNX opset, 13 to the board's TensorRT ceiling. Defaults to that ceiling (13
            on the Nano and TX2, 17 on Xavier and Orin).
        min_top1: lowest accepted top-1 agreement with Keras: of the FP16 check (a failure)
            and of the INT8 one (reported; the FP16 engine is then the one to deploy).
            `None` only reports them. Defaults to `0.99`.
        calibration: activation range calibration, `"minmax"`, `"percentile"` (99.999 %)
            or `"entropy"`. Defaults to `"minmax"`.
        max_rel_error: largest accepted FP32 max-abs error relative to the output scale.
            Defaults to `1e-3`.
        max_samples: samples kept from the representative data. Defaults to `500`
            (NVIDIA: "about 500 images are sufficient for calibrating ImageNet
            classification networks"; on a MobileNetV2 here 256 samples gave 98.9 %
            Q/DQ top-1 agreement, 500 gave 99.3 %).
        overwrite: replace an existing `out_dir`. Defaults to `False`.
        keep_failed: keep a failing artefact (its report says `ok=False`). Defaults to `False`.

    Returns:
        A `Report`; `report.json` and `report.txt` are in `out_dir`.

    Raises:
        ConfigError: bad model input, data, opset or existing output path.
        ConversionError: conversion or validation failed (nothing is left in `out_dir`).
    """
    profile = jetson_board(board)
    opset = profile.max_opset if opset is None else opset
    onnx_conv.check_opset(opset)
    if opset > profile.max_opset:
        raise ConfigError(f"{profile.name}'s TensorRT {profile.tensorrt} (JetPack "
                          f"{profile.jetpack}) parses ONNX up to opset {profile.max_opset}. "
                          f"Received: opset={opset}")
    if calibration not in CALIBRATIONS:
        raise ConfigError(f"calibration must be one of {sorted(CALIBRATIONS)}. Received: "
                          f"calibration={calibration!r}")
    start = prepare(model, out_dir, target="jetson", overwrite=overwrite,
                    validation_data=validation_data, representative_data=representative_data,
                    needs_calibration=profile.int8, max_samples=max_samples)
    src, rep, x_val, report = start.src, start.rep, start.x_val, start.report
    report.details["board"] = profile.as_dict()
    report.notes.append(f"Board {profile.name}: JetPack {profile.jetpack}, TensorRT "
                        f"{profile.tensorrt} (ONNX opset <= {profile.max_opset}), {profile.gpu}"
                        f" -> {'INT8 Q/DQ and FP16' if profile.int8 else 'FP16'} engines.")
    with Staging(out_dir, overwrite=overwrite, keep_failed=keep_failed) as stage:
        if has_tf_trt():
            _tf_trt(src, stage, report, rep, x_val, min_top1, int8=profile.int8)
        else:
            report.notes.append("This TensorFlow has no TensorRT (pip build): writing ONNX "
                                "for TensorRT instead of a TF-TRT SavedModel.")
            _onnx_for_tensorrt(src, stage, report, profile, rep, x_val, opset, min_top1,
                               max_rel_error, calibration)
        report.ok = not report.issues
        return stage.commit(report)


def has_tf_trt() -> bool:
    """True when the installed TensorFlow is built with TensorRT (JetPack builds)."""
    import tensorflow as tf

    return bool(tf.sysconfig.get_build_info().get("is_tensorrt_build", False))


def _onnx_for_tensorrt(src: Source, stage: Staging, report: Report, profile: JetsonBoard,
                       rep: Samples | None, x_val: Samples, opset: int,
                       min_top1: float | None, max_rel_error: float, calibration: str) -> None:
    fp32 = onnx_conv.add_fp32(src, stage, report, opset, x_val, max_rel_error)
    y_keras = src.predict(x_val)
    # the engine's FP16 arithmetic, emulated (not shipped)
    report.fidelity["onnx_fp16_compute"] = metrics = compare(y_keras, onnx_conv.run_fp16(fp32, x_val))
    report.issues += check_top1("onnx_fp16_compute", metrics, min_top1)
    if profile.int8:
        int8 = quantize_qdq(fp32, stage.path / INT8_NAME, rep, input_name=src.input_name,
                            calibration=calibration)
        report.artefacts["onnx_int8_qdq"] = stage.final(INT8_NAME)
        metrics = compare(y_keras, onnx_conv.run_onnx(int8, x_val, literal_qdq=True))
        report.fidelity["onnx_int8_qdq"] = metrics
        shortfall = check_top1("onnx_int8_qdq", metrics, min_top1)
        report.details["int8_accepted"] = not shortfall
        report.notes += [f"{s} The FP16 engine (build_engines.sh builds both) is the one to "
                         "deploy." for s in shortfall]
        report.details["onnx_int8_ops"] = onnx_conv.onnx_op_counts(int8)
        report.details["qdq_check"] = qdq = check_qdq(int8)
        report.issues += qdq["problems"]
    _engines(stage, report, profile)


def quantize_qdq(fp32: Path, out: Path, rep: Samples, *, input_name: str,
                 calibration: str = "minmax") -> Path:
    """Explicit INT8 ONNX for TensorRT with ONNX Runtime's static quantization.

    Q/DQ format on the inputs of `QUANTIZED_OPS`, symmetric int8 activations and weights,
    per-channel weights kept as float
    with a Q/DQ pair (as TensorRT's own tools emit), biases left in float, activation ranges
    calibrated on `rep` with `calibration`.
    """
    from onnxruntime import quantization as q

    class Reader(q.CalibrationDataReader):
        def __init__(self, session_inputs: list[str]):
            arrays = by_input(rep, session_inputs)
            self._it = iter([{name: a[i:i + 1].astype(np.float32)
                              for name, a in zip(session_inputs, arrays)}
                             for i in range(count(rep))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    import onnx

    names = [i.name for i in onnx.load(str(fp32), load_external_data=False).graph.input]
    method = getattr(q.CalibrationMethod, CALIBRATIONS[calibration])
    options = {"ActivationSymmetric": True, "WeightSymmetric": True,
               "AddQDQPairToWeight": True, "QuantizeBias": False}
    call_tool(f"ONNX Runtime INT8 Q/DQ quantization of input '{input_name}'",
              lambda: q.quantize_static(
                  str(fp32), str(out), Reader(names), quant_format=q.QuantFormat.QDQ,
                  per_channel=True, activation_type=q.QuantType.QInt8,
                  weight_type=q.QuantType.QInt8, calibrate_method=method,
                  op_types_to_quantize=QUANTIZED_OPS,
                  extra_options=options))
    return out


def check_qdq(path: Path) -> dict[str, Any]:
    """Checks what TensorRT needs of explicit quantization: int8, symmetric, per-channel weights.

    Returns:
        `{"q_nodes", "dq_nodes", "per_channel_weights", "problems": [...]}`.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    problems, per_channel, counts = [], 0, {"QuantizeLinear": 0, "DequantizeLinear": 0}
    for node in graph.node:
        if node.op_type not in counts:
            continue
        counts[node.op_type] += 1
        zp = inits.get(node.input[2]) if len(node.input) > 2 else None
        if zp is not None and (zp.dtype != np.int8 or zp.any()):
            problems.append(f"{node.op_type} '{node.name}': zero point {zp.dtype} "
                            f"{zp.ravel()[:4].tolist()}; TensorRT needs symmetric int8 (0).")
        scale = inits.get(node.input[1])
        per_channel += int(node.op_type == "QuantizeLinear" and scale is not None
                           and scale.size > 1)
    return {"q_nodes": counts["QuantizeLinear"], "dq_nodes": counts["DequantizeLinear"],
            "per_channel_weights": per_channel, "problems": problems}


def _engines(stage: Staging, report: Report, profile: JetsonBoard) -> None:
    # on the board, beside the files: the script is run from the folder it was copied to
    commands = [f"trtexec --onnx={onnx_conv.ONNX_NAME} --fp16 --saveEngine=model_fp16.engine"]
    if profile.int8:
        commands.insert(0, f"trtexec --onnx={INT8_NAME} --int8 --fp16 "
                           f"--saveEngine=model_int8.engine")
    script = stage.path / "build_engines.sh"
    script.write_text(f"#!/bin/sh\n# Run on the {profile.name} (JetPack {profile.jetpack}, "
                      f"TensorRT {profile.tensorrt}), in the folder holding the .onnx files.\n"
                      f"set -e\ncd \"$(dirname \"$0\")\"\n" + "\n".join(commands) + "\n")
    script.chmod(0o755)
    report.artefacts["trtexec_script"] = stage.final(script.name)
    try:
        import tensorrt  # noqa: F401  (JetPack only; never a pip dependency)
    except ImportError:
        report.notes.append("TensorRT is not importable here: build the engines on the Jetson "
                            "with the trtexec commands below (also in build_engines.sh).")
        report.next_steps += [f"On the {profile.name}, in the copied '{stage.out_dir.name}/' "
                              f"folder (or: sh build_engines.sh):", *commands]
        return
    source = INT8_NAME if profile.int8 else onnx_conv.ONNX_NAME
    engine = build_engine(stage.path / source, stage.path / f"model_{'int8' if profile.int8 else 'fp16'}.engine",
                          int8=profile.int8)
    report.artefacts["tensorrt_engine"] = stage.final(engine.name)
    report.next_steps.append(f"trtexec --loadEngine={stage.final(engine.name)}")


def build_engine(onnx_path: Path, engine_path: Path, *, int8: bool) -> Path:
    """Builds and deserializes a TensorRT engine from an ONNX file (Jetson side).

    Needs `tensorrt` (JetPack) and a GPU, so it cannot run here: kept this small and untested.
    An explicitly quantized (Q/DQ) ONNX needs no calibrator.

    Example:
        >>> build_engine(Path("model_int8_qdq.onnx"), Path("model_int8.engine"), int8=True)
    """
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ConversionError(f"TensorRT could not parse '{onnx_path}': {'; '.join(errors)}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)
    serialized = builder.build_serialized_network(network, config)
    engine_path.write_bytes(bytes(serialized))
    trt.Runtime(logger).deserialize_cuda_engine(engine_path.read_bytes())
    return engine_path


def _tf_trt(src: Source, stage: Staging, report: Report, rep: Samples | None,
            x_val: Samples, min_top1: float | None, int8: bool = True) -> None:
    """TF-TRT SavedModel, INT8 (calibrated on `rep`) or FP16 (JetPack TensorFlow only;
    cannot run on pip builds: kept this small, and untested here)."""
    import tensorflow as tf
    from tensorflow.python.compiler.tensorrt import trt_convert as trt

    saved = src.export_saved_model(stage.path / "_saved_model")
    precision = "INT8" if int8 else "FP16"
    converter = trt.TrtGraphConverterV2(input_saved_model_dir=saved, precision_mode=precision,
                                        use_calibration=int8)
    names = [spec.name for spec in src.inputs]

    def one(x: Samples, i: int) -> list:  # sample i of every input, in the signature's order
        return [tf.constant(a[i:i + 1]) for a in by_input(x, names)]

    calibrate = {"calibration_input_fn": lambda: (one(rep, i) for i in range(count(rep)))} \
        if int8 else {}
    call_tool(f"TF-TRT {precision} conversion", lambda: converter.convert(**calibrate))
    out = stage.path / "tftrt_saved_model"
    converter.save(str(out))
    fn = tf.saved_model.load(str(out)).signatures["serving_default"]
    runs = [fn(**dict(zip(names, one(x_val, i)))) for i in range(count(x_val))]
    y = single_or_list(in_keras_order({k: np.concatenate([r[k].numpy() for r in runs])
                                       for k in runs[0]}))
    report.artefacts["tftrt_saved_model"] = stage.final(out.name)
    key = f"tftrt_{precision.lower()}"
    report.fidelity[key] = metrics = compare(src.predict(x_val), y)
    report.issues += check_top1(key, metrics, min_top1)
