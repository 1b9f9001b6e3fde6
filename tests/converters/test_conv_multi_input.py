"""Models with several inputs (an image and side information, two views) through every
converter: each input fed by name in every runtime, calibration data given as a tuple or dict
of arrays or a `tf.data` of tuples, each output checked against Keras."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conv_helpers import needs_py39, needs_py310

from tfm_fuse.converters import edgetpu, onnx, openvino, tensorrt
from tfm_fuse.converters._source import load_source, sample_array
from tfm_fuse.errors import ConfigError

L = keras.layers
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def two_inputs():
    """`image` (8x8x3) and `meta` (4 values) into a class head and a box head. The `meta`
    branch is scaled up so that feeding the inputs swapped, or `meta` as zeros, shows."""
    keras.utils.set_random_seed(0)
    image, meta = keras.Input((8, 8, 3), name="image"), keras.Input((4,), name="meta")
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(image)))
    x = L.GlobalAveragePooling2D()(x)
    m = L.Dense(8, activation="relu")(L.Rescaling(3.0)(meta))
    h = L.Concatenate()([x, m])
    return keras.Model([image, meta], [L.Dense(5, name="classes")(h), L.Dense(4, name="box")(h)])


@pytest.fixture(scope="module")
def data():
    return (RNG.uniform(size=(48, 8, 8, 3)).astype("float32"),
            RNG.uniform(size=(48, 4)).astype("float32"))


def _keras(model, data):
    return [np.asarray(y) for y in model(list(data), training=False)]


def test_every_calibration_form_reads_the_same_samples(two_inputs, data):
    src = load_source(two_inputs)
    image, meta = data
    labels = np.zeros(len(image), "int64")
    forms = {
        "tuple": (image, meta),
        "dict": {"meta": meta, "image": image},                     # any key order
        "tf.data of (x, y)": tf.data.Dataset.from_tensor_slices(((image, meta), labels)).batch(8),
        "tf.data of dicts": tf.data.Dataset.from_tensor_slices({"image": image, "meta": meta}),
        "generator of tuples": lambda: ((image[i], meta[i]) for i in range(len(image))),
    }
    for name, form in forms.items():
        x = sample_array(form, src, what="representative_data")
        assert list(x) == ["image", "meta"], name
        np.testing.assert_array_equal(x["image"], image, err_msg=name)
        np.testing.assert_array_equal(x["meta"], meta, err_msg=name)


def test_malformed_inputs_name_the_input(two_inputs, data):
    src = load_source(two_inputs)
    image, meta = data
    with pytest.raises(ConfigError, match=r"no values for input\(s\) \['meta'\]"):
        sample_array({"image": image}, src, what="representative_data")
    with pytest.raises(ConfigError, match="input 'meta' has samples of shape"):
        sample_array((image, meta[:, :3]), src, what="representative_data")
    with pytest.raises(ConfigError, match=r"holds \[48, 10\] samples for inputs"):
        sample_array((image, meta[:10]), src, what="representative_data")
    with pytest.raises(ConfigError, match="is one array, but the model has 2 inputs"):
        sample_array(image, src, what="representative_data")
    with pytest.raises(ConfigError, match="2 inputs \\['image', 'meta'\\]; each element must"):
        sample_array(iter([[image]]), src, what="representative_data")


def test_float_targets_feed_each_input_by_name(tmp_path, two_inputs, data):
    reference = _keras(two_inputs, data)
    r = onnx.convert(two_inputs, tmp_path / "onnx", validation_data=data)
    assert r.ok, str(r)
    assert r.fidelity["onnx_fp32"]["max_abs_error_rel"] < 1e-5
    assert [m["n_samples"] for m in r.fidelity["onnx_fp32"]["outputs"]] == [48, 48]
    # the ONNX takes its inputs by the Keras names, batch kept dynamic
    from tfm_fuse.converters.runtimes import OnnxRuntime

    runtime = OnnxRuntime(r.artefacts["onnx_fp32"])
    assert [i.name for i in runtime.inputs] == ["image", "meta"]
    got = runtime.outputs({"meta": data[1], "image": data[0]}, batch=48)
    np.testing.assert_allclose(got[1], reference[1], atol=1e-5)
    r = openvino.convert(two_inputs, tmp_path / "ov", validation_data=data)
    assert r.ok, str(r)
    assert r.fidelity["openvino_fp16"]["max_abs_error_rel"] < 5e-3


def test_int8_targets_calibrate_every_input(tmp_path, two_inputs, data):
    image, meta = data
    calibration = tf.data.Dataset.from_tensor_slices(((image, meta), np.zeros(48))).batch(16)
    r = edgetpu.convert(two_inputs, tmp_path / "etpu", representative_data=calibration,
                        validation_data={"image": image, "meta": meta}, min_top1=None)
    assert r.ok, str(r)
    assert r.fidelity["tflite_int8"]["max_abs_error_rel"] < 0.1
    assert r.fidelity["tflite_int8"]["outputs"][0]["top1_agreement"] >= 0.9
    assert "board_runner" not in r.artefacts  # it feeds one input: the report says how instead
    assert any("edgetpu.make_interpreter" in s for s in r.next_steps)
    r = tensorrt.convert(two_inputs, tmp_path / "jetson", representative_data=(image, meta),
                         validation_data=data, min_top1=None)
    assert r.ok, str(r)
    assert r.fidelity["onnx_int8_qdq"]["max_abs_error_rel"] < 0.1
    assert r.details["qdq_check"]["problems"] == []


def test_a_swapped_or_missing_input_would_fail(tmp_path, two_inputs, data):
    """The checks above can fail: the same runtime fed `meta` as zeros disagrees with Keras."""
    from tfm_fuse.converters._fidelity import compare
    from tfm_fuse.converters.runtimes import OnnxRuntime

    r = onnx.convert(two_inputs, tmp_path / "onnx", validation_data=data)
    runtime = OnnxRuntime(r.artefacts["onnx_fp32"])
    wrong = runtime.outputs({"image": data[0], "meta": np.zeros_like(data[1])}, batch=48)
    assert compare(_keras(two_inputs, data), wrong)["max_abs_error_rel"] > 0.05


def test_a_saved_model_with_two_inputs_converts(tmp_path, two_inputs, data):
    saved = load_source(two_inputs).export_saved_model(tmp_path / "sm")
    r = onnx.convert(saved, tmp_path / "onnx", validation_data=data)
    assert r.ok, str(r)
    assert r.fidelity["onnx_fp32"]["max_abs_error_rel"] < 1e-5


@pytest.mark.slow
@needs_py310
def test_openvino_2022_3_2_runs_both_inputs_and_outputs(tmp_path, two_inputs, data):
    r = openvino.convert(two_inputs, tmp_path / "ov", validation_data=data, legacy_runtime=True)
    assert r.ok, str(r)
    legacy = r.fidelity["openvino_2022.3.2"]
    assert [m["n_samples"] for m in legacy["outputs"]] == [48, 48]
    assert legacy["max_abs_error_rel"] <= 5e-3


@pytest.mark.slow
@needs_py39
def test_first_ncs_ir_v10_feeds_both_inputs(tmp_path, two_inputs, data):
    r = openvino.convert(two_inputs, tmp_path / "ncs", board="ncs", validation_data=data)
    assert r.ok, str(r)
    ir10 = r.fidelity["openvino_ir10_fp16"]
    assert [m["n_samples"] for m in ir10["outputs"]] == [48, 48]
    assert ir10["max_abs_error_rel"] < 0.02


def test_first_ncs_command_names_every_input(tmp_path, two_inputs, monkeypatch):
    from tfm_fuse.converters import _ov_legacy

    monkeypatch.setattr(_ov_legacy, "python_available", lambda release: False)
    r = openvino.convert(two_inputs, tmp_path / "ncs", board="ncs")
    assert any("--input image,meta --input_shape [1,8,8,3],[1,4]" in s for s in r.next_steps)


def test_the_cli_reads_an_npz_of_one_array_per_input(tmp_path, two_inputs, data):
    import json
    import subprocess
    import sys

    two_inputs.save(tmp_path / "m.keras")
    np.savez(tmp_path / "calib.npz", meta=data[1], image=data[0])
    exe = [sys.executable, "-c", "import sys; sys.argv[0] = 'tfm-fuse'; "
           "from tfm_fuse.app.cli import main; sys.exit(main())"]
    proc = subprocess.run([*exe, "convert", "m.keras", "--target", "edgetpu", "--out", "out",
                           "--calibration", "calib.npz", "--validation", "calib.npz",
                           "--min-top1", "0"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "edgetpu" / "report.json").read_text())
    assert report["fidelity"]["tflite_int8"]["n_samples"] == 48
    np.save(tmp_path / "image_only.npy", data[0])  # one array for two inputs: said in CLI terms
    proc = subprocess.run([*exe, "convert", "m.keras", "--target", "onnx", "--out", "o2",
                           "--validation", "image_only.npy"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode != 0
    assert ("--validation is one array, but the model has 2 inputs ['image', 'meta']: give one "
            "array per input (an .npz file with one array per input name)") in proc.stderr
    proc = subprocess.run([*exe, "bench", "m.keras", "--runtimes", "onnxruntime", "litert_int8",
                           "--runs", "5"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)  # its random calibration: one array per input
    assert proc.returncode == 0, proc.stderr
    assert "0:m" in proc.stdout
