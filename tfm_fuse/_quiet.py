"""Keep TensorFlow's C++ log lines out of the `tfm-fuse` command's output.

TensorFlow prints CUDA and oneDNN notices from C++ (file descriptor 2) at import time, before any
setting can stop them. In the `tfm-fuse` process only, file descriptor 2 goes to /dev/null while
Python's `sys.stderr` keeps writing to the real stderr, so our own errors, warnings and
tracebacks still show. `TFM_FUSE_TF_LOGS=1` keeps TensorFlow's lines. Library users are untouched.
"""

import os
import sys


def silence_native_logs_in_cli() -> None:
    """Redirect C++ stderr to /dev/null when this process is the `tfm-fuse` command."""
    if os.path.basename(sys.argv[0] if sys.argv else "") != "tfm-fuse":
        return
    if os.environ.get("TFM_FUSE_TF_LOGS") == "1" or getattr(sys, "_tfm_fuse_quiet", False):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    python_stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(python_stderr, "w", buffering=1)
    sys._tfm_fuse_quiet = True
