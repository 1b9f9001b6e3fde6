"""Faults: a full disk, a read-only destination, a kill between renames, corrupt files, bad
values. Each asserts the exact outcome: nothing lost (sha256 before and after), one clear line.

A real full disk is a 1 MiB tmpfs where this machine may mount one (root in a container);
elsewhere the same write fails by an injected `OSError(ENOSPC)`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import tfm_fuse
from tfm_fuse import files
from tfm_fuse.errors import ConfigError, OutputError, TfmFuseError

L = keras.layers


def _model(width=8, name="tiny"):
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(width, 3, padding="same", name="conv")(inputs)
    x = L.GlobalAveragePooling2D()(L.ReLU()(L.BatchNormalization(name="bn")(x)))
    return keras.Model(inputs, L.Dense(3, name="head")(x), name=name)


def _big_model():
    """About 600 KB saved: more than the 64 KiB file system of `full_disk` holds."""
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(256, 3, padding="same", name="wide")(L.Conv2D(64, 3, name="conv")(inputs))
    return keras.Model(inputs, L.Dense(3)(L.GlobalAveragePooling2D()(x)), name="big")


def _sha(path: Path) -> str:
    if path.is_dir():
        digest = hashlib.sha256()
        for p in sorted(path.rglob("*")):
            if p.is_file():
                digest.update(p.relative_to(path).as_posix().encode() + p.read_bytes())
        return digest.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A directory where writes beyond a few KiB fail with ENOSPC: a real 64 KiB tmpfs when
    mounting works, else `os.replace`/writes failing as a full disk would."""
    mount = tmp_path / "small_fs"
    mount.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                        capture_output=True).returncode == 0
    if not ok:
        real_save = keras.Model.save

        def failing_save(self, filepath, *args, **kwargs):
            if str(filepath).startswith(str(mount)):
                Path(filepath).write_bytes(b"PK\x03\x04 truncated")
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_save(self, filepath, *args, **kwargs)

        monkeypatch.setattr(keras.Model, "save", failing_save)
    yield mount
    if ok:
        subprocess.run(["umount", str(mount)], check=False)


def test_save_on_a_full_disk_keeps_the_previous_model(full_disk):
    path = full_disk / "small.keras"
    path.write_bytes(b"previous good model")  # fits; a real model does not
    before = _sha(path)
    with pytest.raises(OutputError, match=r"Cannot write .*small.keras.*no space left.*previous"):
        files.save_model(_big_model(), path, overwrite=True)
    assert _sha(path) == before
    assert sorted(p.name for p in full_disk.iterdir()) == ["small.keras"]  # no leftovers


def test_save_on_a_full_disk_leaves_nothing(full_disk):
    with pytest.raises(OutputError, match="nothing was left behind"):
        files.save_model(_big_model(), full_disk / "new.keras")
    assert list(full_disk.iterdir()) == []


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nobody may write into: a read-only tmpfs for root (which ignores permission
    bits), mode 0o555 otherwise."""
    target = tmp_path / "ro"
    if os.geteuid() != 0:
        target.mkdir(mode=0o555)
        yield target
        return
    target.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(target)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot make a read-only directory here (root without mount)")
    yield target
    subprocess.run(["umount", str(target)], check=False, capture_output=True)


def test_read_only_destination_is_one_clear_error(read_only_dir):
    with pytest.raises(OutputError, match="read-only|permission denied") as info:
        files.save_model(_model(), read_only_dir / "m.keras")
    assert info.value.errno in (errno.EROFS, errno.EACCES)
    assert isinstance(info.value, OSError)  # still catchable as the OS error it is


def test_overwrite_replaces_only_when_complete(tmp_path):
    path = tmp_path / "m.keras"
    files.save_model(_model(4), path)
    first = _sha(path)
    with pytest.raises(ConfigError, match="already exists"):
        files.save_model(_model(8), path)
    assert _sha(path) == first
    with pytest.raises(RuntimeError, match="boom"):
        with files.atomic_output(path, overwrite=True) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert _sha(path) == first and [p.name for p in tmp_path.iterdir()] == ["m.keras"]
    files.save_model(_model(8), path, overwrite=True)
    assert files.load_model(path).get_layer("conv").filters == 8


_KILL_BETWEEN_RENAMES = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from tfm_fuse import files
    real = os.replace
    calls = []
    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:          # the old directory is aside, the new one not yet in place
            os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst)
    os.replace = replace
    with files.atomic_output(sys.argv[1], overwrite=True, directory=True) as tmp:
        (tmp / "model.onnx").write_bytes(b"new")
""")


