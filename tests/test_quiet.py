"""Library calls keep the toolchains' chatter out of the terminal for their duration only."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import logging, os, sys
    import numpy as np, keras
    from tfm_fuse.converters import edgetpu, tensorrt
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    calibration = np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype("float32")
    sys.stderr.write("MARK before\\n"); sys.stderr.flush()
    edgetpu.convert(model, "etpu", representative_data=calibration, min_top1=None)
    tensorrt.convert(model, "jetson", representative_data=calibration, min_top1=None)
    os.write(2, b"MARK fd2 after\\n")                 # the descriptor is restored
    from tfm_fuse._quiet import quiet_tools
    quiet_tools(lambda: (print("MARK python stderr inside", file=sys.stderr),
                         os.write(2, b"MARK native inside\\n")))()
    logging.warning("MARK user warning")             # the user's own logging still works
    print("handlers", len(logging.getLogger().handlers), "filters",
          len(logging.getLogger().filters))
    try:
        edgetpu.convert(model, "etpu", representative_data=calibration)  # exists: refused
    except Exception as e:
        print("refused", type(e).__name__)
""")


def test_converters_print_no_tool_chatter_and_restore_the_process(tmp_path):
    p = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True,
                       text=True, timeout=600, env={**__import__("os").environ,
                                                    "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert p.returncode == 0, p.stderr
    after = p.stderr.split("MARK before", 1)[1]
    for chatter in ("fully_quantize", "XNNPACK", "Please consider", "inference_type"):
        assert chatter not in after, after
    assert "MARK fd2 after" in after and "WARNING:root:MARK user warning" in after, after
    # inside a quiet call: Python's own stderr (warnings, progress bars) shows, native lines not
    assert "MARK python stderr inside" in after and "MARK native inside" not in after, after
    assert "handlers 1 filters 0" in p.stdout and "refused ConfigError" in p.stdout, p.stdout
