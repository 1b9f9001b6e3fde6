"""OpenVINO IR (`.xml` + `.bin`, FP16 weights) for NCS / NCS2, CPU and NPU.

The IR is validated on the CPU plugin against Keras twice: at float32 inference precision
(is the conversion right?) and, where the CPU computes in FP16 (OpenVINO's `FP16` capability:
AVX512-FP16 and AMX parts), at FP16 inference precision — the precision the MYRIAD plugin of an
NCS2 computes in ("the VPU plugins support FP16 inference", docs.openvino.ai 2022.3 "VPU
devices"), so its error is the board's, not the float32 IR's. Every op is checked against
opset1…opset10: what OpenVINO 2022.3 LTS — the last release with the MYRIAD (NCS2) plugin —
can read. With `legacy_runtime=True` the IR is also loaded and run by the real 2022.3.2
runtime in a Python 3.10 venv (see `tfm_fuse.converters._ov_legacy`).

Example:
    >>> from tfm_fuse.converters import openvino
    >>> r = openvino.convert(model, "out/openvino", validation_data=x_test[:64])
    >>> r.details["opset_check"]["max_opset"] <= 10
    True
"""

from __future__ import annotations

import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from tfm_fuse._quiet import quiet_tools
from tfm_fuse.converters import _myriad_layers, runtimes
from tfm_fuse.converters._fidelity import check_float, check_fp16, check_top1, compare, fp16_floor
from tfm_fuse.converters._source import ModelLike, Samples, Source, call_tool, prepare
from tfm_fuse.converters._staging import Staging
from tfm_fuse.converters.report import Report
from tfm_fuse.errors import ConfigError, ConversionError

XML_NAME = "model.xml"
MAX_LEGACY_OPSET = 10  # OpenVINO 2022.3 LTS reads opset1...opset10


@quiet_tools
def convert(model: ModelLike, out_dir: str | os.PathLike, *, board: str = "ncs2",
            compress_to_fp16: bool = True,
            validation_data: Any = None, max_rel_error: float = 1e-3,
            require_opset10: bool = True, legacy_runtime: bool = False,
            min_top1: float | None = 0.99, overwrite: bool = False,
            keep_failed: bool = False) -> Report:
    """Writes `model.xml` + `model.bin` and checks them on the CPU plugin.

    Args:
        model: a `keras.Model`, a `.keras` file or a SavedModel directory.
        out_dir: output directory; must not exist unless `overwrite=True`.
        board: `"ncs2"` (Myriad X: an IR for OpenVINO 2022.3 LTS, its last release) or `"ncs"`
            (the first Neural Compute Stick, Myriad 2: an IR v10 for OpenVINO 2020.3 LTS, its
            last release, see `convert_ncs`). Defaults to `"ncs2"`.
        compress_to_fp16: store weights as FP16 (what NCS/NCS2 run). Defaults to `True`.
        validation_data: inputs to compare with Keras. Defaults to seeded random inputs.
        max_rel_error: largest accepted max-abs error relative to the output scale.
            Defaults to `1e-3`. With FP16 weights, the error the rounding alone costs in Keras
            (`fidelity[...]["fp16_weights_floor_rel"]`) is measured too, and the IR is accepted
            up to `max(max_rel_error, 1.5 × floor)`: a trained MobileNetV2's logits move by
            about 2e-3 of their scale from FP16 weights whatever the converter does.
        require_opset10: an op newer than opset10 fails the conversion (NCS/NCS2 cannot
            load it); `False` only notes it (CPU/NPU with a recent OpenVINO). Defaults to `True`.
        min_top1: least top-1 agreement with Keras of the FP16-compute run (the NCS2's
            precision; checked where this CPU computes in FP16). `None` only reports it.
            Defaults to `0.99`.
        legacy_runtime: also run the IR in OpenVINO 2022.3.2 (Python 3.10 venv, created once
            under `~/.cache/tfm_fuse/ov2022`) and compare. Defaults to `False`.
        overwrite: replace an existing `out_dir`. Defaults to `False`.
        keep_failed: keep a failing artefact (its report says `ok=False`). Defaults to `False`.

    Returns:
        A `Report`; `report.json` and `report.txt` are in `out_dir`.

    Raises:
        ConfigError: bad model input, data or existing output path.
        ConversionError: conversion or validation failed (nothing is left in `out_dir`).
    """
    if board not in ("ncs2", "ncs"):
        raise ConfigError(f"Unknown Neural Compute Stick board {board!r}. Accepted: 'ncs2' "
                          "(Myriad X), 'ncs' (the first stick, Myriad 2).")
    start = prepare(model, out_dir, target="openvino", overwrite=overwrite,
                    validation_data=validation_data)
    src, x_val, report = start.src, start.x_val, start.report
    if board == "ncs":
        with Staging(out_dir, overwrite=overwrite, keep_failed=keep_failed) as stage:
            _ncs(src, stage, report, x_val, max_rel_error, min_top1)
            report.ok = not report.issues
            return stage.commit(report)
    with Staging(out_dir, overwrite=overwrite, keep_failed=keep_failed) as stage:
        xml = _to_ir(src, stage.path, compress_to_fp16)
        report.artefacts["openvino_xml"] = stage.final(XML_NAME)
        report.artefacts["openvino_bin"] = stage.final(xml.with_suffix(".bin").name)
        _check_opsets(xml, report, require_opset10)
        key = "openvino_fp16" if compress_to_fp16 else "openvino_fp32"
        y_keras = src.predict(x_val)
        metrics = compare(y_keras, run_ir(xml, x_val))
        floor = fp16_floor(src.model, x_val, y_keras) if compress_to_fp16 else None
        if floor is not None:
            metrics["fp16_weights_floor_rel"] = floor
        report.fidelity[key] = metrics
        report.issues += check_fp16(key, metrics, max_rel_error, floor)
        if compress_to_fp16:
            _check_fp16_compute(src, stage, xml, x_val, y_keras, report, min_top1)
        if legacy_runtime:
            _check_legacy(xml, x_val, y_keras, report, max_rel_error, floor)
        report.next_steps.append(f"On the NCS2 host (OpenVINO 2022.3): benchmark_app -m "
                                 f"{stage.final(XML_NAME)} -d MYRIAD -api sync")
        report.ok = not report.issues
        return stage.commit(report)


