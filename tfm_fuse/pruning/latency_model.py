"""Measured latency of a model's layers on a runtime, as a function of the channels kept.

MACs do not predict latency on the runtimes edge users run: LiteRT int8 takes as long for a
3×3 convolution on 32×32×64 with 8 output channels as with 64 (its kernels work on blocks of
channels), and the small and depthwise layers of MobileNetV2 cost their memory traffic and
per-op overhead more than their MACs. NetAdapt (Yang et al., ECCV 2018) and HALP (Shen et al.,
NeurIPS 2022) prune to a latency budget with a *lookup table* of measured layer latencies;
this module builds that table for the model's own layers:

- every Conv2D, DepthwiseConv2D and Dense of the analysed graph is rebuilt alone, at its own
  input size, kernel, stride and padding, with its input and output channel counts at
  `WIDTHS` of the original (only on the sides pruning can change), converted the way
  `tfm_fuse.converters` converts a whole model for that runtime (full-integer `.tflite`,
  OpenVINO IR with FP16 weights, tf2onnx ONNX), and timed in the runtime (one thread, batch 1,
  median; on OpenVINO the plugin's own counters, without the reorders and the overhead of a
  one-layer model, which dominate it there, and then `fit_in_context`: the layers' counters
  inside whole stripped models at several widths, since even those misplace the time alone);
  results are cached per machine and runtime version in
  `~/.cache/tfm_fuse/latency/<runtime>.json` (or `$TFM_FUSE_CACHE/latency`), so each layer
  shape is measured once;
- `LatencyModel.layers_ms(keep)` interpolates each layer's table bilinearly at its kept counts;
- what one-layer models do not see (the ops between layers, the invoke overhead, the reorders
  at a micro-model's ends) is absorbed by `calibrate`: the whole stripped model is fused and
  converted by `tfm_fuse.converters` (the artefact that would be deployed) and timed, at full width,
  uniformly thinned and at every allocation `MaskUpdater.meet_latency` measures, and the
  prediction becomes `scale × Σ layers + offset`, fitted nearest the latest point.

`LatencyModel.alignment()` measures the runtime's channel block: the largest multiple whose
unaligned counts cost as much as the next multiple up (pruning to them saves nothing); on
OpenVINO read inside whole models (`block_counts`, `block_of_steps`).

Example:
    >>> lat = LatencyModel(analyze(model), "litert_int8")       # builds or reads the table
    >>> lat.predict(np.ones(lat.n_ids, bool))                   # ms of the full model
    0.41
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from tfm_fuse import rules
from tfm_fuse._quiet import quiet_tools
from tfm_fuse.errors import ConfigError
from tfm_fuse.graph import ModelGraph, Node

WIDTHS = (0.25, 0.5, 0.75, 1.0)
BLOCK_CANDIDATES = (2, 4, 8, 16, 32, 64)
# blocks tried inside whole models (OpenVINO): oneDNN's CPU layouts hold 8 or 16 channels per
# block (nChw8c on AVX2, nChw16c on AVX-512), so a window of 32 counts can tell them apart
CONTEXT_BLOCK_CANDIDATES = (2, 4, 8, 16, 32)
# inferences profiled per model read in context (`openvino_layer_ms`); part of its cache keys
CONTEXT_RUNS = 400
RUNTIMES = ("litert_int8", "openvino_cpu", "onnxruntime")
# how whole models are timed (`_deployed_artefact`); part of their cache keys
WHOLE_MODEL = "model fused"
TIMED_TYPES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
# config entries that decide a layer's latency besides its channel counts
_SHAPE_KEYS = ("kernel_size", "strides", "padding", "dilation_rate", "use_bias", "activation",
               "depth_multiplier", "groups", "data_format")


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise ConfigError(f"Latency is measured on one of {', '.join(RUNTIMES)}. "
                          f"Received: runtime={runtime!r}")
    return runtime


@dataclasses.dataclass
class TimedLayer:
    """One timed layer of the graph: its channel ids on each side and its measured grid."""

    name: str
    in_ids: np.ndarray | None     # channel ids of its input (None: not prunable, fixed)
    out_ids: np.ndarray | None
    in_counts: np.ndarray         # grid of input channel counts measured
    out_counts: np.ndarray
    ms: np.ndarray                # ms[i, j] at in_counts[i], out_counts[j]
    tied: bool = False            # depthwise: the output count follows the input count

    def counts(self, keep: np.ndarray) -> tuple[int, int]:
        """Kept input and output counts (-1: the side is not pruned)."""
        return (int(keep[self.in_ids].sum()) if self.in_ids is not None else -1,
                int(keep[self.out_ids].sum()) if self.out_ids is not None else -1)

    def at(self, keep: np.ndarray, block: int = 1) -> float:
        """Interpolated ms at `keep`'s counts, each rounded up to a multiple of `block` (the
        runtime computes a partial block as a whole one)."""
        return self.at_counts(self.counts(keep), block)

    def at_counts(self, counts: tuple[int, int], block: int = 1) -> float:
        """Interpolated ms at `(n_in, n_out)` (-1: the side at full width), as `at`."""
        n_in = self._blocked(counts[0], self.in_counts[-1], block)
        if self.tied:
            return float(np.interp(n_in, self.in_counts, self.ms[:, 0]))
        n_out = self._blocked(counts[1], self.out_counts[-1], block)
        row = [np.interp(n_out, self.out_counts, self.ms[i]) for i in range(len(self.in_counts))]
        return float(np.interp(n_in, self.in_counts, row))

    @staticmethod
    def _blocked(n: int, size: float, block: int) -> float:
        return float(size) if n < 0 else float(min(size, -(-n // block) * block))


def _prunable_ids(prunable: np.ndarray, ids: np.ndarray) -> bool:
    """Whether any of `ids` is a channel of a prunable group (`prunable`: a mask over ids)."""
    return bool(prunable[ids].any())


def _grid(size: int, pruned: bool) -> list[int]:
    if not pruned:
        return [size]
    return sorted({max(1, int(round(w * size))) for w in WIDTHS})


def monotone(ms: np.ndarray) -> np.ndarray:
    """`ms` with every entry at most the entries at larger counts on both axes: a time measured
    above one at more channels is an outlier (a preempted run, a cold cache), not the layer."""
    return np.minimum.accumulate(np.minimum.accumulate(ms[::-1, ::-1], axis=0), axis=1)[::-1, ::-1]


def timed_nodes(graph: ModelGraph) -> list[Node]:
    """The graph's nodes whose layer the table times (each layer once)."""
    seen, nodes = set(), []
    for node in graph.nodes:
        inner = rules.unwrap(node.layer)
        if (isinstance(inner, TIMED_TYPES) and id(inner) not in seen and node.inputs
                and getattr(inner, "groups", 1) == 1):
            seen.add(id(inner))
            nodes.append(node)
    return nodes


