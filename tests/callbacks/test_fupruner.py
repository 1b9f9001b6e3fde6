import csv

import keras
import numpy as np
import pytest

import tfm_fuse
from tests.models import randomize
from tests.pruning.helpers import compiled, small_resnet, toy_data
from tfm_fuse import callbacks
from tfm_fuse.pruning import group_mask
from tfm_fuse.pruning.fupruner import MaskUpdater
from tfm_fuse.pruning.schedules import PolynomialDecay


def _masked(**kwargs):
    return compiled(tfm_fuse.prune(small_resnet(width=16), method="fupruner", **kwargs))


def _masks(model):
    graph = tfm_fuse.analyze(model)
    return {g.id: group_mask(model, g) for g in graph.groups if g.prunable}


def test_masks_update_during_fit_and_strip_is_equivalent(tmp_path):
    x, y = toy_data()
    model = _masked(rate=0.5, align=4)
    log = tmp_path / "log.csv"
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_data=(x, y),
              callbacks=[callbacks.FuPruner(update_freq=2), keras.callbacks.CSVLogger(str(log))])
    masks = _masks(model)
    assert any((m == 0).any() for m in masks.values())
    assert all(m.sum() % 4 == 0 for m in masks.values())
    rows = list(csv.DictReader(log.open()))
    assert float(rows[-1]["prune_rate"]) > 0.3 and float(rows[-1]["prune_macs"]) > 0
    small = tfm_fuse.strip(model)
    assert tfm_fuse.profile(small).macs == float(rows[-1]["prune_macs"])
    np.testing.assert_allclose(small.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_masked_filters_keep_gradient_and_can_come_back():
    x, y = toy_data()  # trained-like weights: BN betas != 0, so ReLU passes gradient at a zero filter
    model = compiled(tfm_fuse.prune(randomize(small_resnet(width=16)), method="fupruner"))
    updater = MaskUpdater(model, criterion="l2", scope="layer")
    updater.update(0.5)
    conv = next(l for l in model.layers if "conv2d" in l.name and l.layer.filters == 16)
    dropped = np.flatnonzero(keras.ops.convert_to_numpy(conv.out_mask) == 0)
    assert len(dropped) and np.all(conv.layer.kernel.numpy()[..., dropped] == 0)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # soft: zeroed filters get gradient
    assert np.abs(conv.layer.kernel.numpy()[..., dropped]).sum() > 0
    kernel = conv.layer.kernel.numpy()
    kernel[..., dropped[0]] = 10.0  # this filter has grown: it must outrank the kept ones
    conv.layer.kernel.assign(kernel)
    updater.update(0.5)
    assert keras.ops.convert_to_numpy(conv.out_mask)[dropped[0]] == 1.0


def test_schedule_drives_the_rate():
    x, y = toy_data()
    model = _masked()
    sched = PolynomialDecay(0.0, 0.6, begin_step=0, end_step=8, power=1)
    cb = callbacks.FuPruner(sched, scope="layer")
    hist = model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[cb])
    assert hist.history["prune_target"] == pytest.approx([0.3, 0.6])
    assert cb.finished  # past end_step: masks stay fixed while the model fine-tunes
    before = _masks(model)
    cb.on_epoch_end(2, {})
    assert all(np.array_equal(a, b) for a, b in zip(before.values(), _masks(model).values()))
    again = callbacks.FuPruner(sched, scope="layer")  # a resumed fit starts finished too
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[again])
    assert again.finished and again.step == 12
    assert all(np.array_equal(a, b) for a, b in zip(before.values(), _masks(model).values()))


def test_accuracy_guard_backs_off_and_resumes():
    x, y = toy_data()
    model = _masked()
    cb = callbacks.FuPruner(0.5, max_drop=0.0, baseline=1.0, monitor="accuracy", backoff=0.1)
    hist = model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[cb])
    assert hist.history["prune_backoff"] == pytest.approx([0.1, 0.2, 0.3])
    assert hist.history["prune_target"] == pytest.approx([0.4, 0.3, 0.2])
    cb.on_epoch_end(3, {"accuracy": 1.0})  # recovered: the rate comes back step by step
    assert cb.penalty == pytest.approx(0.2) and cb.target == pytest.approx(0.3)


