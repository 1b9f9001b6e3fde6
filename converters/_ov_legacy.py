"""Run an IR in the real OpenVINO 2022.3.2 runtime (the LTS with the NCS2 plugin).

Its wheels exist for Python ≤ 3.10 and need numpy < 1.25, so they live in their own venv,
created once (cached) under `~/.cache/tfm_fuse/ov2022` from `python3.10` (pyenv's 3.10.13
when `PYENV_VERSION` selects it). The IR is read and compiled on the CPU plugin, which uses
the same IR reader as MYRIAD: an op it cannot read fails there as it would on an NCS2.

Example:
    >>> if python310_available():
    ...     result = run_ir_2022("out/openvino/model.xml", x_test[:8])
    ...     result.ok, result.version, result.outputs.shape
    (True, '2022.3.2-...', (8, 10))
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfm_fuse.errors import ConversionError

OV_VERSION = "2022.3.2"
PACKAGES = [f"openvino=={OV_VERSION}", "numpy==1.24.4"]
PYENV_VERSION = "3.10.13"
VENV_DIR = Path(os.environ.get("TFM_FUSE_OV2022_VENV",
                               Path.home() / ".cache" / "tfm_fuse" / "ov2022"))

_SCRIPT = """
import sys, numpy as np
from openvino.runtime import Core, get_version
core = Core()
model = core.read_model(sys.argv[1])
try:  # CPUs with AVX512_BF16 otherwise infer in bf16
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
except Exception:
    compiled = core.compile_model(model, "CPU")
x = np.load(sys.argv[2])["x"]
out = compiled.output(0)
y = np.concatenate([compiled([x[i:i + 1]])[out] for i in range(len(x))], axis=0)
np.savez(sys.argv[3], y=y, version=np.array(get_version()))
"""


@dataclass
class LegacyResult:
    """Outcome of running an IR in OpenVINO 2022.3.2: outputs, or the runtime's error."""

    ok: bool
    outputs: np.ndarray | None = None
    version: str = ""
    error: str = ""


def _env() -> dict[str, str]:
    # A pyenv shim resolves python3.10 through PYENV_VERSION, which the calling 3.11
    # process may have set to its own version.
    return {**os.environ, "PYENV_VERSION": os.environ.get("TFM_FUSE_PY310", PYENV_VERSION)}


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "PYTHONNOUSERSITE": "1"}


def python310_available() -> bool:
    """True when `python3.10 --version` runs (with pyenv's 3.10.13 selected)."""
    if shutil.which("python3.10") is None:
        return False
    try:
        proc = subprocess.run(["python3.10", "--version"], env=_env(), capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and proc.stdout.startswith("Python 3.10")


def ensure_venv(venv: Path = VENV_DIR) -> Path:
    """Creates (once) the venv with OpenVINO 2022.3.2; returns its python executable.

    Raises:
        ConversionError: python3.10 is missing or pip could not install the packages.
    """
    python = venv / "bin" / "python"
    marker = venv / ".tfm_fuse_complete"
    if marker.exists() and python.exists():
        return python
    if not python310_available():
        raise ConversionError("OpenVINO 2022.3.2 needs Python 3.10: `python3.10` (PYENV_VERSION="
                              f"{PYENV_VERSION}) was not found. Install it, e.g. pyenv install "
                              f"{PYENV_VERSION}.")
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [["python3.10", "-m", "venv", str(venv)],
             [str(python), "-m", "pip", "install", "-q", *PACKAGES]]
    for cmd in steps:
        proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise ConversionError(f"Creating the OpenVINO {OV_VERSION} venv at '{venv}' failed "
                                  f"at `{' '.join(cmd)}`: {proc.stderr.strip()[-500:]}")
    marker.write_text(" ".join(PACKAGES) + "\n")
    return python


def run_ir_2022(xml: str | os.PathLike, x: np.ndarray, venv: Path = VENV_DIR) -> LegacyResult:
    """Reads, compiles (CPU) and runs an IR in OpenVINO 2022.3.2 on `x`, batch 1.

    Returns:
        A `LegacyResult`; `ok=False` with the runtime's message when it cannot load the IR.

    Raises:
        ConversionError: the venv cannot be created.
    """
    python = ensure_venv(venv)
    with tempfile.TemporaryDirectory(prefix="tfm_fuse_ov2022_") as tmp:
        np.savez(Path(tmp) / "x.npz", x=np.asarray(x, dtype=np.float32))
        script = Path(tmp) / "run.py"
        script.write_text(_SCRIPT)
        proc = subprocess.run([str(python), str(script), str(xml), str(Path(tmp) / "x.npz"),
                               str(Path(tmp) / "y.npz")], capture_output=True, text=True,
                              timeout=600, env=_clean_env())
        if proc.returncode != 0:
            lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
            return LegacyResult(ok=False, error=" ".join(lines[-3:])[-600:])
        data = np.load(Path(tmp) / "y.npz")
        return LegacyResult(ok=True, outputs=data["y"], version=str(data["version"]))
