"""ONNX and the Jetson path (ONNX for TensorRT, FP32 and INT8 Q/DQ), validated in ONNX Runtime."""

import numpy as np
import onnx as onnx_lib
import onnxruntime as ort
import pytest
from conv_helpers import assert_nothing_left

from tfm_fuse.converters import Report, onnx, tensorrt
from tfm_fuse.errors import ConfigError


def test_onnx_fp32_matches_keras(tmp_path, tiny_model, tiny_data):
    out = tmp_path / "onnx"
    r = onnx.convert(tiny_model, out, validation_data=tiny_data)
    assert r.ok, str(r)
    model = onnx_lib.load(r.artefacts["onnx_fp32"])
    assert model.opset_import[0].version == 17
    dims = [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [16, 16, 3]  # dynamic batch, NHWC
    fid = r.fidelity["onnx_fp32"]
    assert fid["max_abs_error_rel"] <= 1e-3 and fid["top1_agreement"] == 1.0
    assert fid["n_samples"] == len(tiny_data)
    assert Report.load(out).fidelity == r.fidelity
    assert r.details["onnx_batch"] == "dynamic" and "kept dynamic" in r.notes[-1]
    assert not any("fixed to 1" in note for note in r.notes)
    x = np.random.default_rng(1).normal(size=(500, 16, 16, 3)).astype("float32")
    session = ort.InferenceSession(r.artefacts["onnx_fp32"], providers=["CPUExecutionProvider"])
    y = session.run(None, {session.get_inputs()[0].name: x})[0]  # one run on a batch of 500
    np.testing.assert_allclose(y, tiny_model.predict(x, verbose=0), rtol=1e-4, atol=1e-4)


def test_onnx_static_batch_when_asked(tmp_path, tiny_model, tiny_data):
    r = onnx.convert(tiny_model, tmp_path / "onnx", batch=1, validation_data=tiny_data[:7])
    model = onnx_lib.load(r.artefacts["onnx_fp32"])
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 16, 16, 3] and r.details["onnx_batch"] == 1
    assert r.ok and r.fidelity["onnx_fp32"]["n_samples"] == 7
    with pytest.raises(ConfigError, match="batch"):
        onnx.convert(tiny_model, tmp_path / "again", batch=0)


@pytest.mark.parametrize("opset", [10, 19, "17"])
def test_onnx_bad_opset(opset, tmp_path, tiny_model):
    with pytest.raises(ConfigError, match=rf"opset must be an integer from 13 to 18.*"
                                          rf"Received: opset={opset!r}"):
        onnx.convert(tiny_model, tmp_path / "out", opset=opset)
    assert_nothing_left(tmp_path / "out")


def test_tensorrt_onnx_fp32_and_int8_qdq(tmp_path, tiny_model, tiny_data):
    out = tmp_path / "jetson"
    r = tensorrt.convert(tiny_model, out, representative_data=tiny_data[:48],
                         validation_data=tiny_data[48:], opset=13)
    assert r.ok, str(r)
    assert not tensorrt.has_tf_trt()  # pip TensorFlow: the ONNX path
    assert set(r.artefacts) == {"onnx_fp32", "onnx_int8_qdq", "trtexec_script"}
    assert r.fidelity["onnx_fp32"]["max_abs_error_rel"] <= 1e-3
    assert r.fidelity["onnx_int8_qdq"]["top1_agreement"] >= 0.9
    qdq = r.details["qdq_check"]
    assert qdq["q_nodes"] > 0 and qdq["problems"] == []
    assert qdq["per_channel_weights"] >= 4  # 4 convolutions (+ the dense layer)
    int8 = onnx_lib.load(r.artefacts["onnx_int8_qdq"])
    onnx_lib.checker.check_model(int8)
    assert max(o.version for o in int8.opset_import if o.domain in ("", "ai.onnx")) >= 13
    script = (out / "build_engines.sh").read_text()
    assert "trtexec --onnx=model_int8_qdq.onnx --int8 --fp16 --saveEngine=model_int8.engine" \
        in script and "jetson-orin (JetPack 6.x, TensorRT 8.6)" in script
    assert any(s.startswith("trtexec --onnx=") for s in r.next_steps)
    assert r.details["board"]["name"] == "jetson-orin" and r.details["int8_accepted"]
    assert r.fidelity["onnx_fp16_compute"]["top1_agreement"] >= 0.99
    fp32_error = r.fidelity["onnx_fp32"]["max_abs_error_rel"]
    assert r.fidelity["onnx_fp16_compute"]["max_abs_error_rel"] > 2 * fp32_error  # FP16 math
    assert not list(out.glob("_fp16*"))  # the emulation is not shipped


@pytest.mark.parametrize("board", ["jetson-nano", "jetson-tx2"])
def test_nano_and_tx2_get_fp16_at_their_tensorrts_opset(tmp_path, tiny_model, tiny_data, board):
    """JetPack 4.6: TensorRT 8.2 parses opset <= 13, and the GPU has no INT8: no calibration
    needed, no Q/DQ model, one FP16 engine."""
    out = tmp_path / board
    r = tensorrt.convert(tiny_model, out, board=board, validation_data=tiny_data)
    assert r.ok, str(r)
    assert set(r.artefacts) == {"onnx_fp32", "trtexec_script"}
    model = onnx_lib.load(r.artefacts["onnx_fp32"])
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 13
    script = (out / "build_engines.sh").read_text()
    assert "--int8" not in script and "TensorRT 8.2" in script
    assert "trtexec --onnx=model.onnx --fp16 --saveEngine=model_fp16.engine" in script
    assert r.details["board"] == {"name": board, "jetpack": "4.6.x", "tensorrt": "8.2",
                                  "max_opset": 13, "int8": False, "gpu": r.details["board"]["gpu"]}
    with pytest.raises(ConfigError, match=rf"{board}'s TensorRT 8.2 .* up to opset 13"):
        tensorrt.convert(tiny_model, tmp_path / "x", board=board, opset=17)
    with pytest.raises(ConfigError, match="Unknown Jetson board 'jetson-tk1'"):
        tensorrt.convert(tiny_model, tmp_path / "x", board="jetson-tk1")


def test_int8_below_the_bar_is_reported_and_the_fp16_artefacts_kept(tmp_path, tiny_model,
                                                                      tiny_data):
    # calibrated on dim inputs: activation ranges far too narrow, INT8 saturates
    r = tensorrt.convert(tiny_model, tmp_path / "j", representative_data=tiny_data[:4] * 0.05,
                         validation_data=tiny_data[48:], min_top1=0.999)
    assert r.fidelity["onnx_int8_qdq"]["top1_agreement"] < 0.999
    assert r.fidelity["onnx_fp16_compute"]["top1_agreement"] == 1.0
    assert r.ok and not r.details["int8_accepted"], str(r)
    assert any("is the one to deploy" in n for n in r.notes)
    assert (tmp_path / "j" / "model.onnx").exists()


def test_tensorrt_needs_representative_data_of_right_shape(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match="jetson quantizes to int8 and needs calibration"):
        tensorrt.convert(tiny_model, tmp_path / "out", representative_data=None)
    with pytest.raises(ConfigError, match="representative_data must be a tf.data.Dataset"):
        tensorrt.convert(tiny_model, tmp_path / "out", representative_data=3)
    assert_nothing_left(tmp_path / "out")
