"""FuPruner on keras.applications (weights=None, 32×32 inputs, a few steps): masks move, strip is equal."""

import keras
import numpy as np
import pytest

import tfm_fuse
from tfm_fuse import callbacks

APPS = {
    "MobileNetV2": keras.applications.MobileNetV2,
    "ResNet50": keras.applications.ResNet50,
    "EfficientNetB0": keras.applications.EfficientNetB0,
    "DenseNet121": keras.applications.DenseNet121,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(APPS))
def test_fupruner_on_application(name):
    model = APPS[name](weights=None, input_shape=(32, 32, 3), classes=5)
    masked = tfm_fuse.prune(model, method="fupruner", rate=0.3, align=8)
    masked.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(8, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 5, size=8)
    pruner = callbacks.FuPruner(update_freq=1, criterion="fused")
    hist = masked.fit(x, y, epochs=1, batch_size=4, verbose=0, callbacks=[pruner])
    assert hist.history["prune_rate"][-1] > 0.1
    small = tfm_fuse.strip(masked)
    assert tfm_fuse.profile(small).macs == pruner.stats["prune_macs"]
    assert tfm_fuse.profile(small).macs < tfm_fuse.profile(model).macs
    expected = masked.predict(x, verbose=0)
    np.testing.assert_allclose(small.predict(x, verbose=0), expected, atol=1e-4, rtol=1e-3)
