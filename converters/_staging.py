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

import contextlib
import os
from pathlib import Path
from types import TracebackType

from tfm_fuse import files
from tfm_fuse.converters.report import Report
from tfm_fuse.errors import ConversionError
from tfm_fuse.files import check_destination


class _NotCommitted(Exception):
    """Thrown into `files.atomic_output` when a block ends without `commit`: nothing moves."""


class Staging:
    """A temporary directory next to `out_dir` that becomes `out_dir` on `commit`.

    A thin layer over `tfm_fuse.files.atomic_output(directory=True)` — the same temporary
    sibling, recovery of a killed run, parent clean-up and `OutputError` for a refused write
    (a full disk while a tool writes into the stage included) — that adds the report: it is
    written into the stage, and a failed one moves nothing unless `keep_failed`. On an
    exception, a failed report, or a block left without `commit`, the temporary directory (and
    any parent directory it had to create) is removed and an existing `out_dir` is untouched.

    Args:
        out_dir: the final output directory.
        overwrite: replace `out_dir` when it exists. Defaults to `False`.
        keep_failed: move a failed artefact into place anyway (its report says `ok=False`).
            Defaults to `False`.
    """

    def __init__(self, out_dir: str | os.PathLike, *, overwrite: bool = False,
                 keep_failed: bool = False):
        self.out_dir = check_destination(out_dir, overwrite=overwrite)  # fail before any work
        self.keep_failed = keep_failed
        self._output = files.atomic_output(self.out_dir, overwrite=overwrite, directory=True)
        self._open = False
        self.path = Path()

    def __enter__(self) -> Staging:
        self.path = self._output.__enter__()
        self._open = True
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._open:
            return
        self._open = False
        if exc is None:  # left without commit: throw a marker in, so that nothing moves
            with contextlib.suppress(_NotCommitted):
                self._output.__exit__(_NotCommitted, _NotCommitted(), None)
            return
        self._output.__exit__(exc_type, exc, tb)  # cleans up; an OSError becomes OutputError

    def final(self, name: str) -> str:
        """The path that `name` (relative to the staging directory) will have after commit."""
        return str(self.out_dir / name)

    def commit(self, report: Report) -> Report:
        """Writes the report files, then moves the directory into place when allowed.

        Raises:
            ConversionError: `report.ok` is False and `keep_failed` is False; nothing is left.
            OutputError: the OS refused a write; `out_dir` is as it was.
        """
        for name in report.non_finite_metrics():
            report.ok = False
            report.issues.append(f"validation metric {name} is not a finite number (NaN or inf "
                                 "outputs): the artefact cannot be trusted")
        report.write(self.path)  # an OSError here reaches atomic_output through __exit__
        if not report.ok and not self.keep_failed:
            issues = "\n  - ".join(report.issues) or "(no issue recorded)"
            raise ConversionError(
                f"{report.target} conversion to '{self.out_dir}' failed validation; nothing "
                f"was written (pass keep_failed=True to keep the artefact for inspection):"
                f"\n  - {issues}"
            )
        self._open = False
        self._output.__exit__(None, None, None)  # moves the stage into place
        return report
