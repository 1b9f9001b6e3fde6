"""Transfer learning as Keras users write it: a nested backbone, a new head, FuPruner during fit.

`base = keras.applications.MobileNetV2(include_top=False)` is called as one layer on the inputs
(the keypoint-detection and fine-tuning examples of keras.io do this); `tfm_fuse.prune` analyses
through it, so one pruning decision can run from the backbone's last convolution into the head.
`strip` returns a flat model (the backbone's layers under their own names) that computes what the
masked one does. Weights start from random (no downloads here); the digits are shown as RGB.
Then converts the stripped model for the boards asked (`--board`): the Coral Edge TPU (full-int8
`.tflite`), a Jetson board (ONNX FP32 + INT8 Q/DQ for TensorRT) and the Intel NCS2 (OpenVINO
FP16 IR), each checked against Keras on held-out digits, and prints the report a user reads.
Writes `pruned.keras`, `summary.json` and one folder per board to OUT.

Run:  python examples/transfer_learning.py [--out transfer_out] [--epochs 6]
          [--board edgetpu jetson ncs2] [--quick]
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfm_fuse  # noqa: E402
from tfm_fuse.callbacks import FuPruner  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--out", type=Path, default=Path("transfer_out"))
ap.add_argument("--epochs", type=int, default=6)
ap.add_argument("--board", nargs="*", default=["edgetpu", "jetson", "ncs2"],
                choices=["edgetpu", "jetson", "ncs2"], help="boards to convert for (default: all)")
ap.add_argument("--quick", action="store_true", help="tiny data and 2 epochs (for tests)")
args = ap.parse_args()
# whole batches of 64 in the training split (TF 2.21 can crash on a partial last batch)
epochs, n_train, n_test = (2, 768, 256) if args.quick else (args.epochs, 6144, 2000)
args.out.mkdir(parents=True, exist_ok=True)

(x, y), (x_test, y_test) = tfm_fuse.app.data.load_mnist(n_train=n_train, n_test=n_test)
x, x_test = (tfm_fuse.app.data.as_rgb(a, 32) * 255.0 for a in (x, x_test))  # RGB in [0, 255]

base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3))
inputs = keras.Input((32, 32, 3))
features = base(inputs / 127.5 - 1.0)                   # the nested backbone, keras.ops scaling
outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(features))
model = keras.Model(inputs, outputs, name="digits_on_mobilenetv2")

masked = tfm_fuse.prune(model, method="fupruner", macs=0.5)
masked.compile(optimizer=keras.optimizers.Adam(2e-3), metrics=["accuracy"],
               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = masked.fit(x, y, batch_size=64, epochs=epochs, validation_split=1 / 6,
                     callbacks=[FuPruner()], verbose=2)
small = tfm_fuse.strip(masked)
small.save(args.out / "pruned.keras")

accuracy = float(np.mean(small.predict(x_test, verbose=0).argmax(-1) == y_test))
difference = float(np.max(np.abs(small.predict(x_test[:64], verbose=0)
                                 - masked.predict(x_test[:64], verbose=0))))
summary = {"test_accuracy": accuracy, "last_val_accuracy": history.history["val_accuracy"][-1],
           "strip_max_abs_difference": difference,
           "nested_models_left": sum(isinstance(layer, keras.Model) for layer in small.layers),
           **{f"{k}_removed": v for k, v in
              tfm_fuse.profile(model).reduction(tfm_fuse.profile(small)).items()}}

# --- deployment: one artefact per board, each checked against the Keras model ---------------
from tfm_fuse.converters import convert_all  # noqa: E402

TARGET_OF_BOARD = {"edgetpu": "edgetpu", "jetson": "jetson", "ncs2": "openvino"}
targets = tuple(TARGET_OF_BOARD[b] for b in args.board)
# a 2-epoch model is barely trained: its int8 top-1 agreement is reported, not required
reports = convert_all(small, args.out / "boards", representative_data=x[:256],
                      validation_data=x_test[:256], targets=targets, overwrite=True,
                      min_top1=None if args.quick else 0.99)
for board in args.board:
    print(reports[TARGET_OF_BOARD[board]])
summary["boards_ok"] = {board: reports[TARGET_OF_BOARD[board]].ok for board in args.board}
(args.out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
