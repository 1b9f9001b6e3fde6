"""End to end: a trained, pruned-and-stripped ResNet on MNIST and trained keras.applications
models (MobileNetV2, ResNet50 on 32×32 RGB digits), every target, fidelity bars asserted.

Figures are printed (run with `-s` to see them); `benchmarks/converter_fidelity.py` tabulates
them. int8 top-1 agreement ≥ 99 % needs trained models: random-init ones have near-uniform
logits whose argmax flips under any rounding.
"""

import os
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conv_helpers import mnist_resnet

import tfm_fuse
from tfm_fuse.converters import convert_all, edgetpu, onnx, openvino, tensorrt
from tfm_fuse.converters._ov_legacy import python310_available

pytestmark = pytest.mark.slow
# The applications models are trained with the benchmark's own recipe (one recipe, one place).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def _summary(name, r):
    sizes = {k: _size(v) for k, v in r.artefacts.items()}
    print(f"\n[{name}] ok={r.ok} sizes={sizes}")
    for key, m in r.fidelity.items():
        print(f"[{name}] {key}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else
                                             f"{k}={v}" for k, v in m.items()))


def _size(path):
    p = Path(path)
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*"))


@pytest.fixture(scope="module")
def mnist():
    # 2000 training images give a ~91 % model whose low-margin digits flip under int8 (98-99 %
    # agreement); 8000 give ~97-98 %, the kind of trained model the 99 % bar is meant for.
    return tfm_fuse.app.data.load_mnist(n_train=8000, n_test=2000)


@pytest.fixture(scope="module")
def trained_thin(mnist):
    """Trained 3 epochs, pruned 50 % (L1, aligned to 8), stripped, fine-tuned 1 epoch."""
    (x, y), _ = mnist
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = mnist_resnet()
    model.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    thin = tfm_fuse.strip(tfm_fuse.prune(model, method="l1", rate=0.5, align=8))
    thin.compile(keras.optimizers.Adam(5e-4), loss, metrics=["accuracy"])
    thin.fit(x, y, epochs=1, batch_size=32, verbose=0)
    print(f"\n[mnist] params {model.count_params()} -> {thin.count_params()}")
    return thin


def test_trained_thin_resnet_all_targets(tmp_path, mnist, trained_thin):
    (x, _), (x_test, y_test) = mnist
    acc = float(np.mean(np.argmax(trained_thin.predict(x_test, verbose=0), -1) == y_test))
    print(f"\n[mnist] keras test accuracy {acc:.3f}")
    r = edgetpu.convert(trained_thin, tmp_path / "edgetpu", representative_data=x[:300],
                        validation_data=x_test)
    _summary("mnist edgetpu", r)
    assert r.fidelity["tflite_int8"]["top1_agreement"] >= 0.99
    assert r.details["edgetpu_check"]["tpu_fraction"] == 1.0
    assert r.details["edgetpu_check"]["fits_sram"]
    r = tensorrt.convert(trained_thin, tmp_path / "jetson", representative_data=x[:300],
                         validation_data=x_test)
    _summary("mnist tensorrt", r)
    assert r.fidelity["onnx_int8_qdq"]["top1_agreement"] >= 0.99
    assert r.fidelity["onnx_fp32"]["max_abs_error_rel"] <= 1e-3
    r = onnx.convert(trained_thin, tmp_path / "onnx", validation_data=x_test[:500])
    _summary("mnist onnx", r)
    assert r.ok
    # FP16 weights alone cost ~1e-3 of the logit scale on this model (measured 1.07e-3 on
    # 500 digits, FP32 IR 6e-7): the FP16 IR is held to its FP16 floor, the FP32 IR to 1e-3.
    r = openvino.convert(trained_thin, tmp_path / "openvino", validation_data=x_test[:500],
                         legacy_runtime=python310_available())
    _summary("mnist openvino", r)
    fp16 = r.fidelity["openvino_fp16"]
    assert r.ok and fp16["top1_agreement"] == 1.0
    assert fp16["max_abs_error_rel"] <= max(1e-3, 1.5 * fp16["fp16_weights_floor_rel"])
    r = openvino.convert(trained_thin, tmp_path / "openvino32", validation_data=x_test[:500],
                         compress_to_fp16=False)
    _summary("mnist openvino fp32", r)
    assert r.ok and r.fidelity["openvino_fp32"]["max_abs_error_rel"] <= 1e-3


def _application(name: str, mnist):
    """A `keras.applications` model trained 6 epochs on 32×32 RGB digits (the benchmark's
    recipe: `benchmarks/converter_fidelity.py`), BatchNorm re-estimated; and held-out digits."""
    from converter_fidelity import APPLICATION_SIZE, application

    (x, y), (x_test, _) = mnist
    data = tfm_fuse.app.data.as_rgb(x, APPLICATION_SIZE)
    return application(name, data, y, epochs=6), data, tfm_fuse.app.data.as_rgb(x_test,
                                                                             APPLICATION_SIZE)


# ResNet50 trains 20 minutes on 2 cores: TFM_FUSE_FULL=1 adds it (benchmarks/converter_fidelity.py
# measures both for the README's table).
@pytest.mark.parametrize("name", ["MobileNetV2", "ResNet50"] if os.environ.get("TFM_FUSE_FULL")
                         else ["MobileNetV2"])
def test_applications_all_targets(tmp_path, mnist, name):
    """Trained MobileNetV2 / ResNet50 on 2,000 held-out digits: every artefact built and within
    its float bar; int8 agreement at least 98.5 % (the benchmark's 99 % bar, less half a point
    for CPU-dependent training), FP16 IR within max(1e-3, 1.5 × its FP16 floor)."""
    model, data, held_out = _application(name, mnist)
    reports = convert_all(model, tmp_path, representative_data=data[:500],
                          validation_data=held_out, keep_failed=True,
                          legacy_openvino=python310_available())
    for target, r in reports.items():
        _summary(f"{name} {target}", r)
        assert r.ok or all("top-1 agreement" in i for i in r.issues), str(r)  # bars below
    check = reports["edgetpu"].details["edgetpu_check"]
    assert check["tpu_fraction"] == 1.0
    assert check["fits_sram"] == (name == "MobileNetV2")  # ResNet50's 25 M params do not fit
    # benchmarks/converter_fidelity.py measured 99.30-99.65 % on 2,000 digits with this recipe;
    # half a point is left for training that differs between CPUs (oneDNN kernels).
    assert reports["edgetpu"].fidelity["tflite_int8"]["top1_agreement"] >= 0.985
    assert reports["jetson"].fidelity["onnx_int8_qdq"]["top1_agreement"] >= 0.985
    assert reports["onnx"].fidelity["onnx_fp32"]["max_abs_error_rel"] <= 1e-3
    fp16 = reports["openvino"].fidelity["openvino_fp16"]
    assert fp16["max_abs_error_rel"] <= max(1e-3, 1.5 * fp16["fp16_weights_floor_rel"])
    assert reports["openvino"].details["opset_check"]["max_opset"] <= 10
