"""Converters to edge targets: Edge TPU, Jetson (TF-TRT / ONNX for TensorRT), OpenVINO, ONNX.

Each module has `convert(model, out_dir, *, ...) -> Report`. Importing this package is cheap:
TensorFlow, LiteRT, tf2onnx, ONNX Runtime and OpenVINO are imported inside the functions.

Example:
    >>> from tfm_fuse import converters
    >>> r = converters.onnx.convert(model, "out/onnx")
    >>> r.ok, r.artefacts["onnx_fp32"]
    (True, '.../out/onnx/model.onnx')
"""

from tfm_fuse.converters import edgetpu, onnx, openvino, tensorrt
from tfm_fuse.converters.all import TARGETS, convert_all
from tfm_fuse.converters.report import Report

__all__ = ["Report", "TARGETS", "convert_all", "edgetpu", "onnx", "openvino", "tensorrt"]
