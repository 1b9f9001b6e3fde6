"""Run a tfm_fuse Edge TPU artefact on a Coral board, with only what the board has.

Copied next to the model by `tfm_fuse.converters.edgetpu.convert` as `run_on_coral.py`. It needs
Python 3.7+ (Mendel's and Raspberry Pi OS's), numpy, and either Google's pycoral (from Coral's
apt repository, `python3-pycoral`) or `tflite_runtime` with `libedgetpu.so.1`: no TensorFlow,
no Keras, no tfm_fuse. With `--cpu` it runs the int8 model on the CPU (no Edge TPU), which is
how it is tested off-board (tflite-runtime 2.11 on Python 3.7).

    python3 run_on_coral.py model_int8_edgetpu.tflite              # the shipped sample inputs
    python3 run_on_coral.py model_int8.tflite --cpu                # without the accelerator
    python3 run_on_coral.py MODEL --inputs x.npy --out y.npy       # your own float inputs

By default it runs `sample_inputs.npy` (inputs the converter validated, already quantized) and
compares with `expected_outputs.npy` (LiteRT's outputs for them on the conversion machine):
top-1 agreement and the largest difference, in the output's own scale.
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def make_interpreter(path, cpu=False):
    """An interpreter for `path`: pycoral's, else tflite_runtime's with the Edge TPU delegate."""
    if not cpu:
        try:
            from pycoral.utils import edgetpu
            return edgetpu.make_interpreter(path)
        except ImportError:
            pass
    try:
        from tflite_runtime.interpreter import Interpreter, load_delegate
    except ImportError:
        sys.exit("Neither pycoral nor tflite_runtime is installed: on a Coral board, "
                 "`sudo apt-get install python3-pycoral` (Coral's apt repository).")
    if cpu:
        return Interpreter(model_path=path)
    return Interpreter(model_path=path, experimental_delegates=[load_delegate("libedgetpu.so.1")])


def _quantize(x, details):
    if details["dtype"] in (np.int8, np.uint8) and x.dtype not in (np.int8, np.uint8):
        scale, zero = details["quantization"]
        info = np.iinfo(details["dtype"])
        x = np.clip(np.round(x / scale) + zero, info.min, info.max)  # as tfm_fuse's check
    return x.astype(details["dtype"])


def _dequantize(y, details):
    scale, zero = details["quantization"]
    if details["dtype"] in (np.int8, np.uint8) and scale:
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)


def run(interpreter, x):
    """Outputs (dequantized, float32) for each sample of `x`, the median latency in ms, and
    the output's quantization step (0.0 for a float output)."""
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    outputs, times = [], []
    for sample in x:
        interpreter.set_tensor(inp["index"], _quantize(sample[None], inp))
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1000.0)
        outputs.append(_dequantize(interpreter.get_tensor(out["index"]), out)[0])
    step = float(out["quantization"][0]) if out["dtype"] in (np.int8, np.uint8) else 0.0
    return np.stack(outputs), float(np.median(times)), step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="the .tflite to run (the *_edgetpu.tflite on the Edge TPU)")
    ap.add_argument("--inputs", default=os.path.join(HERE, "sample_inputs.npy"),
                    help="a .npy of inputs shaped like the model input (default: the samples "
                         "shipped beside this script)")
    ap.add_argument("--expected", default=None,
                    help="a .npy of expected outputs to compare with (default: "
                         "expected_outputs.npy beside this script, with the shipped samples)")
    ap.add_argument("--out", default=None, help="write the outputs to this .npy")
    ap.add_argument("--cpu", action="store_true", help="run on the CPU, without the Edge TPU")
    args = ap.parse_args(argv)
    x = np.load(args.inputs)
    expected = args.expected
    if expected is None and args.inputs == os.path.join(HERE, "sample_inputs.npy"):
        expected = os.path.join(HERE, "expected_outputs.npy")
    y, ms, step = run(make_interpreter(args.model, cpu=args.cpu), x)
    print("ran %d input(s) on the %s: median %.2f ms per inference"
          % (len(x), "CPU" if args.cpu else "Edge TPU", ms))
    if args.out:
        np.save(args.out, y)
    if expected and os.path.exists(expected):
        want = np.load(expected)
        agree = float(np.mean(np.argmax(y.reshape(len(y), -1), -1)
                              == np.argmax(want.reshape(len(want), -1), -1)))
        diff = float(np.max(np.abs(y - want)))
        # int8 kernels may round one step apart (XNNPACK, reference kernels, the Edge TPU)
        size = ("%.0f output quantization step(s)" % round(diff / step)) if step else "%.3g" % diff
        print("against the conversion machine's outputs: top-1 agreement %.1f%%, largest "
              "difference %s" % (100 * agree, size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
