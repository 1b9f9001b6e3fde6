"""One model per Edge TPU constraint of Coral's operations table, as the report states it: the
ops mapped, the first op left on the CPU and why, and the size caveats; the Keras U-Net example.

Run:  python benchmarks/edgetpu_constraints.py
"""
import sys, tempfile
from pathlib import Path
import keras, numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "converters"))
from tfm_fuse.converters import edgetpu
from test_conv_edgetpu_table import keras_example_unet
L = keras.layers
RNG = np.random.default_rng(0)
tmp = Path(tempfile.mkdtemp())

def conv(model, name):
    x = RNG.uniform(size=(24, *model.input_shape[1:])).astype("float32")
    r = edgetpu.convert(model, tmp / name, representative_data=x, min_top1=None, require_full_tpu=False)
    chk = r.details["edgetpu_check"]
    cpu = [f"{o['op']}: {'; '.join(o['reasons'])}" for o in chk["ops"] if o["reasons"]]
    cav = [f"{o['op']} {c}" for o in chk["ops"] for c in o["caveats"]]
    print(f"- {name}: {chk['tpu_ops']}/{len(chk['ops'])} ops on the TPU; first CPU op: {chk['first_cpu_op']}")
    for c in cpu[:2]: print(f"    CPU: {c}")
    for c in cav[:2]: print(f"    caveat: {c}")

def head(x, inputs): return keras.Model(inputs, L.Dense(3)(L.GlobalAveragePooling2D()(x)))
i = keras.Input((8, 8, 3)); conv(head(L.PReLU()(L.Conv2D(4, 3, padding="same")(i)), i), "PReLU()")
i = keras.Input((8, 8, 3)); conv(head(L.PReLU(shared_axes=[1, 2])(L.Conv2D(4, 3, padding="same")(i)), i), "PReLU(shared_axes=1,2)")
i = keras.Input((8, 8, 3)); conv(head(L.UpSampling2D(interpolation="bilinear")(L.Conv2D(4, 3, padding="same")(i)), i), "UpSampling2D(bilinear)")
i = keras.Input((8, 8, 3)); x = L.Conv2D(4, 3, padding="same")(i); conv(head(x[:, ::2, ::2, :], i), "strided slice x[:, ::2, ::2]")
i = keras.Input((128, 128, 3)); x = L.Conv2D(8, 3, padding="same")(i); x = L.Reshape((16384, 8))(x); conv(keras.Model(i, L.Dense(3)(L.GlobalAveragePooling1D()(x))), "Reshape of 131,072 elements")
keras.utils.set_random_seed(0)
u = keras_example_unet()
conv(u, "Keras U-Net (Conv2DTranspose, UpSampling2D)")
