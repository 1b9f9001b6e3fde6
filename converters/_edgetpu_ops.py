"""Static Edge TPU compatibility check of a `.tflite` flatbuffer, op by op.

The table encodes Coral's "Supported operations" (coral.ai/docs/edgetpu/models-intro,
"Supported operations"; the same table is mirrored for the Edge TPU of Axis' ARTPEC-7 at
developer.axis.com/computer-vision/on-device/system-on-chip/artpec-7/supported-ops) and the
general requirements on the same page: 8-bit quantized tensors, static shapes, tensors of
rank ≤ 3 or with only the 3 innermost dimensions > 1, one subgraph. Each documented
"known limitation" is either checked (a reason: the op stays on the CPU) or, where the table
says the compiler decides by size ("Depending on input/output size ..." for ResizeBilinear,
"Certain reshapes might not be mapped for large tensor sizes"), reported as a caveat. `MAX_VERSION` is the
highest version of each op that the TF Lite 2.5-era builtin resolver registers — the
runtime generation that libedgetpu 16 and pycoral 2.0 (tflite-runtime 2.5) ship with on the
boards — read from a `tensorflow/lite/kernels/register.cc` of that era (the
tflite_runtime_build tree); `edgetpu_compiler` itself is the final word.

Example:
    >>> result = check_tflite(open("model_int8.tflite", "rb").read())
    >>> result["tpu_fraction"], result["first_cpu_op"]
    (1.0, None)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

SRAM_BYTES = 8 * 1024 * 1024  # on-chip parameter memory; the rest streams from the host

# op -> documented constraint (empty: none beyond the general requirements)
SUPPORTED: dict[str, str] = {
    "ADD": "", "AVERAGE_POOL_2D": "no fused activation function",
    "CONCATENATION": "no fused activation function; a constant input must be all zeros "
                     "and the only other input",
    "CONV_2D": "same dilation in x and y", "DEPTHWISE_CONV_2D": "same dilation in x and y",
    "EXPAND_DIMS": "", "FULLY_CONNECTED": "default weights format; 1-D output tensor",
    "L2_NORMALIZATION": "", "LOGISTIC": "", "LSTM": "unidirectional only", "MAXIMUM": "",
    "MAX_POOL_2D": "no fused activation function",
    "MEAN": "no reduction in the batch dimension; a z-reduction needs z a multiple of 4",
    "MINIMUM": "", "MUL": "", "PACK": "no packing in the batch dimension",
    "PAD": "no padding in the batch dimension",
    "PRELU": "a 1-D alpha (only the innermost dimension > 1): Keras PReLU(shared_axes=[1, 2])",
    "QUANTIZE": "",
    "REDUCE_MAX": "not over the batch dimension", "REDUCE_MIN": "not over the batch dimension",
    "RELU": "", "RELU6": "", "RELU_N1_TO_1": "", "RESHAPE": "",
    "RESIZE_BILINEAR": "3-D input and output", "RESIZE_NEAREST_NEIGHBOR": "3-D input and output",
    "RSQRT": "", "SLICE": "", "SOFTMAX": "1-D input of at most 16,000 elements",
    "SPACE_TO_DEPTH": "", "SPLIT": "no splitting in the batch dimension", "SQUEEZE": "",
    "STRIDED_SLICE": "all strides equal to 1, ellipsis_mask == 0 and new_axis_mask == 0",
    "SUB": "", "SUM": "not over the batch dimension",
    "SQUARED_DIFFERENCE": "", "TANH": "", "TRANSPOSE": "", "TRANSPOSE_CONV": "",
}

MAX_VERSION: dict[str, int] = {
    "ADD": 3, "AVERAGE_POOL_2D": 3, "CONCATENATION": 3, "CONV_2D": 5, "DEPTHWISE_CONV_2D": 6,
    "EXPAND_DIMS": 1, "FULLY_CONNECTED": 9, "L2_NORMALIZATION": 2, "LOGISTIC": 3, "LSTM": 4,
    "MAXIMUM": 4, "MAX_POOL_2D": 3, "MEAN": 3, "MINIMUM": 4, "MUL": 4, "PACK": 3, "PAD": 3,
    "PRELU": 1, "QUANTIZE": 2, "REDUCE_MAX": 3, "REDUCE_MIN": 3, "RELU": 3, "RELU6": 3,
    "RELU_N1_TO_1": 1, "RESHAPE": 1, "RESIZE_BILINEAR": 4, "RESIZE_NEAREST_NEIGHBOR": 4,
    "RSQRT": 2, "SLICE": 5, "SOFTMAX": 3, "SPACE_TO_DEPTH": 2, "SPLIT": 4, "SQUEEZE": 2,
    "STRIDED_SLICE": 5, "SUB": 5, "SUM": 2, "SQUARED_DIFFERENCE": 2, "TANH": 3,
    "TRANSPOSE": 5, "TRANSPOSE_CONV": 3, "DEQUANTIZE": 4, "HARD_SWISH": 1,
}

_INT_TYPES = {"INT8", "UINT8"}


@dataclass
class Tensor:
    """One tensor of the flatbuffer, as the checks need it."""

    name: str
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    dtype: str
    data: np.ndarray | None  # constant data, None for activations


@dataclass
class Op:
    """One operator: name, version, tensors and builtin options (a schema object or None)."""

    index: int
    name: str
    version: int
    inputs: list[Tensor]
    outputs: list[Tensor]
    options: Any


def check_tflite(model_bytes: bytes) -> dict[str, Any]:
    """Checks every op of a `.tflite` model against the Edge TPU's requirements.

    Returns:
        A dict: `ops` (one row per op: index, op, version, on_tpu, reasons), `first_cpu_op`
        (the first op that falls back to the CPU, or None; every op after it runs on the CPU
        too), `tpu_ops`, `cpu_ops`, `tpu_fraction`, `parameter_bytes`, `sram_bytes`,
        `fits_sram`, `subgraphs`.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(model_bytes, 0)
    ops = list(_read_ops(model, schema))
    rows = [{"index": op.index, "op": op.name, "version": op.version,
             "reasons": _reasons(op), "caveats": _caveats(op)} for op in ops]
    if model.SubgraphsLength() > 1:
        rows[0]["reasons"].append("more than one subgraph is not supported")
    first = next((r for r in rows if r["reasons"]), None)
    cut = first["index"] if first else len(rows)
    for r in rows:
        r["on_tpu"] = r["index"] < cut
    params = sum(model.Buffers(i).DataLength() for i in range(model.BuffersLength()))
    return {
        "ops": rows,
        "first_cpu_op": None if first is None else f"{first['op']} (op #{first['index']})",
        "tpu_ops": cut, "cpu_ops": len(rows) - cut,
        "tpu_fraction": cut / len(rows) if rows else 0.0,
        "parameter_bytes": int(params), "sram_bytes": SRAM_BYTES,
        "fits_sram": params <= SRAM_BYTES, "subgraphs": model.SubgraphsLength(),
    }


