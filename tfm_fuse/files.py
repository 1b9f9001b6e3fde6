"""Files tfm_fuse reads and writes: one crash-safe write, one model loader.

Every artefact the project produces (a `.keras` model, a converter's output directory, a
report, a plot) is written to a hidden temporary sibling, flushed to disk (`fsync`) and renamed
into place. On overwrite the previous artefact stays where it is until the new one is complete:
a file is replaced by one atomic `rename`; a directory is moved aside, the new one moved in, and
the old one removed. A run killed in between leaves hidden siblings (`.NAME.tmp-PID-…`,
`.NAME.old-PID`); the next write to the same path restores the previous artefact if the final
path is missing, removes the leftovers, and says so. Every OS failure (a full disk, a read-only
file system, a permission) becomes an `OutputError` naming the path.

Example:
    >>> with atomic_output("small.keras", overwrite=True) as tmp:
    ...     model.save(tmp)                      # tmp ends in ".keras" too
    >>> model = load_model("small.keras")       # one clear error for every bad file
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

from tfm_fuse.errors import ConfigError, OutputError, TfmFuseError

_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "an input/output error of the device",
}


def as_storage_error(error: BaseException) -> OSError | None:
    """`error` as an `OSError` when the destination refused a write (full disk, read-only,
    quota, permission): an `OutputError` for the artefact's path, not a failure of the tool that
    was writing. TensorFlow's native writers raise `tf.errors.OpError`s that carry only the C
    library's `strerror` text ("... No space left on device [Op:SaveV2]"): it is matched.

    Example:
        >>> as_storage_error(OSError(errno.ENOSPC, "No space left on device")).errno == errno.ENOSPC
        True
    """
    if isinstance(error, OSError):
        return error if error.errno in _REASONS else None
    text = str(error)
    for code in _REASONS:
        if os.strerror(code) in text:
            return OSError(code, os.strerror(code))
    return None


def output_error(error: OSError, path: str | os.PathLike, *, previous_kept: bool) -> OutputError:
    """`error` as an `OutputError` naming `path` and what happened to the previous artefact."""
    reason = _REASONS.get(error.errno, error.strerror or str(error))
    kept = " (the previous one is unchanged)" if previous_kept else " (nothing was left behind)"
    return OutputError(path, f"{reason}{kept}", error.errno)


def check_destination(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """`path` as an absolute path; a `ConfigError` when it exists and `overwrite` is False.

    Example:
        >>> check_destination("out/onnx", overwrite=False)
        PosixPath('/home/me/out/onnx')
    """
    if path is None or not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise ConfigError(f"The output path must be a file or directory name (str or "
                          f"os.PathLike). Received: {path!r}")
    final = Path(path).expanduser().absolute()
    if (final.exists() or final.is_symlink()) and not overwrite:
        kind = "directory" if final.is_dir() else "file"
        raise ConfigError(f"Output path '{final}' already exists (a {kind}). Accepted: a path "
                          "that does not exist yet, or pass overwrite=True to replace it.")
    return final


def recover(path: str | os.PathLike) -> list[str]:
    """Cleans up after a run that was killed while writing `path`; returns what it did.

    The previous artefact, moved aside for an overwrite that never completed, is put back when
    `path` is missing; unfinished temporary siblings of dead processes are removed.

    Example:
        >>> recover("out/onnx")
        ["restored 'out/onnx' from an interrupted overwrite (.onnx.old-4242)"]
    """
    final = Path(path).expanduser().absolute()
    done = []
    if not final.parent.is_dir():
        return done
    olds = sorted(_leftovers(final, "old"), key=lambda p: p.stat().st_mtime, reverse=True)
    if olds and not (final.exists() or final.is_symlink()):
        os.replace(olds.pop(0), final)
        done.append(f"restored '{final}' from an interrupted overwrite")
    for leftover in [*olds, *_leftovers(final, "tmp")]:
        _remove(leftover)
        done.append(f"removed '{leftover.name}', left by an interrupted write of '{final.name}'")
    for message in done:
        warnings.warn(f"tfm_fuse: {message}", stacklevel=3)
    return done


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False,
                  directory: bool = False) -> Iterator[Path]:
    """Yields a temporary sibling of `path` to write; renames it into place when the block ends.

    Args:
        path: the final file or directory.
        overwrite: replace `path` when it exists. Defaults to `False`.
        directory: the temporary sibling is a (new, empty) directory. Defaults to `False`
            (a file name, with the same suffix as `path`, that the block creates).

    Raises:
        ConfigError: `path` exists and `overwrite` is False.
        OutputError: the OS refused a write; `path` is as it was before.
    """
    final = check_destination(path, overwrite=overwrite)
    created = [p for p in [final.parent, *final.parent.parents] if not p.exists()]
    had_previous = final.exists()
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}{final.suffix}")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        recover(final)  # may put back the previous artefact of a killed overwrite
        had_previous = final.exists()
        if directory:
            tmp.mkdir()
        yield tmp
        if not tmp.exists():
            raise TfmFuseError(f"Nothing was written for '{final}'.")
        commit(tmp, final, overwrite=overwrite)
    except OSError as e:
        if isinstance(e, OutputError):
            raise
        raise output_error(e, final, previous_kept=had_previous) from e
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)
        if not final.exists():
            for parent in created:  # deepest first
                with contextlib.suppress(OSError):
                    parent.rmdir()


def commit(tmp: Path, final: Path, *, overwrite: bool) -> None:
    """Moves the complete `tmp` to `final` (flushed first); the previous `final` stays until
    the new one is in place.

    Raises:
        ConfigError: `final` appeared meanwhile and `overwrite` is False.
        OSError: from the file system (`final` is then as it was).
    """
    if (final.exists() or final.is_symlink()) and not overwrite:
        raise ConfigError(f"Output path '{final}' appeared while it was being written; pass "
                          "overwrite=True to replace it.")
    _fsync_tree(tmp)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod((0o777 if tmp.is_dir() else 0o666) & ~umask)
    replaces_file = tmp.is_file() and (final.is_file() or not final.exists())
    if replaces_file or not (final.exists() or final.is_symlink()):
        os.replace(tmp, final)  # atomic: the old file until this instant, the new one after
    else:  # a directory (or a change of kind): the old one aside until the new one is in place
        backup = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, backup)
        try:
            os.replace(tmp, final)
        except OSError:
            os.replace(backup, final)
            raise
        _remove(backup)
    _fsync(final.parent)


def write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Writes `text` to `path` crash-safely (see `atomic_output`); returns the path.

    Example:
        >>> write_text("out/results.json", json.dumps(results))
    """
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return Path(path)


