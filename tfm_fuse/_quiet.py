"""Keep TensorFlow's C++ log lines out of the `tfm-fuse` command's output.

TensorFlow prints CUDA and oneDNN notices from C++ (file descriptor 2) at import time, before any
setting can stop them. The command line (`tfm_fuse.cli.main`) enters `quiet_native_logs`
before anything imports TensorFlow (`import tfm_fuse` does not): file descriptor 2 goes to
/dev/null while Python's `sys.stderr` keeps writing to the real stderr, so our own errors,
warnings and tracebacks still show, and both are restored when the command returns. `TFM_FUSE_TF_LOGS=1` keeps TensorFlow's lines. Importing the library changes nothing.
"""

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_native_logs():
    """For the duration of the block, C++ stderr goes to /dev/null; restored afterwards.

    Example:
        >>> with quiet_native_logs():
        ...     import tensorflow            # its CUDA/oneDNN notices are not printed
    """
    if os.environ.get("TFM_FUSE_TF_LOGS") == "1" or getattr(sys, "_tfm_fuse_quiet", False):
        yield
        return
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    real_fd = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    python_stderr = sys.stderr
    sys.stderr = os.fdopen(os.dup(real_fd), "w", buffering=1)  # our own messages still show
    sys._tfm_fuse_quiet = True
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(real_fd, 2)
        os.close(real_fd)
        sys._tfm_fuse_quiet = False
        if level is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        else:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = level
