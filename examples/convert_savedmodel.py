"""Convert an existing SavedModel directory to every edge target: Edge TPU, TensorRT, OpenVINO, ONNX.

Without SAVED_MODEL, first trains a small residual CNN on the shipped MNIST and exports it with
`model.export(OUT/saved_model)`. Each converter writes its artefacts plus `report.json` and
`report.txt` to OUT/<target>; the script prints every report and exits 1 if one is not ok.
Calibration (int8) uses MNIST training images; validation against Keras uses held-out ones.

Run:  python examples/convert_savedmodel.py [SAVED_MODEL] [--out convert_out] [--quick]
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402

import tfm_fuse  # noqa: E402
from tfm_fuse import converters  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("saved_model", nargs="?", type=Path, help="SavedModel directory (28x28x1 input)")
ap.add_argument("--out", type=Path, default=Path("convert_out"))
ap.add_argument("--quick", action="store_true", help="tiny training and calibration (for tests)")
args = ap.parse_args()
n_train, n_val, epochs = (1024, 128, 1) if args.quick else (8000, 512, 3)
(x, y), (x_val, _) = tfm_fuse.app.data.load_mnist(n_train=n_train, n_test=n_val)

path = args.saved_model
if path is None:
    keras.utils.set_random_seed(0)
    model = tfm_fuse.app.models.residual_cnn()
    model.compile(keras.optimizers.Adam(2e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=2)
    path = args.out / "saved_model"
    model.export(str(path), verbose=False)
    print(f"exported {path}")

calib = dict(representative_data=x[:500], validation_data=x_val)
targets = {
    "edgetpu": lambda out: converters.edgetpu.convert(path, out, **calib, overwrite=True),
    "tensorrt": lambda out: converters.tensorrt.convert(path, out, **calib, overwrite=True),
    "openvino": lambda out: converters.openvino.convert(path, out, validation_data=x_val, overwrite=True),
    "onnx": lambda out: converters.onnx.convert(path, out, validation_data=x_val, overwrite=True),
}
ok = {}
for name, convert in targets.items():
    try:
        report = convert(args.out / name)
        print(report, "\n")
        ok[name] = report.ok
    except tfm_fuse.TfmFuseError as e:  # ConversionError: nothing was left in OUT/<name>
        print(f"{name}: FAILED: {e}\n")
        ok[name] = False
print("  ".join(f"{name}: {'ok' if good else 'FAILED'}" for name, good in ok.items()))
sys.exit(0 if all(ok.values()) else 1)