def test_kill_between_the_renames_is_recovered_on_the_next_run(tmp_path):
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"old good artefact")
    before = _sha(out)
    proc = subprocess.run([sys.executable, "-c", _KILL_BETWEEN_RENAMES, str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not out.exists()  # the kill landed between the renames: this is the fault
    leftovers = sorted(p.name.split("-")[0] for p in tmp_path.iterdir())
    assert leftovers == [".onnx.old", ".onnx.tmp"], leftovers
    with pytest.warns(UserWarning, match="restored"):
        done = files.recover(out)
    assert len(done) == 2  # restored, and the unfinished new one removed
    assert _sha(out) == before and [p.name for p in tmp_path.iterdir()] == ["onnx"]


def test_leftovers_of_a_live_writer_are_left_alone(tmp_path):
    out = tmp_path / "m.keras"
    busy = tmp_path / f".m.keras.tmp-{os.getppid()}-abc.keras"  # the parent process is alive
    busy.write_bytes(b"being written")
    assert files.recover(out) == [] and busy.exists()


@pytest.mark.parametrize("content, says", [
    (b"hello, I am text", "not a Keras model: a .keras file is a zip archive"),
    (None, "truncated"),
    ("corrupt", "Cannot load"),
    ("unregistered", "register_keras_serializable"),
])
def test_bad_keras_files_are_one_line(tmp_path, content, says):
    path = tmp_path / "m.keras"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        good = tmp_path / "good.keras"
        model = _model() if content != "unregistered" else _custom_model()
        model.save(good)
        data = good.read_bytes()
        if content is None:
            path.write_bytes(data[: len(data) // 2])
        elif content == "corrupt":
            with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
                for item in src.infolist():
                    body = src.read(item)
                    dst.writestr(item, b"{not json" if item.filename.endswith(".json") else body)
        else:
            path.write_bytes(data)
            keras.saving.get_custom_objects().pop("tfm_fuse_test>Doubler", None)
    with pytest.raises(TfmFuseError, match=says) as info:
        files.load_model(path)
    assert "\n" not in str(info.value)


def _custom_model():
    @keras.saving.register_keras_serializable(package="tfm_fuse_test")
    class Doubler(L.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((4,))
    return keras.Model(inputs, Doubler()(inputs))


@pytest.mark.parametrize("command", [["profile"], ["prune", "-o", "out.keras"],
                                     ["convert", "--target", "onnx", "--out", "out"]])
def test_cli_reads_every_bad_file_in_one_line(tmp_path, command):
    bad = tmp_path / "m.keras"
    bad.write_text("not a model")
    args = [command[0], str(bad), *command[1:]]
    proc = subprocess.run([sys.executable, "-m", "tfm_fuse.app.cli", *args], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "zip archive" in proc.stderr, proc.stderr


def test_destination_must_be_a_path():
    with pytest.raises(ConfigError, match="output path must be"):
        files.check_destination(None, overwrite=False)


@pytest.mark.parametrize("make", [lambda: np.float32(0.3), lambda: np.float64(0.3)])
def test_numpy_scalars_are_numbers(make):
    masked = tfm_fuse.prune(_model(8), method="l1", rate=make(), align=np.int64(2))
    assert masked is not None


@pytest.mark.parametrize("kwargs", [dict(rate=float("nan")), dict(macs=float("inf")),
                                    dict(rate=np.float32("nan"))])
def test_nan_options_are_refused(kwargs):
    with pytest.raises(ConfigError):
        tfm_fuse.prune(_model(8), method="l1", **kwargs)


def test_fupruner_options_refuse_nan_and_strings():
    from tfm_fuse import callbacks

    with pytest.raises(ConfigError):
        callbacks.FuPruner(max_drop=float("nan"))
    with pytest.raises(ConfigError):
        callbacks.FuPruner(max_group_rate="0.5")


class _StopAt(keras.callbacks.Callback):
    """Another user's callback failing at a given batch (after FuPruner's own batch end)."""

    def __init__(self, batch):
        super().__init__()
        self.at = batch

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.at:
            raise KeyboardInterrupt


def _fupruner_run():
    from tests.pruning.helpers import small_resnet, toy_data

    keras.utils.set_random_seed(0)
    model = tfm_fuse.prune(small_resnet(width=8), method="fupruner", rate=0.5)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    x, y = toy_data(128)
    return model, x, y


@pytest.mark.parametrize("how", ["interrupt", "checkpoint"])
def test_interrupted_fit_resumes_like_an_uninterrupted_one(tmp_path, how):
    """Stopped after batch 5 of 8 (a KeyboardInterrupt, or a ModelCheckpoint(save_freq=5)),
    saved, loaded, and fed the last 3 batches: the same step, masks and trained weights as one
    uninterrupted fit."""
    from tfm_fuse import callbacks
    from tfm_fuse.pruning.schedules import PolynomialDecay

    schedule = PolynomialDecay(0.0, 0.5, begin_step=1, end_step=7, power=1)
    reference, x, y = _fupruner_run()
    reference.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0,
                  callbacks=[callbacks.FuPruner(schedule, update_freq=1)])

    model, x, y = _fupruner_run()
    path = tmp_path / "stopped.keras"
    if how == "interrupt":
        with pytest.raises(KeyboardInterrupt):
            model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0,
                      callbacks=[callbacks.FuPruner(schedule, update_freq=1), _StopAt(4)])
        model.save(path)
    else:
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0,
                  callbacks=[callbacks.FuPruner(schedule, update_freq=1),
                             keras.callbacks.ModelCheckpoint(str(path), save_freq=5)])
    resumed = keras.models.load_model(path)
    resumed.fit(x[80:], y[80:], batch_size=16, epochs=1, shuffle=False, verbose=0,
                callbacks=[callbacks.FuPruner(update_freq=1)])  # options and schedule: saved

    def state(m):
        wrappers = [layer for layer in m.layers if isinstance(layer, tfm_fuse.PruneWrapper)]
        return ([int(w.pruning_step.numpy()) for w in wrappers],
                [keras.ops.convert_to_numpy(w.out_mask) for w in wrappers],
                [keras.ops.convert_to_numpy(v) for v in m.trainable_weights])

    (step_a, masks_a, weights_a), (step_b, masks_b, weights_b) = state(reference), state(resumed)
    assert step_a == step_b == [8] * len(step_a)
    for a, b in zip(masks_a, masks_b, strict=True):
        np.testing.assert_array_equal(a, b)
    assert sum(float((m == 0).sum()) for m in masks_a) > 0  # pruning happened: this can fail
    for a, b in zip(weights_a, weights_b, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_converter_destination_none_and_read_only(read_only_dir):
    from tfm_fuse.converters import onnx

    with pytest.raises(ConfigError, match="output path must be"):
        onnx.convert(_model(), None)
    with pytest.raises(OutputError, match=r"Cannot write .*ro/onnx.*(read-only|permission)"):
        onnx.convert(_model(), read_only_dir / "onnx")


def test_nan_inputs_to_a_converter_are_refused(tmp_path):
    from tfm_fuse.converters import onnx

    x = np.random.default_rng(0).normal(size=(8, 8, 8, 1)).astype("float32")
    x[3, 0, 0, 0] = np.nan
    with pytest.raises(ConfigError, match=r"NaN or infinite values \(samples \[3\]"):
        onnx.convert(_model(), tmp_path / "onnx", validation_data=x)
    assert not (tmp_path / "onnx").exists()


def test_a_report_with_a_nan_metric_is_never_ok():
    from tfm_fuse.converters.report import Report

    report = Report(target="onnx", ok=True, fidelity={"onnx_fp32": {"max_abs": float("nan"),
                                                                     "top1": np.float32(1.0)}})
    assert report.non_finite_metrics() == ["onnx_fp32.max_abs"]


@pytest.mark.parametrize("step", ["prune", "strip"])
def test_nan_weights_are_refused_naming_the_layer(step):
    model = _model(8)
    masked = tfm_fuse.prune(model, method="l1", rate=0.5)
    target = model if step == "prune" else masked
    layer = target.get_layer("conv" if step == "prune" else "pruned_conv")
    kernel = keras.ops.convert_to_numpy(getattr(layer, "layer", layer).kernel)
    kernel[0, 0, 0, 0] = np.nan
    getattr(layer, "layer", layer).kernel.assign(kernel)
    with pytest.raises(ConfigError, match=r"Layer 'conv': weight 'kernel' holds 1 NaN"):
        tfm_fuse.prune(model, method="l1", rate=0.5) if step == "prune" else tfm_fuse.strip(masked)


def test_a_failing_final_rename_restores_the_previous_directory(tmp_path, monkeypatch):
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"old good artefact")
    before = _sha(out)
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the new directory's move into place
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputError, match=r"onnx.*input/output error.*previous one is unchanged"):
        with files.atomic_output(out, overwrite=True, directory=True) as tmp:
            (tmp / "model.onnx").write_bytes(b"new")
    assert _sha(out) == before and [p.name for p in tmp_path.iterdir()] == ["onnx"]


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_a_full_disk_while_a_tool_writes_keeps_the_previous_artefact(full_disk, monkeypatch,
                                                                       target):
    """The disk fills inside tf2onnx's or TensorFlow's own write (a native `OpError` for the
    SavedModel): one `OutputError` naming the destination, not a "conversion failed"."""
    from tfm_fuse import converters

    out = full_disk / target
    out.mkdir()
    (out / "artefact").write_bytes(b"previous good artefact")
    before = _sha(out)
    if not os.path.ismount(full_disk):  # no real small file system: the tool's write fails
        import tensorflow as tf

        def no_space(*args, **kwargs):
            raise tf.errors.ResourceExhaustedError(
                None, None, f"{full_disk}/x/part-00000; No space left on device [Op:SaveV2]")

        monkeypatch.setattr(converters._source.Source, "export_saved_model", no_space)
        monkeypatch.setattr(converters.onnx, "export_onnx", no_space)
    convert = getattr(converters, target).convert
    with pytest.raises(OutputError, match=rf"Cannot write .*{target}.*no space left.*previous"):
        convert(_big_model(), out, overwrite=True)
    assert _sha(out) == before
    assert sorted(p.name for p in full_disk.iterdir()) == [target]  # no leftovers
    reports = converters.convert_all(_big_model(), full_disk / "all", targets=["onnx"])
    assert not reports["onnx"].ok and "no space left" in reports["onnx"].issues[0]
    assert sorted(p.name for p in full_disk.iterdir()) == [target]


def test_a_tool_failure_that_is_not_the_disk_stays_a_conversion_error():
    assert files.as_storage_error(RuntimeError("Unsupported op: Foo")) is None
    assert files.as_storage_error(OSError(errno.ENOENT, "No such file")) is None
    assert files.as_storage_error(OSError(errno.ENOSPC, "full")).errno == errno.ENOSPC