def _signature(inner, in_shape: tuple) -> dict:
    config = inner.get_config()
    return {"type": type(inner).__name__, "input": list(in_shape[:-1]),
            **{k: config[k] for k in _SHAPE_KEYS if k in config}}


def micro_model(inner, in_shape: tuple, n_in: int, n_out: int) -> keras.Model:
    """`inner`'s layer type and configuration alone, on `n_in` input channels, `n_out` out."""
    config = dict(inner.get_config(), name="timed")
    if isinstance(inner, keras.layers.DepthwiseConv2D):
        pass  # its output count follows the input
    elif isinstance(inner, keras.layers.Dense):
        config["units"] = n_out
    else:
        config["filters"] = n_out
    x = keras.Input(tuple(in_shape[:-1]) + (n_in,), batch_size=1)
    return keras.Model(x, type(inner).from_config(config)(x))


def _concrete(model: keras.Model, nchw: bool = False):
    import tensorflow as tf

    shape = (1,) + tuple(model.inputs[0].shape)[1:]
    if nchw and len(shape) == 4:  # ONNX: the transposes tf2onnx adds cancel out
        spec = tf.TensorSpec((1, shape[3], shape[1], shape[2]), tf.float32)

        @tf.function(input_signature=[spec])
        def fn(x):
            y = model(tf.transpose(x, [0, 2, 3, 1]), training=False)
            return tf.transpose(y, [0, 3, 1, 2]) if len(y.shape) == 4 else y
        return fn
    return tf.function(lambda x: model(x, training=False),
                       input_signature=[tf.TensorSpec(shape, tf.float32)])


def _frozen(model: keras.Model):
    """`model`'s inference as a concrete function with its weights as constants."""
    from tensorflow.python.framework.convert_to_constants import \
        convert_variables_to_constants_v2

    return convert_variables_to_constants_v2(_concrete(model).get_concrete_function())


def _write_artefact(model: keras.Model, runtime: str, folder: Path) -> Path:
    """One-layer `model` converted for `runtime` into `folder` as the converters would, its
    ONNX input in NCHW so that it has no transposes (inside a model, they cancel out)."""
    import tensorflow as tf

    if runtime == "litert_int8":
        warnings.filterwarnings("ignore", "Statistics for quantized inputs")  # int8 in, as meant
        converter = tf.lite.TFLiteConverter.from_concrete_functions([_frozen(model)])
        shape = (1,) + tuple(model.inputs[0].shape)[1:]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [np.random.default_rng(i).normal(size=shape).astype("float32")] for i in range(4))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
        path = folder / "model.tflite"
        path.write_bytes(converter.convert())
    elif runtime == "onnxruntime":
        import tf2onnx

        fn = _concrete(model, nchw=True)
        path = folder / "model.onnx"
        tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=17,
                                      output_path=str(path))
    else:
        import openvino as ov

        path = folder / "model.xml"
        ov_model = ov.convert_model(_concrete(model).get_concrete_function())
        ov.save_model(ov_model, str(path), compress_to_fp16=True)
    return path


def time_artefact(runtime: str, path: Path, *, min_runs: int = 30, min_seconds: float = 0.05
                  ) -> float:
    """Median ms of one inference of the artefact at `path` (one thread, batch 1)."""
    from tfm_fuse.converters.runtimes import open_runtime

    tick = open_runtime(runtime, path, threads=1).timer()
    for _ in range(5):
        tick()
    times, spent = [], 0.0
    while len(times) < min_runs or (spent < min_seconds and len(times) < 2000):
        start = time.perf_counter()
        tick()
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return 1000.0 * float(np.median(times))


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


def profiled_openvino_ms(path: Path, runs: int = 100) -> float:
    """Median ms OpenVINO's CPU plugin spends in the operations of the IR at `path` (its
    performance counters), without the input and output reorders and the per-inference
    overhead that a one-layer model has and a layer inside a model does not."""
    totals = [sum(p.real_time.total_seconds() for p in nodes if p.node_type not in _OV_BOUNDARY)
              for nodes in _openvino_profiles(path, runs)]
    return 1000.0 * float(np.median(totals))


