"""`tfm-fuse`: the command line.

Example:
    $ tfm-fuse demo                      # train, prune, strip and report on the shipped MNIST
    $ tfm-fuse profile model.keras       # params / MACs / activation memory per layer
    $ tfm-fuse prune model.keras -o small.keras --rate 0.3 --align 8
    $ tfm-fuse convert small.keras --target all --out out/ --calibration inputs.npy
    $ tfm-fuse bench model.keras small.keras

Exit codes: 0 success, 1 a tfm_fuse error (the message says what and why), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tfm_fuse.converters import TARGETS  # cheap: toolchains load inside convert()
from tfm_fuse.converters._source import ONE_PER_INPUT
from tfm_fuse.converters.boards import DEFAULT_JETSON, JETSON_BOARDS
from tfm_fuse.converters.targets import TARGETS as TARGET_TABLE
from tfm_fuse.errors import TfmFuseError


TIMED = ("litert_fp32", "litert_int8", "openvino_cpu", "onnxruntime")

# the library's Python spellings in its messages, as this command line spells them
CLI_TERMS = (("pass keep_failed=True", "pass --keep-failed"),
             ("pass min_top1=None", "pass --min-top1 0"),
             ("pass overwrite=True", "pass --overwrite"), ("overwrite=True", "--overwrite"),
             ("pass representative_data=", "pass --calibration INPUTS.npy"),
             (ONE_PER_INPUT, "an .npz file with one array per input name"),
             ("representative_data", "--calibration"), ("validation_data", "--validation"))


class UsageError(TfmFuseError):
    """Bad usage of the command line (exit 2, with the command's usage line)."""


def in_cli_terms(message: str) -> str:
    """`message` with the library's argument names replaced by the flags that set them."""
    for python, flag in CLI_TERMS:
        message = message.replace(python, flag)
    return message


def _number(kind: type, low: float, high: float = float("inf"), *, high_open: bool = False):
    """An argparse type: `kind(text)` within [low, high] (or [low, high)), else a usage error."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: "
                                             f"{text!r}") from None
        if value < low or value > high or (high_open and value == high):
            bound = f"at least {low:g}" if high == float("inf") else \
                f"in [{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value
    return parse


_fraction = _number(float, 0.0, 1.0, high_open=True)
_positive_int = _number(int, 1)
_agreement = _number(float, 0.0, 1.0)


def _top1(text: str) -> float | None:
    """argparse type: an agreement in [0, 1]; 0 only reports it."""
    return _agreement(text) or None


def _load_model(path: str):
    from tfm_fuse.files import load_model

    return load_model(path)


def cmd_profile(args) -> int:
    import json

    import tfm_fuse

    report = tfm_fuse.profile(_load_model(args.model))
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0


def cmd_prune(args) -> int:
    import tfm_fuse
    from tfm_fuse.files import save_model

    model = _load_model(args.model)
    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise TfmFuseError(f"'{out}' exists: pass --overwrite to replace it")
    budget = {k: getattr(args, k) for k in ("macs", "params", "memory")
              if getattr(args, k) is not None}
    if args.method == "complexity":
        if not budget:  # --mode/--target, the target defaulting to --rate (or 0.3)
            budget = {"mode": args.mode or "FA", "target": args.target if args.target is not None
                      else (args.rate if args.rate is not None else 0.3)}
        elif args.mode is not None or args.target is not None:
            raise UsageError("give the complexity target once: --macs/--params/--memory, or "
                             "--mode with --target")
        small = tfm_fuse.prune(model, method="complexity", align=args.align, **budget)
    else:
        if not budget:
            budget = {"rate": 0.3 if args.rate is None else args.rate}
        small = tfm_fuse.strip(tfm_fuse.prune(model, method=args.method, align=args.align,
                                              **budget))
    before, after = tfm_fuse.profile(model), tfm_fuse.profile(small)
    save_model(small, out, overwrite=args.overwrite)  # crash-safe: never a truncated file
    cut = before.reduction(after)
    print(f"wrote {out}: params {before.params:,} -> {after.params:,} (-{cut['params']:.1%}), "
          f"MACs {before.macs:,} -> {after.macs:,} (-{cut['macs']:.1%})")
    if args.method != "complexity":
        print("masked channels were chosen by filter norm only: fine-tune the model "
              "(or prune during fit with tfm_fuse.callbacks.FuPruner) before deploying it")
    return 0


def _inputs(path: str, flag: str):
    import numpy as np

    if not Path(path).is_file():
        raise TfmFuseError(f"No such file or directory: '{path}' ({flag})")
    try:
        data = np.load(path)
        if isinstance(data, np.lib.npyio.NpzFile):  # several inputs: one array per input name
            with data:
                return {name: data[name] for name in data.files}
        return data
    except Exception as e:  # noqa: BLE001
        raise TfmFuseError(f"Cannot read '{path}' ({flag}) as a .npy array (or an .npz of "
                           f"one array per input name): {e}") from None


def _calibration(path: str | None, required_for: str):
    if path is None:
        raise UsageError(f"target '{required_for}' quantizes to int8 and needs --calibration "
                         "FILE.npy: an array of preprocessed inputs shaped like the model input")
    return _inputs(path, "--calibration")


def cmd_convert(args) -> int:
    from tfm_fuse.converters import convert_all

    targets = TARGETS if args.target == "all" else (args.target,)
    calibration = None
    needs = args.target != "all" and TARGET_TABLE[args.target].needs_calibration(
        jetson_board=args.board)
    if args.calibration is not None or needs:
        calibration = _calibration(args.calibration, args.target)
    # --target all without --calibration: the float targets are converted, the int8 ones
    # reported as needing it
    validation = _inputs(args.validation, "--validation") if args.validation else None
    reports = convert_all(args.model, args.out, representative_data=calibration, targets=targets,
                          validation_data=validation, overwrite=args.overwrite,
                          keep_failed=args.keep_failed, min_top1=args.min_top1,
                          legacy_openvino=args.check_2022, jetson_board=args.board,
                          ncs_board=args.stick)
    for r in reports.values():
        print(in_cli_terms(str(r)))
    for target, r in reports.items():
        if not r.ok:
            first = r.issues[0] if r.issues else "its check failed"
            print(f"tfm-fuse convert: error: {target}: {in_cli_terms(first).splitlines()[0]}",
                  file=sys.stderr)
    return 0 if all(r.ok for r in reports.values()) else 1


def cmd_bench(args) -> int:
    import tempfile

    from tfm_fuse.app import latency
    from tfm_fuse.converters._source import load_source, random_inputs

    runtimes = tuple(args.runtimes)
    with tempfile.TemporaryDirectory() as tmp:
        cases = {}
        for i, path in enumerate(args.models):
            model = _load_model(path)
            calib = (_inputs(args.calibration, "--calibration") if args.calibration else
                     random_inputs(load_source(model), n=32))  # one array per input
            name = f"{i}:{Path(path).stem}"
            cases[name] = latency.export(model, Path(tmp) / str(i), calib, runtimes=runtimes)
        table = latency.compare(cases, runs=args.runs, threads=args.threads)
    print(latency.format_table(table, baseline=next(iter(table))))
    if not args.calibration:
        print("(int8 calibrated on random inputs: fine for timing, not for accuracy)")
    return 0


def cmd_demo(args) -> int:
    from tfm_fuse.app.demo import run_demo

    out = Path(args.out)
    if args.epochs < 2:
        raise UsageError(f"--epochs must be at least 2: the pruned run's accuracy guard measures "
                         f"its reference in the first epoch and prunes after it. Received: "
                         f"{args.epochs}")
    if args.n_train > 8000:
        raise UsageError(f"--n-train is at most 8000 (the last 2,000 of the 10,000 shipped "
                         f"digits are the held-out test set). Received: {args.n_train}")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise TfmFuseError(f"'{out}' exists and is not empty: pass --overwrite to replace "
                           "what the demo writes there, or choose another --out")
    run_demo(out, epochs=args.epochs, macs_removed=args.macs_removed,
             n_train=args.n_train, runs=args.runs)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfm-fuse",
        description="Fusion-aware structured pruning for Keras 3 and converters for edge targets.",
        epilog="Exit codes: 0 success, 1 a tfm_fuse error (message on stderr), 2 bad usage.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="train a residual CNN on the shipped MNIST, prune it during "
                          "fit, convert it to every target and show what it gained",
                          description="Train a baseline and a FuPruner-pruned residual CNN on the "
                          "MNIST images shipped with tfm_fuse, strip and fuse, convert both to "
                          "Edge TPU / Jetson / OpenVINO / ONNX, time them on LiteRT, OpenVINO and "
                          "ONNX Runtime, print one table. Writes reports and plots to --out.")
    demo.add_argument("--out", default="tfm_fuse_demo", help="output folder (default: %(default)s)")
    demo.add_argument("--epochs", type=_positive_int, default=6, help="training epochs (default: %(default)s)")
    demo.add_argument("--macs-removed", type=_fraction, default=0.5,
                      help="fraction of MACs FuPruner removes, in [0, 1) (default: %(default)s)")
    demo.add_argument("--runs", type=_positive_int, default=200,
                      help="timed runs per model and runtime (default: %(default)s)")
    demo.add_argument("--n-train", type=_positive_int, default=8000,
                      help="training images out of the 10,000 shipped (default: %(default)s)")
    demo.add_argument("--overwrite", action="store_true",
                      help="replace the results of an earlier demo in --out")
    demo.set_defaults(func=cmd_demo)

    prof = sub.add_parser("profile", help="parameters, MACs and activation memory per layer",
                          description="Print a per-layer table of parameters, multiply-"
                          "accumulates (batch 1) and output activation bytes.")
    prof.add_argument("model", help="a .keras model file")
    prof.add_argument("--json", action="store_true", help="print JSON instead of a table")
    prof.set_defaults(func=cmd_profile)
    prune = sub.add_parser("prune", help="prune a .keras model one-shot or complexity-driven, "
                           "strip it, save it", description="One-shot pruning (filter norm) or "
                           "complexity-driven pruning at initialisation, then strip; prints the "
                           "params/MACs reduction. For pruning during training use the Python "
                           "API with tfm_fuse.callbacks.FuPruner.")
    prune.add_argument("model", help="a .keras model file")
    prune.add_argument("-o", "--output", required=True, help="where to save the pruned .keras model")
    prune.add_argument("--method", default="l1", choices=["l1", "l2", "fused", "complexity"],
                       help="channel ranking, or complexity-driven (default: %(default)s)")
    budget = prune.add_mutually_exclusive_group()
    budget.add_argument("--rate", type=_fraction, default=None,
                        help="fraction of channels to remove per group, [0, 1) (default: 0.3)")
    budget.add_argument("--macs", type=_fraction, default=None,
                        help="fraction of MACs to remove instead (complexity: same as --mode FA)")
    budget.add_argument("--params", type=_fraction, default=None,
                        help="fraction of parameters to remove instead (complexity: --mode PA)")
    budget.add_argument("--memory", type=_fraction, default=None,
                        help="fraction of activation memory to remove instead (complexity: --mode MA)")
    prune.add_argument("--mode", default=None, choices=["PA", "FA", "MA"],
                       help="complexity mode: parameter-, FLOPs- or memory-aware (default: FA)")
    prune.add_argument("--target", type=_fraction, default=None,
                       help="complexity: reduction of the mode's metric to reach (default: --rate)")
    prune.add_argument("--align", type=_positive_int, default=None,
                       help="keep a multiple of this many channels per group, e.g. 8")
    prune.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    prune.set_defaults(func=cmd_prune)

    conv = sub.add_parser("convert", help="convert to Edge TPU / Jetson / OpenVINO / ONNX, "
                          "checked against Keras", description="Write the artefact for each "
                          "target with report.json, after checking it against the Keras model. "
                          "Exit code 1 if a check fails (nothing is written then).")
    conv.add_argument("model", help="a .keras file or a SavedModel directory")
    conv.add_argument("--target", required=True, choices=[*TARGETS, "all"],
                      help="edgetpu: full-int8 .tflite; jetson: ONNX FP32 + INT8 Q/DQ for TensorRT "
                      "(TF-TRT on JetPack builds); openvino: FP16 IR for NCS/NCS2; onnx: ONNX")
    conv.add_argument("--out", required=True, help="output directory; each target writes OUT/TARGET/")
    conv.add_argument("--calibration", help=".npy array of preprocessed inputs (edgetpu, jetson); "
                      "for several inputs an .npz with one array per input name")
    conv.add_argument("--board", default=DEFAULT_JETSON, choices=list(JETSON_BOARDS),
                      help="the jetson target's board: its TensorRT's opset and precision "
                           "(Nano/TX2: FP16, no calibration; Xavier/Orin: INT8 and FP16; "
                           "default: %(default)s)")
    conv.add_argument("--stick", default="ncs2", choices=["ncs2", "ncs"],
                      help="the openvino target's Neural Compute Stick: ncs2 (Myriad X), or ncs "
                           "(the first one: IR v10 for OpenVINO 2020.3; default: %(default)s)")
    conv.add_argument("--check-2022", action="store_true",
                      help="openvino: also load and run the IR in OpenVINO 2022.3.2 (needs python3.10)")
    conv.add_argument("--validation", help=".npy array of held-out inputs every target's check "
                      "runs on (default: seeded random-normal inputs)")
    conv.add_argument("--min-top1", type=_top1, default=0.99,
                      help="lowest accepted int8 top-1 agreement with Keras; 0 only reports it "
                      "(default: %(default)s)")
    conv.add_argument("--keep-failed", action="store_true",
                      help="keep an artefact whose check failed (its report says why)")
    conv.add_argument("--overwrite", action="store_true", help="replace existing output")
    conv.set_defaults(func=cmd_convert)

    bench = sub.add_parser("bench", help="latency of models on LiteRT, OpenVINO and ONNX Runtime",
                           description="Convert each model and time it side by side (batch 1, "
                           "interleaved rounds, median); speed-ups are against the first model.")
    bench.add_argument("models", nargs="+", help=".keras files; the first is the baseline")
    bench.add_argument("--runtimes", nargs="+", default=list(TIMED), choices=list(TIMED),
                       help="runtimes to time (default: all)")
    bench.add_argument("--runs", type=_positive_int, default=200, help="timed runs per model and runtime")
    bench.add_argument("--threads", type=_positive_int, default=1, help="threads per runtime (default: 1)")
    bench.add_argument("--calibration", help=".npy inputs for int8 calibration (default: random)")
    bench.set_defaults(func=cmd_bench)
    parser.commands = sub.choices  # name -> the command's parser (its usage on bad flags)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tfm_fuse._quiet import quiet_native_logs

    with quiet_native_logs():  # before any command imports TensorFlow; restored on return
        return _run(argv)


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    command = parser.commands[args.command]
    if unknown:  # the command's own usage, not the top-level one
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.func(args)
    except UsageError as e:
        command.error(in_cli_terms(str(e)))  # exits 2
    except TfmFuseError as e:
        print(f"tfm-fuse {args.command}: error: {in_cli_terms(str(e))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