def _read_ops(model: Any, schema: Any):
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    graph = model.Subgraphs(0)
    tensors = [_tensor(model, graph.Tensors(i), types) for i in range(graph.TensorsLength())]
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = f"CUSTOM:{(code.CustomCode() or b'').decode()}"
        ins = [tensors[j] for j in op.InputsAsNumpy() if j >= 0] if op.InputsLength() else []
        outs = [tensors[j] for j in op.OutputsAsNumpy()] if op.OutputsLength() else []
        yield Op(i, name, code.Version(), ins, outs, _options(op, name, schema))


def _tensor(model: Any, t: Any, types: dict[int, str]) -> Tensor:
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    sig = tuple(int(d) for d in t.ShapeSignatureAsNumpy()) if t.ShapeSignatureLength() else shape
    dtype = types.get(t.Type(), str(t.Type()))
    buf = model.Buffers(t.Buffer())
    data = None
    if buf.DataLength():
        np_type = {"INT32": np.int32, "INT64": np.int64}.get(dtype, np.uint8)
        data = np.frombuffer(buf.DataAsNumpy().tobytes(), dtype=np_type)
    return Tensor((t.Name() or b"").decode(), shape, sig, dtype, data)


_OPTION_CLASSES = {
    "CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions", "MAX_POOL_2D": "Pool2DOptions",
    "CONCATENATION": "ConcatenationOptions", "FULLY_CONNECTED": "FullyConnectedOptions",
    "STRIDED_SLICE": "StridedSliceOptions", "TRANSPOSE_CONV": "TransposeConvOptions",
}