def _openvino_profiles(path: Path, runs: int, warmup: int = 5):
    """The CPU plugin's per-node counters (`profiling_info`) of each of `runs` inferences of the
    IR at `path` (one thread, latency mode, after `warmup` runs)."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {
        "INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True})
    request = compiled.create_infer_request()
    feeds = [np.zeros(tuple(p.shape), np.float32) for p in compiled.inputs]
    for _ in range(warmup):
        request.infer(feeds)
    for _ in range(runs):
        request.infer(feeds)
        yield request.profiling_info


_OV_BOUNDARY = ("Parameter", "Result", "Reorder", "Input", "Output")
# OpenVINO operation type of each timed Keras layer type, as the IR holds it
_OV_TYPES = {"Conv2D": "Convolution", "DepthwiseConv2D": "GroupConvolution", "Dense": "MatMul"}


def openvino_layer_ms(path: Path, runs: int = CONTEXT_RUNS) -> list[list]:
    """`[[operation type, output height and width, kernel, input channels, output channels, ms]]`:
    the median time OpenVINO's CPU plugin spends in each convolution and matrix product of the
    IR at `path`, inside the whole model (its performance counters; the plugin names a fused
    node after the operation it starts with). The IR's names are the converter's own
    (`Convolution_97`), so a node is known by its shape; `LatencyModel.fit_in_context` matches
    those to the model's layers.

    `CONTEXT_RUNS` (400) runs after 20 warm-up ones: with 100 after 5, the residual CNN's
    stage-1 convolution at 16 channels read 0.050, 0.061 and 0.090 ms in three profiles of one
    artefact, with 400 after 5 0.044-0.048."""
    import openvino as ov

    shapes = {}
    for op in ov.Core().read_model(str(path)).get_ordered_ops():
        kind = op.get_type_name()
        if kind not in _OV_TYPES.values():
            continue
        out = [int(d) for d in op.output(0).get_partial_shape().to_shape()]
        data = [int(d) for d in op.input(0).get_partial_shape().to_shape()]
        weights = [int(d) for d in op.input(1).get_partial_shape().to_shape()]
        if kind == "MatMul":
            if len(out) != 2:
                continue
            shapes[op.get_friendly_name()] = [kind, [], [], data[-1], out[-1]]
        else:  # NCHW data, OIHW (or GOIHW) weights
            shapes[op.get_friendly_name()] = [kind, out[2:], weights[-2:], data[1], out[1]]
    samples: dict[str, list[float]] = {}
    for nodes in _openvino_profiles(path, runs, warmup=20):
        for p in nodes:
            if p.node_name in shapes:
                samples.setdefault(p.node_name, []).append(p.real_time.total_seconds())
    return [shapes[name] + [1000.0 * float(np.median(times))]
            for name, times in samples.items()]


def cache_dir() -> Path:
    root = os.environ.get("TFM_FUSE_CACHE")
    return Path(root) / "latency" if root else Path.home() / ".cache" / "tfm_fuse" / "latency"


def _machine(runtime: str) -> str:
    """What a cached time is valid for: this CPU model, the runtime's version."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    module = {"litert_int8": "ai_edge_litert", "openvino_cpu": "openvino",
              "onnxruntime": "onnxruntime"}[runtime]
    try:
        from importlib.metadata import version
        ver = version(module.replace("_", "-"))
    except Exception:  # noqa: BLE001 - a version is only part of a cache key
        ver = "?"
    return f"{cpu}|{os.cpu_count()}|{module} {ver}"


class TimeCache:
    """Measured ms per (layer signature, counts) for one runtime on this machine, on disk."""

    def __init__(self, runtime: str, folder: Path | None = None):
        self.runtime = runtime
        self.path = (folder or cache_dir()) / f"{runtime}.json"
        self.machine = _machine(runtime)
        try:
            self.entries = json.loads(self.path.read_text()).get(self.machine, {})
        except (OSError, ValueError):
            self.entries = {}

    @staticmethod
    def key(signature: dict, n_in: int, n_out: int) -> str:
        return json.dumps([signature, n_in, n_out], sort_keys=True)

    def save(self) -> None:
        """Merges this machine's entries into the file, written atomically."""
        from tfm_fuse.files import write_text

        try:
            everything = json.loads(self.path.read_text())
        except (OSError, ValueError):
            everything = {}
        everything[self.machine] = {**everything.get(self.machine, {}), **self.entries}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text(self.path, json.dumps(everything))


def measure(runtime: str, jobs: list[tuple], *, cache: TimeCache, progress: bool = True
            ) -> dict[str, float]:
    """ms for each `(inner layer, input shape, n_in, n_out)` of `jobs` not in `cache`.

    The conversions and timings run in a fresh Python process (`measure_in_subprocess`)."""
    todo = {}
    for inner, in_shape, n_in, n_out in jobs:
        key = cache.key(_signature(inner, in_shape), n_in, n_out)
        if key not in cache.entries:
            todo[key] = {"layer": keras.saving.serialize_keras_object(inner),
                         "input": list(in_shape), "n_in": n_in, "n_out": n_out}
    if todo:
        times = measure_in_subprocess(runtime, list(todo.values()), progress=progress)
        cache.entries.update(zip(todo, times))
        cache.save()
    keys = [cache.key(_signature(inner, shape), a, b) for inner, shape, a, b in jobs]
    return {key: cache.entries[key] for key in keys}


