"""The board-side runner shipped with every Edge TPU artefact: Python 3.7 syntax, only what a
Coral board has, and a real run in tflite-runtime 2.11 on Python 3.7 (the oldest Python here
with a tflite-runtime wheel; 2.14 on 3.10 where 3.7 is missing)."""

import ast
import os
import re
import subprocess
from pathlib import Path

import pytest

from tfm_fuse.converters import coral_board_runner, edgetpu
from tfm_fuse.converters._ov_legacy import Release, _clean_env, ensure_venv, python_available

SOURCE = Path(coral_board_runner.__file__).read_text()
CACHE = Path(os.environ.get("TFM_FUSE_CACHE", Path.home() / ".cache" / "tfm_fuse"))
# the oldest Python here with a tflite-runtime wheel first (Mendel and Raspberry Pi OS: 3.7);
# a venv per Python, made by the same helper as the old OpenVINO releases'
PYTHONS = [Release("tflite-runtime 2.11", "3.7.16", ("tflite-runtime==2.11.0", "numpy==1.21.6"),
                   CACHE / "tflite_runtime_py3.7.16"),
           Release("tflite-runtime 2.14", "3.10.13", ("tflite-runtime==2.14.0", "numpy==1.24.4"),
                   CACHE / "tflite_runtime_py3.10.13")]
BOARD_PYTHON = next((r for r in PYTHONS if python_available(r)), None)


def test_runner_is_python37_and_imports_only_what_the_board_has():
    tree = ast.parse(SOURCE, feature_version=(3, 7))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"argparse", "os", "sys", "time", "numpy", "pycoral", "tflite_runtime"}


def _venv_python() -> Path:
    return ensure_venv(BOARD_PYTHON.venv, BOARD_PYTHON)


@pytest.mark.slow
@pytest.mark.skipif(BOARD_PYTHON is None, reason="needs pyenv's python3.7 or python3.10")
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
