"""Does fusing change how latency scales with pruning? The full and the half-MAC model, each
timed unfused (`strip`) and fused (`fuse(strip(...))`, what is deployed), side by side.

MobileNetV2 (`weights=None`, 96×96, BatchNorm statistics set on uniform inputs: latency does not
depend on the weights) or the residual CNN (32/64/128, 64×64); half the MACs removed with the
MAC budget's allocation (`align=8`); every case converted with `tfm_fuse.app.latency.export`
and timed with `compare` (one thread, batch 1, interleaved rounds). Prints ms per case and
the speed-up unfused and fused per runtime. Why it matters: the latency loop must time what is
deployed (`tfm_fuse.pruning.latency_model._deployed_artefact` fuses first).

Run alone:  python benchmarks/fused_vs_unfused.py [mobilenet_v2 | residual_cnn]   (about 2 min)
"""

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfm_fuse  # noqa: E402
from latency_budget import mac_sweep  # noqa: E402  (beside this script)
from tfm_fuse.app import latency as app_latency  # noqa: E402

RUNTIMES = ("onnxruntime", "openvino_cpu", "litert_int8")


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "mobilenet_v2"
    if name == "mobilenet_v2":
        base = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), classes=10)
    else:
        base = tfm_fuse.app.models.residual_cnn((64, 64, 3), widths=(32, 64, 128))
    x = np.random.default_rng(0).uniform(size=(64,) + tuple(base.inputs[0].shape[1:]))
    x = x.astype("float32")
    tfm_fuse.app.models.reestimate_batchnorm(base, x)
    full, thin = tfm_fuse.strip(tfm_fuse.wrap(base)), mac_sweep(base, (0.5,))[0.5]
    print(f"{name}: MAC ratio {tfm_fuse.profile(full).macs / tfm_fuse.profile(thin).macs:.2f}")
    models = {"full": full, "thin": thin, "full fused": tfm_fuse.fuse(full),
              "thin fused": tfm_fuse.fuse(thin)}
    with tempfile.TemporaryDirectory() as tmp:
        cases = {key: app_latency.export(model, Path(tmp) / key.replace(" ", "_"), x,
                                         runtimes=RUNTIMES) for key, model in models.items()}
        ms = app_latency.compare(cases, runs=200, rounds=5)
    for rt in RUNTIMES:
        times = ", ".join(f"{key} {ms[key][rt]:.3f}" for key in models)
        print(f"{rt}: ms {times}; speed-up unfused {ms['full'][rt] / ms['thin'][rt]:.2f}×, "
              f"fused {ms['full fused'][rt] / ms['thin fused'][rt]:.2f}×")


if __name__ == "__main__":
    main()