def _to_ir(src: Source, stage_dir: Path, compress_to_fp16: bool) -> Path:
    import openvino as ov

    saved = src.export_saved_model(stage_dir / "_saved_model")
    ov_model = call_tool(f"openvino.convert_model of input '{src.input_name}' {src.shapes}",
                         lambda: ov.convert_model(saved))
    xml = stage_dir / XML_NAME
    call_tool(f"openvino.save_model to '{xml.name}'",
              lambda: ov.save_model(ov_model, str(xml), compress_to_fp16=compress_to_fp16))
    shutil.rmtree(saved, ignore_errors=True)
    return xml


def run_ir(xml: str | os.PathLike, x: Samples, precision: str = "f32") -> np.ndarray:
    """Runs an IR on the CPU plugin at `precision` ("f32", or "f16" where
    `fp16_compute_available()`), one sample at a time.

    Example:
        >>> y = run_ir("out/openvino/model.xml", x_test[:10])
    """
    return runtimes.OpenVINO(xml, precision=precision).outputs(x)


NCS_MAX_OPSET = 3  # OpenVINO 2020.3 LTS, the first stick's last release, reads opset1...opset3
NCS_ONNX_OPSET = 10  # what its Model Optimizer's ONNX front end reads


def _ncs(src: Source, stage: Staging, report: Report, x_val: Samples,
         max_rel_error: float, min_top1: float | None) -> None:
    """The first Neural Compute Stick (Myriad 2), dropped after OpenVINO 2020.3 LTS: an IR v10.

    Real tools where this machine has them: the ONNX (opset 10) from tf2onnx, checked in ONNX
    Runtime; the IR v10 (FP16) from OpenVINO 2021.4.2's Model Optimizer — the last one that
    writes IR v10 — with shape subgraphs folded, its operations checked against opset1..opset3
    and the MYRIAD plugin's; the IR read and run by 2021.4.2's Inference Engine (a real IR v10
    reader, CPU) against Keras. Without Python 3.9 for that release: the ONNX, and the exact
    Model Optimizer command of 2020.3 for the host. Not verified here: 2020.3 itself (no wheel
    for any Python this machine has) and a Myriad 2.
    """
    from tfm_fuse.converters import _ov_legacy, onnx as onnx_conv

    onnx_path = onnx_conv.export_onnx(src, stage.path / "model_opset10.onnx", NCS_ONNX_OPSET)
    report.artefacts["onnx_opset10"] = stage.final(onnx_path.name)
    y_keras = src.predict(x_val)
    metrics = compare(y_keras, onnx_conv.run_onnx(onnx_path, x_val))
    report.fidelity["onnx_opset10"] = metrics
    report.issues += check_float("onnx_opset10", metrics, max_rel_error)
    names = ",".join(spec.name for spec in src.inputs)
    shapes = ",".join(f"[{','.join(str(d) for d in spec.shape)}]" for spec in src.inputs)
    mo_2020 = (f"python3 mo.py --input_model {onnx_path.name} --data_type FP16 "
               f"--input {names} --input_shape {shapes}  # OpenVINO 2020.3")
    if not _ov_legacy.python_available(_ov_legacy.OV2021):
        report.notes.append(f"Python {_ov_legacy.OV2021.python[:3]} (for OpenVINO "
                            f"{_ov_legacy.OV2021.version}'s Model Optimizer) is not here: the "
                            f"IR v10 is not written; on the host: {mo_2020}")
        report.next_steps += [mo_2020, "benchmark_app -m model.xml -d MYRIAD"]
        return
    xml = _ov_legacy.ir10_from_onnx(onnx_path, stage.path)
    report.artefacts["openvino_xml"] = stage.final(xml.name)
    report.artefacts["openvino_bin"] = stage.final(xml.with_suffix(".bin").name)
    layers = ir_opsets(xml)
    newer = sorted({f"{l['type']}-{l['version']}" for l in layers
                    if not 1 <= l["opset"] <= NCS_MAX_OPSET})
    missing, messages = _myriad_check(layers)
    report.details["ncs_check"] = {"ir_version": _ir_version(xml), "ops": sorted(
        {f"{l['type']}-{l['version']}" for l in layers}), "outside_opset3": newer,
        "not_on_myriad": missing}
    report.issues += [f"{op}: OpenVINO 2020.3 (the first NCS's last release) reads opset1..."
                      f"opset3 only" for op in newer]
    report.issues += messages
    if report.details["ncs_check"]["ir_version"] != 10:
        report.issues.append(f"IR version {report.details['ncs_check']['ir_version']}, not 10")
    import onnx

    names = [o.name for o in onnx.load(str(onnx_path), load_external_data=False).graph.output]
    result = _ov_legacy.run_ir10(xml, x_val, names)
    ir_version = report.details["ncs_check"]["ir_version"]
    if not result.ok:
        report.issues.append(f"OpenVINO {_ov_legacy.OV2021.version} could not run the IR v10: "
                             f"{result.error}")
    else:
        # FP16 input and weights (`--data_type FP16`, as a Myriad computes): judged like the
        # NCS2's FP16-compute run, by top-1 agreement
        key = "openvino_ir10_fp16"
        report.fidelity[key] = metrics = compare(y_keras, result.outputs)
        report.issues += check_top1(key, metrics, min_top1)
        report.notes.append(f"IR v{ir_version} written by OpenVINO {_ov_legacy.OV2021.version}'s "
                            f"Model Optimizer and run by its Inference Engine (CPU); OpenVINO "
                            f"2020.3 and a Myriad 2 were not available to check it.")
    report.next_steps.append(f"On the NCS host (OpenVINO 2020.3 LTS, the last with Myriad 2): "
                             f"benchmark_app -m {stage.final(xml.name)} -d MYRIAD")


