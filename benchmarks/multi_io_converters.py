"""A two-input, two-output model (image + side information into a class head and a box head)
through every converter and board profile: each output's error relative to its own scale.

Calibration as a tf.data of ((image, meta), y) for the Edge TPU and a tuple for the Jetson Orin
profile; validation as a dict by input name. The NCS rows need pyenv's Python 3.10 / 3.9.

Run:  python benchmarks/multi_io_converters.py
"""
import tempfile
from pathlib import Path
import keras, numpy as np, tensorflow as tf
from tfm_fuse.converters import edgetpu, onnx, openvino, tensorrt
L = keras.layers
keras.utils.set_random_seed(0)
image, meta = keras.Input((8, 8, 3), name="image"), keras.Input((4,), name="meta")
x = L.GlobalAveragePooling2D()(L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(image))))
h = L.Concatenate()([x, L.Dense(8, activation="relu")(L.Rescaling(3.0)(meta))])
model = keras.Model([image, meta], [L.Dense(5, name="classes")(h), L.Dense(4, name="box")(h)])
rng = np.random.default_rng(0)
xi, xm = rng.uniform(size=(500, 8, 8, 3)).astype("float32"), rng.uniform(size=(500, 4)).astype("float32")
calib = tf.data.Dataset.from_tensor_slices(((xi[:256], xm[:256]), np.zeros(256))).batch(32)
val = {"image": xi[256:], "meta": xm[256:]}
out = Path(tempfile.mkdtemp())
runs = {
    "onnx": lambda: onnx.convert(model, out / "onnx", validation_data=val),
    "edgetpu": lambda: edgetpu.convert(model, out / "etpu", representative_data=calib, validation_data=val, min_top1=None),
    "jetson-orin": lambda: tensorrt.convert(model, out / "orin", representative_data=(xi[:256], xm[:256]), validation_data=val, min_top1=None),
    "jetson-nano": lambda: tensorrt.convert(model, out / "nano", board="jetson-nano", validation_data=val, min_top1=None),
    "ncs2": lambda: openvino.convert(model, out / "ncs2", validation_data=val, legacy_runtime=True),
    "ncs": lambda: openvino.convert(model, out / "ncs", board="ncs", validation_data=val),
}
for name, run in runs.items():
    r = run()
    for key, m in r.fidelity.items():
        each = ", ".join(f"{o['max_abs_error_rel']:.2e}" + (f" (top-1 {o['top1_agreement']:.1%})" if "top1_agreement" in o else "") for o in m["outputs"])
        print(f"| {name} | {key} | {m['n_samples']} | {each} | {r.ok} |")