# Coral's table: mapped or not "depending on input/output size" (the compiler's own rule).
# Beyond these sizes this check says so; below them it has never been seen refused.
RESIZE_BILINEAR_CAVEAT = ("may stay on the CPU: the compiler does not map a ResizeBilinear "
                          "whose size would lose precision (Coral: \"depending on input/output "
                          "size\"); edgetpu_compiler's log is the final word")
LARGE_RESHAPE_ELEMENTS = 1 << 16  # elements; "certain reshapes might not be mapped for large tensor sizes"


def _options(op: Any, name: str, schema: Any) -> Any:
    cls_name = _OPTION_CLASSES.get(name)
    table = op.BuiltinOptions()
    if cls_name is None or table is None:
        return None
    options = getattr(schema, cls_name)()
    options.Init(table.Bytes, table.Pos)
    return options


def _reasons(op: Op) -> list[str]:
    """Why `op` would not be mapped to the Edge TPU (empty when it would)."""
    if op.name not in SUPPORTED:
        return [f"{op.name} is not in the Edge TPU supported operations"]
    reasons = []
    if op.version > MAX_VERSION.get(op.name, 1):
        reasons.append(f"op version {op.version} is newer than the board runtime's "
                       f"{MAX_VERSION.get(op.name, 1)}")
    reasons += _general(op)
    specific = _SPECIFIC.get(op.name)
    if specific is not None:
        reasons += [f"{r} (needs: {SUPPORTED[op.name]})" for r in specific(op)]
    return reasons


def _general(op: Op) -> list[str]:
    reasons = []
    for t in op.inputs + op.outputs:
        if t.data is None and t.dtype not in _INT_TYPES:
            reasons.append(f"tensor '{t.name}' is {t.dtype}; only int8/uint8 run on the TPU")
        if t.data is None and any(d < 0 for d in t.signature):
            reasons.append(f"tensor '{t.name}' has a dynamic shape {t.signature}")
        if t.data is None and len(t.shape) > 3 and any(d > 1 for d in t.shape[:-3]):
            reasons.append(f"tensor '{t.name}' of shape {t.shape}: rank > 3 with a dimension "
                           f"> 1 outside the 3 innermost")
    return reasons


def _same_dilation(op: Op) -> list[str]:
    o = op.options
    if o is not None and o.DilationHFactor() != o.DilationWFactor():
        return [f"dilation {o.DilationHFactor()}x{o.DilationWFactor()}"]
    return []


def _no_activation(op: Op) -> list[str]:
    o = op.options
    if o is not None and o.FusedActivationFunction() != 0:
        return [f"fused activation {o.FusedActivationFunction()}"]
    return []


def _axes(op: Op) -> list[int]:
    if len(op.inputs) < 2 or op.inputs[1].data is None:
        return []
    rank = len(op.inputs[0].shape)
    return [int(a) % max(rank, 1) for a in op.inputs[1].data]


def _not_batch_axis(op: Op) -> list[str]:
    return ["reduces over the batch dimension"] if 0 in _axes(op) else []


def _mean(op: Op) -> list[str]:
    reasons = _not_batch_axis(op)
    shape = op.inputs[0].shape
    if shape and len(shape) - 1 in _axes(op) and shape[-1] % 4:
        reasons.append(f"reduces over the channel axis of size {shape[-1]}")
    return reasons


