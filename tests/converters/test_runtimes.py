"""One runtime module for the checks and the timings: each runtime's outputs match Keras, and
the timer `latency.compare` uses runs the same loaded model."""

import numpy as np
import pytest

from tfm_fuse.converters import edgetpu, onnx, openvino, runtimes


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory, tiny_model, tiny_data):
    out = tmp_path_factory.mktemp("rt")
    return {
        "litert_int8": edgetpu.convert(tiny_model, out / "e", representative_data=tiny_data,
                                       min_top1=None).artefacts["tflite_int8"],
        "onnxruntime": onnx.convert(tiny_model, out / "o").artefacts["onnx_fp32"],
        "openvino_cpu": openvino.convert(tiny_model, out / "v").artefacts["openvino_xml"],
    }


@pytest.mark.parametrize("name,tolerance", [("litert_int8", 0.1), ("onnxruntime", 1e-5),
                                            ("openvino_cpu", 2e-3)])
def test_each_runtime_computes_the_keras_outputs(artefacts, tiny_model, tiny_data, name,
                                                 tolerance):
    runtime = runtimes.RUNTIMES[name](artefacts[name], threads=1)  # OpenVINO at f32
    y = runtime.outputs(tiny_data[:8])
    reference = tiny_model.predict(tiny_data[:8], verbose=0)
    assert y.shape == reference.shape
    assert np.abs(y - reference).max() <= tolerance * np.abs(reference).max()
    tick = runtime.timer()
    tick()  # one inference on zeros, as latency.compare times it


def test_latency_times_through_the_same_runtimes(artefacts):
    from tfm_fuse.app import latency

    table = latency.compare({"tiny": artefacts}, runs=5, rounds=1, progress=False)
    assert set(table["tiny"]) == set(artefacts) and all(v > 0 for v in table["tiny"].values())
