"""tfmot unstructured magnitude sparsity on a tf_keras copy of `tfm_fuse.app.models.residual_cnn`.

Run by `latency_vs_macs.py` in its own process (importing tensorflow-model-optimization sets
`TF_USE_LEGACY_KERAS=1` in-process, which must never happen where tfm_fuse / Keras 3 runs).
It needs `tensorflow-model-optimization==0.8.1` and `tf-keras==2.21.0`, e.g. in a venv made with
`python -m venv --system-site-packages /tmp/tfmot_venv`.

Steps: build the same architecture (same layer names) in tf_keras, load the weights the Keras 3
model saved to `--weights` (an `.npz` of `layer/index` arrays), wrap with
`prune_low_magnitude(ConstantSparsity(sparsity, begin_step=0, frequency=1))`, run four training
steps at learning rate 0 with `UpdatePruningStep` (this applies the masks; weights do not move;
with the default frequency=100 the masks are never updated in so few steps: the callback's first
step is 1), `strip_pruning`, and write to `--out`:
    saved_model/        the stripped (sparse-weight, dense-layer) model
    model_fp32.tflite   LiteRT fp32
    model_int8.tflite   LiteRT full-integer, uint8 I/O (as tfm_fuse's Edge TPU converter writes)
    stats.json          weight sparsity, dense MACs and non-zero-weight MACs, conv widths

Run:  python benchmarks/_tfmot_sparsity.py --weights W.npz --widths 32 64 128 --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def residual_cnn_tf_keras(input_shape, widths, classes=10):
    """`tfm_fuse.app.models.residual_cnn(blocks_per_stage=1)`, layer for layer, in tf_keras."""
    import tf_keras
    L = tf_keras.layers

    def block(x, filters, stride, name):
        y = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                     name=f"{name}_conv1")(x)
        y = L.BatchNormalization(momentum=0.9, epsilon=1e-3, name=f"{name}_bn1")(y)
        y = L.ReLU(name=f"{name}_relu1")(y)
        y = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
        y = L.BatchNormalization(momentum=0.9, epsilon=1e-3, name=f"{name}_bn2")(y)
        if stride != 1 or x.shape[-1] != filters:
            x = L.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
            x = L.BatchNormalization(momentum=0.9, epsilon=1e-3, name=f"{name}_proj_bn")(x)
        return L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([x, y]))

    inputs = tf_keras.Input(input_shape, name="image")
    x = L.Conv2D(widths[0], 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = L.ReLU(name="stem_relu")(L.BatchNormalization(momentum=0.9, epsilon=1e-3,
                                                      name="stem_bn")(x))
    for s, width in enumerate(widths):
        x = block(x, width, 2 if s > 0 else 1, f"stage{s + 1}_block1")
    x = L.GlobalAveragePooling2D(name="pool")(x)
    return tf_keras.Model(inputs, L.Dense(classes, name="logits")(x), name="residual_cnn")


def macs(model, nonzero: bool) -> int:
    """Multiply-accumulates of Conv2D and Dense layers (all, or non-zero weights only)."""
    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in ("Conv2D", "Dense"):
            continue
        kernel = layer.get_weights()[0]
        n = int(np.count_nonzero(kernel)) if nonzero else kernel.size
        positions = int(np.prod(layer.output.shape[1:-1])) if kind == "Conv2D" else 1
        total += n * positions
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, help=".npz of the Keras 3 model's weights")
    ap.add_argument("--widths", type=int, nargs=3, required=True)
    ap.add_argument("--input-shape", type=int, nargs=3, default=(32, 32, 3))
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import tensorflow as tf
    import tensorflow_model_optimization as tfmot  # sets TF_USE_LEGACY_KERAS=1: this process only
    import tf_keras

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = residual_cnn_tf_keras(tuple(args.input_shape), tuple(args.widths))
    saved = np.load(args.weights)
    for layer in model.layers:
        n = len(layer.weights)
        if n:
            layer.set_weights([saved[f"{layer.name}/{i}"] for i in range(n)])

    sparsity = tfmot.sparsity.keras
    pruned = sparsity.prune_low_magnitude(
        model, pruning_schedule=sparsity.ConstantSparsity(args.sparsity, begin_step=0, frequency=1))
    pruned.compile(optimizer=tf_keras.optimizers.SGD(learning_rate=0.0),
                   loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, *args.input_shape)).astype(np.float32)
    y = rng.integers(0, 10, size=(32,))
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0,  # 4 steps
               callbacks=[sparsity.UpdatePruningStep()])  # masks applied, lr 0
    stripped = sparsity.strip_pruning(pruned)
    # fit ran BatchNorm in training mode (moving statistics moved a little): put them back,
    # so only the pruned kernels differ from the Keras 3 baseline.
    for layer in stripped.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.set_weights([saved[f"{layer.name}/{i}"] for i in range(len(layer.weights))])

    kernels = [l.get_weights()[0] for l in stripped.layers
               if type(l).__name__ in ("Conv2D", "Dense")]
    zeros = sum(int((k == 0).sum()) for k in kernels)
    size = sum(k.size for k in kernels)

    stripped.export(str(out / "saved_model"))
    conv = tf.lite.TFLiteConverter.from_saved_model(str(out / "saved_model"))
    (out / "model_fp32.tflite").write_bytes(conv.convert())
    conv = tf.lite.TFLiteConverter.from_saved_model(str(out / "saved_model"))
    calib = rng.normal(size=(64, *args.input_shape)).astype(np.float32)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([c[None]] for c in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.uint8
    (out / "model_int8.tflite").write_bytes(conv.convert())

    stats = {"weight_sparsity": zeros / size, "macs_dense": macs(stripped, nonzero=False),
             "macs_nonzero": macs(stripped, nonzero=True),
             "widths": [l.filters for l in stripped.layers if type(l).__name__ == "Conv2D"],
             "tfmot": tfmot.__version__, "tf_keras": tf_keras.__version__}
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
