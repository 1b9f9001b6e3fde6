"""The conversion targets as data: one table that `convert_all`, the command line, the latency
benchmark and the demo read, so that a target's name, its board, whether it needs calibration
inputs and which of its artefacts a runtime times are written down once.

Example:
    >>> [t.name for t in TARGETS.values()]
    ['edgetpu', 'jetson', 'openvino', 'onnx']
    >>> TARGETS["jetson"].needs_calibration(jetson_board="jetson-nano")
    False
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tfm_fuse.converters import boards, edgetpu, onnx, openvino, tensorrt


@dataclass(frozen=True)
class Target:
    """One conversion target.

    Args:
        name: its name everywhere: `convert_all`'s keys, `--target`, `Report.target`, the
            output sub-folder.
        boards: the hardware it is for, for people.
        convert: the converter, `convert(model, out_dir, **options) -> Report`.
        options: which of `convert_all`'s options it takes, as `{its argument: convert_all's}`.
        int8: quantizes to int8 with calibration inputs (on every board, or as the board says:
            see `needs_calibration`).
        timed: `(runtime, artefact key)` that `tfm_fuse.app.latency` times, or `None`.
    """

    name: str
    boards: str
    convert: Callable
    options: dict
    int8: bool
    timed: tuple[str, str] | None

    def needs_calibration(self, **options) -> bool:
        """Whether this conversion, with `convert_all`'s `options`, needs calibration inputs."""
        if self.name == "jetson":
            return boards.jetson_board(options.get("jetson_board", boards.DEFAULT_JETSON)).int8
        return self.int8


_COMMON = {"validation_data": "validation_data", "overwrite": "overwrite",
           "keep_failed": "keep_failed"}

TARGETS = {t.name: t for t in (
    Target("edgetpu", "Coral Edge TPU (Dev Board, USB Accelerator)", edgetpu.convert,
           {**_COMMON, "representative_data": "representative_data", "min_top1": "min_top1"},
           int8=True, timed=("litert_int8", "tflite_int8")),
    Target("jetson", "NVIDIA Jetson (Nano, TX2, Xavier, Orin)", tensorrt.convert,
           {**_COMMON, "representative_data": "representative_data", "min_top1": "min_top1",
            "board": "jetson_board"}, int8=True, timed=None),
    Target("openvino", "Intel Neural Compute Stick 2 / first NCS, CPU", openvino.convert,
           {**_COMMON, "min_top1": "min_top1", "board": "ncs_board",
            "legacy_runtime": "legacy_openvino"}, int8=False,
           timed=("openvino_cpu", "openvino_xml")),
    Target("onnx", "any ONNX runtime", onnx.convert, dict(_COMMON), int8=False,
           timed=("onnxruntime", "onnx_fp32")),
)}