def _ir_version(xml: Path) -> int:
    return int(ET.parse(str(xml)).getroot().get("version", "0"))


def fp16_compute_available() -> bool:
    """This CPU computes in FP16 in OpenVINO (its CPU plugin lists the `FP16` capability)."""
    import openvino as ov

    return "FP16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _check_fp16_compute(src: Source, stage: Staging, xml: Path, x: Samples,
                        y_keras: np.ndarray, report: Report, min_top1: float | None) -> None:
    """The IR checked in FP16 arithmetic, the precision the NCS2's MYRIAD plugin computes in:
    on OpenVINO's CPU plugin at FP16 inference precision where this CPU computes in FP16;
    otherwise emulated — the same network as an FP16 ONNX (weights and arithmetic) in ONNX
    Runtime, as the Jetson FP16 check does."""
    key = "openvino_fp16_compute"
    if fp16_compute_available():
        report.fidelity[key] = metrics = compare(y_keras, run_ir(xml, x, precision="f16"))
        report.details[key] = "OpenVINO CPU plugin, FP16 inference precision"
        report.notes.append(f"{key}: the IR run at FP16 inference precision (the NCS2's MYRIAD "
                            "plugin computes in FP16).")
    else:
        from tfm_fuse.converters import onnx as onnx_conv

        fp32 = stage.path / "_fp16_check_fp32.onnx"
        try:
            y_fp16 = onnx_conv.run_fp16(onnx_conv.export_onnx(src, fp32, opset=13), x)
        except ConversionError as e:  # a side check: the IR itself is fine
            report.notes.append(f"{key}: this CPU has no FP16 compute in OpenVINO and the "
                                f"emulation failed ({e}): the NCS2's FP16 arithmetic was not "
                                "measured.")
            return
        finally:
            fp32.unlink(missing_ok=True)
        report.fidelity[key] = metrics = compare(y_keras, y_fp16)
        report.details[key] = "emulated: FP16 ONNX in ONNX Runtime"
        report.notes.append(f"{key}: this CPU has no FP16 compute in OpenVINO, so the NCS2's "
                            "FP16 arithmetic was emulated: the same network with FP16 weights "
                            "and arithmetic in ONNX Runtime.")
    report.issues += check_top1(key, metrics, min_top1)


