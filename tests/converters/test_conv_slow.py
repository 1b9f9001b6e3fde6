"""End to end: a trained, pruned-and-stripped ResNet on MNIST and keras.applications models.

Figures are printed (run with `-s` to see them) and asserted where the bar is meaningful:
int8 top-1 agreement ≥ 99 % needs a trained model; on random-init applications models the
logits are near-uniform, so there agreement is reported, not required.
"""

import keras
import numpy as np
import pytest
from conv_helpers import mnist_resnet

import tfm_fuse
from tfm_fuse.converters import edgetpu, onnx, openvino, tensorrt
from tfm_fuse.converters._ov_legacy import python310_available

pytestmark = pytest.mark.slow


def _summary(name, r):
    sizes = {k: _size(v) for k, v in r.artefacts.items()}
    print(f"\n[{name}] ok={r.ok} sizes={sizes}")
    for key, m in r.fidelity.items():
        print(f"[{name}] {key}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else
                                             f"{k}={v}" for k, v in m.items()))


def _size(path):
    from pathlib import Path

    p = Path(path)
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*"))


@pytest.fixture(scope="module")
def mnist():
    # 2000 training images give a ~91 % model whose low-margin digits flip under int8 (98-99 %
    # agreement); 8000 give ~97-98 %, the kind of trained model the 99 % bar is meant for.
    return tfm_fuse.data.load_mnist(n_train=8000, n_test=2000)


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
    # 500 digits, FP32 IR 6e-7): the FP16 IR is held to 2e-3, the FP32 IR to 1e-3.
    r = openvino.convert(trained_thin, tmp_path / "openvino", validation_data=x_test[:500],
                         legacy_runtime=python310_available(), max_rel_error=2e-3)
    _summary("mnist openvino", r)
    assert r.ok and r.fidelity["openvino_fp16"]["top1_agreement"] == 1.0
    r = openvino.convert(trained_thin, tmp_path / "openvino32", validation_data=x_test[:500],
                         compress_to_fp16=False)
    _summary("mnist openvino fp32", r)
    assert r.ok and r.fidelity["openvino_fp32"]["max_abs_error_rel"] <= 1e-3


def _reestimate_bn(model: keras.Model, x: np.ndarray) -> keras.Model:
    """Sets every BatchNorm's moving statistics to those of `x` (one training-mode pass).

    Random-init applications models otherwise shrink activations layer after layer (outputs
    near 1e-11 for MobileNetV2): agreement on such outputs would mean nothing.
    """
    layers = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    momenta = [l.momentum for l in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(x, training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    return model


def _digit_images(x: np.ndarray, size: int) -> np.ndarray:
    """Meaningful inputs for applications models: digits resized to RGB in [-1, 1]."""
    import tensorflow as tf

    img = tf.image.resize(x, (size, size)).numpy()
    return np.repeat(img, 3, axis=-1) * 2.0 - 1.0


def test_mobilenet_v2_edgetpu_and_openvino(tmp_path, mnist):
    """MobileNetV2 trained 2 epochs on digits (random-init outputs vanish to ~1e-11)."""
    (x, y), (x_test, _) = mnist
    data, held_out = _digit_images(x[:2000], 96), _digit_images(x_test[:200], 96)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), classes=10,
                                           classifier_activation=None)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data, y[:2000], epochs=2, batch_size=32, verbose=0)
    _reestimate_bn(model, data[:256])
    r = edgetpu.convert(model, tmp_path / "edgetpu", representative_data=data[:200],
                        validation_data=held_out, min_top1=None)
    _summary("mobilenetv2 edgetpu", r)
    check = r.details["edgetpu_check"]
    print(f"[mobilenetv2] edgetpu ops eligible {check['tpu_ops']}/{len(check['ops'])}, "
          f"params {check['parameter_bytes']} B")
    assert r.ok and check["tpu_fraction"] == 1.0 and check["fits_sram"]
    assert r.fidelity["tflite_int8"]["top1_agreement"] >= 0.9
    # FP16 weights through 50+ layers of a briefly trained MobileNetV2: ~7e-3 of the logit
    # scale (FP32 IR: ~1e-6). Reported; held to 2e-2 here, the FP32 IR to 1e-3.
    r = openvino.convert(model, tmp_path / "openvino", validation_data=held_out[:50],
                         legacy_runtime=python310_available(), max_rel_error=2e-2)
    _summary("mobilenetv2 openvino", r)
    assert r.ok and r.details["opset_check"]["max_opset"] <= 10
    r = openvino.convert(model, tmp_path / "openvino32", validation_data=held_out[:50],
                         compress_to_fp16=False)
    _summary("mobilenetv2 openvino fp32", r)
    assert r.ok


def test_resnet50_all_targets(tmp_path, mnist):
    """Random-init ResNet50 (its outputs keep a usable scale): figures, not a quality bar."""
    (x, _), _ = mnist
    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3),
                                        classifier_activation=None)
    data = _digit_images(x[:96], 64)
    r = edgetpu.convert(model, tmp_path / "edgetpu", representative_data=data[:64],
                        validation_data=data[64:], min_top1=None)
    _summary("resnet50 edgetpu", r)
    check = r.details["edgetpu_check"]
    assert r.ok and check["tpu_fraction"] == 1.0 and not check["fits_sram"]
    assert any("exceed the ~8 MiB on-chip memory" in n for n in r.notes)
    r = tensorrt.convert(model, tmp_path / "jetson", representative_data=data[:64],
                         validation_data=data[64:], min_top1=None)
    _summary("resnet50 tensorrt", r)
    assert r.ok
    r = openvino.convert(model, tmp_path / "openvino", validation_data=data[64:],
                         legacy_runtime=python310_available())
    _summary("resnet50 openvino", r)
    assert r.ok
