import csv
import warnings

import keras
import numpy as np
import pytest

import tfm_fuse
from tests.models import randomize
from tests.pruning.helpers import compiled, small_resnet, toy_data
from tfm_fuse import callbacks
from tfm_fuse.pruning import group_mask
from tfm_fuse.pruning.updater import MaskUpdater, read_options
from tfm_fuse.pruning.schedules import Constant, PolynomialDecay


def _masked(**kwargs):
    return compiled(tfm_fuse.prune(small_resnet(width=16), method="fupruner", **kwargs))


def _masks(model):
    graph = tfm_fuse.analyze(model)
    return {g.id: group_mask(model, g) for g in graph.groups if g.prunable}


def _quiet_fit(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="FuPruner: the schedule")
        return model.fit(*args, **kwargs)


def test_masks_update_during_fit_and_strip_is_equivalent(tmp_path):
    x, y = toy_data()
    model = _masked(rate=0.5, align=4)
    log = tmp_path / "log.csv"
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, validation_data=(x, y),
              callbacks=[pruner := callbacks.FuPruner(update_freq=2),
                         keras.callbacks.CSVLogger(str(log))])
    masks = _masks(model)
    assert any((m == 0).any() for m in masks.values())
    assert all(m.sum() % 4 == 0 for m in masks.values())
    rows = list(csv.DictReader(log.open()))
    assert float(rows[-1]["prune_rate"]) > 0.3 and float(rows[-1]["prune_macs_removed"]) > 0
    assert "prune_macs" not in rows[-1] and "prune_params" not in rows[-1]  # counts: .stats
    small = tfm_fuse.strip(model)
    assert tfm_fuse.profile(small).macs == pruner.stats["prune_macs"]  # an exact integer
    assert isinstance(pruner.stats["prune_macs"], int)
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


def test_explicit_schedule_drives_the_target():
    x, y = toy_data()
    model = _masked(rate=0.6)
    sched = PolynomialDecay(0.0, 0.6, begin_step=0, end_step=4, power=1)
    cb = callbacks.FuPruner(sched, scope="layer", update_freq="epoch")
    hist = _quiet_fit(model, x, y, epochs=4, batch_size=16, verbose=0, callbacks=[cb])
    # masks change at the first batch of each epoch (steps 0, 4): never right before validation
    assert hist.history["prune_target"] == pytest.approx([0.0, 0.6, 0.6, 0.6])
    assert cb.finished  # past end_step: masks stay fixed while the model fine-tunes
    before = _masks(model)
    again = callbacks.FuPruner(sched, scope="layer")  # a resumed fit starts finished too
    _quiet_fit(model, x, y, epochs=1, batch_size=16, verbose=0, callbacks=[again])
    assert again.finished and again.step == 20
    assert all(np.array_equal(a, b) for a, b in zip(before.values(), _masks(model).values()))


def test_derived_schedule_ramps_then_freezes_the_second_half():
    x, y = toy_data()
    model = _masked()  # defaults: half the MACs
    cb = callbacks.FuPruner()
    seen = []
    probe = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: seen.append({k: v.copy() for k, v in _masks(model).items()}))
    hist = model.fit(x, y, epochs=10, batch_size=16, verbose=0, callbacks=[cb, probe])
    sched = cb._schedule
    assert (sched.begin_step, sched.end_step) == (8, 24)  # 20 % warm-up, ramp to mid-way of 40
    assert sched.power == 3.0
    assert all(np.array_equal(seen[i][g], seen[-1][g]) for i in range(24, 40) for g in seen[-1])
    assert hist.history["prune_macs_removed"][-1] == pytest.approx(0.5, abs=0.08)
    assert hist.history["prune_rate"][0] == 0.0  # nothing masked during the warm-up epochs


