"""Coral's operations table, constraint by constraint: a model that breaks each one is reported
with the op and the reason, one that keeps it maps; the exact rewrites that let a Keras U-Net
(the official Keras segmentation example, with Conv2DTranspose) run on the Edge TPU."""

from types import SimpleNamespace

import keras
import numpy as np
import pytest

from tfm_fuse.converters import edgetpu
from tfm_fuse.converters._edgetpu_ops import Op, Tensor, check_tflite, _reasons
from tfm_fuse.converters._edgetpu_rewrite import board_compatible, keras_for_board

L = keras.layers
RNG = np.random.default_rng(0)


def _convert(model, tmp_path, name):
    x = RNG.uniform(size=(24, *model.input_shape[1:])).astype("float32")
    return edgetpu.convert(model, tmp_path / name, representative_data=x, min_top1=None,
                           require_full_tpu=False)


def _head(x, inputs):
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(3)(x))


@pytest.mark.parametrize("shared_axes,mapped", [(None, False), ([1, 2], True)])
def test_prelu_needs_one_alpha_per_channel(tmp_path, shared_axes, mapped):
    """Coral: "Alpha must be 1-dimensional ... shared_axes must be [1,2]"."""
    inputs = keras.Input((8, 8, 3))
    x = L.PReLU(shared_axes=shared_axes)(L.Conv2D(4, 3, padding="same")(inputs))
    r = _convert(_head(x, inputs), tmp_path, f"prelu_{mapped}")
    row = next(o for o in r.details["edgetpu_check"]["ops"] if o["op"] == "PRELU")
    assert row["on_tpu"] is mapped
    if not mapped:
        assert "alpha of shape (8, 8, 4)" in row["reasons"][0]
        assert any("PRELU" in n and "shared_axes=[1, 2]" in n for n in r.notes), r.notes


def _strided_slice(ellipsis=0, new_axis=0, strides=(1, 1, 1, 1)):
    t = Tensor("x", (1, 8, 8, 4), (1, 8, 8, 4), "INT8", None)
    const = [Tensor(n, (4,), (4,), "INT32", np.array(v, np.int32))
             for n, v in (("begin", (0, 0, 0, 0)), ("end", (1, 8, 8, 4)), ("strides", strides))]
    options = SimpleNamespace(EllipsisMask=lambda: ellipsis, NewAxisMask=lambda: new_axis)
    return Op(0, "STRIDED_SLICE", 1, [t, *const], [t], options)


@pytest.mark.parametrize("kwargs,reason", [
    ({}, None), ({"strides": (1, 2, 2, 1)}, "strides [1, 2, 2, 1]"),
    ({"ellipsis": 2}, "ellipsis_mask 2"), ({"new_axis": 1}, "new_axis_mask 1")])
def test_strided_slice_masks_and_strides(kwargs, reason):
    """Coral: "all strides equal to 1 ... ellipsis-axis-mask == 0, and new-axis-max == 0"."""
    reasons = _reasons(_strided_slice(**kwargs))
    assert reasons == [] if reason is None else reason in reasons[0]


def test_resize_bilinear_is_mapped_with_the_documented_caveat(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = L.UpSampling2D(interpolation="bilinear")(L.Conv2D(4, 3, padding="same")(inputs))
    r = _convert(_head(x, inputs), tmp_path, "bilinear")
    row = next(o for o in r.details["edgetpu_check"]["ops"] if o["op"] == "RESIZE_BILINEAR")
    assert row["on_tpu"] and "depending on input/output size" in row["caveats"][0]
    assert any("RESIZE_BILINEAR may stay on the CPU" in n for n in r.notes), r.notes


def test_large_reshape_is_flagged():
    t = Tensor("x", (1, 128, 128, 8), (1, 128, 128, 8), "INT8", None)
    out = Tensor("y", (1, 16384, 8), (1, 16384, 8), "INT8", None)
    from tfm_fuse.converters._edgetpu_ops import _caveats

    assert "131,072 elements" in _caveats(Op(0, "RESHAPE", 1, [t], [out], None))[0]
    small = Tensor("x", (1, 4, 4, 8), (1, 4, 4, 8), "INT8", None)
    assert _caveats(Op(0, "RESHAPE", 1, [small], [small], None)) == []


def keras_example_unet(img_size=(32, 32), num_classes=3) -> keras.Model:
    """keras.io/examples/vision/oxford_pets_image_segmentation, at 32x32."""
    inputs = keras.Input(shape=img_size + (3,))
    x = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(32, 3, strides=2, padding="same")(inputs)))
    previous = x
    for filters in [64, 128, 256]:
        x = L.Activation("relu")(x)
        x = L.BatchNormalization()(L.SeparableConv2D(filters, 3, padding="same")(x))
        x = L.Activation("relu")(x)
        x = L.BatchNormalization()(L.SeparableConv2D(filters, 3, padding="same")(x))
        x = L.MaxPooling2D(3, strides=2, padding="same")(x)
        x = L.add([x, L.Conv2D(filters, 1, strides=2, padding="same")(previous)])
        previous = x
    for filters in [256, 128, 64, 32]:
        x = L.Activation("relu")(x)
        x = L.BatchNormalization()(L.Conv2DTranspose(filters, 3, padding="same")(x))
        x = L.Activation("relu")(x)
        x = L.BatchNormalization()(L.Conv2DTranspose(filters, 3, padding="same")(x))
        x = L.UpSampling2D(2)(x)
        residual = L.Conv2D(filters, 1, padding="same")(L.UpSampling2D(2)(previous))
        x = L.add([x, residual])
        previous = x
    outputs = L.Conv2D(num_classes, 3, activation="softmax", padding="same")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def unet():
    keras.utils.set_random_seed(0)
    model = keras_example_unet()
    x = RNG.uniform(size=(64, 32, 32, 3)).astype("float32")
    for layer in model.layers:  # statistics of real activations, not the initial 0/1
        if isinstance(layer, L.BatchNormalization):
            layer.momentum = 0.0
    model(x, training=True)
    return model


