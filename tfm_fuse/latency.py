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
from typing import Callable

import numpy as np

from tfm_fuse._quiet import quiet_tools

RUNTIMES = ("litert_fp32", "litert_int8", "openvino_cpu", "onnxruntime")


def _litert(path: str, threads: int) -> Callable[[], None]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    return interp.invoke


def _openvino(path: str, threads: int) -> Callable[[], None]:
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                          "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    feeds = [np.zeros(tuple(p.shape), np.float32) for p in compiled.inputs]
    return lambda: request.infer(feeds)


def _onnxruntime(path: str, threads: int) -> Callable[[], None]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
             for i in session.get_inputs()}
    return lambda: session.run(None, feeds)


_LOADERS = {"litert_fp32": _litert, "litert_int8": _litert, "openvino_cpu": _openvino,
            "onnxruntime": _onnxruntime}


@quiet_tools
def export(model, out_dir: Path, representative_data, *, runtimes=RUNTIMES) -> dict[str, str]:
    """Convert `model` for timing (no accuracy bars); returns runtime -> artefact path."""
    from tfm_fuse.converters import convert_all

    targets = tuple(t for t, rts in _TARGET_RUNTIMES.items() if set(rts) & set(runtimes))
    reports = convert_all(model, out_dir, representative_data=representative_data,
                          targets=targets, overwrite=True, keep_failed=True)
    return timed_artefacts(model, reports, out_dir, runtimes=runtimes)


_TARGET_RUNTIMES = {"edgetpu": ("litert_int8",), "openvino": ("openvino_cpu",),
                    "onnx": ("onnxruntime",)}


def timed_artefacts(model, reports: dict, out_dir: Path, *, runtimes=RUNTIMES) -> dict[str, str]:
    """The artefact each runtime times, from `convert_all` reports (+ an fp32 `.tflite`)."""
    found = {
        "litert_int8": reports.get("edgetpu") and reports["edgetpu"].artefacts.get("tflite_int8"),
        "openvino_cpu": reports.get("openvino") and reports["openvino"].artefacts.get("openvino_xml"),
        "onnxruntime": reports.get("onnx") and reports["onnx"].artefacts.get("onnx_fp32"),
    }
    paths = {rt: str(p) for rt, p in found.items() if p and rt in runtimes}
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

    runners = {(case, rt): _LOADERS[rt](path, threads)
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
