"""The board-side runner shipped with every Edge TPU artefact: Python 3.7 syntax, only what a
Coral board has, and a real run in tflite-runtime 2.14 on Python 3.10 (the oldest here)."""

import ast
import os
import re
import subprocess
from pathlib import Path

import pytest

from tfm_fuse.converters import coral_board_runner, edgetpu
from tfm_fuse.converters._ov_legacy import _clean_env, _env, python310_available

SOURCE = Path(coral_board_runner.__file__).read_text()
VENV = Path(os.environ.get("TFM_FUSE_TFLITE_RUNTIME_VENV",
                           Path.home() / ".cache" / "tfm_fuse" / "tflite_runtime310"))
PACKAGES = ["tflite-runtime==2.14.0", "numpy==1.24.4"]


def test_runner_is_python37_and_imports_only_what_the_board_has():
    tree = ast.parse(SOURCE, feature_version=(3, 7))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"argparse", "os", "sys", "time", "numpy", "pycoral", "tflite_runtime"}


def _venv_python() -> Path:
    python = VENV / "bin" / "python"
    if (VENV / ".complete").exists():
        return python
    for cmd in (["python3.10", "-m", "venv", "--clear", str(VENV)],
                [str(python), "-m", "pip", "install", "-q", *PACKAGES]):
        proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
    (VENV / ".complete").write_text(" ".join(PACKAGES))
    return python


@pytest.mark.slow
@pytest.mark.skipif(not python310_available(), reason="needs python3.10 (pyenv 3.10.13)")
def test_runner_reproduces_this_machines_outputs_in_tflite_runtime(tmp_path, tiny_model,
                                                                    tiny_data):
    out = tmp_path / "edgetpu"
    report = edgetpu.convert(tiny_model, out, representative_data=tiny_data[:48],
                             validation_data=tiny_data[48:])
    assert report.artefacts["board_runner"] == str(out / "run_on_coral.py")
    assert any("run_on_coral.py model_int8_edgetpu.tflite" in s for s in report.next_steps)
    proc = subprocess.run([str(_venv_python()), "run_on_coral.py", "model_int8.tflite", "--cpu",
                           "--out", str(tmp_path / "y.npy")], cwd=out, env=_clean_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "ran 8 input(s) on the CPU" in proc.stdout, proc.stdout
    # tflite-runtime's reference int8 kernels round at most one step away from LiteRT's XNNPACK
    assert re.search(r"top-1 agreement 100.0%, largest difference [01] output quantization "
                     r"step", proc.stdout), proc.stdout