def test_unet_upsampling_rewrite_is_exact_and_leaves_the_model_alone(unet):
    before = [w.copy() for w in unet.get_weights()]
    board, notes = keras_for_board(unet)
    x = RNG.uniform(size=(4, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(board(x, training=False), unet(x, training=False))
    assert "UpSampling2D x8" in notes[0]
    assert not any(isinstance(l, L.UpSampling2D) for l in board.layers)
    assert sum(isinstance(l, L.UpSampling2D) for l in unet.layers) == 8
    assert all(np.array_equal(a, b) for a, b in zip(before, unet.get_weights()))


def test_unet_runs_on_the_edge_tpu_up_to_its_per_pixel_softmax(tmp_path, unet):
    x = RNG.uniform(size=(32, 32, 32, 3)).astype("float32")
    r = edgetpu.convert(unet, tmp_path / "unet", representative_data=x, min_top1=None,
                        require_full_tpu=False)
    check = r.details["edgetpu_check"]
    ops = {o["op"] for o in check["ops"]}
    assert "TILE" not in ops and "RESIZE_NEAREST_NEIGHBOR" in ops
    assert all(o["version"] <= 3 for o in check["ops"] if o["op"] == "TRANSPOSE_CONV")
    # the one op Coral's table keeps off the TPU: softmax over a (1, 32, 32, 3) tensor
    assert check["first_cpu_op"].startswith("SOFTMAX") and check["cpu_ops"] <= 2, check
    assert r.fidelity["tflite_int8"]["n_samples"] == 32  # checked in LiteRT after the rewrites


def test_transpose_conv_relu_removal_changes_no_bit(tmp_path):
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2DTranspose(8, 3, strides=2, padding="same")(L.Conv2D(8, 3, strides=2,
                                                                      padding="same")(inputs))
    model = keras.Model(inputs, L.Conv2D(2, 1)(L.ReLU()(L.BatchNormalization()(x))))
    x = RNG.normal(size=(24, 16, 16, 3)).astype("float32")
    from tfm_fuse.converters._source import load_source

    raw = edgetpu._to_tflite(load_source(model), x, "int8", tmp_path / "sm")
    assert [o["version"] for o in check_tflite(raw)["ops"] if o["op"] == "TRANSPOSE_CONV"] == [4]
    board, notes = board_compatible(raw)
    rows = check_tflite(board)["ops"]
    assert [o["version"] for o in rows if o["op"] == "TRANSPOSE_CONV"] in ([2], [3]) and notes
    assert all(o["on_tpu"] for o in rows)
    from ai_edge_litert.interpreter import Interpreter

    def run(content):
        interp = Interpreter(model_content=content)
        interp.allocate_tensors()
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
        results = []
        for sample in x:
            q = np.clip(np.round(sample[None] / inp["quantization"][0] + inp["quantization"][1]),
                        -128, 127).astype(np.int8)
            interp.set_tensor(inp["index"], q)
            interp.invoke()
            results.append(interp.get_tensor(out["index"]).copy())
        return np.stack(results)

    np.testing.assert_array_equal(run(raw), run(board))
    assert board_compatible(board) == (board, [])  # nothing left to rewrite


def _fused_activations(content: bytes) -> list[int]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(content, 0)
    return [op.builtinOptions.fusedActivationFunction for g in model.subgraphs
            for op in g.operators
            if model.operatorCodes[op.opcodeIndex].builtinCode
            == schema.BuiltinOperator.TRANSPOSE_CONV]


def test_rewritten_transpose_conv_has_no_activation(tmp_path):
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2DTranspose(8, 3, strides=2, padding="same")(inputs)
    model = keras.Model(inputs, L.ReLU()(L.BatchNormalization()(x)))
    from tfm_fuse.converters._source import load_source

    x = RNG.normal(size=(16, 16, 16, 3)).astype("float32")
    raw = edgetpu._to_tflite(load_source(model), x, "int8", tmp_path / "sm")
    assert _fused_activations(raw) == [1]  # RELU, fused by the converter
    assert _fused_activations(board_compatible(raw)[0]) == [0]


@pytest.mark.parametrize("activation,zero,scale,removable", [
    ("RELU", -128, 0.05, True), ("RELU", -100, 0.05, False),
    ("RELU6", -128, 6 / 255, True), ("RELU6", -128, 0.05, False),
    ("RELU_N1_TO_1", 0, 1 / 128, True), ("RELU_N1_TO_1", 0, 0.05, False)])
def test_only_activations_that_clip_nothing_are_removed(activation, zero, scale, removable):
    from ai_edge_litert import schema_py_generated as schema

    from tfm_fuse.converters._edgetpu_rewrite import _is_saturation

    q = SimpleNamespace(scale=[scale], zeroPoint=[zero])
    tensor = SimpleNamespace(quantization=q, type=schema.TensorType.INT8)
    code = getattr(schema.ActivationFunctionType, activation)
    assert _is_saturation(code, tensor, schema) is removable
