"""OpenVINO IR: FP16 weights, CPU-plugin validation, opset1...10 check, OpenVINO 2022.3.2."""

import keras
import numpy as np
import pytest
from conv_helpers import assert_nothing_left, needs_py39, needs_py310

from tfm_fuse.converters import Report, openvino
from tfm_fuse.converters._ov_legacy import run_ir_2022
from tfm_fuse.errors import ConversionError



def _upsampling_model() -> keras.Model:
    inp = keras.Input((8, 8, 3), name="img")
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = keras.layers.UpSampling2D(interpolation="bilinear", name="up")(x)
    return keras.Model(inp, x)


def test_ir_fp16_matches_keras_within_opset10(tmp_path, tiny_model, tiny_data):
    out = tmp_path / "ov"
    before = [w.copy() for w in tiny_model.get_weights()]
    r = openvino.convert(tiny_model, out, validation_data=tiny_data)
    # the FP16 floor rounds the weights of a copy: the caller's weights are untouched
    for w, b in zip(tiny_model.get_weights(), before):
        np.testing.assert_array_equal(w, b)
    assert r.ok, str(r)
    assert (out / "model.xml").exists() and (out / "model.bin").exists()
    assert r.fidelity["openvino_fp16"]["max_abs_error_rel"] <= 1e-3
    assert r.fidelity["openvino_fp16"]["top1_agreement"] == 1.0
    check = r.details["opset_check"]
    assert 1 <= check["max_opset"] <= 10 and check["outside_opset10"] == []
    assert any(op.startswith("Convolution-opset1") for op in check["ops"])
    assert 'element_type="f16"' in (out / "model.xml").read_text()
    assert Report.load(out) == r
    # The FP16 floor (Keras with FP16-rounded weights) is measured, and the IR is close to it.
    floor = r.fidelity["openvino_fp16"]["fp16_weights_floor_rel"]
    assert 0 < floor < 1e-3
    assert r.fidelity["openvino_fp16"]["max_abs_error_rel"] <= 1.5 * floor + 1e-6


@pytest.mark.parametrize("cpu_fp16", [True, False])
def test_ir_is_also_checked_in_fp16_compute_the_ncs2s_precision(tmp_path, tiny_model, tiny_data,
                                                                 cpu_fp16, monkeypatch):
    """In OpenVINO's FP16 inference precision where the CPU has it, else emulated."""
    if cpu_fp16 and not openvino.fp16_compute_available():
        pytest.skip("this CPU has no FP16 compute in OpenVINO")
    monkeypatch.setattr(openvino, "fp16_compute_available", lambda: cpu_fp16)
    r = openvino.convert(tiny_model, tmp_path / "ov", validation_data=tiny_data)
    f32, f16 = r.fidelity["openvino_fp16"], r.fidelity["openvino_fp16_compute"]
    # FP16 arithmetic costs more than FP16 weights alone: the run really computed in FP16
    # (the emulation rounds weights and every activation to FP16; ONNX Runtime's CPU runs
    # ops without an FP16 kernel in float32 between the roundings: a smaller excess)
    assert f16["max_abs_error_rel"] > (1.5 if cpu_fp16 else 1.02) * f32["max_abs_error_rel"]
    assert f16["top1_agreement"] >= 0.99 and r.ok
    assert any(("FP16 inference precision" if cpu_fp16 else "emulated") in n for n in r.notes)
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == [
        "model.bin", "model.xml", "report.json", "report.txt"]  # no check file left


def test_fp16_check_accepts_the_floor_but_not_more():
    from tfm_fuse.converters._fidelity import check_fp16

    m = {"max_abs_error_rel": 1.3e-3, "n_samples": 10}
    assert check_fp16("ir", m, 1e-3, floor=1e-3) == []            # within 1.5x the FP16 floor
    assert check_fp16("ir", m, 1e-3, floor=None)                   # no floor: the plain bar
    (issue,) = check_fp16("ir", {**m, "max_abs_error_rel": 2e-3}, 1e-3, floor=1e-3)
    assert "2e-03" in issue or "0.002" in issue
    assert "FP16 weights alone cost 0.001" in issue and "0.0015" in issue


def test_opset11_op_is_refused_and_nothing_written(tmp_path):
    with pytest.raises(ConversionError, match=r"Layer '.*up.*' is Interpolate from opset11: "
                                              r"OpenVINO 2022.3 LTS \(NCS/NCS2\) reads "
                                              r"opset1...opset10 only"):
        openvino.convert(_upsampling_model(), tmp_path / "out")
    assert_nothing_left(tmp_path / "out")