def test_batchnorm_statistics_restart_when_fit_begins():
    """A young network's moving statistics must describe its batches, not its initialisation,
    or the guard's reference epoch measures a model at chance in inference mode."""
    x, y = toy_data()
    model = _masked()
    bn = next(l for l in model.layers if isinstance(l, keras.layers.BatchNormalization))
    before_bn = keras.Model(model.inputs, bn.input)
    batch_mean = before_bn.predict(x, verbose=0).reshape(-1, bn.moving_mean.shape[0]).mean(0)
    _quiet_fit(model, x, y, epochs=1, batch_size=64, verbose=0,
               callbacks=[callbacks.FuPruner(Constant(0.0))])  # one batch, nothing masked
    np.testing.assert_allclose(bn.moving_mean.numpy(), batch_mean, rtol=1e-3, atol=1e-5)


def test_schedule_without_recovery_time_warns():
    x, y = toy_data()
    with pytest.warns(UserWarning, match="leaving 0 of this fit's 8 steps to recover"):
        _masked().fit(x, y, epochs=2, batch_size=16, verbose=0,
                      callbacks=[callbacks.FuPruner(Constant(0.5))])


def test_validation_during_fit_equals_the_stripped_model():
    x, y = toy_data()
    xv, yv = toy_data(48)
    model = _masked(rate=0.5)
    hist = model.fit(x, y, epochs=4, batch_size=16, verbose=0, validation_data=(xv, yv),
                     callbacks=[callbacks.FuPruner(update_freq="epoch")])
    assert hist.history["prune_rate"][-1] > 0.3
    small = compiled(tfm_fuse.strip(model))
    loss, acc = small.evaluate(xv, yv, verbose=0)
    assert acc == pytest.approx(hist.history["val_accuracy"][-1], abs=1e-6)
    assert loss == pytest.approx(hist.history["val_loss"][-1], rel=1e-4)


def test_options_survive_save_load_and_resume(tmp_path):
    x, y = toy_data()
    model = _masked(rate=0.3, align=4, criterion="l1", scope="layer")
    stop = keras.callbacks.LambdaCallback(  # an interrupted fit: 3 of 6 epochs, inside the ramp
        on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", epoch == 2))
    model.fit(x, y, epochs=6, batch_size=16, verbose=0, shuffle=False,
              callbacks=[callbacks.FuPruner(update_freq=2), stop])
    path = tmp_path / "masked.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    saved = read_options(loaded)
    assert (saved.budget.kind, saved.budget.value) == ("rate", 0.3)
    assert (saved.criterion, saved.scope, saved.align, saved.update_freq) == ("l1", "layer", 4, 2)
    assert saved.schedule == read_options(model).schedule
    assert saved.schedule["config"]["end_step"] == 14  # 20 % of 24 steps, then half the rest
    for a, b in zip(model.layers, loaded.layers):
        if isinstance(a, tfm_fuse.PruneWrapper):
            np.testing.assert_array_equal(a.out_mask.numpy(), b.out_mask.numpy())
            assert int(b.pruning_step.numpy()) == 12
    cb_a, cb_b = callbacks.FuPruner(), callbacks.FuPruner()  # bare: options come from the model
    for m, cb in ((model, cb_a), (loaded, cb_b)):
        m.fit(x, y, epochs=6, initial_epoch=3, batch_size=16, verbose=0, shuffle=False,
              callbacks=[cb])
    assert cb_a.step == cb_b.step == 24
    assert cb_b._updater.criterion_name == "l1" and cb_b._updater.align == 4
    assert cb_b._schedule.end_step == 14 and cb_b._freq == 2
    for a, b in zip(_masks(model).values(), _masks(loaded).values()):
        np.testing.assert_array_equal(a, b)
        assert b.sum() % 4 == 0
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-5)


def test_checkpoint_mid_epoch_holds_the_current_step(tmp_path):
    x, y = toy_data()
    model = _masked()
    ckpt = keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), save_freq=3)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[callbacks.FuPruner(), ckpt])
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert MaskUpdater.read_step_of(loaded) == 6  # the last save was after batch 6, not epoch 1


