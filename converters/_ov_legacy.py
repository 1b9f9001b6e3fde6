"""Old OpenVINO releases in their own venvs: 2022.3.2 (the last with the NCS2's MYRIAD plugin)
runs an IR; 2021.4.2 (the last Model Optimizer writing IR v10, the format of 2020.3 LTS — the
first NCS's last release) writes and runs IR v10 (`ir10_from_onnx`, `run_ir10`, Python 3.9).

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

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfm_fuse.converters._source import in_keras_order, single_or_list
from tfm_fuse.errors import ConversionError

OV_VERSION = "2022.3.2"
PACKAGES = [f"openvino=={OV_VERSION}", "numpy==1.24.4"]
PYENV_VERSION = "3.10.13"
VENV_DIR = Path(os.environ.get("TFM_FUSE_OV2022_VENV",
                               Path.home() / ".cache" / "tfm_fuse" / "ov2022"))


@dataclass(frozen=True)
class Release:
    """An old OpenVINO release in its own venv: what Python it needs and what to install."""

    version: str
    python: str          # pyenv version, e.g. "3.10.13"
    packages: tuple[str, ...]
    venv: Path

    @property
    def executable(self) -> str:
        return "python" + self.python.rsplit(".", 1)[0]  # python3.10


OV2022 = Release(OV_VERSION, PYENV_VERSION, tuple(PACKAGES), VENV_DIR)
# The last Model Optimizer that writes IR v10, the format of OpenVINO 2020.3 LTS — the last
# release for the first Neural Compute Stick (Myriad 2; dropped in 2020.4).
OV2021 = Release("2021.4.2", "3.9.18", ("openvino-dev[onnx]==2021.4.2",),
                 Path(os.environ.get("TFM_FUSE_OV2021_VENV",
                                     Path.home() / ".cache" / "tfm_fuse" / "ov2021")))

# Both scripts read x.npz — "x" for one input, "x_<input name>" for several — and write every
# output as "y_<output name>"; the caller orders them as the Keras model's (`_outputs_in`).
_FEEDS = """
data = np.load(sys.argv[2])
def feeds(names):
    if "x" in data:
        return [data["x"]]
    keys = [n.split(":")[0].replace("serving_default_", "", 1) for n in names]
    return [data["x_" + k] for k in keys]
"""

_SCRIPT = """
import sys, numpy as np
from openvino.runtime import Core, get_version
""" + _FEEDS + """
core = Core()
model = core.read_model(sys.argv[1])
try:  # CPUs with AVX512_BF16 otherwise infer in bf16
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
except Exception:
    compiled = core.compile_model(model, "CPU")
x = feeds([i.get_any_name() for i in compiled.inputs])
runs = [compiled([a[i:i + 1] for a in x]) for i in range(len(x[0]))]
outs = {"y_" + o.get_any_name(): np.concatenate([r[o] for r in runs], axis=0)
        for o in compiled.outputs}
np.savez(sys.argv[3], version=np.array(get_version()), **outs)
"""

_SCRIPT_2021 = """
import sys, numpy as np
from openvino.inference_engine import IECore, get_version
""" + _FEEDS + """
ie = IECore()
net = ie.read_network(sys.argv[1], sys.argv[1][:-4] + ".bin")
compiled = ie.load_network(net, "CPU")
names = list(net.input_info)
x = feeds(names)
runs = [compiled.infer({n: a[i:i + 1] for n, a in zip(names, x)}) for i in range(len(x[0]))]
outs = {"y_" + k: np.concatenate([r[k] for r in runs], axis=0) for k in net.outputs}
np.savez(sys.argv[3], version=np.array(get_version()), **outs)
"""


@dataclass
class LegacyResult:
    """Outcome of running an IR in an old OpenVINO: outputs, or the runtime's error."""

    ok: bool
    outputs: np.ndarray | None = None
    version: str = ""
    error: str = ""


def _env(release: Release = OV2022) -> dict[str, str]:
    # A pyenv shim resolves python3.10 through PYENV_VERSION, which the calling 3.11
    # process may have set to its own version.
    override = os.environ.get("TFM_FUSE_PY310") if release is OV2022 else None
    return {**os.environ, "PYENV_VERSION": override or release.python}


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "PYTHONNOUSERSITE": "1"}


