"""`tfm-fuse`: the command line.

Example:
    $ tfm-fuse demo                      # train, prune, strip and report on the shipped MNIST
    $ tfm-fuse profile model.keras       # params / MACs / activation memory per layer

Exit codes: 0 success, 1 a tfm_fuse error (the message says what and why), 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _load_model(path: str):
    import keras

    from tfm_fuse.errors import TfmFuseError

    p = Path(path)
    if not p.exists():
        raise TfmFuseError(f"No such file or directory: '{path}'")
    if p.is_dir() or p.suffix not in (".keras", ".h5"):
        raise TfmFuseError(
            f"'{path}' is not a Keras model file: expected a '.keras' (or legacy '.h5') file "
            "saved with model.save(). SavedModel directories carry no layer graph to analyse.")
    try:
        return keras.models.load_model(p, compile=False)
    except Exception as e:  # noqa: BLE001 - any load failure becomes one clear line
        raise TfmFuseError(f"Cannot load '{path}' as a Keras model: {type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}") from e


def cmd_profile(args) -> int:
    import json

    import tfm_fuse

    report = tfm_fuse.profile(_load_model(args.model))
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0


def cmd_demo(args) -> int:
    from tfm_fuse.demo import run_demo

    run_demo(Path(args.out), epochs=args.epochs, rate=args.rate, n_train=args.n_train)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfm-fuse",
        description="Fusion-aware structured pruning for Keras 3 and converters for edge targets.",
        epilog="Exit codes: 0 success, 1 a tfm_fuse error (message on stderr), 2 bad usage.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="train a small residual CNN on the shipped MNIST, prune "
                          "it, strip it and print what it gained",
                          description="Train, prune (fusion-aware), strip and report, on the "
                          "MNIST images shipped with tfm_fuse. Writes reports and plots to --out.")
    demo.add_argument("--out", default="tfm_fuse_demo", help="output folder (default: %(default)s)")
    demo.add_argument("--epochs", type=int, default=3, help="training epochs (default: %(default)s)")
    demo.add_argument("--rate", type=float, default=0.5,
                      help="fraction of channels to prune per group, in [0, 1) (default: %(default)s)")
    demo.add_argument("--n-train", type=int, default=6000,
                      help="training images out of the 10,000 shipped (default: %(default)s)")
    demo.set_defaults(func=cmd_demo)

    prof = sub.add_parser("profile", help="parameters, MACs and activation memory per layer",
                          description="Print a per-layer table of parameters, multiply-"
                          "accumulates (batch 1) and output activation bytes.")
    prof.add_argument("model", help="a .keras model file")
    prof.add_argument("--json", action="store_true", help="print JSON instead of a table")
    prof.set_defaults(func=cmd_profile)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tfm_fuse.errors import TfmFuseError

    try:
        return args.func(args)
    except TfmFuseError as e:
        print(f"tfm-fuse {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
