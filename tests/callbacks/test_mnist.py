"""End to end on shipped MNIST: FuPruner removes ~50 % of MACs after strip at a small accuracy cost.

The full experiment (more data and epochs, PA / FA / MA too) is `benchmarks/mnist_pruning.py`.
"""

import importlib.util
from pathlib import Path

import keras
import numpy as np
import pytest

import tfm_fuse
from tfm_fuse import callbacks

BENCH = Path(__file__).parents[2] / "benchmarks" / "mnist_pruning.py"


def _bench():
    spec = importlib.util.spec_from_file_location("mnist_pruning", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_mnist_fupruner_and_complexity(record_property):
    bench = _bench()
    rows = bench.run(epochs=3, n_train=3000, n_test=1000, modes=("FA",))
    print("\n" + bench.table(rows))
    base, fupruner, fa = rows
    for r in rows:
        record_property(r["method"], f"acc={r['acc']:.4f} macs_removed={r['macs_removed']:.3f}")
    assert base["acc"] > 0.85
    assert fupruner["macs_removed"] == pytest.approx(0.5, abs=0.02) and fa["macs_removed"] >= 0.5
    assert fupruner["acc"] > base["acc"] - 0.05
    assert fa["acc"] > base["acc"] - 0.05


class _HeldOut(keras.callbacks.Callback):
    """Inference-mode accuracy on held-out digits after each epoch's other callbacks."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y, self.values = x, y, []

    def on_epoch_end(self, epoch, logs=None):
        pred = self.model.predict(self.x, verbose=0, batch_size=512)
        self.values.append(float(np.mean(np.argmax(pred, -1) == self.y)))


@pytest.mark.slow
def test_the_two_line_default_call_does_not_collapse():
    """`prune(m, method="fupruner")` + `FuPruner()` with every default, as the README shows."""
    (x, y), (xt, yt) = tfm_fuse.app.data.load_mnist(n_train=4096 + 512, n_test=1000)
    keras.utils.set_random_seed(0)
    model = tfm_fuse.app.models.residual_cnn(widths=(16, 32))  # unpruned, this recipe: 0.88
    masked = tfm_fuse.prune(model, method="fupruner")
    masked.compile(optimizer=keras.optimizers.Adam(2e-3), metrics=["accuracy"],
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    held_out = _HeldOut(xt, yt)
    hist = masked.fit(x[:4096], y[:4096], validation_data=(x[4096:], y[4096:]), epochs=4,
                      batch_size=64, verbose=0, callbacks=[callbacks.FuPruner(), held_out])
    small = tfm_fuse.strip(masked)
    acc = float(np.mean(np.argmax(small.predict(xt, verbose=0), -1) == yt))
    removed = 1 - tfm_fuse.profile(small).macs / tfm_fuse.profile(model).macs
    print(f"\nheld-out after each epoch {held_out.values}, stripped {acc:.4f}, MACs -{removed:.1%}")
    assert removed == pytest.approx(0.5, abs=0.03)
    assert acc > 0.8 and min(held_out.values[1:]) > 0.5
    # what fit reported on its validation data is what the stripped model scores there
    val = float(np.mean(np.argmax(small.predict(x[4096:], verbose=0), -1) == y[4096:]))
    assert val == pytest.approx(hist.history["val_accuracy"][-1], abs=1e-6)
