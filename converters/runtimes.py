"""The runtimes an artefact is checked and timed in — LiteRT, ONNX Runtime, OpenVINO — behind
one small interface, so that the converters' fidelity checks and `tfm_fuse.app.latency` load and
feed a model the same way.

Each runtime opens a model file and offers two things: `outputs(x)` (float outputs for the
samples of `x` — one array, or a dict by input name for several inputs, as `_source` gives
them — run `batch` at a time, quantized inputs and outputs handled, a list in the Keras
model's output order when there are several) and `timer()` (a zero-argument callable running
one inference on zeros, for `latency.compare`).

Example:
    >>> runtime = open_runtime("onnxruntime", "out/onnx/model.onnx", threads=1)
    >>> y = runtime.outputs(x_test[:10])
    >>> tick = runtime.timer(); tick()
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from tfm_fuse.converters._source import (Samples, call_tool, count, in_keras_order, keras_order,
                                         single_or_list)
from tfm_fuse.errors import ConversionError


def by_input(x: Samples, names: list[str]) -> list[np.ndarray]:
    """`x`'s arrays in the order of a runtime's input `names`. The runtimes keep the Keras
    input names, LiteRT with its signature's prefix and suffix (`serving_default_meta:0`).

    Example:
        >>> [a.shape for a in by_input({"image": xi, "meta": xm}, ["serving_default_meta:0",
        ...                                                         "serving_default_image:0"])]
        [(10, 4), (10, 8, 8, 3)]
    """
    if not isinstance(x, dict):
        return [x]
    arrays = []
    for name in names:
        key = name.split(":")[0].removeprefix("serving_default_")
        if key not in x:
            raise ConversionError(f"The artefact's input '{name}' is none of the model's "
                                  f"inputs {list(x)}: it cannot be fed.")
        arrays.append(x[key])
    return arrays


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """Quantizes real values with rounding and saturation to `dtype`."""
    info = np.iinfo(dtype)
    q = np.round(x / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Real values of a quantized tensor: `(q - zero_point) * scale`."""
    return (q.astype(np.float32) - zero_point) * scale


class LiteRT:
    """A `.tflite` in LiteRT (`ai_edge_litert`), batch 1 as the flatbuffer fixes it."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        kwargs = {} if threads is None else {"num_threads": threads}
        self.interp = call_tool(f"Loading '{path}' in LiteRT",
                                lambda: Interpreter(model_path=str(path), **kwargs))
        self.interp.allocate_tensors()
        self.input_details = named_inputs(self.interp)
        self.input = self.input_details[0]
        self.output_details = keras_ordered_outputs(self.interp)

    def outputs(self, x: Samples) -> np.ndarray | list[np.ndarray]:
        results = [[] for _ in self.output_details]
        arrays = by_input(x, [d["name"] for d in self.input_details])
        for i in range(count(x)):
            for inp, a in zip(self.input_details, arrays):
                feed = a[i:i + 1]
                if inp["dtype"] in (np.int8, np.uint8):
                    feed = quantize(feed, *inp["quantization"], inp["dtype"])
                self.interp.set_tensor(inp["index"], feed.astype(inp["dtype"]))
            self.interp.invoke()
            for out, seen in zip(self.output_details, results):
                y = self.interp.get_tensor(out["index"])
                if out["dtype"] in (np.int8, np.uint8):
                    y = dequantize(y, *out["quantization"])
                seen.append(y[0])
        return single_or_list([np.stack(r) for r in results])

    def timer(self) -> Callable[[], None]:
        for d in self.interp.get_input_details():
            self.interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        return self.interp.invoke


def named_inputs(interp) -> list[dict]:
    """The interpreter's input details, each `name` the serving signature's (the Keras input's
    name) where the flatbuffer has a signature."""
    details = interp.get_input_details()
    if len(details) == 1 or "serving_default" not in interp.get_signature_list():
        return details
    named = interp.get_signature_runner("serving_default").get_input_details()
    names = {d["index"]: name for name, d in named.items()}
    return [{**d, "name": names.get(d["index"], d["name"])} for d in details]


def keras_ordered_outputs(interp) -> list[dict]:
    """The interpreter's output details in the Keras model's output order. The flatbuffer's
    own order is not it (a two-output model lists its second output first); the serving
    signature's names are (`_source.keras_order`)."""
    details = interp.get_output_details()
    if len(details) == 1 or "serving_default" not in interp.get_signature_list():
        return details
    named = interp.get_signature_runner("serving_default").get_output_details()
    by_index = {d["index"]: d for d in details}
    return [by_index[d["index"]] for d in in_keras_order(named)]


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64,
               "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