def test_opset11_allowed_for_recent_openvino(tmp_path):
    r = openvino.convert(_upsampling_model(), tmp_path / "out", require_opset10=False)
    assert r.ok and r.details["opset_check"]["max_opset"] == 11
    assert any("Interpolate from opset11" in n for n in r.notes)


@needs_py310
def test_ir_runs_in_openvino_2022_3_2(tmp_path, tiny_model, tiny_data):
    r = openvino.convert(tiny_model, tmp_path / "ov", validation_data=tiny_data[:16],
                         legacy_runtime=True)
    assert r.ok, str(r)
    legacy = r.fidelity["openvino_2022.3.2"]
    assert legacy["max_abs_error_rel"] <= 1e-3
    assert legacy["vs_current_openvino_max_abs"] <= 1e-5 * legacy["output_scale"]


@needs_py310
def test_openvino_2022_3_2_rejects_opset11_ir(tmp_path):
    r = openvino.convert(_upsampling_model(), tmp_path / "ov", require_opset10=False)
    result = run_ir_2022(r.artefacts["openvino_xml"], np.zeros((1, 8, 8, 3), "float32"))
    assert not result.ok
    assert "Interpolate" in result.error and "opset11" in result.error


def test_an_op_the_ncs2_cannot_run_is_named(tmp_path):
    """CumSum has no parser in the MYRIAD plugin of 2022.3 (frontend.cpp); HSigmoid and
    HSwish (MobileNetV3) are run, natively or decomposed."""
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    ok_model = keras.Model(inp, keras.layers.Activation("hard_swish")(
        keras.layers.Activation("hard_sigmoid")(x)))
    r = openvino.convert(ok_model, tmp_path / "ok")
    assert r.ok and r.details["opset_check"]["not_on_myriad"] == [], str(r)
    with pytest.raises(ConversionError, match=r"CumSum .* not an operation the MYRIAD plugin"):
        openvino.convert(keras.Model(inp, keras.ops.cumsum(x, axis=1)), tmp_path / "bad")
    assert_nothing_left(tmp_path / "bad")
    r = openvino.convert(keras.Model(inp, keras.ops.cumsum(x, axis=1)), tmp_path / "cpu",
                         require_opset10=False)  # a CPU/NPU target: only noted
    assert r.ok and r.details["opset_check"]["not_on_myriad"] == ["CumSum"]


@pytest.mark.slow
@needs_py39
def test_first_ncs_gets_an_ir_v10_read_and_run_by_a_real_reader(tmp_path, tiny_model, tiny_data):
    r = openvino.convert(tiny_model, tmp_path / "ncs", board="ncs", validation_data=tiny_data)
    assert r.ok, str(r)
    check = r.details["ncs_check"]
    assert check["ir_version"] == 10 and check["outside_opset3"] == [] and \
        check["not_on_myriad"] == []
    assert '<net name="model" version="10">' in (tmp_path / "ncs" / "model.xml").read_text()
    assert r.fidelity["onnx_opset10"]["max_abs_error_rel"] < 1e-5
    ir10 = r.fidelity["openvino_ir10_fp16"]  # FP16 input, weights: a Myriad's precision
    assert ir10["top1_agreement"] >= 0.99 and 1e-5 < ir10["max_abs_error_rel"] < 0.02
    assert any("OpenVINO 2020.3 LTS" in s and "-d MYRIAD" in s for s in r.next_steps)


def test_first_ncs_without_python39_ships_the_onnx_and_the_command(tmp_path, tiny_model,
                                                                    monkeypatch):
    from tfm_fuse.converters import _ov_legacy

    monkeypatch.setattr(_ov_legacy, "python_available", lambda release: False)
    r = openvino.convert(tiny_model, tmp_path / "ncs", board="ncs")
    assert r.ok and set(r.artefacts) == {"onnx_opset10"}, str(r)
    assert any(s.startswith("python3 mo.py --input_model model_opset10.onnx --data_type FP16")
               for s in r.next_steps)
    import onnx as onnx_lib

    model = onnx_lib.load(r.artefacts["onnx_opset10"])
    assert model.opset_import[0].version == 10
    with pytest.raises(Exception, match="Unknown Neural Compute Stick board 'ncs3'"):
        openvino.convert(tiny_model, tmp_path / "x", board="ncs3")
