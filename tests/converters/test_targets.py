"""The targets table is the one place a target is described: convert_all, the CLI and the
latency benchmark read it."""

import keras
import numpy as np

from tfm_fuse.converters import TARGETS, Report, all as convert_module
from tfm_fuse.converters.targets import TARGETS as TABLE, Target


def test_every_reader_lists_the_tables_targets():
    from tfm_fuse.app import cli

    assert TARGETS == tuple(TABLE) == ("edgetpu", "jetson", "openvino", "onnx")
    parser = cli.build_parser()
    convert = next(a for a in parser._subparsers._group_actions[0].choices["convert"]._actions
                   if a.dest == "target")
    assert list(convert.choices) == [*TABLE, "all"]
    assert all(TABLE[name].name == name for name in TABLE)


def test_convert_all_converts_a_target_added_to_the_table(tmp_path, monkeypatch):
    calls = []

    def fake_convert(model, out_dir, *, validation_data, min_top1):
        calls.append((model.name, out_dir.name, validation_data.shape, min_top1))
        return Report(target="fake", ok=True)

    table = {**TABLE, "fake": Target("fake", "a board", fake_convert,
                                     {"validation_data": "validation_data",
                                      "min_top1": "min_top1"}, int8=False, timed=None)}
    monkeypatch.setattr(convert_module, "TARGET_TABLE", table)
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Flatten()(inputs), name="m")
    x = np.zeros((3, 4, 4, 1), "float32")
    reports = convert_module.convert_all(model, tmp_path, targets=("fake",), validation_data=x,
                                         min_top1=0.5)
    assert reports["fake"].ok and calls == [("m", "fake", (3, 4, 4, 1), 0.5)]


def test_calibration_needs_follow_the_board():
    assert TABLE["edgetpu"].needs_calibration() and not TABLE["onnx"].needs_calibration()
    assert TABLE["jetson"].needs_calibration(jetson_board="jetson-orin")
    assert not TABLE["jetson"].needs_calibration(jetson_board="jetson-tx2")
    timed = {t.timed[0] for t in TABLE.values() if t.timed}
    assert timed == {"litert_int8", "openvino_cpu", "onnxruntime"}