class OnnxRuntime:
    """An `.onnx` in ONNX Runtime's CPU provider; a static batch is padded, a dynamic one fed
    `batch` samples per run."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None,
                 literal_qdq: bool = False):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if literal_qdq:
            # Q/DQ pairs run as written (dequantize, float op, quantize), not fused into ORT's
            # integer kernels: on x86 CPUs without VNNI those multiply u8 by s8 with VPMADDUBSW,
            # whose int16 pair sums saturate (ORT's quantization docs), an error TensorRT's
            # int32-accumulating engine does not make. On an AVX2-only AMD EPYC the trained thin
            # ResNet's QDQ model agreed with Keras on 34 % of digits fused; as written it passes
            # `test_trained_thin_resnet_all_targets`' 99 % bar.
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if threads is not None:
            opts.intra_op_num_threads = opts.inter_op_num_threads = threads
        self.session = call_tool(f"Loading '{path}' in ONNX Runtime",
                                 lambda: ort.InferenceSession(str(path), opts,
                                                              providers=["CPUExecutionProvider"]))
        self.inputs = self.session.get_inputs()

    def outputs(self, x: Samples, batch: int = 1) -> np.ndarray | list[np.ndarray]:
        arrays = by_input(x, [i.name for i in self.inputs])
        first = self.inputs[0].shape[0]
        static = first if isinstance(first, int) else None
        batch = static or batch
        runs = []
        for i in range(0, count(x), batch):
            feeds = {}
            for inp, a in zip(self.inputs, arrays):
                chunk = a[i:i + batch].astype(_ORT_DTYPES.get(inp.type, np.float32))
                n = len(chunk)
                if static and n < static:  # a static batch: the last run padded, padding dropped
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], static - n, axis=0)])
                feeds[inp.name] = chunk
            runs.append([y[:n] for y in self.session.run(None, feeds)])
        return single_or_list([np.concatenate(parts, axis=0) for parts in zip(*runs)])

    def timer(self) -> Callable[[], None]:
        feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
                 for i in self.session.get_inputs()}
        return lambda: self.session.run(None, feeds)


class OpenVINO:
    """An IR (`.xml`) on OpenVINO's CPU plugin, at `precision` ("f32", "f16" where the CPU
    computes in FP16, or `None`: the plugin's default, as deployed for timing)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None,
                 precision: str | None = "f32"):
        import openvino as ov

        config = {} if precision is None else {"INFERENCE_PRECISION_HINT": precision}
        if threads is not None:
            config.update({"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
        self.compiled = call_tool(f"Compiling '{path}' on the OpenVINO CPU plugin",
                                  lambda: ov.Core().compile_model(str(path), "CPU", config))

    def outputs(self, x: Samples) -> np.ndarray | list[np.ndarray]:
        arrays = by_input(x, [i.get_any_name() for i in self.compiled.inputs])
        runs = [self.compiled([a[i:i + 1] for a in arrays]) for i in range(count(x))]
        outputs = list(self.compiled.outputs)
        if len(outputs) > 1:  # named by the serving signature: in Keras's order
            outputs = [outputs[i] for i in keras_order([o.get_any_name() for o in outputs])]
        return single_or_list([np.concatenate([r[o] for r in runs], axis=0) for o in outputs])

    def timer(self) -> Callable[[], None]:
        request = self.compiled.create_infer_request()
        feeds = [np.zeros(tuple(p.shape), np.float32) for p in self.compiled.inputs]
        return lambda: request.infer(feeds)


RUNTIMES = {"litert_fp32": LiteRT, "litert_int8": LiteRT, "openvino_cpu": OpenVINO,
            "onnxruntime": OnnxRuntime}


def open_runtime(name: str, path: str | os.PathLike, **kwargs):
    """The runtime called `name` (a key of `RUNTIMES`) with the model at `path` loaded."""
    if name == "openvino_cpu":  # timing: the plugin's own default (bf16 on AMX/AVX512-BF16
        kwargs.setdefault("precision", None)  # CPUs), as a deployment on this CPU would run
    return RUNTIMES[name](path, **kwargs)
