"""Input checks shared by every converter: static shapes, sample data, model sources."""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conv_helpers import assert_nothing_left

from tfm_fuse.converters import edgetpu, onnx, openvino, tensorrt
from tfm_fuse.converters._source import load_source, sample_array
from tfm_fuse.errors import ConfigError

CONVERTERS = {
    "edgetpu": lambda m, out, x: edgetpu.convert(m, out, representative_data=x, min_top1=None),
    "onnx": lambda m, out, x: onnx.convert(m, out),
    "tensorrt": lambda m, out, x: tensorrt.convert(m, out, representative_data=x, min_top1=None),
    "openvino": lambda m, out, x: openvino.convert(m, out),
}


def test_importing_converters_does_not_import_toolchains():
    code = ("import sys, tfm_fuse.converters as c; "
            "bad = [m for m in ('openvino', 'onnxruntime', 'tf2onnx', 'ai_edge_litert') "
            "if m in sys.modules]; print(bad); assert not bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dynamic_batch_is_fixed_to_one_with_a_note(tiny_model):
    src = load_source(tiny_model)
    assert src.inputs[0].shape == (1, 16, 16, 3)
    assert "dynamic batch dimension fixed to 1" in src.notes[0]
    assert "'image'" in src.notes[0]


@pytest.mark.parametrize("target", sorted(CONVERTERS))
def test_a_folder_name_with_glob_characters_converts(target, tmp_path, tiny_model, tiny_data):
    """TensorFlow reads a SavedModel's variables through a glob: `out/model[1]` used to fail
    with "Failed to find any matching files" (reported as a write error)."""
    r = CONVERTERS[target](tiny_model, tmp_path / "model[1]", tiny_data)
    assert r.ok, str(r)
    assert (tmp_path / "model[1]" / "report.json").exists()


@pytest.mark.parametrize("target", sorted(CONVERTERS))
def test_dynamic_spatial_size_is_rejected_and_nothing_written(target, tmp_path, tiny_data):
    inp = keras.Input((None, None, 3), name="frames")
    out = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inp))
    model = keras.Model(inp, out)
    with pytest.raises(ConfigError, match=r"Input 'frames' has dynamic dimension\(s\) \[1, 2\]"):
        CONVERTERS[target](model, tmp_path / "out", tiny_data)
    assert_nothing_left(tmp_path / "out")


@pytest.mark.parametrize("target", ["edgetpu", "tensorrt"])
def test_wrong_shape_representative_data(target, tmp_path, tiny_model):
    bad = np.zeros((8, 32, 32, 3), "float32")
    with pytest.raises(ConfigError, match=r"representative_data for input 'image' has samples "
                                          r"of shape \(8, 32, 32, 3\); expected \(16, 16, 3\)"):
        CONVERTERS[target](tiny_model, tmp_path / "out", bad)
    assert_nothing_left(tmp_path / "out")


@pytest.mark.parametrize("target", ["edgetpu", "tensorrt"])
def test_wrong_dtype_representative_data(target, tmp_path, tiny_model):
    bad = np.zeros((8, 16, 16, 3), "uint8")
    with pytest.raises(ConfigError, match=r"has dtype uint8; the model input is float32"):
        CONVERTERS[target](tiny_model, tmp_path / "out", bad)
    assert_nothing_left(tmp_path / "out")


@pytest.mark.parametrize("target", sorted(CONVERTERS))
def test_existing_output_path_is_refused(target, tmp_path, tiny_model, tiny_data):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("precious")
    with pytest.raises(ConfigError, match=r"already exists.*overwrite=True"):
        CONVERTERS[target](tiny_model, out, tiny_data)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_empty_representative_data(tiny_model):
    src = load_source(tiny_model)
    with pytest.raises(ConfigError, match="representative_data for input 'image' is empty"):
        sample_array(iter([]), src, what="representative_data")


