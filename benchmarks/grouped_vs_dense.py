"""Block-diagonal (grouped) convolutions against dense aligned ones at equal MACs, per runtime.

Pivoting (`tfm_fuse.pruning.pivot`) can order channels so that kept weights form blocks; if the
blocks were block-diagonal, they could be emitted as a grouped convolution (`groups=g`: 1/g of
the dense MACs). Whether to do so is a question of measured speed: this script times, for the
layer shapes of the benchmark models, one layer converted as `tfm_fuse.pruning.latency_model` converts
its table entries (full-integer LiteRT, OpenVINO IR on its CPU counters; ONNX Runtime from one
Conv node written directly, since tf2onnx cannot convert a Keras grouped convolution; one
thread, batch 1, median):

- dense          C → C, the unpruned layer (the reference)
- grouped g      C → C with `groups=g` (MACs / g): what block-diagonal emission gives
- dense out/g    C → C/g (MACs / g): channel pruning of the outputs, aligned
- dense both     C/√g → C/√g, rounded to a multiple of 8 (MACs ≈ / g): pruning on both sides

Speed-up ÷ MAC ratio > 1 means the form turns removed MACs into more than proportional time.
Prints a table and writes `benchmarks/grouped_vs_dense.md`. Run alone (timings).

Run:  python benchmarks/grouped_vs_dense.py [--runtimes litert_int8 openvino_cpu onnxruntime]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfm_fuse.pruning import latency_model as latency  # noqa: E402

HERE = Path(__file__).parent
# (input side, channels, kernel): residual CNN @64 stages 2-3, a MobileNetV2 @96 1×1 projection
SHAPES = [(32, 64, 3), (16, 128, 3), (12, 192, 1), (6, 320, 1)]
GROUPS = (2, 4)


def onnx_conv(path: Path, side: int, c_in: int, c_out: int, kernel: int, groups: int) -> Path:
    """One NCHW Conv node with `group=groups`, written with onnx.helper: tf2onnx cannot convert
    a Keras grouped convolution (it leaves a StatefulPartitionedCall ONNX Runtime rejects)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(size=(c_out, c_in // groups, kernel, kernel)).astype("float32") * 0.1
    b = np.zeros(c_out, "float32")
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=groups,
                            pads=[kernel // 2] * 4, kernel_shape=[kernel, kernel])
    graph = helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in, side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c_out, side, side])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def time_layer(runtime: str, side: int, c_in: int, c_out: int, kernel: int, groups: int = 1
               ) -> float:
    layer = keras.layers.Conv2D(c_out, kernel, padding="same", groups=groups, use_bias=True)
    layer.build((None, side, side, c_in))
    model = latency.micro_model(layer, (side, side, c_in), c_in, c_out)
    with tempfile.TemporaryDirectory() as folder:
        if runtime == "onnxruntime":
            path = onnx_conv(Path(folder) / "model.onnx", side, c_in, c_out, kernel, groups)
        else:
            path = latency._write_artefact(model, runtime, Path(folder))
        if runtime == "openvino_cpu":
            return latency.profiled_openvino_ms(path, runs=300)
        return latency.time_artefact(runtime, path, min_runs=200, min_seconds=0.3)


def aligned(n: float, to: int = 8) -> int:
    return max(to, int(round(n / to)) * to)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtimes", nargs="+", default=list(latency.RUNTIMES),
                        choices=list(latency.RUNTIMES))
    args = parser.parse_args()
    lines = ["| runtime | layer | form | MACs / dense | ms | speed-up | speed-up ÷ MAC ratio |",
             "|" + "---|" * 7]
    wins = {rt: {"grouped": [], "dense": []} for rt in args.runtimes}
    for runtime in args.runtimes:
        for side, c, k in SHAPES:
            name = f"{side}×{side}×{c}, {k}×{k}"
            dense = time_layer(runtime, side, c, c, k)
            forms = [("dense", c, c, 1)]
            for g in GROUPS:
                both = aligned(c / np.sqrt(g))
                forms += [(f"grouped {g}", c, c, g), (f"dense out/{g}", c, c // g, 1),
                          (f"dense both ≈/{g}", both, both, 1)]
            for form, c_in, c_out, g in forms:
                ms = dense if form == "dense" else time_layer(runtime, side, c_in, c_out, k, g)
                mac_fraction = c_in * c_out / g / (c * c)
                ratio = (dense / ms) / (1 / mac_fraction)
                if form != "dense":
                    wins[runtime]["grouped" if g > 1 else "dense"].append(ratio)
                lines.append(f"| {runtime} | {name} | {form} | {mac_fraction:.2f} | {ms:.4f} | "
                             f"{dense / ms:.2f}× | {ratio:.2f} |")
            print("\n".join(lines[-len(forms):]), flush=True)
    summary = ["", "| runtime | median speed-up ÷ MAC ratio, grouped | same, dense pruned |",
               "|---|---|---|"]
    for runtime, w in wins.items():
        summary.append(f"| {runtime} | {np.median(w['grouped']):.2f} | {np.median(w['dense']):.2f} |")
    text = "\n".join(lines + summary)
    print("\n".join(summary))
    (HERE / "grouped_vs_dense.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
