"""Where the time that pruning cannot remove goes: the residual CNN's prefixes, timed side by side.

`latency_budget.py` measures a "fixed share" (the time that does not fall with MACs) of 89 % on
LiteRT int8 and 50-58 % on OpenVINO CPU for the residual CNN (32/64/128 at 64×64) on an AMX
Xeon. This script says where it is: the model cut after the stem, after each stage, the whole
model, the same architecture thinned to 8/8/8 channels, and an identity model (input and output
only), each converted as deployed (`tfm_fuse.app.latency.export`, fused) and timed side by side
(one thread, batch 1, interleaved rounds). Weights are random (scaled by fan-in); timing does
not depend on them. A prefix returns its whole activation (64×64×32 after stage 1), and copying
it out is part of its time: on OpenVINO (a reorder out of its blocked layout) that makes the
stage-1 prefix slower than the whole model. The clean comparison is the whole model against
its 8/8/8 twin (27× fewer MACs).

Run alone:  python benchmarks/fixed_time_split.py [--runtimes litert_int8 openvino_cpu onnxruntime]
Writes benchmarks/fixed_time_split.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfm_fuse  # noqa: E402
from tfm_fuse.app import latency as app_latency  # noqa: E402
from tfm_fuse.app.models import randomize_weights, residual_cnn  # noqa: E402

HERE = Path(__file__).parent


def variants(size: int = 64) -> dict[str, keras.Model]:
    """`{name: model}`: prefixes of the residual CNN, the whole of it, its 8/8/8 twin, identity."""
    full = randomize_weights(residual_cnn((size, size, 3), widths=(32, 64, 128)))
    thin = randomize_weights(residual_cnn((size, size, 3), widths=(8, 8, 8)))

    def up_to(layer: str) -> keras.Model:
        return keras.Model(full.inputs, full.get_layer(layer).output)
    return {"input and output only": keras.Model(full.inputs, keras.layers.ReLU()(full.inputs[0])),
            "stem (3→32 conv)": up_to("stem_relu"),
            "stem + stage 1 (64×64, 32 ch)": up_to("stage1_block1_out"),
            "… + stage 2 (32×32, 64 ch)": up_to("stage2_block1_out"),
            "… + stage 3 (16×16, 128 ch)": up_to("stage3_block1_out"),
            "whole model": full,
            "whole model at 8/8/8 channels": thin}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtimes", nargs="+", default=list(app_latency.RUNTIMES[1:]),
                        choices=list(app_latency.RUNTIMES[1:]))
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    models = variants()
    sample = np.random.default_rng(0).uniform(0, 1, (64, 64, 64, 3)).astype("float32")
    macs = {name: tfm_fuse.profile(m).macs for name, m in models.items()}
    with tempfile.TemporaryDirectory() as tmp:
        cases = {name: app_latency.export(tfm_fuse.fuse(m), Path(tmp) / str(i), sample,
                                          runtimes=tuple(args.runtimes))
                 for i, (name, m) in enumerate(models.items())}
        table = app_latency.compare(cases, runs=args.runs, rounds=5)
    lines = ["| model | M MACs | " + " | ".join(f"{rt} ms" for rt in args.runtimes) + " |",
             "|---|---|" + "---|" * len(args.runtimes)]
    for name in models:
        lines.append(f"| {name} | {macs[name] / 1e6:.1f} | "
                     + " | ".join(f"{table[name][rt]:.3f}" for rt in args.runtimes) + " |")
    text = "\n".join(lines)
    print(text)
    (HERE / "fixed_time_split.md").write_text(text + "\n")
    (HERE / "fixed_time_split.json").write_text(json.dumps({"macs": macs, "ms": table}, indent=1))


if __name__ == "__main__":
    main()