def _softmax(op: Op) -> list[str]:
    shape = op.inputs[0].shape
    if any(d > 1 for d in shape[:-1]) or (shape and shape[-1] > 16000):
        return [f"input of shape {shape}"]
    return []


def _fully_connected(op: Op) -> list[str]:
    reasons = []
    if op.options is not None and op.options.WeightsFormat() != 0:
        reasons.append("shuffled weights format")
    out = op.outputs[0].shape if op.outputs else ()
    if any(d > 1 for d in out[:-1]):
        reasons.append(f"output of shape {out}")
    return reasons


def _pad(op: Op) -> list[str]:
    pads = op.inputs[1].data if len(op.inputs) > 1 else None
    return ["pads the batch dimension"] if pads is not None and pads[:2].any() else []


def _strided_slice(op: Op) -> list[str]:
    reasons = []
    strides = op.inputs[3].data if len(op.inputs) > 3 else None
    if strides is not None and (strides != 1).any():
        reasons.append(f"strides {strides.tolist()}")
    o = op.options
    if o is not None and o.EllipsisMask():
        reasons.append(f"ellipsis_mask {o.EllipsisMask()}")
    if o is not None and o.NewAxisMask():
        reasons.append(f"new_axis_mask {o.NewAxisMask()}")
    return reasons


def _prelu(op: Op) -> list[str]:
    alpha = op.inputs[1] if len(op.inputs) > 1 else None
    if alpha is not None and any(d > 1 for d in alpha.shape[:-1]):
        return [f"alpha of shape {alpha.shape} (one alpha per position: Keras PReLU() "
                f"without shared_axes)"]
    return []


def _caveats(op: Op) -> list[str]:
    """Documented size-dependent limits: mapped by this check, perhaps not by the compiler."""
    if op.name == "RESIZE_BILINEAR":
        return [RESIZE_BILINEAR_CAVEAT]
    if op.name == "RESHAPE" and op.inputs:
        elements = int(np.prod(op.inputs[0].shape)) if op.inputs[0].shape else 0
        if elements > LARGE_RESHAPE_ELEMENTS:
            return [f"may stay on the CPU: a reshape of {elements:,} elements (Coral: "
                    f"\"certain reshapes might not be mapped for large tensor sizes\")"]
    return []


def _concatenation(op: Op) -> list[str]:
    reasons = _no_activation(op)
    consts = [t for t in op.inputs if t.data is not None]
    if consts and (len(op.inputs) != 2 or any(t.data.any() for t in consts)):
        reasons.append("a constant input that is not an all-zero second input")
    return reasons


_SPECIFIC: dict[str, Callable[[Op], list[str]]] = {
    "CONV_2D": _same_dilation, "DEPTHWISE_CONV_2D": _same_dilation,
    "AVERAGE_POOL_2D": _no_activation, "MAX_POOL_2D": _no_activation,
    "CONCATENATION": _concatenation, "FULLY_CONNECTED": _fully_connected, "MEAN": _mean,
    "SUM": _not_batch_axis, "REDUCE_MAX": _not_batch_axis, "REDUCE_MIN": _not_batch_axis,
    "SOFTMAX": _softmax, "PAD": _pad, "STRIDED_SLICE": _strided_slice, "PRELU": _prelu,
}


def parse_compiler_log(log: str) -> dict[str, Any]:
    """Parses the op table of an `edgetpu_compiler -s` log.

    Returns:
        `{"ops": [{"op", "count", "status"}], "mapped": n, "not_mapped": n}`.

    Example:
        >>> parse_compiler_log("CONV_2D   11   Mapped to Edge TPU")["mapped"]
        11
    """
    rows = []
    for line in log.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1].isdigit() and parts[0].isupper():
            rows.append({"op": parts[0], "count": int(parts[1]), "status": parts[2].strip()})
    mapped = sum(r["count"] for r in rows if r["status"].startswith("Mapped to Edge TPU"))
    return {"ops": rows, "mapped": mapped,
            "not_mapped": sum(r["count"] for r in rows) - mapped}
