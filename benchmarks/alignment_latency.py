"""Does `align=` pay off? Latency of stripped models with aligned vs unaligned channel counts.

A CIFAR-sized residual CNN (stage widths 32/64/128, 32×32×3 input) is pruned one-shot at several
rates with `align=None`, 8 and 16, stripped, and run single-threaded, batch 1, in LiteRT (int8,
full-integer), OpenVINO CPU (fp32) and ONNX Runtime (fp32). Reported: channel widths, MACs, and
median latency; the last columns give each runtime's speed-up over the unpruned model next to
the MAC ratio. Compare rows within one run (the machine is shared and noisy).

Run:  python benchmarks/alignment_latency.py [--runs 300]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfm_fuse  # noqa: E402

L = keras.layers
SHAPE = (32, 32, 3)


def resnet(widths=(32, 64, 128)) -> keras.Model:
    i = keras.Input(SHAPE)
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(widths[0], 3, padding="same")(i)))
    for k, w in enumerate(widths):
        if k:
            x = L.ReLU()(L.BatchNormalization()(L.Conv2D(w, 3, strides=2, padding="same")(x)))
        y = L.ReLU()(L.BatchNormalization()(L.Conv2D(w, 3, padding="same")(x)))
        y = L.BatchNormalization()(L.Conv2D(w, 3, padding="same")(y))
        x = L.ReLU()(L.Add()([x, y]))
    return keras.Model(i, L.Dense(10)(L.GlobalAveragePooling2D()(x)))


def _median_ms(fn, runs: int) -> float:
    for _ in range(20):
        fn()
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        fn()
        t.append(time.perf_counter() - s)
    return 1000 * float(np.median(t))


def litert_int8(model, x, runs, tmp) -> float:
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    interp = Interpreter(model_content=conv.convert(), num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], np.zeros(inp["shape"], np.int8))
    return _median_ms(interp.invoke, runs)


def openvino_cpu(model, x, runs, tmp) -> float:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(ov.convert_model(model, input=[(1, *SHAPE)]), "CPU",
                                  {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"})
    req = compiled.create_infer_request()
    return _median_ms(lambda: req.infer([x[:1]]), runs)


def onnxruntime_cpu(model, x, runs, tmp) -> float:
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((1, *SHAPE), tf.float32, name="x"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return _median_ms(lambda: sess.run(None, {name: x[:1]}), runs)


RUNTIMES = {"LiteRT int8": litert_int8, "OpenVINO CPU": openvino_cpu, "ORT CPU": onnxruntime_cpu}


def widths(model) -> str:
    return "/".join(str(l.filters) for l in model.layers if isinstance(l, L.Conv2D))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--rates", type=float, nargs="+", default=[0.3, 0.45, 0.6])
    args = ap.parse_args()
    keras.utils.set_random_seed(0)
    base = resnet()
    x = np.random.default_rng(0).normal(size=(16, *SHAPE)).astype("float32")
    cases = [("unpruned", base)]
    for rate in args.rates:
        for align in (None, 8, 16):
            masked = tfm_fuse.prune(base, method="l1", rate=rate, align=align)
            cases.append((f"rate {rate} align {align}", tfm_fuse.strip(masked)))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in cases:
            lat = {rt: fn(model, x, args.runs, tmp) for rt, fn in RUNTIMES.items()}
            results.append((name, model, tfm_fuse.profile(model).macs, lat))
            print(f"measured {name}", flush=True)
    base_macs, base_lat = results[0][2], results[0][3]
    head = f"{'case':<22} {'MACs':>11} {'MAC x':>6} " + " ".join(
        f"{rt + ' ms':>15} {'x':>5}" for rt in RUNTIMES)
    print(head)
    for name, model, macs, lat in results:
        cells = " ".join(f"{lat[rt]:>15.3f} {base_lat[rt] / lat[rt]:>5.2f}" for rt in RUNTIMES)
        print(f"{name:<22} {macs:>11,} {base_macs / macs:>6.2f} {cells}")
    print("\nconv widths per case:")
    for name, model, _, _ in results:
        print(f"  {name:<22} {widths(model)}")


if __name__ == "__main__":
    main()
