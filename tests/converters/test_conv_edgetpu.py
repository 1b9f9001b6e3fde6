"""Edge TPU: full-integer .tflite, op-by-op check, LiteRT validation against Keras."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conv_helpers import assert_nothing_left

from tfm_fuse.converters import Report, edgetpu
from tfm_fuse.converters import _edgetpu_ops
from tfm_fuse.converters._edgetpu_ops import check_tflite
from tfm_fuse.errors import ConfigError, ConversionError


@pytest.mark.parametrize("io_dtype", ["uint8", "int8"])
def test_tiny_resnet_int8(io_dtype, tmp_path, tiny_model, tiny_data):
    out = tmp_path / "edgetpu"
    r = edgetpu.convert(tiny_model, out, representative_data=tiny_data[:48],
                        validation_data=tiny_data[48:], io_dtype=io_dtype)
    assert r.ok, str(r)
    tflite = out / "model_int8.tflite"
    assert r.artefacts["tflite_int8"] == str(tflite)
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(tflite))
    assert interp.get_input_details()[0]["dtype"] == np.dtype(io_dtype)
    assert interp.get_output_details()[0]["dtype"] == np.dtype(io_dtype)
    ops = {d["op_name"] for d in interp._get_ops_details()}
    assert {"CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"} <= ops
    check = r.details["edgetpu_check"]
    assert check["tpu_fraction"] == 1.0 and check["first_cpu_op"] is None
    assert check["fits_sram"] and 0 < check["parameter_bytes"] < 20_000
    fid = r.fidelity["tflite_int8"]
    assert fid["n_samples"] == 16 and fid["top1_agreement"] >= 0.9
    assert fid["max_abs_error_rel"] < 0.05
    assert "edgetpu_compiler -s -o" in r.next_steps[0]
    assert Report.load(out) == Report.from_json(json.dumps(r.to_dict()))
    assert "Edge TPU op check: " in (out / "report.txt").read_text()


def test_float_op_is_named_as_cpu_fallback(tmp_path):
    """An op without an int8 kernel stays float: the check names it and the first CPU op."""
    inp = keras.Input((8, 8, 3), name="img")
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = keras.layers.Lambda(lambda t: tf.math.real(tf.signal.rfft2d(t[..., 0])))(x)
    model = keras.Model(inp, keras.layers.Flatten()(x))
    data = np.random.default_rng(0).uniform(size=(16, 8, 8, 3)).astype("float32")
    with pytest.raises(ConversionError) as info:
        edgetpu.convert(model, tmp_path / "out", representative_data=data)
    msg = str(info.value)
    assert "RFFT2D is not in the Edge TPU supported operations" in msg
    assert "First op left on the CPU: DEQUANTIZE" in msg
    assert_nothing_left(tmp_path / "out")
    r = edgetpu.convert(model, tmp_path / "kept", representative_data=data,
                        require_full_tpu=False, min_top1=None)
    assert r.ok and r.details["edgetpu_check"]["cpu_ops"] >= 3
    assert any("falls back to the CPU" in n for n in r.notes)


def test_rank_and_softmax_constraints(tmp_path):
    """A softmax over a 2-D tensor, and a rank-5 tensor, are flagged with the reason."""
    inp = keras.Input((4, 4, 8), name="img")
    x = keras.layers.Reshape((16, 8))(inp)
    out = keras.layers.Softmax(axis=-1)(x)
    model = keras.Model(inp, out)
    data = np.random.default_rng(0).normal(size=(16, 4, 4, 8)).astype("float32")
    r = edgetpu.convert(model, tmp_path / "out", representative_data=data,
                        require_full_tpu=False, min_top1=None)
    reasons = [x for row in r.details["edgetpu_check"]["ops"] for x in row["reasons"]]
    rank5 = _edgetpu_ops.Tensor("t", (1, 2, 2, 4, 8), (1, 2, 2, 4, 8), "INT8", None)
    op = _edgetpu_ops.Op(0, "MAXIMUM", 1, [rank5, rank5], [rank5], None)
    assert _edgetpu_ops._reasons(op) == [
        "tensor 't' of shape (1, 2, 2, 4, 8): rank > 3 with a dimension > 1 outside the 3 "
        "innermost"] * 3
    assert any("input of shape (1, 16, 8)" in x for x in reasons), reasons


def test_check_tflite_on_float_model():
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Conv2D(2, 3)(inp))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    check = check_tflite(converter.convert())
    assert check["tpu_ops"] == 0 and check["first_cpu_op"] == "CONV_2D (op #0)"
    assert "is FLOAT32; only int8/uint8 run on the TPU" in " ".join(check["ops"][0]["reasons"])


def test_bad_io_dtype(tmp_path, tiny_model, tiny_data):
    with pytest.raises(ConfigError, match=r"io_dtype must be 'uint8' or 'int8'. Received: "
                                          r"io_dtype='float32'"):
        edgetpu.convert(tiny_model, tmp_path / "out", representative_data=tiny_data,
                        io_dtype="float32")
    assert_nothing_left(tmp_path / "out")


def test_low_agreement_fails_cleanly(tmp_path, tiny_model, tiny_data):
    """A required agreement above what int8 reaches fails validation and leaves nothing."""
    noisy = np.random.default_rng(3).normal(0, 5, tiny_data.shape).astype("float32")
    with pytest.raises(ConversionError, match=r"top-1 agreement with Keras .* is below the "
                                              r"accepted 100.00%|max-abs"):
        edgetpu.convert(tiny_model, tmp_path / "out", representative_data=tiny_data[:4],
                        validation_data=noisy, min_top1=1.0)
    assert_nothing_left(tmp_path / "out")


def test_op_version_newer_than_board_runtime():
    t = _edgetpu_ops.Tensor("x", (1, 4, 4, 8), (1, 4, 4, 8), "INT8", None)
    op = _edgetpu_ops.Op(3, "ADD", 4, [t, t], [t], None)
    assert _edgetpu_ops._reasons(op) == ["op version 4 is newer than the board runtime's 3"]
