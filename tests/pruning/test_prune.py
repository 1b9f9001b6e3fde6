import keras
import numpy as np
import pytest

import tfm_fuse
from tests.pruning.helpers import small_resnet
from tfm_fuse.pruning import PruneWrapper, complexity_prune, group_mask
from tfm_fuse.errors import ConfigError
from tfm_fuse.pruning.updater import read_options


@pytest.fixture(scope="module")
def model():
    return small_resnet(width=16)


def _masks(model):
    graph = tfm_fuse.analyze(model)
    return {g.id: group_mask(model, g) for g in graph.groups if g.prunable}


@pytest.mark.parametrize("method", ["l1", "l2", "fused"])
def test_one_shot_methods(model, method):
    masked = tfm_fuse.prune(model, method=method, rate=0.5, align=4)
    masks = _masks(masked)
    assert all(m.sum() % 4 == 0 and m.sum() < len(m) for m in masks.values())
    x = np.random.default_rng(0).normal(size=(2, 12, 12, 1)).astype("float32")
    np.testing.assert_allclose(tfm_fuse.strip(masked)(x), masked(x), atol=1e-5)


def test_fupruner_method_returns_wrapped_model_at_ones(model):
    masked = tfm_fuse.prune(model, method="fupruner", rate=0.5, align=8, criterion="l2")
    assert any(isinstance(l, PruneWrapper) for l in masked.layers)
    assert all(m.all() for m in _masks(masked).values())
    options = read_options(masked)
    assert (options.budget.kind, options.budget.value, options.align) == ("rate", 0.5, 8)
    assert options.criterion == "l2"
    default = read_options(tfm_fuse.prune(model, method="fupruner"))
    assert (default.budget.kind, default.budget.value) == ("macs", 0.5)


@pytest.mark.parametrize("budget, metric", [({"macs": 0.4}, "macs"), ({"params": 0.4}, "params")])
def test_one_shot_budget_in_the_users_terms(model, budget, metric):
    small = tfm_fuse.strip(tfm_fuse.prune(model, method="l2", **budget))
    removed = 1 - getattr(tfm_fuse.profile(small), metric) / getattr(tfm_fuse.profile(model), metric)
    assert removed == pytest.approx(0.4, abs=0.06)


def test_complexity_budget_keywords_name_the_mode(model):
    a = tfm_fuse.prune(model, method="complexity", params=0.4, seed=1)
    b = tfm_fuse.prune(model, method="complexity", mode="PA", target=0.4, seed=1)
    assert [w.shape for w in a.weights] == [w.shape for w in b.weights]


def test_numpy_numbers_are_accepted(model):
    masked = tfm_fuse.prune(model, method="fupruner", rate=np.float32(0.3), align=np.int64(8))
    options = read_options(masked)
    assert options.budget.value == pytest.approx(0.3) and options.align == 8


@pytest.mark.parametrize("mode, metric", [("PA", "params"), ("FA", "macs"), ("MA", "activation_bytes")])
def test_complexity_reaches_target(model, mode, metric):
    thin, report = complexity_prune(model, mode=mode, target=0.4, seed=0)
    assert report.reduction[metric] >= 0.4
    assert set(report.reduction) == {"params", "macs", "activation_bytes"}
    assert tfm_fuse.profile(thin).params == report.after["params"]
    assert not any(isinstance(l, PruneWrapper) for l in thin.layers)
    assert mode in str(report)


