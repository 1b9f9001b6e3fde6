"""Exact rewrites that let the Edge TPU map more of a model: of the Keras model before
conversion, and of the full-integer `.tflite` after it.

Keras 3's `UpSampling2D` (nearest) is `repeat` twice, which the TFLite converter writes as
rank-5 `RESHAPE`/`TILE` ops: `TILE` is not in Coral's table and rank-5 tensors break its
general rule (only the 3 innermost dimensions > 1), so a U-Net's decoder left the Edge TPU at
its first upsampling. `keras_for_board` re-expresses each one as a resize (`interpolation=
"nearest")` of the same integer factor (through `keras.ops.image.resize`: Keras's own
`Resizing` layer is a tf.data layer that makes the BatchNorm after it run in training mode in
`model.export`, 1.47 off on a two-layer model) — `RESIZE_NEAREST_NEIGHBOR`, in the table — which
computes the same values (source pixel floor((i + 0.5) / s) = floor(i / s) for an integer s).

The TFLite converter of TF 2.21 fuses a following ReLU into `TRANSPOSE_CONV`, which makes it
op version 4 ("fused activation function from version 4", tensorflow/lite/tools/versioning/
op_version.cc); the boards' runtime (tflite-runtime 2.5 with libedgetpu 16, the last Coral
release) registers `TRANSPOSE_CONV` up to version 3, so a Keras U-Net's decoder fell back to
the CPU. In an int8 model the fused ReLU is a clamp of the output to the integer of 0.0; when
the output's zero point is already the lowest integer (the calibrated range starts at 0, as it
does after a ReLU), the clamp is what saturation does anyway, and removing it changes no bit.
Only such no-op activations are removed; the op's version is then the one TFLite assigns
without an activation (3 with a bias, 2 without). Every artefact is still validated against
Keras in LiteRT after the rewrite.

Example:
    >>> board_model, notes = keras_for_board(model)         # converted instead of `model`
    >>> board_bytes, notes = board_compatible(model_bytes)
    >>> notes
    ['TRANSPOSE_CONV x8: fused ReLU removed (a no-op at their output zero points) ...']
"""

from __future__ import annotations

MAX_TRANSPOSE_CONV_VERSION = 3  # tflite-runtime 2.5's register.cc


def keras_for_board(model):
    """`model` with nearest-neighbour `UpSampling2D` layers as resizes, and notes;
    `model` itself (and no note) when it has none or cannot be analysed. Never modifies it."""
    import keras

    from tfm_fuse.errors import TfmFuseError
    from tfm_fuse.graph import analyze
    from tfm_fuse.rebuild import rebuild

    def upsampling(layer) -> bool:
        return (isinstance(layer, keras.layers.UpSampling2D) and layer.interpolation == "nearest"
                and layer.data_format == "channels_last")

    if not any(upsampling(layer) for layer in model._flatten_layers(include_self=False)):
        return model, []
    try:
        graph = analyze(model, allow_unknown=True)
    except TfmFuseError:
        return model, []
    replaced = []

    def rewrite(node, inputs, builder):
        shape = graph.tensors[node.inputs[0]].shape if node.inputs else None
        if not upsampling(node.layer) or shape is None or None in shape[1:3]:
            return None
        (sh, sw), layer = node.layer.size, node.layer
        replaced.append(layer.name)
        resize = _nearest_resize_layer()((shape[1] * sh, shape[2] * sw), name=layer.name)
        return keras.tree.flatten(resize(inputs[0]))

    board = rebuild(graph, rewrite)
    return board, [f"UpSampling2D x{len(replaced)} ({', '.join(replaced[:3])}"
                   f"{', ...' if len(replaced) > 3 else ''}) converted as a nearest resize: "
                   f"RESIZE_NEAREST_NEIGHBOR runs on the Edge TPU, Keras's repeat (TILE) does "
                   f"not; the same values."]


def board_compatible(model_bytes: bytes) -> tuple[bytes, list[str]]:
    """`model_bytes` with no-op fused activations of `TRANSPOSE_CONV` removed, and notes.

    Returns the input unchanged (and no note) when there is nothing to rewrite.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    codes = [i for i, c in enumerate(model.operatorCodes)
             if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.TRANSPOSE_CONV
             and c.version > MAX_TRANSPOSE_CONV_VERSION]
    if not codes:
        return model_bytes, []
    removed, kept = 0, 0
    for graph in model.subgraphs:
        for op in graph.operators:
            if op.opcodeIndex not in codes or op.builtinOptions is None:
                continue
            activation = op.builtinOptions.fusedActivationFunction
            if activation == schema.ActivationFunctionType.NONE:
                continue
            if _is_saturation(activation, graph.tensors[op.outputs[0]], schema):
                op.builtinOptions.fusedActivationFunction = schema.ActivationFunctionType.NONE
                removed += 1
            else:
                kept += 1
    if not removed:
        return model_bytes, []
    notes = []
    if kept == 0:
        for i in codes:
            users = [op for g in model.subgraphs for op in g.operators if op.opcodeIndex == i]
            has_bias = all(len(op.inputs) > 3 and op.inputs[3] >= 0 for op in users)
            model.operatorCodes[i].version = 3 if has_bias else 2
    notes.append(f"TRANSPOSE_CONV x{removed}: fused ReLU removed (a no-op at their output zero "
                 f"points, so no output changes), which makes the op version "
                 f"{MAX_TRANSPOSE_CONV_VERSION} or lower that the board's runtime maps"
                 + (f"; {kept} op(s) keep an activation that clips" if kept else "") + ".")
    builder = flatbuffers.Builder(len(model_bytes) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), notes


def _is_saturation(activation: int, tensor, schema) -> bool:
    """The activation clamps nothing that the output's integer range does not already clamp."""
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        return False
    scale, zero = float(q.scale[0]), int(q.zeroPoint[0])
    low, high = (-128, 127) if tensor.type == schema.TensorType.INT8 else (0, 255)
    lowest, highest = scale * (low - zero), scale * (high - zero)
    types = schema.ActivationFunctionType
    if activation == types.RELU:
        return zero == low
    if activation == types.RELU6:
        return zero == low and highest <= 6.0 + scale / 2
    if activation == types.RELU_N1_TO_1:
        return lowest >= -1.0 - scale / 2 and highest <= 1.0 + scale / 2
    return False



def _nearest_resize_layer():
    import keras

    class NearestResize(keras.layers.Layer):
        """`keras.ops.image.resize(x, size, "nearest")`: RESIZE_NEAREST_NEIGHBOR in TFLite."""

        def __init__(self, size, **kwargs):
            super().__init__(**kwargs)
            self.size = tuple(size)

        def call(self, x):
            return keras.ops.image.resize(x, self.size, interpolation="nearest")

    return NearestResize
