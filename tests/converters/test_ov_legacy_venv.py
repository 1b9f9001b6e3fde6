"""The old OpenVINO releases' venvs are built once even when two processes (pytest-xdist
workers, two conversions) ask for one at the same moment: the second waits for the first
instead of wiping the venv it is installing into."""

import subprocess
import sys
import textwrap
import time

import pytest
from conv_helpers import needs_py310


@pytest.mark.slow
@needs_py310
def test_two_processes_building_one_venv_end_with_the_same_working_venv(tmp_path):
    venv = tmp_path / "venv"
    # `pip` is already in a fresh venv: installing it again needs no network and is quick
    # the second call comes while the first is building (imports done by then)
    starts = [time.time() + 15, time.time() + 17]
    worker = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from tfm_fuse.converters._ov_legacy import Release, ensure_venv
        time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
        venv = Path({str(venv)!r})
        release = Release("test", "3.10.13", ("pip",), venv)
        python = ensure_venv(venv, release)
        print(os.stat(python.parent / "activate").st_ino, flush=True)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", worker, str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for start in starts]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err[-2000:]
    inodes = {out.strip() for out, _ in results}
    assert len(inodes) == 1, "the venv was built twice: one process wiped the other's"
    python = venv / "bin" / "python"
    assert (venv / ".tfm_fuse_complete").exists()
    assert subprocess.run([str(python), "-c", "import pip"]).returncode == 0
    # the venv one process was handed still exists after the other finished
    assert int(inodes.pop()) == (venv / "bin" / "activate").stat().st_ino


def test_a_tool_failure_without_error_lines_still_says_why():
    from tfm_fuse.converters._ov_legacy import _last_lines

    traceback = "Traceback (most recent call last):\n  File \"mo\"\nModuleNotFoundError: No module named 'x'\n"
    assert "ModuleNotFoundError" in _last_lines(traceback)
    logged = "[ INFO ] start\n[ ERROR ]  Cannot infer shapes\nsomething else\n"
    assert _last_lines(logged) == "[ ERROR ]  Cannot infer shapes"