def test_representative_data_forms_agree(tiny_model, tiny_data):
    src = load_source(tiny_model)
    labels = np.zeros(len(tiny_data), "int32")
    forms = {
        "array": tiny_data,
        "dataset_batched": tf.data.Dataset.from_tensor_slices((tiny_data, labels)).batch(16),
        "dataset_samples": tf.data.Dataset.from_tensor_slices(tiny_data),
        "generator": (x[None] for x in tiny_data),
        "callable": lambda: ([x] for x in tiny_data),
        "list": list(tiny_data),
    }
    for name, data in forms.items():
        x = sample_array(data, src, what="representative_data")
        np.testing.assert_array_equal(x, tiny_data, err_msg=name)


def test_not_a_model_is_refused():
    with pytest.raises(ConfigError, match="Received: int"):
        load_source(3)
    with pytest.raises(ConfigError, match="No such file or directory"):
        load_source("/nonexistent/model")


def test_multi_input_model_is_accepted_with_every_input():
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    src = load_source(keras.Model([a, b], keras.layers.Concatenate()([a, b])))
    assert [(s.name, s.shape) for s in src.inputs] == [("a", (1, 4)), ("b", (1, 3))]
    assert src.notes == ["Inputs 'a', 'b': dynamic batch dimension fixed to 1 (the edge "
                         "runtimes run batch 1)."]
    y = src.predict({"b": np.ones((2, 3), "float32"), "a": np.zeros((2, 4), "float32")})
    np.testing.assert_array_equal(y, [[0, 0, 0, 0, 1, 1, 1]] * 2)  # fed by name, not position
    c = keras.Input((None, 4), name="c")
    with pytest.raises(ConfigError, match=r"Input 'c' has dynamic dimension"):
        load_source(keras.Model([a, c], keras.layers.Add()([a, c[:, 0]])))


def test_multi_output_model_is_accepted_with_every_output():
    a = keras.Input((4,), name="a")
    model = keras.Model(a, [keras.layers.Dense(2)(a), keras.layers.Dense(3)(a)])
    outputs = load_source(model).predict(np.ones((5, 4), "float32"))
    assert [y.shape for y in outputs] == [(5, 2), (5, 3)]  # test_conv_multi_output.py converts


def test_keras_file_and_saved_model_sources(tmp_path, tiny_model, tiny_data):
    path = tmp_path / "m.keras"
    tiny_model.save(path)
    r = onnx.convert(str(path), tmp_path / "from_keras_file", validation_data=tiny_data[:8])
    assert r.ok and r.fidelity["onnx_fp32"]["max_abs_error_rel"] < 1e-5
    saved = load_source(tiny_model).export_saved_model(tmp_path / "sm")
    r = edgetpu.convert(saved, tmp_path / "from_saved_model", representative_data=tiny_data,
                        min_top1=None)
    assert r.ok and r.fidelity["tflite_int8"]["max_abs_error_rel"] < 0.05
    # A SavedModel runs its own variables inside TFSMLayer: no FP16 floor can be measured.
    r = openvino.convert(saved, tmp_path / "ov_from_saved_model", validation_data=tiny_data[:8])
    assert r.ok and "fp16_weights_floor_rel" not in r.fidelity["openvino_fp16"]


@pytest.mark.parametrize("module, target", [(edgetpu, "edgetpu"), (tensorrt, "jetson")])
def test_int8_target_without_calibration_names_itself(module, target, tmp_path, tiny_model):
    with pytest.raises(ConfigError, match=rf"^{target} quantizes to int8 and needs calibration "
                                          r"inputs: pass representative_data="):
        module.convert(tiny_model, tmp_path / target)
    assert_nothing_left(tmp_path / target)


def test_convert_all_converts_what_it_can_and_reports_the_rest(tmp_path, tiny_model):
    from tfm_fuse.converters import convert_all

    reports = convert_all(tiny_model, tmp_path, targets=("edgetpu", "onnx", "jetson"))
    assert list(reports) == ["edgetpu", "onnx", "jetson"]
    assert reports["onnx"].ok and (tmp_path / "onnx" / "model.onnx").exists()
    for target in ("edgetpu", "jetson"):
        assert not reports[target].ok and "needs calibration inputs" in reports[target].issues[0]
        assert not (tmp_path / target).exists()
    with pytest.raises(ConfigError, match="already exists"):  # a shared mistake: before any
        convert_all(tiny_model, tmp_path, targets=("openvino", "onnx"))  # conversion starts
    assert not (tmp_path / "openvino").exists()
