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

import time
from pathlib import Path

import numpy as np

from tfm_fuse._quiet import quiet_tools

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


@quiet_tools
def compare(cases: dict[str, dict[str, str]], *, runs: int = 200, rounds: int = 5,
            threads: int = 1, progress: bool = True) -> dict[str, dict[str, float]]:
    """Median latency (ms) per case and runtime, cases interleaved round by round.

    Args:
        cases: `{case name: {runtime: artefact path}}`, e.g. from `export`.
        runs: timed invocations per case and runtime, split over `rounds`. Defaults to `200`.
        rounds: how many times the cases take turns. Defaults to `5`.
        threads: threads each runtime may use. Defaults to `1`.
        progress: show a tqdm bar. Defaults to `True`.
    """
    from tqdm import tqdm

    from tfm_fuse.converters.runtimes import open_runtime  # the runtimes the checks use

    runners = {(case, rt): open_runtime(rt, path, threads=threads).timer()
               for case, paths in cases.items() for rt, path in paths.items()}
    for run in runners.values():  # warm-up
        for _ in range(10):
            run()
    samples: dict[tuple, list[float]] = {key: [] for key in runners}
    per_round = max(1, runs // rounds)
    bar = tqdm(total=rounds * len(runners), desc="latency", disable=not progress)
    for _ in range(rounds):
        for key, run in runners.items():
            for _ in range(per_round):
                start = time.perf_counter()
                run()
                samples[key].append(time.perf_counter() - start)
            bar.update()
    bar.close()
    result: dict[str, dict[str, float]] = {case: {} for case in cases}
    for (case, rt), times in samples.items():
        result[case][rt] = 1000.0 * float(np.median(times))
    return result


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
