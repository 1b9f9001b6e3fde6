"""Keep the tools' log lines out of the user's terminal: the command's, and each library call's.

TensorFlow prints CUDA and oneDNN notices from C++ (file descriptor 2) at import time, before any
setting can stop them. The command line (`tfm_fuse.app.cli.main`) enters `quiet_native_logs`
before anything imports TensorFlow (`import tfm_fuse` does not): file descriptor 2 goes to
/dev/null while Python's `sys.stderr` keeps writing to the real stderr, so our own errors,
warnings and tracebacks still show, and both are restored when the command returns. `TFM_FUSE_TF_LOGS=1` keeps TensorFlow's lines. Importing the library changes nothing.

A library call that runs the toolchains (every converter, `latency.export`/`compare`) is
wrapped in `quiet_tools`: for the call's duration only, C++ lines on file descriptor 2 (the
TFLite converter's `fully_quantize: 0, inference_type: 6 ...`, `Created TensorFlow Lite XNNPACK
delegate`, OpenVINO's and ONNX Runtime's notices) go to a temporary file that is replayed on
stderr if the call raises, and Python warnings logged by the tools' modules on the root logger
(onnxruntime's "Please consider to run pre-processing before quantization") are dropped. The
process's file descriptors and loggers are restored afterwards.
"""

import contextlib
import functools
import logging
import os
import sys
import tempfile

# modules whose root-logger records are tool chatter, not the user's logging
TOOL_MODULES = tuple(f"{os.sep}{name}{os.sep}" for name in
                     ("onnxruntime", "tf2onnx", "openvino", "tensorflow", "keras"))


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
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with _fd2_to(devnull):
            yield
    finally:
        os.close(devnull)
        if level is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        else:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = level


class _DropToolRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(part in record.pathname for part in TOOL_MODULES)


@contextlib.contextmanager
def _tool_records_dropped():
    root = logging.getLogger()
    dropper = _DropToolRecords()
    # `logging.warning()` on a root logger without handlers would install one for good
    # (`basicConfig`): a NullHandler for the call's duration keeps the user's logging as it was
    placeholder = logging.NullHandler() if not root.handlers else None
    root.addFilter(dropper)
    if placeholder is not None:
        root.addHandler(placeholder)
    try:
        yield
    finally:
        root.removeFilter(dropper)
        if placeholder is not None:
            root.removeHandler(placeholder)


@contextlib.contextmanager
def _native_lines_captured():
    if os.environ.get("TFM_FUSE_TF_LOGS") == "1" or getattr(sys, "_tfm_fuse_quiet", False):
        yield  # asked for, or already quiet (the command line)
        return
    with tempfile.TemporaryFile() as capture:
        try:
            with _fd2_to(capture.fileno()):
                yield
        except BaseException:
            capture.seek(0)
            lines = capture.read().decode(errors="replace")
            if lines:
                sys.stderr.write(lines)  # what the tools said before the failure
            raise


@contextlib.contextmanager
def _fd2_to(target_fd: int):
    """File descriptor 2 points at `target_fd` for the block, and back afterwards; Python's
    `sys.stderr`, when it writes to fd 2, keeps writing to the real stderr meanwhile (our own
    messages, warnings and progress bars still show)."""
    sys.stderr.flush()
    real_fd = os.dup(2)
    python_stderr = sys.stderr
    os.dup2(target_fd, 2)
    if _writes_to_fd2(python_stderr):
        sys.stderr = os.fdopen(os.dup(real_fd), "w", buffering=1)
    sys._tfm_fuse_quiet = True
    try:
        yield
    finally:
        if sys.stderr is not python_stderr:
            sys.stderr.flush()
            sys.stderr.close()
            sys.stderr = python_stderr
        os.dup2(real_fd, 2)
        os.close(real_fd)
        sys._tfm_fuse_quiet = False


def _writes_to_fd2(stream) -> bool:
    """`stream` writes to file descriptor 2 (a terminal or a redirect, not a notebook's)."""
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def quiet_tools(fn):
    """Decorator for a library call that runs the toolchains (see the module docstring).

    Example:
        >>> @quiet_tools
        ... def convert(model, out_dir): ...
    """
    @functools.wraps(fn)
    def quiet(*args, **kwargs):
        with _native_lines_captured(), _tool_records_dropped():
            return fn(*args, **kwargs)
    return quiet
