"""End to end on shipped MNIST: FuPruner removes ~50 % of MACs after strip at a small accuracy cost.

The full experiment (more data and epochs, PA / FA / MA too) is `benchmarks/mnist_pruning.py`.
"""

import importlib.util
from pathlib import Path

import pytest

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
    assert fupruner["macs_removed"] >= 0.5 and fa["macs_removed"] >= 0.5
    assert fupruner["acc"] > base["acc"] - 0.05
    assert fa["acc"] > base["acc"] - 0.05
