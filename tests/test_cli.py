"""The `tfm-fuse` command: real models in, clear one-line errors and exit codes on bad input."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

import tfm_fuse


def run(*args, cwd):
    """Run the installed `tfm-fuse` command; returns (exit code, stdout, stderr)."""
    exe = [sys.executable, "-c", "import sys; sys.argv[0] = 'tfm-fuse'; "
           "from tfm_fuse.app.cli import main; sys.exit(main())", *args]
    p = subprocess.run(exe, cwd=cwd, capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    model = tfm_fuse.app.models.residual_cnn(input_shape=(16, 16, 1), widths=(8, 16))
    tfm_fuse.app.models.randomize_weights(model)
    model.save(folder / "m.keras")
    np.save(folder / "calib.npy", np.random.default_rng(0).uniform(size=(16, 16, 16, 1))
            .astype("float32"))
    return folder


def test_profile_prints_table_and_json(model_file):
    code, out, err = run("profile", "m.keras", cwd=model_file)
    assert code == 0, err
    assert "total" in out and "stem_conv" in out
    code, out, _ = run("profile", "m.keras", "--json", cwd=model_file)
    expected = tfm_fuse.profile(keras.models.load_model(model_file / "m.keras"))
    assert json.loads(out)["macs"] == expected.macs


def test_prune_writes_smaller_equivalent_model(model_file):
    code, out, err = run("prune", "m.keras", "-o", "small.keras", "--rate", "0.5", "--align", "4",
                         cwd=model_file)
    assert code == 0, err
    small = keras.models.load_model(model_file / "small.keras")
    before = tfm_fuse.profile(keras.models.load_model(model_file / "m.keras"))
    assert tfm_fuse.profile(small).macs < before.macs
    assert "MACs" in out
    code, _, err = run("prune", "m.keras", "-o", "small.keras", cwd=model_file)
    assert code == 1 and "exists" in err


@pytest.mark.slow
def test_convert_and_bench(model_file):
    code, out, err = run("convert", "m.keras", "--target", "onnx", "--out", "onnx_out",
                         cwd=model_file)
    assert code == 0, err
    report = json.loads((model_file / "onnx_out" / "onnx" / "report.json").read_text())
    assert report["ok"] is True
    code, out, err = run("bench", "m.keras", "small.keras" if (model_file / "small.keras").exists()
                         else "m.keras", "--runtimes", "onnxruntime", "litert_fp32", "--runs", "20",
                         cwd=model_file)
    assert code == 0, err
    rows = [line.split() for line in out.splitlines() if line.startswith(("0:m", "1:"))]
    assert len(rows) == 2, out  # the baseline and the second model, each with its own ratios
    ratios = [[cell for cell in row if cell.endswith("x")] for row in rows]
    assert ratios[0] == ["1.00x", "1.00x"], out  # the baseline against itself
    assert len(ratios[1]) == 2 and all(float(r[:-1]) > 0 for r in ratios[1]), out


@pytest.mark.parametrize("args,needle", [
    (("profile", "missing.keras"), "No such file"),
    (("profile", "notamodel.keras"), "not a Keras model"),
    (("profile", "calib.npy"), "not a Keras model file"),
    (("convert", "missing.keras", "--target", "onnx", "--out", "o"), "No such file"),
])
def test_bad_input_is_one_line_and_exit_1(model_file, args, needle):
    (model_file / "notamodel.keras").write_text("not a zip")
    code, out, err = run(*args, cwd=model_file)
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
    assert not (model_file / "o").exists()


_SUBCLASSED = """
import keras


@keras.saving.register_keras_serializable(package="cli_test")
class Sub(keras.Model):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.conv = keras.layers.Conv2D(4, 3)

    def call(self, x):
        return self.conv(x)
"""


def test_subclassed_model_file_is_refused(model_file):
    """The class is importable in the CLI's process (so loading succeeds): the refusal is the
    analysis's, naming the model, in one line."""
    (model_file / "cli_sub.py").write_text(_SUBCLASSED)
    sys.path.insert(0, str(model_file))
    try:
        from cli_sub import Sub
    finally:
        sys.path.remove(str(model_file))
    m = Sub()
    m(np.zeros((1, 8, 8, 1), "float32"))
    m.save(model_file / "sub.keras")
    exe = [sys.executable, "-c", "import sys; from tfm_fuse._quiet import quiet_native_logs\n"
           "with quiet_native_logs(): import cli_sub\n"
           "from tfm_fuse.app.cli import main; sys.exit(main())", "profile", "sub.keras"]
    p = subprocess.run(exe, cwd=model_file, capture_output=True, text=True, timeout=600)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 1 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "is a subclassed keras.Model (Sub)" in lines[0], lines[0]


def test_unknown_target_is_usage_error(model_file):
    code, _, err = run("convert", "m.keras", "--target", "tpu", "--out", "o", cwd=model_file)
    assert code == 2 and "invalid choice: 'tpu'" in err


@pytest.mark.parametrize("args,needle", [
    (("convert", "m.keras", "--target", "edgetpu", "--out", "o"), "needs --calibration"),
    (("prune", "m.keras", "-o", "x.keras", "--rate", "1.5"), "--rate: must be in [0, 1)"),
    (("bench", "m.keras", "--runs", "-3"), "--runs: must be at least 1"),
    (("profile", "m.keras", "--jsn"), "unrecognized arguments: --jsn"),
    (("demo", "--n-train", "20000"), "--n-train is at most 8000"),
    (("demo", "--epochs", "1"), "--epochs must be at least 2"),
    (("convert", "m.keras", "--target", "onnx", "--out", "o", "--min-top1", "2"),
     "--min-top1: must be in [0, 1]"),
])
def test_bad_usage_is_exit_2_with_the_commands_usage(model_file, args, needle):
    code, _, err = run(*args, cwd=model_file)
    assert code == 2, err
    assert f"usage: tfm-fuse {args[0]}" in err and needle in err and "Traceback" not in err, err
    assert not (model_file / "o").exists() and not (model_file / "x.keras").exists()


def test_hints_name_flags_not_python_arguments(model_file):
    (model_file / "taken").mkdir(exist_ok=True)
    (model_file / "taken" / "onnx").mkdir(exist_ok=True)
    code, _, err = run("convert", "m.keras", "--target", "onnx", "--out", "taken", cwd=model_file)
    assert code == 1 and "--overwrite" in err and "overwrite=True" not in err, err
    from tfm_fuse.app.cli import in_cli_terms

    assert in_cli_terms("failed (pass keep_failed=True to keep it)") == \
        "failed (pass --keep-failed to keep it)"
    assert "--min-top1 0" in in_cli_terms("pass min_top1=None to only report it")


def test_demo_refuses_to_replace_results_without_overwrite(tmp_path):
    (tmp_path / "tfm_fuse_demo").mkdir()
    (tmp_path / "tfm_fuse_demo" / "results.json").write_text("{}")
    code, _, err = run("demo", "--epochs", "2", cwd=tmp_path)
    assert code == 1 and "pass --overwrite" in err, err
    assert (tmp_path / "tfm_fuse_demo" / "results.json").read_text() == "{}"