def save_model(model, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """`model.save(path)`, crash-safely: a full disk or a kill never leaves a truncated file,
    and an overwritten model stays until the new one is complete.

    Example:
        >>> save_model(small, "small.keras", overwrite=True)
    """
    if Path(path).suffix != ".keras":
        raise ConfigError(f"Models are saved as '.keras' files. Received: '{path}'")
    with atomic_output(path, overwrite=overwrite) as tmp:
        model.save(tmp)
    return Path(path)


def load_model(path: str | os.PathLike, *, custom_objects: dict | None = None):
    """A Keras model from a `.keras` (or legacy `.h5`) file, with one clear error for any
    file that is not one: missing, a directory, not a zip, truncated, corrupt members, or a
    custom class that is not registered.

    Raises:
        ConfigError: the file cannot be loaded (the message says why, in one line).

    Example:
        >>> model = load_model("small.keras")
    """
    import keras

    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"No such file or directory: '{path}'")
    if p.is_dir() or p.suffix not in (".keras", ".h5"):
        raise ConfigError(
            f"'{path}' is not a Keras model file: expected a '.keras' (or legacy '.h5') file "
            "saved with model.save().")
    if p.suffix == ".keras" and not zipfile.is_zipfile(p):
        raise ConfigError(f"'{path}' is not a Keras model: a .keras file is a zip archive "
                           "written by model.save(), and this one is not (truncated, or another "
                           "kind of file)")
    import tfm_fuse

    tfm_fuse.register_saved_classes()  # PruneWrapper and the schedules of masked models
    try:
        return keras.models.load_model(p, compile=False, custom_objects=custom_objects)
    except Exception as e:  # noqa: BLE001 - any load failure becomes one clear line
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = ""
        if "Could not locate" in str(e) or "Unknown layer" in str(e):
            hint = (" — the file uses a custom class: decorate it with "
                    "@keras.saving.register_keras_serializable() and import its module before "
                    "loading (or pass custom_objects=)")
        raise ConfigError(f"Cannot load '{path}' as a Keras model: {type(e).__name__}: "
                           f"{message[:300]}{hint}") from None


# --- internals -----------------------------------------------------------------------------
def _leftovers(final: Path, kind: str) -> list[Path]:
    """Hidden siblings `.NAME.{kind}-PID…` of `final` whose process is no longer running."""
    out = []
    for p in final.parent.glob(f".{final.name}.{kind}-*"):
        pid = p.name[len(f".{final.name}.{kind}-"):].split("-")[0].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue  # another process is writing it now
        out.append(p)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF):  # directories on some file systems
            raise
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """Flushes a file, or every file and directory under `path`, to the device."""
    if path.is_dir():
        for root, _, files in os.walk(path):
            for name in files:
                _fsync(Path(root) / name)
            _fsync(Path(root))
    else:
        _fsync(path)
