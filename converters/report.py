"""The report every converter returns and writes next to its artefacts.

Example:
    >>> r = Report(target="onnx")
    >>> r.artefacts["onnx"] = "out/onnx/model.onnx"
    >>> r.fidelity["max_abs_error_rel"] = 2e-7
    >>> Report.from_json(r.to_json()) == r
    True
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Report:
    """What a conversion produced and how far the artefact agrees with the Keras model.

    Args:
        target: the converter's name (`"edgetpu"`, `"onnx"`, `"tensorrt"`, `"openvino"`).
        ok: `True` when the artefact was built and passed validation and the target checks.
        artefacts: artefact name -> path of the file (or directory) in the output directory.
        fidelity: metrics against the Keras model, per artefact: `{"tflite_int8": {...}}`.
        issues: what the target cannot run or what failed validation, one sentence each.
        notes: facts worth knowing that are not failures (batch fixed to 1, tool not found...).
        next_steps: commands to run on the board or on a machine with the vendor tool.
        details: target-specific data (op table, opset check, parameter bytes...).

    Example:
        >>> print(Report(target="openvino", ok=True, notes=["batch fixed to 1"]))
        tfm_fuse conversion report: openvino — OK
        Notes:
          - batch fixed to 1
    """

    target: str
    ok: bool = False
    artefacts: dict[str, str] = field(default_factory=dict)
    fidelity: dict[str, Any] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-serialisable dict of every field."""
        return _jsonable(dataclasses.asdict(self))

    def to_json(self, indent: int | None = 2) -> str:
        """Returns the report as a JSON string; `Report.from_json` reads it back."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> Report:
        """Rebuilds a report from `to_json()` output (or the content of `report.json`)."""
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, path: str | Path) -> Report:
        """Reads `report.json` from a file or from the output directory that holds it."""
        path = Path(path)
        if path.is_dir():
            path = path / "report.json"
        return cls.from_json(path.read_text())

    def non_finite_metrics(self) -> list[str]:
        """Names of the fidelity metrics that are NaN or infinite (`"tflite_int8.max_abs"`):
        a report with one is never `ok`."""
        found = []

        def visit(value, name):
            if isinstance(value, dict):
                for key, item in value.items():
                    visit(item, f"{name}.{key}" if name else str(key))
            elif isinstance(value, list):  # per-output metrics
                for i, item in enumerate(value):
                    visit(item, f"{name}[{i}]")
            elif isinstance(value, numbers.Real) and not math.isfinite(float(value)):
                found.append(name)

        visit(self.fidelity, "")
        return found

    def write(self, out_dir: str | Path) -> None:
        """Writes `report.json` and `report.txt` into `out_dir`."""
        out_dir = Path(out_dir)
        (out_dir / "report.json").write_text(self.to_json() + "\n")
        (out_dir / "report.txt").write_text(str(self) + "\n")

    def __str__(self) -> str:
        lines = [f"tfm_fuse conversion report: {self.target} — {'OK' if self.ok else 'FAILED'}"]
        lines += _section("Artefacts", [f"{k}: {v}" for k, v in self.artefacts.items()])
        lines += _section("Fidelity vs Keras", _fidelity_lines(self.fidelity))
        lines += _section("Issues (what the target cannot run)", self.issues)
        lines += _section("Notes", self.notes)
        lines += _section("Next steps", self.next_steps)
        return "\n".join(lines)


def _section(title: str, items: list[str]) -> list[str]:
    if not items:
        return []
    return [f"{title}:"] + [f"  - {item}" for item in items]


def _fidelity_lines(fidelity: dict[str, Any]) -> list[str]:
    lines = []
    for name, metrics in fidelity.items():
        if isinstance(metrics, dict):
            parts = [f"{k}={_fmt(v)}" for k, v in metrics.items() if k != "outputs"]
            lines.append(f"{name}: " + ", ".join(parts))
            for i, output in enumerate(metrics.get("outputs", [])):  # one line per output
                lines.append(f"{name}[output {i}]: " + ", ".join(
                    f"{k}={_fmt(v)}" for k, v in output.items()))
        else:
            lines.append(f"{name}: {_fmt(metrics)}")
    return lines


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _jsonable(obj: Any) -> Any:
    """Converts numpy scalars, paths and tuples so that `json.dumps` accepts them."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return obj.item()
    return obj
