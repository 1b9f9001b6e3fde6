"""The scripts in `examples/` run end to end with `--quick` and leave the artefacts they promise."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, cwd: Path, *args: str) -> str:
    """Runs `examples/<name>` with `--quick` in `cwd`; returns stdout, fails with its output."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), "--quick", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc.stdout


def load_and_check(path: Path, n_params: int | None = None):
    import keras

    import tfm_fuse  # noqa: F401  (registers the custom objects)

    model = keras.models.load_model(path)
    assert model.output_shape == (None, 10)
    if n_params is not None:
        assert model.count_params() < n_params
    return model


@pytest.mark.slow
def test_fupruner_fit(tmp_path):
    out = run_example("fupruner_fit.py", tmp_path, "--out", "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["macs_removed"] > 0 and summary["params_removed"] > 0
    # strip is exact: the physically smaller model scores what the masked one did
    assert summary["accuracy_stripped"] == pytest.approx(summary["accuracy_masked"], abs=1e-6)
    assert "removed: params" in out
    log = (tmp_path / "out" / "training.csv").read_text().splitlines()
    assert len(log) == 1 + 3 and "prune_macs_removed" in log[0]
    load_and_check(tmp_path / "out" / "pruned.keras", n_params=78_426)


@pytest.mark.slow
def test_complexity_pruning(tmp_path):
    out = run_example("complexity_pruning.py", tmp_path, "--out", "out", "--mode", "FA")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["macs_removed"] >= 0.5  # FA reaches its target on MACs
    assert summary["params_removed"] > 0 and summary["activation_bytes_removed"] > 0
    assert 0.0 <= summary["accuracy"] <= 1.0
    assert "mode FA, target 50%: removed params" in out
    load_and_check(tmp_path / "out" / "thin.keras", n_params=78_426)


@pytest.mark.slow
def test_convert_savedmodel(tmp_path):
    out = run_example("convert_savedmodel.py", tmp_path, "--out", "out")
    assert (tmp_path / "out" / "saved_model" / "saved_model.pb").exists()
    for target, artefact in [("edgetpu", "model_int8.tflite"), ("tensorrt", "model_int8_qdq.onnx"),
                             ("openvino", "model.xml"), ("onnx", "model.onnx")]:
        report = json.loads((tmp_path / "out" / target / "report.json").read_text())
        assert report["ok"] is True, (target, report["issues"])
        assert (tmp_path / "out" / target / artefact).exists()
        assert f"{target}: ok" in out


@pytest.mark.slow
def test_transfer_learning(tmp_path):
    """A nested backbone fine-tuned with FuPruner's defaults, stripped, and deployed for the
    Coral Edge TPU, a Jetson board and the NCS2, each report printed."""
    out = run_example("transfer_learning.py", tmp_path, "--out", "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["boards_ok"] == {"edgetpu": True, "jetson": True, "ncs2": True}, out
    for target in ("edgetpu", "jetson", "openvino"):
        assert f"tfm_fuse conversion report: {target} — OK" in out
        assert (tmp_path / "out" / "boards" / target / "report.json").exists()
    assert summary["nested_models_left"] == 0
    assert summary["strip_max_abs_difference"] < 1e-3
    assert 0.45 <= summary["macs_removed"] <= 0.55
    load_and_check(tmp_path / "out" / "pruned.keras")
