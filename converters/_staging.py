"""Atomic output directories: build in a temporary sibling, move into place only when valid.

Example:
    >>> with Staging("out/onnx", overwrite=False, keep_failed=False) as stage:
    ...     (stage.path / "model.onnx").write_bytes(b"...")
    ...     report.artefacts["onnx"] = stage.final("model.onnx")
    ...     stage.commit(report)   # raises ConversionError when report.ok is False
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from tfm_fuse.converters.report import Report
from tfm_fuse.errors import ConfigError, ConversionError


def check_destination(out_dir: str | os.PathLike, *, overwrite: bool) -> Path:
    """Returns `out_dir` as an absolute path; raises when it exists and `overwrite` is False.

    Raises:
        ConfigError: the path exists and `overwrite=False`.
    """
    path = Path(out_dir).expanduser().absolute()
    if path.exists() and not overwrite:
        kind = "directory" if path.is_dir() else "file"
        raise ConfigError(
            f"Output path '{path}' already exists (a {kind}). Accepted: a path that does not "
            f"exist yet, or pass overwrite=True to replace it."
        )
    return path


class Staging:
    """A temporary directory next to `out_dir` that becomes `out_dir` on `commit`.

    On an exception, or when `commit` finds a failed report and `keep_failed=False`, the
    temporary directory (and any parent directory it had to create) is removed, and an
    existing `out_dir` is left untouched.

    Args:
        out_dir: the final output directory.
        overwrite: replace `out_dir` when it exists. Defaults to `False`.
        keep_failed: move a failed artefact into place anyway (its report says `ok=False`).
            Defaults to `False`.
    """

    def __init__(self, out_dir: str | os.PathLike, *, overwrite: bool = False,
                 keep_failed: bool = False):
        self.out_dir = check_destination(out_dir, overwrite=overwrite)
        self.overwrite = overwrite
        self.keep_failed = keep_failed
        self._created: list[Path] = []
        self.path = Path()

    def __enter__(self) -> Staging:
        parent = self.out_dir.parent
        missing = [p for p in [parent, *parent.parents] if not p.exists()]
        parent.mkdir(parents=True, exist_ok=True)
        self._created = missing  # deepest first
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.tmp-", dir=parent))
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        if not self.out_dir.exists():
            self._remove_created_parents()

    def final(self, name: str) -> str:
        """The path that `name` (relative to the staging directory) will have after commit."""
        return str(self.out_dir / name)

    def commit(self, report: Report) -> Report:
        """Writes the report files, then moves the directory into place when allowed.

        Raises:
            ConversionError: `report.ok` is False and `keep_failed` is False; nothing is left.
        """
        report.write(self.path)
        if not report.ok and not self.keep_failed:
            issues = "\n  - ".join(report.issues) or "(no issue recorded)"
            raise ConversionError(
                f"{report.target} conversion to '{self.out_dir}' failed validation; nothing "
                f"was written (pass keep_failed=True to keep the artefact for inspection):"
                f"\n  - {issues}"
            )
        self._move_into_place()
        return report

    def _move_into_place(self) -> None:
        backup = None
        if self.out_dir.exists() or self.out_dir.is_symlink():
            if not self.overwrite:  # appeared while converting
                raise ConfigError(f"Output path '{self.out_dir}' appeared during conversion; "
                                  f"pass overwrite=True to replace it.")
            backup = self.out_dir.with_name(f".{self.out_dir.name}.old-{os.getpid()}")
            os.replace(self.out_dir, backup)
        umask = os.umask(0)
        os.umask(umask)
        self.path.chmod(0o777 & ~umask)
        try:
            os.replace(self.path, self.out_dir)
        except OSError:
            if backup is not None:  # put the previous output back
                os.replace(backup, self.out_dir)
            raise
        if backup is not None:
            if backup.is_dir() and not backup.is_symlink():
                shutil.rmtree(backup, ignore_errors=True)
            else:
                backup.unlink(missing_ok=True)

    def _remove_created_parents(self) -> None:
        for p in self._created:
            try:
                p.rmdir()
            except OSError:
                break