def ir_opsets(xml: str | os.PathLike) -> list[dict[str, Any]]:
    """Every layer of an IR with its op type and opset, e.g. `Interpolate` in `opset11`.

    Example:
        >>> [l for l in ir_opsets("model.xml") if l["opset"] > 10]
        [{'name': 'up/resize', 'type': 'Interpolate', 'version': 'opset11', 'opset': 11}]
    """
    layers = []
    for layer in ET.parse(str(xml)).getroot().iter("layer"):
        version = layer.get("version", "")
        match = re.fullmatch(r"opset(\d+)", version)
        layers.append({"name": layer.get("name", ""), "type": layer.get("type", ""),
                       "version": version, "opset": int(match.group(1)) if match else -1})
    return layers


def _check_opsets(xml: Path, report: Report, require_opset10: bool) -> None:
    layers = ir_opsets(xml)
    bad = [l for l in layers if not 1 <= l["opset"] <= MAX_LEGACY_OPSET]
    used = sorted({f"{l['type']}-{l['version']}" for l in layers})
    report.details["opset_check"] = {
        "max_opset": max((l["opset"] for l in layers), default=0),
        "ops": used, "outside_opset10": [f"{l['name']}: {l['type']}-{l['version']}"
                                         for l in bad],
    }
    for l in bad:
        msg = (f"Layer '{l['name']}' is {l['type']} from {l['version'] or 'no opset'}: "
               f"OpenVINO 2022.3 LTS (NCS/NCS2) reads opset1...opset10 only.")
        (report.issues if require_opset10 else report.notes).append(msg)
    if not bad:
        report.notes.append(f"All {len(layers)} IR layers are within opset1...opset10 "
                            f"(loadable by OpenVINO 2022.3 LTS for NCS/NCS2).")
    missing, messages = _myriad_check(layers)
    report.details["opset_check"]["not_on_myriad"] = missing
    (report.issues if require_opset10 else report.notes).extend(messages)


def _myriad_check(layers: list[dict]) -> tuple[list[str], list[str]]:
    """The IR's operation types the MYRIAD plugin cannot run, and one message for each."""
    missing = _myriad_layers.unsupported(l["type"] for l in layers)
    messages = []
    for op in missing:
        names = [l["name"] for l in layers if l["type"] == op]
        messages.append(
            f"{op} (layer '{names[0]}'{f' and {len(names) - 1} more' if len(names) > 1 else ''})"
            f" is not an operation the MYRIAD plugin of OpenVINO 2022.3 runs: the NCS2 "
            f"refuses the network.")
    return missing, messages


def _check_legacy(xml: Path, x: Samples, y_keras: np.ndarray, report: Report,
                  max_rel_error: float, floor: float | None) -> None:
    from tfm_fuse.converters import _ov_legacy

    result = _ov_legacy.run_ir_2022(xml, x)
    if not result.ok:
        report.issues.append(f"OpenVINO {_ov_legacy.OV_VERSION} could not run the IR: "
                             f"{result.error}")
        return
    metrics = compare(y_keras, result.outputs)
    old, new = result.outputs, run_ir(xml, x)
    pairs = zip(old, new) if isinstance(old, list) else [(old, new)]
    metrics["vs_current_openvino_max_abs"] = max(float(np.max(np.abs(a - b))) for a, b in pairs)
    report.fidelity[f"openvino_{_ov_legacy.OV_VERSION}"] = metrics
    report.issues += check_fp16(f"openvino_{_ov_legacy.OV_VERSION}", metrics, max_rel_error,
                                floor)