def measure_in_subprocess(runtime: str, jobs: list[dict], *, progress: bool = True
                          ) -> list[float]:
    """Runs `jobs` (one-layer models, or `{"model": path of a .keras file}`) in a fresh Python
    process: dozens of conversions and three runtimes' native libraries stay out of the
    caller's process (a training one), and the timings are not taken next to its threads and
    memory."""
    import subprocess
    import sys

    from tfm_fuse.errors import ConversionError

    request = json.dumps({"runtime": runtime, "jobs": jobs, "progress": progress})
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", "tfm_fuse.pruning.latency_model", "--worker"],
                          input=request, capture_output=True, text=True, env=env)
    if progress and done.stderr:  # the worker's progress bar, as it drew it
        lines = [ln for ln in done.stderr.replace("\r", "\n").splitlines() if "latency" in ln]
        if lines:
            print(lines[-1], file=sys.stderr)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise ConversionError(f"Measuring latency on {runtime} failed (exit {done.returncode}): "
                              f"{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _deployed_artefact(keras_path: str, runtime: str, folder: Path) -> Path:
    """The `.keras` model at `keras_path` fused (`tfm_fuse.fuse`, as the README's pipeline does
    after `strip`) and converted by `tfm_fuse.converters` for `runtime` — what would be
    deployed — into `folder`.

    Fused, because that is the graph deployed: unfused, tf2onnx leaves a `Mul` per BatchNorm
    after a depthwise convolution and a `Pad` per `ZeroPadding2D`. (Whether that changes the
    speed-up is within this machine's noise: `benchmarks/fused_vs_unfused.py` on a half-MAC
    MobileNetV2, four runs, ONNX Runtime unfused / fused 1.83/2.39, 2.62/2.13, 1.84/1.86,
    1.97/1.76×.)
    """
    from tfm_fuse.converters.all import convert_for_timing
    from tfm_fuse.fusion import fuse

    model = fuse(keras.models.load_model(keras_path, compile=False), allow_unknown=True)
    calibration = np.random.default_rng(0).normal(
        size=(16,) + tuple(model.inputs[0].shape[1:])).astype("float32")
    return Path(convert_for_timing(model, folder, calibration, runtimes=(runtime,))[runtime])


def _worker() -> None:
    """`python -m tfm_fuse.pruning.latency_model --worker`: reads jobs as JSON on stdin, prints the
    measured ms per job as one JSON list on the last line of stdout."""
    import sys

    from tqdm import tqdm


    request = json.loads(sys.stdin.read())
    runtime, times = request["runtime"], []

    @quiet_tools
    def one(job: dict) -> float:
        with tempfile.TemporaryDirectory() as folder:
            if "model" in job:  # converted as deployed: tfm_fuse.converters' artefact
                path = _deployed_artefact(job["model"], runtime, Path(folder))
                if job.get("per_layer"):
                    return openvino_layer_ms(path)
                if "reference" not in job:
                    return time_artefact(runtime, path, min_runs=50, min_seconds=0.5)
                # side by side with the full model, whose artefact the caller keeps: the ratio
                # is what is measured, in the units of the full model's first time
                reference = Path(job["reference"]["folder"])
                written = reference / f"{runtime}.path"  # converted by an earlier job
                if not written.exists():
                    written.write_text(str(_deployed_artefact(
                        job["reference"]["model"], runtime, reference / runtime)))
                ref_path = written.read_text()
                table = compare({"reference": {runtime: ref_path},
                                 "model": {runtime: str(path)}}, runs=200, rounds=5,
                                progress=False)
                return job["reference"]["ms"] * table["model"][runtime] / \
                    table["reference"][runtime]
            inner = keras.saving.deserialize_keras_object(job["layer"])
            model = micro_model(inner, tuple(job["input"]), job["n_in"], job["n_out"])
            path = _write_artefact(model, runtime, Path(folder))
            return profiled_openvino_ms(path) if runtime == "openvino_cpu" else \
                time_artefact(runtime, path)

    for job in tqdm(request["jobs"], desc=f"latency table ({runtime})",
                    disable=not request["progress"], file=sys.stderr):
        times.append(one(job))
    print(json.dumps(times))


class LatencyModel:
    """Predicted latency (ms) on `runtime` of the stripped model, for a keep-vector of ids.

    Args:
        graph: the analysed (wrapped) model, as `MaskUpdater` holds it.
        runtime: `"litert_int8"`, `"openvino_cpu"` or `"onnxruntime"`.
        progress: show a bar while layers are measured. Defaults to `True`.
        cache_folder: where measured times are kept. Defaults to `cache_dir()`.
    """

    def __init__(self, graph: ModelGraph, runtime: str, *, progress: bool = True,
                 cache_folder: Path | None = None):
        self.runtime = check_runtime(runtime)
        self.graph = graph
        self.progress = progress
        self.n_ids = 1 + max((int(t.channels.max()) for t in graph.tensors if len(t.channels)),
                             default=0)
        self.cache = TimeCache(runtime, cache_folder)
        self.scale, self.offset = 1.0, 0.0
        self._block: int | None = None  # measured when first asked for (`block`)
        # {(n_in, n_out): ms} per layer, read inside whole models by `fit_in_context` (the
        # median over the models `context_keeps` describes)
        self.context_ms: list[dict[tuple[int, int], float]] = []
        self.context_keeps: list[np.ndarray] = []
        self._reference = None  # the full model's folder, once something is timed against it
        prunable = np.zeros(self.n_ids, dtype=bool)
        for g in graph.groups:
            if g.prunable:
                prunable[g.channels] = True
        plans, jobs, self._sigs = [], [], []
        self._shapes = []  # (OpenVINO operation type, output spatial size, kernel, multiplier)
        for node in timed_nodes(graph):
            inner = rules.unwrap(node.layer)
            src, dst = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
            in_shape = tuple(int(d) for d in src.shape[1:])
            tied = isinstance(inner, keras.layers.DepthwiseConv2D)
            in_pruned = _prunable_ids(prunable, src.channels)
            out_pruned = not tied and _prunable_ids(prunable, dst.channels)
            self._sigs.append(_signature(inner, in_shape))
            config = inner.get_config()
            self._shapes.append((_OV_TYPES[type(inner).__name__],
                                 [int(d) for d in dst.shape[1:-1]],
                                 list(config.get("kernel_size", ())),
                                 int(config.get("depth_multiplier", 1))))
            ins = _grid(in_shape[-1], in_pruned)
            outs = [None] if tied else _grid(int(dst.shape[-1]), out_pruned)
            for a in ins:
                for b in outs:
                    jobs.append((inner, in_shape, a, a * int(inner.get_config().get(
                        "depth_multiplier", 1)) if tied else b))
            plans.append((node, inner, in_shape, src, dst, ins, outs, tied, in_pruned,
                          out_pruned))
        times = measure(runtime, jobs, cache=self.cache, progress=progress)
        self.layers: list[TimedLayer] = []
        for (node, inner, in_shape, src, dst, ins, outs, tied, in_pruned, out_pruned), sig in zip(
                plans, self._sigs):
            mult = int(inner.get_config().get("depth_multiplier", 1))
            grid = monotone(np.array([[times[self.cache.key(sig, a, a * mult if tied else b)]
                                       for b in outs] for a in ins]))
            self.layers.append(TimedLayer(
                node.layer.name, src.channels if in_pruned else None,
                dst.channels if out_pruned else None, np.array(ins, float),
                np.array([0.0] if tied else outs, float), grid, tied))
        self.of_channel = self._layers_of_channels()

    @property
    def in_context(self) -> bool:
        """Whether `fit_in_context` replaced the one-layer times."""
        return bool(self.context_keeps)

    @property
    def block(self) -> int:
        """The runtime's channel block (`alignment`), measured once when first needed."""
        if self._block is None:
            self._block = self.alignment()
        return self._block

    def _layers_of_channels(self) -> dict[int, list[int]]:
        found: dict[int, list[int]] = {}
        for i, layer in enumerate(self.layers):
            for ids in (layer.in_ids, layer.out_ids):
                for c in np.unique(ids) if ids is not None else ():
                    found.setdefault(int(c), []).append(i)
        return found

    def layers_ms(self, keep: np.ndarray, which=None) -> float:
        """Sum of the interpolated table times of the layers `which` (default all)."""
        chosen = self.layers if which is None else [self.layers[i] for i in which]
        return sum(layer.at(keep, self.block) for layer in chosen)

    def layers_of(self, channel_ids: np.ndarray) -> list[int]:
        """Indices of the timed layers that read or write any of `channel_ids`."""
        return sorted({i for c in np.unique(channel_ids) for i in self.of_channel.get(int(c), ())})

    def predict(self, keep: np.ndarray) -> float:
        return self.scale * self.layers_ms(keep) + self.offset

    def model_key(self, keep: np.ndarray) -> str:
        """A cache key for the whole stripped model `keep` describes: its timed layers' counts
        (`WHOLE_MODEL` says how it was timed: times of another form are not reused)."""
        counts = [list(layer.counts(keep)) for layer in self.layers]
        return json.dumps([WHOLE_MODEL, self._sigs, counts], sort_keys=True)

    def _calibration_key(self) -> str:
        return json.dumps([f"calibration {WHOLE_MODEL}", self._sigs], sort_keys=True)

    def calibration_points(self) -> list[tuple[np.ndarray, float]]:
        """`[(keep, measured ms)]`: every whole-model time measured for this model so far."""
        points = []
        for key in self.cache.entries.get(self._calibration_key(), []):
            keep = np.asarray(json.loads(key), dtype=bool)
            points.append((keep, self.cache.entries[self.model_key(keep)]))
        return points

    def time_model(self, model: keras.Model, keep: np.ndarray, reference=None) -> float:
        """Measured ms of `model` (the stripped model `keep` describes), cached.

        With `reference` (a function returning the full model), `model` is timed side by side
        with it, interleaved in one process, and the time given is the ratio measured times
        the full model's first time: every time of this model is then relative to the same
        point, not to whatever the machine ran at when each was measured.

        Example:
            >>> latency.time_model(thin, keep, reference=lambda: strip(full_masks))
        """
        key = self.model_key(keep)
        if key not in self.cache.entries:
            with tempfile.TemporaryDirectory() as folder:
                saved = Path(folder) / "model.keras"
                model.save(saved)
                job = {"model": str(saved)}
                if reference is not None and not keep.all():
                    job["reference"] = self._reference_job(reference)
                (self.cache.entries[key],) = measure_in_subprocess(
                    self.runtime, [job], progress=False)
            known = self.cache.entries.setdefault(self._calibration_key(), [])
            known.append(json.dumps(keep.astype(int).tolist()))
            self.cache.save()
        self.calibrate()
        return self.cache.entries[key]

    def _reference_job(self, reference) -> dict:
        """What the worker needs to time against the full model: its `.keras` file and a
        folder where its artefact is converted once (both kept while this model lives), and
        its first measured time."""
        full = np.ones(self.n_ids, dtype=bool)
        if self._reference is None:
            self._reference = tempfile.TemporaryDirectory(prefix="tfm_fuse_reference_")
            model = reference()
            model.save(Path(self._reference.name) / "model.keras")
            self.time_model(model, full)  # measured alone once, if no earlier process did
        return {"folder": self._reference.name,
                "model": str(Path(self._reference.name) / "model.keras"),
                "ms": self.cache.entries[self.model_key(full)]}

    def calibrate(self) -> None:
        """Fit `scale` and `offset` to every whole-model time measured for this model.

        One point: the table scaled to it. Several: least squares of the measured times on the
        table's sums, the nearest points (in time) to the latest weighing most — what matters is
        the prediction near the model the allocation is converging to.
        """
        points = self.calibration_points()
        if not points:
            return
        sums = np.array([self.layers_ms(keep) for keep, _ in points])
        measured = np.array([ms for _, ms in points])
        scale, offset = float(measured[-1] / max(sums[-1], 1e-9)), 0.0
        if len(points) > 1 and np.ptp(sums) > 1e-9:
            weights = 1.0 / (1.0 + np.abs(measured - measured[-1]) / max(measured[-1], 1e-9))
            fit_scale, fit_offset = np.polyfit(sums, measured, 1, w=weights)
            if fit_scale > 0:  # else the table does not rank the points: keep it scaled
                scale, offset = float(fit_scale), float(fit_offset)
        self.scale, self.offset = scale, offset

    def context_key(self, keep: np.ndarray) -> str:
        """A cache key for the per-layer times of the whole stripped model `keep` describes."""
        return f"in context, {CONTEXT_RUNS} runs " + self.model_key(keep)

    def fit_in_context(self, designs: list[tuple[np.ndarray, Callable[[], keras.Model]]]
                       ) -> None:
        """Replace the table's times by the layers' own times inside whole models (OpenVINO).

        On OpenVINO's CPU plugin a one-layer model's counters misplace the time: the residual
        CNN's stem convolution (3 → 32 channels at 64×64) took 0.27 ms alone and 0.033 ms in the
        model, its 128 → 10 Dense 0.41 ms alone and 0.004 ms in the model, so the table put
        three quarters of the time in two layers that have little of it, and the budget pruned
        them. Here each of `designs` (`(keep, a function building the model stripped to it)`,
        from `context_designs`) is converted as deployed and profiled once (cached), each
        layer's time in it is read from the plugin's counters, and every layer's grid becomes
        those times where a design measured its counts, and elsewhere a least-squares fit
        `c0 + c1·n_in + c2·n_out + c3·n_in·n_out` of them (then `monotone`).

        Example (what `MaskUpdater.latency_model` does on OpenVINO):
            >>> lat.fit_in_context(updater._context_designs())
        """
        # one reading per model: a block design may be a width design too
        designs = list({self.context_key(keep): (keep, build) for keep, build in designs}.values())
        self.context_keeps = [keep for keep, _ in designs]
        todo = [(keep, build) for keep, build in designs
                if self.context_key(keep) not in self.cache.entries]
        if todo:
            with tempfile.TemporaryDirectory() as folder:
                jobs = []
                for i, (_, build) in enumerate(todo):
                    build().save(Path(folder) / f"{i}.keras")
                    jobs.append({"model": str(Path(folder) / f"{i}.keras"), "per_layer": True})
                measured = measure_in_subprocess(self.runtime, jobs, progress=self.progress)
            for (keep, _), nodes in zip(todo, measured):
                self.cache.entries[self.context_key(keep)] = self._match(keep, nodes)
            self.cache.save()
        samples: list[dict[tuple[int, int], list[float]]] = [{} for _ in self.layers]
        for keep, _ in designs:
            for i, ms in enumerate(self.cache.entries[self.context_key(keep)]):
                if ms is not None:
                    samples[i].setdefault(self.layers[i].counts(keep), []).append(ms)
        self.context_ms = [{k: float(np.median(v)) for k, v in found.items()}
                           for found in samples]
        for layer, found in zip(self.layers, self.context_ms):
            if found:
                layer.ms = monotone(_fitted_grid(layer, found))
        self._block = None  # measured again: the costliest layer may be another one now

    def _match(self, keep: np.ndarray, nodes: list[list]) -> list[float | None]:
        """Each timed layer's ms among `nodes` (`openvino_layer_ms`), found by its operation
        type, output size, kernel and channel counts at `keep`; layers of one shape share the
        nodes of that shape equally, a layer with none gets None."""
        def shape(i: int) -> str:
            kind, out_hw, kernel, mult = self._shapes[i]
            layer = self.layers[i]
            n_in, n_out = layer.counts(keep)
            n_in = int(layer.in_counts[-1]) if n_in < 0 else n_in
            n_out = n_in * mult if layer.tied else (int(layer.out_counts[-1]) if n_out < 0
                                                    else n_out)
            return json.dumps([kind, out_hw, kernel, n_in, n_out])

        node_ms: dict[str, float] = {}
        for *key, ms in nodes:
            node_ms[json.dumps(key)] = node_ms.get(json.dumps(key), 0.0) + ms
        keys = [shape(i) for i in range(len(self.layers))]
        return [node_ms[k] / keys.count(k) if k in node_ms else None for k in keys]

    def costliest_layers(self) -> list[TimedLayer]:
        """The layers whose output count pruning changes, the most time at full width first:
        the block is measured on the first (`alignment`; `MaskUpdater` takes the first whose
        output is one removable group, to read it inside the model)."""
        return sorted((layer for layer in self.layers if layer.out_ids is not None
                       and not layer.tied), key=lambda layer: -layer.ms[-1, -1])

    def block_times(self, layer: TimedLayer) -> dict[int, float] | None:
        """`{output count: ms}` of `layer` inside whole models with its input whole, at each of
        `block_counts` of its output, if `fit_in_context` read them all (and they are at least
        three), else None."""
        counts = block_counts(int(layer.out_counts[-1]))
        found = self.context_ms[self.layers.index(layer)] if self.context_ms else {}
        full_in = {-1, int(layer.in_counts[-1])}
        by_out = {n_out: ms for (n_in, n_out), ms in found.items() if n_in in full_in}
        if len(counts) < 3 or not set(counts) <= set(by_out):
            return None
        return {n: by_out[n] for n in counts}

    def alignment(self, *, candidates=BLOCK_CANDIDATES, tolerance: float = 0.03) -> int:
        """The runtime's channel block, measured on the model's costliest prunable layer.

        Where `fit_in_context` read a layer at every `block_counts` of its output, inside whole
        models (OpenVINO, `MaskUpdater.latency_model`), the block is `block_of_steps` of those
        times (of the costliest such layer; `candidates` and `tolerance` are `block_of`'s). A
        one-layer model there gave 16 in one session and 8 in the next for the residual CNN's
        32-channel convolution, whose counts 18-30 cost more than 32 inside the model:
        allocated in blocks of 8, the latency-aware model kept half the MACs of the MAC budget
        at the same latency, 6 points less accurate
        (`benchmarks/latency_budget_xeon_residual_cnn_openvino_base0_band.md`).

        Otherwise it times the costliest layer alone at every output count from 127 below a multiple of
        64 (or of 8, if it is narrower) up to it and returns `block_of` those times. With the
        table measured in context, a time above one at more channels is first lowered to it, as
        `monotone` does to the grid. (The other runtimes' blocks, on which the published
        figures rest, are taken from the raw times; lowering them there too moves several
        blocks by a factor of 2.)
        """
        layers = self.costliest_layers()
        if not layers:
            return 1
        for layer in layers:  # the costliest read in context at every block count, if any
            times = self.block_times(layer)
            if times is not None:
                return block_of_steps(times)
        best = layers[0]
        node = next(n for n in timed_nodes(self.graph) if n.layer.name == best.name)
        inner = rules.unwrap(node.layer)
        in_shape = tuple(int(d) for d in self.graph.tensors[node.inputs[0]].shape[1:])
        size = int(best.out_counts[-1])
        top = size // 64 * 64 if size >= 64 else max(8, size // 8 * 8)
        counts = list(range(max(1, top - 127), top + 1))
        times = measure(self.runtime, [(inner, in_shape, in_shape[-1], n) for n in counts],
                        cache=self.cache, progress=False)
        ms = np.array([times[self.cache.key(_signature(inner, in_shape), in_shape[-1], n)]
                       for n in counts])
        if self.in_context:
            ms = np.minimum.accumulate(ms[::-1])[::-1]
        return block_of(dict(zip(counts, ms)), candidates=candidates, tolerance=tolerance)


def block_of(ms: dict[int, float], *, candidates=BLOCK_CANDIDATES, tolerance: float = 0.03
             ) -> int:
    """The largest channel block that times `ms` (`{output count: ms}`) do not contradict.

    Candidates are taken from small to large; block `a` passes if counts that are not a
    multiple of `a` cost, in median, at least `1 - tolerance` of the next multiple up (keeping
    them saves nothing), and the first that fails ends the search. 1 if `2` fails already.

    Where the times cannot tell (flat ones, or a wide layer, where a whole block is a few
    per cent of the time: ResNet50's 2,048-channel layer at 32×32 passes 64 on ONNX Runtime
    from a nearly proportional cost), the larger block is kept on purpose: with the block
    taken as 1 there instead, the latency-aware ResNet50 kept 26.6 % of its MACs for the
    latency a block of 64 reached with 47.5 % (speed-up ÷ MAC ratio 0.60 vs 1.00,
    `benchmarks/latency_budget_xeon_resnet50_ort_block.md`): an unaligned count the runtime
    runs as a whole block wastes the very time the budget is counted in, an aligned one only
    loses granularity.

    Example:
        >>> block_of({n: 0.1 + 0.01 * -(-n // 16) for n in range(1, 129)})  # blocks of 16
        16
        >>> block_of({n: 0.01 * n for n in range(1, 65)})                   # proportional
        1
    """
    chosen = 1
    for a in candidates:
        ratios = [ms[n] / ms[-(-n // a) * a] for n in ms if n % a and -(-n // a) * a in ms]
        if not ratios or np.median(ratios) < 1 - tolerance:
            break
        chosen = a
    return chosen


def block_counts(size: int) -> list[int]:
    """Output counts at which a layer of `size` channels is timed inside the whole model to
    find its block (`block_of_steps`): every second count of the 32 up to the largest multiple
    of 32 (of all of them if it is narrower), 16 models at most.

    Example:
        >>> block_counts(40)
        [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32]
        >>> block_counts(12)
        [2, 4, 6, 8, 10, 12]
    """
    top = size // 32 * 32 if size >= 32 else size
    return list(range(max(2, top - 30), top + 1, 2))


def block_of_steps(ms: dict[int, float], *, candidates=CONTEXT_BLOCK_CANDIDATES,
                   tolerance: float = 0.5) -> int:
    """The channel block whose staircase fits times `ms` (`{output count: ms}`) best: for each
    block `a` (and 1), the least-squares line of the times on the counts rounded up to a
    multiple of `a`; the largest block whose residual is within `1 + tolerance` of the best
    one's is returned (where the times cannot tell, the larger block, as in `block_of`).

    Made for times read once per count inside a whole model: `block_of`'s median of ratios
    to the next multiple needs each count's time to be right, a fit over all of them only the
    steps. Times above one at more channels are lowered to it first (`monotone`): OpenVINO ran
    the residual CNN's convolution slower at 18-30 channels than at 32 (0.062-0.073 vs 0.058
    ms), a padded block with a slower tail.

    Example:
        >>> block_of_steps({n: 0.1 + 0.02 * -(-n // 16) for n in range(2, 33, 2)})
        16
        >>> block_of_steps({n: 0.01 * n for n in range(2, 33, 2)})  # even counts: 2 at least
        2
    """
    counts = np.array(sorted(ms))
    times = np.minimum.accumulate(np.array([ms[n] for n in counts])[::-1])[::-1]
    residual = {}
    for a in (1,) + tuple(candidates):
        blocked = (-(-counts // a) * a).astype(float)
        design = (np.c_[np.ones_like(blocked), blocked] if np.ptp(blocked)
                  else np.ones((len(blocked), 1)))
        coef = np.linalg.lstsq(design, times, rcond=None)[0]
        residual[a] = float(np.sum((times - design @ coef) ** 2))
    best = min(residual.values())
    return max(a for a, r in residual.items() if r <= best * (1 + tolerance) + 1e-15)


def _fitted_grid(layer: TimedLayer, measured: dict[tuple[int, int], float]) -> np.ndarray:
    """`layer`'s grid of ms: `measured` (`{(n_in, n_out): ms}`, -1 for a side not pruned)
    where it has the grid's counts, a least-squares bilinear fit of it elsewhere, with
    coefficients at least 0 so that more channels never take less time (or, with too few points
    for the fit, the old grid scaled to them)."""
    in_varies, out_varies = layer.in_ids is not None, layer.out_ids is not None and not layer.tied

    def features(n_in: float, n_out: float) -> list[float]:
        row = [1.0] + ([n_in] if in_varies else []) + ([n_out] if out_varies else [])
        return row + ([n_in * n_out] if in_varies and out_varies else [])

    cells = [(i, j) for i in range(len(layer.in_counts)) for j in range(len(layer.out_counts))]

    def counts(i: int, j: int) -> tuple[int, int]:
        return (int(layer.in_counts[i]) if in_varies else -1,
                int(layer.out_counts[j]) if out_varies else -1)

    points = list(measured)
    a = np.array([features(max(n_in, 0), max(n_out, 0)) for n_in, n_out in points])
    b = np.array([measured[k] for k in points])
    grid = np.empty_like(layer.ms)
    if len(points) >= a.shape[1] and np.linalg.matrix_rank(a) == a.shape[1]:
        coef = nonnegative_lstsq(a, b)
        for i, j in cells:
            n_in, n_out = counts(i, j)
            grid[i, j] = float(np.dot(features(max(n_in, 0), max(n_out, 0)), coef))
    else:
        ratio = np.median([measured[k] / max(layer.at_counts(k), 1e-9) for k in points])
        grid = layer.ms * ratio
    for i, j in cells:
        if counts(i, j) in measured:
            grid[i, j] = measured[counts(i, j)]
    return grid


def nonnegative_lstsq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`x >= 0` minimising `|a @ x - b|` (a few columns: every subset of them is tried).

    Example:
        >>> nonnegative_lstsq(np.array([[1., 0.], [1., 1.], [1., 2.]]), np.array([3., 2., 1.]))
        array([2., 0.])
    """
    best, best_err = np.zeros(a.shape[1]), float(np.sum(b ** 2))
    for subset in range(1, 2 ** a.shape[1]):
        cols = [c for c in range(a.shape[1]) if subset >> c & 1]
        x = np.zeros(a.shape[1])
        x[cols] = np.linalg.lstsq(a[:, cols], b, rcond=None)[0]
        err = float(np.sum((a @ x - b) ** 2))
        if (x >= 0).all() and err < best_err - 1e-15:
            best, best_err = x, err
    return best


def context_designs(sizes: dict[int, int], *, n_mixed: int = 4, seed: int = 0
                    ) -> list[dict[int, np.ndarray]]:
    """Masks per group for `LatencyModel.fit_in_context`: every group at each of `WIDTHS`, then
    `n_mixed` designs drawing each group's width from `WIDTHS` (so that a layer is measured
    with its input and output at different widths). `sizes`: `{group id: channels}`.

    Example:
        >>> [int(m[0].sum()) for m in context_designs({0: 8}, n_mixed=0)]
        [2, 4, 6, 8]
    """
    rng = np.random.default_rng(seed)
    widths = [dict.fromkeys(sizes, w) for w in WIDTHS]
    widths += [{gid: float(rng.choice(WIDTHS)) for gid in sizes} for _ in range(n_mixed)]
    designs = []
    for chosen in widths:
        designs.append({gid: _leading(n, max(1, int(round(chosen[gid] * n))))
                        for gid, n in sizes.items()})
    return designs


def block_designs(gid: int, size: int) -> list[dict[int, np.ndarray]]:
    """Masks for `LatencyModel.fit_in_context` that read a block: group `gid` (of `size`
    channels) at each of `block_counts(size)`, the other groups left whole.

    Example:
        >>> [int(m[3].sum()) for m in block_designs(3, 8)]
        [2, 4, 6, 8]
    """
    return [{gid: _leading(size, count)} for count in block_counts(size)]


def _leading(size: int, kept: int) -> np.ndarray:
    """A group mask of `size` channels keeping the first `kept` (which ones does not change
    the time)."""
    mask = np.zeros(size, dtype=np.float32)
    mask[:kept] = 1.0
    return mask


class LatencyCost:
    """A `LatencyModel` as `allocation.allocate_to_cost` reads it, for the graph's groups."""

    def __init__(self, latency: LatencyModel, graph: ModelGraph):
        from tfm_fuse.pruning.allocation import sharing_groups

        self.latency = latency
        self._layers = {g.id: latency.layers_of(g.channels) for g in graph.groups}
        self._neighbours = sharing_groups(self._layers)

    def predict(self, keep: np.ndarray) -> float:
        return self.latency.predict(keep)

    def partial(self, keep: np.ndarray, gid: int) -> float:
        return self.latency.scale * self.latency.layers_ms(keep, self._layers.get(gid, ()))

    def neighbours(self, gid: int) -> list[int]:
        return self._neighbours.get(gid, [])


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--worker"]:
        _worker()
