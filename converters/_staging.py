"""Atomic output directories: build in a temporary sibling, move into place only when valid.

The commit is `tfm_fuse.files.commit` (the project's one crash-safe write): the previous output
stays in place until the new one is complete, and a run killed between the renames is
recovered by the next conversion to the same directory.

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

from tfm_fuse import files
from tfm_fuse.converters.report import Report
from tfm_fuse.errors import ConversionError
from tfm_fuse.files import check_destination


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
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self._created = missing  # deepest first
            files.recover(self.out_dir)
            self.path = Path(tempfile.mkdtemp(
                prefix=f".{self.out_dir.name}.tmp-{os.getpid()}-", dir=parent))
        except OSError as e:
            self._remove_created_parents()
            raise files.output_error(e, self.out_dir, previous_kept=self.out_dir.exists()) from e
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
        for name in report.non_finite_metrics():
            report.ok = False
            report.issues.append(f"validation metric {name} is not a finite number (NaN or inf "
                                 "outputs): the artefact cannot be trusted")
        try:
            report.write(self.path)
        except OSError as e:
            raise files.output_error(e, self.out_dir, previous_kept=self.out_dir.exists()) from e
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
        had_previous = self.out_dir.exists()
        try:
            files.commit(self.path, self.out_dir, overwrite=self.overwrite)
        except OSError as e:
            raise files.output_error(e, self.out_dir, previous_kept=had_previous) from e

    def _remove_created_parents(self) -> None:
        for p in self._created:
            try:
                p.rmdir()
            except OSError:
                break