def test_reference_from_first_epochs_holds_pruning():
    x, y = toy_data()
    model = _masked()
    cb = callbacks.FuPruner(0.5, max_drop=0.5, reference_epochs=2)
    hist = model.fit(x, y, epochs=3, batch_size=32, verbose=0, validation_data=(x, y), callbacks=[cb])
    assert hist.history["prune_rate"][0] == 0.0
    assert cb.reference == max(hist.history["val_accuracy"][:2])
    assert hist.history["prune_rate"][-1] > 0


def test_save_load_resume_continues_identically(tmp_path):
    x, y = toy_data()
    model = _masked(rate=0.5)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False,
              callbacks=[callbacks.FuPruner(update_freq=3)])
    path = tmp_path / "masked.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(model.layers, loaded.layers):
        if isinstance(a, tfm_fuse.PruneWrapper):
            np.testing.assert_array_equal(a.out_mask.numpy(), b.out_mask.numpy())
            np.testing.assert_array_equal(a.in_mask.numpy(), b.in_mask.numpy())
            assert int(b.pruning_step.numpy()) == 8
    cb_a, cb_b = callbacks.FuPruner(update_freq=3), callbacks.FuPruner(update_freq=3)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False, callbacks=[cb_a])
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False, callbacks=[cb_b])
    assert cb_a.step == cb_b.step == 12
    for a, b in zip(_masks(model).values(), _masks(loaded).values()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-5)


def test_one_instance_serves_two_fits():
    x, y = toy_data()
    cb = callbacks.FuPruner(0.5, max_drop=0.0, baseline=1.0, monitor="accuracy")
    for _ in range(2):
        model = _masked()
        hist = model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[cb])
        assert hist.history["prune_backoff"] == pytest.approx([0.05])
        assert cb.step == 2


@pytest.mark.parametrize("kwargs, match", [
    ({"schedule": 1.2}, "rate"),
    ({"schedule": -0.1}, "rate"),
    ({"schedule": "fast"}, "Unknown schedule"),
    ({"criterion": "taylor"}, "Unknown criterion"),
    ({"scope": "block"}, "Unknown scope"),
    ({"update_freq": 0}, "update_freq"),
    ({"update_freq": "batch"}, "update_freq"),
    ({"max_drop": -0.01}, "max_drop"),
    ({"align": 3.5}, "align"),
    ({"backoff": 0}, "backoff"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(tfm_fuse.ConfigError, match=match):
        callbacks.FuPruner(**kwargs)


def test_schedule_ending_before_start():
    with pytest.raises(tfm_fuse.ConfigError, match="ends before it starts"):
        callbacks.FuPruner(PolynomialDecay(0.0, 0.5, begin_step=100, end_step=50))


def test_accuracy_requirement_without_validation_data_fails_before_training():
    x, y = toy_data()
    model = _masked()
    seen = []
    probe = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(epoch))
    with pytest.raises(tfm_fuse.ConfigError, match="no validation data"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.FuPruner(max_drop=0.01), probe])
    assert seen == []
    model.fit(x, y, epochs=1, verbose=0, validation_split=0.25,  # a split counts as validation
              callbacks=[callbacks.FuPruner(max_drop=0.01)])


def test_model_without_wrappers_is_refused():
    x, y = toy_data()
    model = compiled(small_resnet())
    with pytest.raises(tfm_fuse.UnsupportedModelError, match="no PruneWrapper"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.FuPruner()])


def test_keras2_model_is_refused():
    class Functional:
        __module__ = "tf_keras.src.engine.functional"
        name = "legacy"

    cb = callbacks.FuPruner()
    cb.set_model(Functional())
    with pytest.raises(tfm_fuse.UnsupportedModelError, match="tf_keras"):
        cb.on_train_begin()