def python_available(release: Release) -> bool:
    """True when the release's Python runs (pyenv's version selected)."""
    if shutil.which(release.executable) is None:
        return False
    try:
        proc = subprocess.run([release.executable, "--version"], env=_env(release),
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and proc.stdout.startswith(f"Python {release.python[:4]}")


def python310_available() -> bool:
    """True when `python3.10 --version` runs (with pyenv's 3.10.13 selected)."""
    return python_available(OV2022)


@contextlib.contextmanager
def _venv_lock(venv: Path):
    """Holds an exclusive lock on `<venv>.lock` so that two processes (pytest-xdist workers,
    two conversions) never build, or wipe, the same venv at once: the second waits, then
    finds the venv complete."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_venv(venv: Path = VENV_DIR, release: Release = OV2022) -> Path:
    """Creates (once) the venv with the release's packages; returns its python executable.
    Safe to call from several processes at once (one builds, the others wait).

    Raises:
        ConversionError: the release's Python is missing or pip could not install it.
    """
    python = venv / "bin" / "python"
    marker = venv / ".tfm_fuse_complete"
    if marker.exists() and python.exists():
        return python
    if not python_available(release):
        raise ConversionError(f"OpenVINO {release.version} needs Python {release.python[:4]}: "
                              f"`{release.executable}` (PYENV_VERSION={release.python}) was not "
                              f"found. Install it, e.g. pyenv install {release.python}.")
    with _venv_lock(venv):
        if marker.exists() and python.exists():  # built by another process while we waited
            return python
        shutil.rmtree(venv, ignore_errors=True)
        steps = [[release.executable, "-m", "venv", str(venv)],
                 [str(python), "-m", "pip", "install", "-q", *release.packages]]
        for cmd in steps:
            proc = subprocess.run(cmd, env=_env(release), capture_output=True, text=True,
                                  timeout=900)
            if proc.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise ConversionError(f"Creating the OpenVINO {release.version} venv at "
                                      f"'{venv}' failed at `{' '.join(cmd)}`: "
                                      f"{proc.stderr.strip()[-500:]}")
        marker.write_text(" ".join(release.packages) + "\n")
    return python


def _last_lines(text: str, n: int = 3, prefer: str | None = "ERROR") -> str:
    """The tool's last `n` lines that say `prefer`, else its last `n` non-empty lines: never an
    empty reason where the tool printed anything (a crash before the tool's own logging prints
    only a traceback)."""
    lines = [l for l in text.splitlines() if l.strip()]
    preferred = [l for l in lines if prefer and prefer in l]
    return " ".join((preferred or lines)[-n:])[-600:]


def _run_script(python: Path, script_text: str, xml, x, output_names=None) -> LegacyResult:
    """Runs `script_text` on the IR `xml` and the samples `x` (one array or a dict by input
    name); the outputs in `output_names`' order (`None`: the Keras order of the names the
    runtime gives them, as `_source.keras_order` reads a serving signature's)."""
    with tempfile.TemporaryDirectory(prefix="tfm_fuse_ov_") as tmp:
        arrays = ({f"x_{name}": a for name, a in x.items()} if isinstance(x, dict)
                  else {"x": x})
        np.savez(Path(tmp) / "x.npz", **{k: np.asarray(a, dtype=np.float32)
                                         for k, a in arrays.items()})
        script = Path(tmp) / "run.py"
        script.write_text(script_text)
        proc = subprocess.run([str(python), str(script), str(xml), str(Path(tmp) / "x.npz"),
                               str(Path(tmp) / "y.npz")], capture_output=True, text=True,
                              timeout=600, env=_clean_env())
        if proc.returncode != 0:
            return LegacyResult(ok=False, error=_last_lines(proc.stderr, prefer=None) or
                                f"exit {proc.returncode}, no output")
        data = dict(np.load(Path(tmp) / "y.npz"))
    found = {k[2:]: v for k, v in data.items() if k.startswith("y_")}
    return LegacyResult(ok=True, outputs=_outputs_in(found, output_names),
                        version=str(data["version"]))


def _outputs_in(found: dict[str, np.ndarray], output_names: list[str] | None):
    """One array, or a list: in `output_names`' order when the runtime kept those names,
    else in the Keras order of its own names."""
    if output_names is not None and all(n in found for n in output_names):
        return single_or_list([found[n] for n in output_names])
    return single_or_list(in_keras_order(found))


def run_ir_2022(xml: str | os.PathLike, x, venv: Path = VENV_DIR) -> LegacyResult:
    """Reads, compiles (CPU) and runs an IR in OpenVINO 2022.3.2 on `x`, batch 1.

    Returns:
        A `LegacyResult`; `ok=False` with the runtime's message when it cannot load the IR.

    Raises:
        ConversionError: the venv cannot be created.
    """
    python = ensure_venv(venv)
    return _run_script(python, _SCRIPT, xml, x)


def ir10_from_onnx(onnx_path: Path, out_dir: Path, name: str = "model") -> Path:
    """IR v10 (FP16, static shape folded) written by OpenVINO 2021.4.2's Model Optimizer.

    Raises:
        ConversionError: Python 3.9 or the venv is missing, or the Model Optimizer failed.
    """
    python = ensure_venv(OV2021.venv, OV2021)
    cmd = [str(python.parent / "mo"), "--input_model", str(onnx_path), "--data_type", "FP16",
           "--static_shape", "--output_dir", str(out_dir), "--model_name", name]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_clean_env())
    xml = out_dir / f"{name}.xml"
    if proc.returncode != 0 or not xml.exists():
        raise ConversionError(f"OpenVINO {OV2021.version}'s Model Optimizer failed on "
                              f"'{onnx_path.name}' (exit {proc.returncode}): "
                              f"{_last_lines(proc.stdout + proc.stderr) or 'no output'}")
    (out_dir / f"{name}.mapping").unlink(missing_ok=True)
    return xml


def run_ir10(xml: Path, x, output_names: list[str]) -> LegacyResult:
    """Reads and runs an IR in OpenVINO 2021.4.2's Inference Engine (CPU): a real IR v10
    reader. `outputs` holds one array, or a list in `output_names`' order (the ONNX graph's,
    which is Keras's)."""
    python = ensure_venv(OV2021.venv, OV2021)
    return _run_script(python, _SCRIPT_2021, xml, x, output_names)