def test_complexity_through_prune_is_seeded_and_aligned(model):
    a = tfm_fuse.prune(model, method="complexity", mode="fa", target=0.5, align=4, seed=3)
    b = tfm_fuse.prune(model, method="complexity", mode="FA", target=0.5, align=4, seed=3)
    assert [w.shape for w in a.weights] == [w.shape for w in b.weights]
    for layer in a.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.name != a.layers[1].name:
            assert layer.filters % 4 == 0 or layer.filters == 16


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "magnitude"}, "Unknown pruning method"),
    ({"method": "fupruner", "criterion": "taylor"}, "Unknown criterion"),
    ({"method": "fupruner", "scope": "block"}, "Unknown scope"),
    ({"method": "l1", "rate": 1.0}, "rate"),
    ({"method": "l1", "rate": -0.2}, "rate"),
    ({"method": "l1", "align": 0}, "align"),
    ({"method": "complexity", "mode": "XA"}, "Unknown complexity mode"),
    ({"method": "complexity", "target": 1.0}, "target"),
    ({"method": "complexity", "target": -0.5}, "target"),
    ({"method": "complexity", "target": 0.9, "align": 8}, "out of reach"),
    # every option is checked, whatever the method; the call first
    ({"method": "l1", "criterion": "bogus", "scope": "bogus", "mode": "bogus", "target": 7.0},
     "not an option of method='l1'"),
    ({"method": "l1", "scope": "bogus"}, "Unknown scope"),
    ({"method": "l2", "mode": "PA"}, "not an option"),
    ({"method": "fupruner", "target": 0.5}, "not an option"),
    ({"method": "fupruner", "seed": 1}, "not an option"),
    ({"method": "fupruner", "rate": 0.3, "macs": 0.5}, "one pruning budget"),
    ({"method": "fupruner", "macs": 1.2}, "macs"),
    ({"method": "fupruner", "memory": float("nan")}, "memory"),
    ({"method": "fupruner", "params": "half"}, "params"),
    ({"method": "fupruner", "rate": True}, "rate"),
    ({"method": "complexity", "rate": 0.5}, "not of channels"),
    ({"method": "complexity", "macs": 0.5, "target": 0.5}, "target"),
    ({"method": "complexity", "macs": 0.5, "mode": "PA"}, "different metrics"),
    ({"method": "complexity", "seed": -1}, "seed"),
    ({"method": "l1", "layers": "conv2d"}, "list of layer names"),
    ({"method": "l1", "allow_unknown": "yes"}, "allow_unknown"),
])
def test_bad_options(model, kwargs, match):
    with pytest.raises(tfm_fuse.ConfigError, match=match):
        tfm_fuse.prune(model, **kwargs)


def test_keras2_model_is_refused():
    class Functional:  # stands in for a tf_keras model: tfm_fuse must not touch it
        __module__ = "tf_keras.src.engine.functional"
        name = "legacy"

    with pytest.raises(tfm_fuse.UnsupportedModelError, match="tf_keras"):
        tfm_fuse.prune(Functional(), method="fupruner")


def test_fuse_first_prunes_the_fused_filters_and_strips_equivalently():
    from tests.models import residual, sample

    model = residual(shape=(12, 12, 3))
    masked = tfm_fuse.prune(model, method="l2", rate=0.3, fuse={"shortcuts": True})
    layers = [layer.name for layer in masked.layers]
    assert not any("batch_normalization" in name for name in layers)  # folded first
    assert any("shortcut" in name for name in layers)                  # 1×1 identity convs
    thin = tfm_fuse.strip(masked)
    x = sample(model)
    np.testing.assert_allclose(thin(x), masked(x), atol=1e-4)
    groups = tfm_fuse.analyze(masked).groups
    plain = tfm_fuse.analyze(tfm_fuse.prune(model, method="l2", rate=0.3)).groups
    assert sum(g.prunable for g in groups) > sum(g.prunable for g in plain)  # per-block groups


@pytest.mark.parametrize("fuse, says", [
    ("yes", "True, False or a dict"), ({"shortcut": True}, "shortcuts"),
    ({"shortcuts": 1}, "True/False")])
def test_fuse_option_errors_name_the_switches(fuse, says):
    from tests.models import residual

    with pytest.raises(ConfigError, match=says):
        tfm_fuse.prune(residual(), method="l2", fuse=fuse)