def test_accuracy_guard_backs_off_and_resumes():
    x, y = toy_data()
    model = _masked(rate=0.5)
    cb = callbacks.FuPruner(Constant(0.5), max_drop=0.0, baseline=1.0, monitor="accuracy",
                            backoff=0.1, update_freq="epoch")
    hist = _quiet_fit(model, x, y, epochs=3, batch_size=32, verbose=0, callbacks=[cb])
    assert hist.history["prune_backoff"] == pytest.approx([0.1, 0.2, 0.3])
    # the target of epoch k's masks reflects the back-off decided at the end of epoch k-1
    assert hist.history["prune_target"] == pytest.approx([0.5, 0.4, 0.3])
    assert len(cb.guard.decisions) == 3 and "back-off 0.20 -> 0.30" in cb.guard.decisions[-1]
    cb.on_epoch_end(3, {"accuracy": 1.0})  # recovered: the target comes back step by step
    assert cb.penalty == pytest.approx(0.2) and cb._pending


def test_guard_says_at_the_end_when_the_requirement_is_not_met():
    x, y = toy_data()
    cb = callbacks.FuPruner(0.5, max_drop=0.0, baseline=1.0, monitor="accuracy")
    with pytest.warns(UserWarning, match="accuracy requirement is not met at the end of fit"):
        _masked().fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[cb])


@pytest.mark.parametrize("monitor, mode, sign", [
    ("val_accuracy", "auto", 1.0), ("val_loss", "auto", -1.0), ("val_mae", "auto", -1.0),
    ("val_mean_absolute_error", "auto", -1.0), ("val_score_x", "min", -1.0),
])
def test_guard_direction(monitor, mode, sign):
    from tfm_fuse.pruning.guard import AccuracyGuard

    guard = AccuracyGuard(max_drop=0.1, monitor=monitor, mode=mode)
    guard.reset(None)
    assert guard._direction() == sign


def test_guard_refuses_to_guess_a_direction():
    from tfm_fuse.pruning.guard import AccuracyGuard

    guard = AccuracyGuard(max_drop=0.1, monitor="val_dice_thing")
    guard.reset(None)
    with pytest.raises(tfm_fuse.ConfigError, match="mode='max' or mode='min'"):
        guard.observe({"val_dice_thing": 0.5}, 0, reference=True, penalty=0.0)


def test_reference_from_first_epochs_holds_pruning():
    x, y = toy_data()
    model = _masked()
    cb = callbacks.FuPruner(max_drop=0.5, reference_epochs=2)
    hist = model.fit(x, y, epochs=6, batch_size=32, verbose=0, validation_data=(x, y),
                     callbacks=[cb])
    assert hist.history["prune_rate"][:2] == [0.0, 0.0]
    assert cb.guard.reference == max(hist.history["val_accuracy"][:2])
    assert hist.history["prune_rate"][-1] > 0
    # the guard's ramp is quadratic (after its reference epochs), the plain one cubic
    assert cb._schedule.power == 2.0 and (cb._schedule.begin_step, cb._schedule.end_step) == (4, 8)


def test_guard_reference_survives_save_and_load(tmp_path):
    x, y = toy_data()
    model = _masked()
    stop = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", epoch == 2))
    hist = model.fit(x, y, epochs=8, batch_size=16, verbose=0, validation_data=(x, y),
                     callbacks=[callbacks.FuPruner(max_drop=0.5), stop])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert read_options(loaded).reference == hist.history["val_accuracy"][0]
    cb = callbacks.FuPruner(max_drop=0.5)
    loaded.fit(x, y, epochs=8, initial_epoch=3, batch_size=16, verbose=0,
               validation_data=(x, y), callbacks=[cb])
    assert cb.guard.reference == hist.history["val_accuracy"][0] and cb.guard.last is not None


def test_one_instance_serves_two_fits():
    x, y = toy_data()
    cb = callbacks.FuPruner(Constant(0.5), max_drop=0.0, baseline=1.0, monitor="accuracy")
    for _ in range(2):
        model = _masked()
        hist = _quiet_fit(model, x, y, epochs=1, batch_size=32, verbose=0, callbacks=[cb])
        assert hist.history["prune_backoff"] == pytest.approx([0.05])
        assert cb.step == 2


