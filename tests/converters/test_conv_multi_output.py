"""Models with several outputs (a detection-style head, auxiliary outputs) through every
converter: each output checked against Keras, on its own scale, in Keras's output order."""

import keras
import numpy as np
import pytest

from tfm_fuse.converters import convert_all, edgetpu, onnx, openvino, tensorrt
from tfm_fuse.converters._source import keras_order

L = keras.layers
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def detector():
    """A class head (5 logits) and a box head (4 values per cell), scales far apart."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3), name="image")
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(inputs)))
    x = L.ReLU()(L.Conv2D(16, 3, strides=2, padding="same")(x))
    classes = L.Dense(5, name="classes")(L.GlobalAveragePooling2D()(x))
    boxes = L.Rescaling(20.0, name="boxes")(L.Conv2D(4, 1)(x))
    return keras.Model(inputs, [classes, boxes])


@pytest.fixture(scope="module")
def data():
    return RNG.uniform(size=(40, 16, 16, 3)).astype("float32")


def _check_outputs(metrics, model, n):
    each = metrics["outputs"]
    assert [m["n_samples"] for m in each] == [n, n]
    scales = [m["output_scale"] for m in each]
    reference = [np.abs(np.asarray(y)).max() for y in model(RNG.uniform(size=(n, 16, 16, 3))
                                                             .astype("float32"))]
    assert scales[1] > 5 * scales[0] and reference[1] > 5 * reference[0]  # boxes second
    assert metrics["max_abs_error_rel"] == max(m["max_abs_error_rel"] for m in each)


def test_onnx_and_openvino_check_every_output(tmp_path, detector, data):
    r = onnx.convert(detector, tmp_path / "onnx", validation_data=data)
    assert r.ok, str(r)
    _check_outputs(r.fidelity["onnx_fp32"], detector, len(data))
    assert "onnx_fp32[output 1]: n_samples=40" in str(r)
    r = openvino.convert(detector, tmp_path / "ov", validation_data=data)
    assert r.ok, str(r)
    _check_outputs(r.fidelity["openvino_fp16"], detector, len(data))


def test_int8_targets_check_every_output(tmp_path, detector, data):
    r = edgetpu.convert(detector, tmp_path / "etpu", representative_data=data[:32],
                        validation_data=data, min_top1=None)
    assert r.ok, str(r)
    _check_outputs(r.fidelity["tflite_int8"], detector, len(data))
    assert r.fidelity["tflite_int8"]["max_abs_error_rel"] < 0.1
    r = tensorrt.convert(detector, tmp_path / "jetson", representative_data=data[:32],
                         validation_data=data, min_top1=None)
    assert r.ok, str(r)
    for key in ("onnx_fp32", "onnx_fp16_compute", "onnx_int8_qdq"):
        _check_outputs(r.fidelity[key], detector, len(data))


def test_a_swapped_output_would_fail(detector, data):
    from tfm_fuse.converters._fidelity import compare

    y = detector.predict(data, verbose=0)
    assert compare(y, y)["max_abs_error_rel"] == 0
    assert np.isnan(compare(y, [y[0]])["max_abs_error_rel"])  # an output missing: never ok
    wrong = [y[0], y[1][..., ::-1]]  # box channels in the wrong order
    assert compare(y, wrong)["max_abs_error_rel"] > 0.1


def test_many_outputs_keep_keras_order(tmp_path):
    """Twelve outputs: the serving signature's output_10 sorts before output_2 as a string."""
    inputs = keras.Input((4, 4, 2))
    x = L.Flatten()(inputs)
    outs = [L.Dense(i + 1, name=f"head{i}")(x) for i in range(12)]  # every width different
    model = keras.Model(inputs, outs)
    x = RNG.uniform(size=(6, 4, 4, 2)).astype("float32")
    reports = convert_all(model, tmp_path, targets=("edgetpu", "openvino", "onnx"),
                          representative_data=x, validation_data=x, min_top1=None)
    for target, r in reports.items():
        assert r.ok, (target, str(r))
        key = next(iter(r.fidelity))
        assert len(r.fidelity[key]["outputs"]) == 12
    assert keras_order(["output_1", "output_10", "output_0", "output_2"]) == [2, 0, 3, 1]
