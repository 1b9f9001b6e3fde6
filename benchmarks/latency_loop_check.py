"""Does the closed latency loop measure what the deployed artefacts measure side by side?

`MaskUpdater.meet_latency(budget)` on the residual CNN (32/64/128, 64×64), on MobileNetV2
(96×96, `--model mobilenet_v2`) or on ResNet50 (32×32, `--model resnet50`), untrained
(latency does not depend on the weights), then the stripped result and the full model
exported as deployed (`tfm_fuse.app.latency.export`) and timed side by side `--repeats` times
in this process (`tfm_fuse.app.latency.compare`, one thread, batch 1). Prints the loop's
"removed" and each side-by-side "removed": their gap against the spread between repeats tells
bias from noise.

`--align N` allocates in blocks of N channels instead of the runtime's measured block: does the
block change how many MACs the same measured time keeps?

Run alone:  python benchmarks/latency_loop_check.py [--runtime openvino_cpu] [--budget 0.5]
              [--model residual_cnn|mobilenet_v2|resnet50] [--repeats 2] [--align N]
"""

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import tfm_fuse  # noqa: E402
from tfm_fuse.app import latency as app_latency  # noqa: E402
from tfm_fuse.pruning.latency_model import RUNTIMES  # noqa: E402
from tfm_fuse.pruning.updater import MaskUpdater  # noqa: E402
from latency_budget import MODELS  # noqa: E402  (beside this script)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="openvino_cpu", choices=RUNTIMES)
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default="residual_cnn", choices=list(MODELS))
    parser.add_argument("--align", type=int, default=None)
    args = parser.parse_args()
    rt = args.runtime
    build, size = MODELS[args.model]  # the models and input sizes latency_budget.py prunes
    base = build((size, size, 3))
    wrapped = tfm_fuse.wrap(base)
    updater = MaskUpdater(wrapped, runtime=rt, align=args.align)
    loop = updater.meet_latency(args.budget)
    print(f"block {updater.latency_align()}; rounds [aim, measured removed]:",
          [[round(a, 3), round(r, 3)] for a, r in loop["rounds"]])
    thin = tfm_fuse.strip(wrapped)
    x = np.random.default_rng(0).normal(size=(64, size, size, 3)).astype("float32")
    print(f"{rt}: loop removed {loop['removed']:.1%} ({loop['measured_ms']:.2f} ms of "
          f"{loop['full_ms']:.2f}); MACs kept "
          f"{tfm_fuse.profile(thin).macs / tfm_fuse.profile(base).macs:.1%}")
    with tempfile.TemporaryDirectory() as tmp:
        cases = {name: app_latency.export(tfm_fuse.fuse(m), Path(tmp) / name, x, runtimes=(rt,))
                 for name, m in (("full", base), ("pruned", thin))}
        for i in range(args.repeats):
            table = app_latency.compare(cases, runs=200, rounds=5, progress=False)
            print(f"side by side #{i + 1}: removed {1 - table['pruned'][rt] / table['full'][rt]:.1%}"
                  f" ({table['pruned'][rt]:.2f} ms of {table['full'][rt]:.2f})")


if __name__ == "__main__":
    main()
