"""Latency of deployed artefacts on the runtimes installed here, measured side by side.

Artefacts come from `tfm_fuse.converters` (plus an fp32 `.tflite`), so what is timed is what
would be deployed. Cases are timed in interleaved rounds (A, B, A, B, …) with one thread and
batch 1, and each case's median is reported: compare ratios within one run, not absolute times
across runs (the machine is shared and noisy).

Example:
    >>> paths = {name: export(m, out / name, calibration) for name, m in models.items()}
    >>> table = compare(paths, runs=200)        # {case: {runtime: median ms}}
    >>> print(format_table(table, baseline="baseline"))
"""

from __future__ import annotations

from pathlib import Path

from tfm_fuse._quiet import quiet_tools
from tfm_fuse.pruning.latency_model import compare  # noqa: F401 - timed here, kept in the core

RUNTIMES = ("litert_fp32", "litert_int8", "openvino_cpu", "onnxruntime")  # runtimes.RUNTIMES


@quiet_tools
def export(model, out_dir: Path, representative_data, *, runtimes=RUNTIMES) -> dict[str, str]:
    """Convert `model` for timing (no accuracy bars); returns runtime -> artefact path."""
    from tfm_fuse.converters.all import convert_for_timing

    paths = convert_for_timing(model, out_dir, representative_data, runtimes=tuple(runtimes))
    return _with_fp32(model, paths, out_dir, runtimes)


def timed_artefacts(model, reports: dict, out_dir: Path, *, runtimes=RUNTIMES) -> dict[str, str]:
    """The artefact each runtime times, from `convert_all` reports (+ an fp32 `.tflite`)."""
    from tfm_fuse.converters.all import timed_paths

    return _with_fp32(model, timed_paths(reports, tuple(runtimes)), out_dir, runtimes)


def _with_fp32(model, paths: dict[str, str], out_dir: Path, runtimes) -> dict[str, str]:
    if "litert_fp32" in runtimes:
        paths["litert_fp32"] = _tflite_fp32(model, Path(out_dir) / "model_fp32.tflite")
    return paths


def _tflite_fp32(model, path: Path) -> str:
    import tempfile

    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved_model:  # quiet export, then convert
        model.export(saved_model, format="tf_saved_model", verbose=False)
        path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(saved_model).convert())
    return str(path)


def speedups(table: dict[str, dict[str, float]], baseline: str) -> dict[str, dict[str, float]]:
    """Each case's speed-up over `baseline`, per runtime (baseline ms / case ms)."""
    base = table[baseline]
    return {case: {rt: base[rt] / ms for rt, ms in row.items() if rt in base}
            for case, row in table.items()}


def format_table(table: dict[str, dict[str, float]], baseline: str) -> str:
    """A text table of milliseconds and speed-ups over `baseline`."""
    ups = speedups(table, baseline)
    runtimes = [rt for rt in RUNTIMES if any(rt in row for row in table.values())]
    head = f"{'case':<24}" + "".join(f"{rt:>22}" for rt in runtimes)
    lines = [head, "-" * len(head)]
    for case, row in table.items():
        cells = "".join(f"{row[rt]:>12.3f} ms {ups[case][rt]:>5.2f}x" if rt in row else f"{'-':>22}"
                        for rt in runtimes)
        lines.append(f"{case:<24}{cells}")
    return "\n".join(lines)