@pytest.mark.parametrize("kwargs, match", [
    ({"schedule": 1.2}, "schedule"),
    ({"schedule": -0.1}, "schedule"),
    ({"schedule": "fast"}, "Unknown schedule"),
    ({"criterion": "taylor"}, "Unknown criterion"),
    ({"scope": "block"}, "Unknown scope"),
    ({"update_freq": 0}, "update_freq"),
    ({"update_freq": "batch"}, "update_freq"),
    ({"max_drop": -0.01}, "max_drop"),
    ({"max_drop": float("nan")}, "max_drop"),
    ({"max_drop": 0.01, "mode": "up"}, "mode"),
    ({"align": 3.5}, "align"),
    ({"max_drop": 0.01, "backoff": 0}, "backoff"),
    ({"max_group_rate": "0.5"}, "max_group_rate"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(tfm_fuse.ConfigError, match=match):
        callbacks.FuPruner(**kwargs)


def test_numpy_numbers_are_numbers():
    cb = callbacks.FuPruner(np.float32(0.4), align=np.int64(8), update_freq=np.int64(5))
    assert cb.final == pytest.approx(0.4) and cb.align == 8 and cb.update_freq == 5


def test_schedule_ending_before_start():
    with pytest.raises(tfm_fuse.ConfigError, match="ends before it starts"):
        callbacks.FuPruner(PolynomialDecay(0.0, 0.5, begin_step=100, end_step=50))


def test_accuracy_requirement_without_validation_data_fails_before_pruning():
    x, y = toy_data()
    model = _masked()
    with pytest.raises(tfm_fuse.ConfigError, match="no validation metric"):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[callbacks.FuPruner(max_drop=0.01)])
    assert all((m == 1).all() for m in _masks(model).values())  # nothing was pruned
    model.fit(x, y, epochs=3, verbose=0, validation_split=0.25,  # a split counts as validation
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


class _Opaque(keras.layers.Layer):
    """A layer the analysis does not know (pinned under allow_unknown)."""

    def call(self, x):
        return x * 2.0


def test_allow_unknown_carries_through_fupruner_strip_and_rate_for_macs():
    from tfm_fuse.pruning.updater import rate_for_macs

    L = keras.layers
    inp = keras.Input((8, 8, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(inp)))
    x = L.Conv2D(8, 3, padding="same")(_Opaque(name="opaque")(x))
    model = keras.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(L.Conv2D(8, 3)(x))))
    with pytest.warns(UserWarning, match="opaque"):
        masked = tfm_fuse.prune(model, method="fupruner", allow_unknown=True)
        masked.compile(optimizer="adam",
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 8, 8, 3)).astype("float32")
        masked.fit(x, rng.integers(0, 3, 64), epochs=3, batch_size=16, verbose=0,
                   validation_split=0.25, callbacks=[callbacks.FuPruner()])
        small = tfm_fuse.strip(masked)
        assert 0 < rate_for_macs(model, 0.3, allow_unknown=True) < 1
    np.testing.assert_allclose(small(x[:4]), masked(x[:4]), atol=1e-5)
    assert tfm_fuse.profile(small).macs < 0.7 * tfm_fuse.profile(model).macs


def test_progress_bar_entries_are_few_and_counts_are_integers():
    """One FuPruner entry per batch (the budget's own cost), fractions per epoch, counts only
    as integers in `FuPruner.stats`."""
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(sorted(k for k in logs if k.startswith("prune_")))

    x, y = toy_data()
    pruner = callbacks.FuPruner(update_freq=1)
    hist = _quiet_fit(_masked(macs=0.5), x, y, epochs=2, batch_size=16, verbose=0,
                      callbacks=[pruner, Spy()])
    assert seen and all(keys == ["prune_macs_removed"] for keys in seen)
    epoch_keys = sorted(k for k in hist.history if k.startswith("prune_"))
    assert epoch_keys == ["prune_backoff", "prune_macs_removed", "prune_memory_removed",
                          "prune_params_removed", "prune_rate", "prune_target"]
    assert all(isinstance(pruner.stats[k], int) for k in ("prune_macs", "prune_params"))
