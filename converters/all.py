"""`convert_all`: one model to every edge target, each artefact checked and reported.

Example:
    >>> reports = convert_all(model, "out", representative_data=x_calib, validation_data=x_test)
    >>> {target: r.ok for target, r in reports.items()}
    {'edgetpu': True, 'jetson': True, 'openvino': True, 'onnx': True}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tfm_fuse._quiet import quiet_tools
from tfm_fuse.converters import boards
from tfm_fuse.converters._source import load_source, require_calibration
from tfm_fuse.converters.report import Report
from tfm_fuse.converters.targets import TARGETS as TARGET_TABLE
from tfm_fuse.errors import ConfigError, ConversionError, OutputError
from tfm_fuse.files import check_destination

TARGETS = tuple(TARGET_TABLE)  # ("edgetpu", "jetson", "openvino", "onnx")


@quiet_tools
def convert_all(model: Any, out_dir: str | os.PathLike, *, representative_data: Any = None,
                validation_data: Any = None, targets: tuple[str, ...] = TARGETS,
                overwrite: bool = False, keep_failed: bool = False,
                legacy_openvino: bool = False, min_top1: float | None = 0.99,
                jetson_board: str = boards.DEFAULT_JETSON,
                ncs_board: str = "ncs2") -> dict[str, Report]:
    """Convert `model` for each of `targets` into `out_dir/<target>`.

    Args:
        model: a `keras.Model`, a `.keras` file or a SavedModel directory.
        out_dir: parent folder; each target writes its own sub-folder.
        representative_data: int8 calibration inputs (needed by `edgetpu`, and by `jetson` on
            the INT8 boards: Xavier, Orin).
        validation_data: held-out inputs to compare each artefact with Keras.
        targets: any of `"edgetpu"`, `"jetson"`, `"openvino"`, `"onnx"`. Defaults to all.
        overwrite: replace existing target folders. Defaults to `False`.
        keep_failed: keep an artefact whose check failed (its report says so). Defaults to `False`.
        legacy_openvino: also run the IR in OpenVINO 2022.3.2 (the NCS2 release; needs
            `python3.10`). Defaults to `False`.
        min_top1: lowest accepted top-1 agreement with Keras of the reduced-precision runs
            (int8 for `edgetpu` and `jetson`, FP16 compute for `openvino`); `None` only reports
            it. Defaults to `0.99`.
        jetson_board: the `jetson` target's board profile (`tfm_fuse.converters.boards`).
            Defaults to `"jetson-orin"`.
        ncs_board: the `openvino` target's stick: `"ncs2"`, or `"ncs"` (the first one: an IR
            v10). Defaults to `"ncs2"`.

    Returns:
        `{target: Report}`. A target that cannot be converted — no calibration inputs for an
        int8 target, or a failed conversion or check — gets a failed report saying why (nothing
        is written for it), and the other targets are still converted.

    Raises:
        ConfigError: bad arguments every target shares (the model, an existing `out_dir/<target>`
            without `overwrite`), before anything is converted.
    """
    out = Path(out_dir)
    options = {"representative_data": representative_data, "validation_data": validation_data,
               "overwrite": overwrite, "keep_failed": keep_failed, "min_top1": min_top1,
               "legacy_openvino": legacy_openvino, "jetson_board": jetson_board,
               "ncs_board": ncs_board}
    unknown = [t for t in targets if t not in TARGET_TABLE]
    if unknown:
        raise ConfigError(f"Unknown target(s) {unknown}. Accepted: {list(TARGETS)}")
    for target in targets:  # shared mistakes first: nothing converted, nothing half done
        check_destination(out / target, overwrite=overwrite)
    # the model is loaded once for every target (a .keras file or SavedModel read once)
    source = load_source(model).model if isinstance(model, (str, os.PathLike)) else model
    reports = {}
    for name in targets:
        target = TARGET_TABLE[name]
        try:
            if target.needs_calibration(**options):
                require_calibration(representative_data, name)
            kwargs = {arg: options[key] for arg, key in target.options.items()}
            reports[name] = target.convert(source, out / name, **kwargs)
        except (ConversionError, ConfigError, OutputError) as e:  # this target only: the rest go on
            reports[name] = Report(target=name, ok=False, issues=[str(e)])
    return reports


def convert_for_timing(model: Any, out_dir: str | os.PathLike, representative_data: Any, *,
                       runtimes: tuple[str, ...]) -> dict[str, str]:
    """Convert `model` for the targets whose artefact each of `runtimes` times (the `timed`
    column of `targets.TARGETS`: LiteRT int8 the Edge TPU's, OpenVINO CPU the NCS2 IR, ONNX
    Runtime the FP32 ONNX), without accuracy bars; returns `{runtime: artefact path}`.

    Example:
        >>> convert_for_timing(model, "out", x[:64], runtimes=("onnxruntime",))
        {'onnxruntime': 'out/onnx/model.onnx'}
    """
    targets = tuple(t.name for t in TARGET_TABLE.values() if t.timed and t.timed[0] in runtimes)
    reports = convert_all(model, out_dir, representative_data=representative_data,
                          targets=targets, overwrite=True, keep_failed=True)
    return timed_paths(reports, runtimes)


def timed_paths(reports: dict[str, Report], runtimes: tuple[str, ...]) -> dict[str, str]:
    """`{runtime: the artefact it times}` from `convert_all` reports."""
    found = {t.timed[0]: reports[t.name].artefacts.get(t.timed[1])
             for t in TARGET_TABLE.values() if t.timed and t.name in reports}
    return {rt: str(p) for rt, p in found.items() if p and rt in runtimes}
