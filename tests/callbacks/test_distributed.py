"""FuPruner under tf.distribute.MirroredStrategy with two logical CPU devices.

Logical devices must be configured before TensorFlow initialises, so the run happens in a
fresh Python process.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    import keras, numpy as np, tfm_fuse
    from tfm_fuse import callbacks
    from tests.pruning.helpers import compiled, small_resnet, toy_data

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    x, y = toy_data()
    with strategy.scope():
        model = compiled(tfm_fuse.prune(small_resnet(width=16), method="fupruner", rate=0.5))
    hist = model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_data=(x, y),
                     callbacks=[callbacks.FuPruner(update_freq=2, max_drop=0.5)])
    small = tfm_fuse.strip(model)
    diff = float(np.abs(small.predict(x, verbose=0) - model.predict(x, verbose=0)).max())
    step = int(next(l for l in model.layers if isinstance(l, tfm_fuse.PruneWrapper)).pruning_step.numpy())
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "rate": hist.history["prune_rate"],
                      "diff": diff, "step": step}))
""")


def test_mirrored_strategy_two_logical_cpus():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["rate"][-1] > 0.3
    assert result["diff"] < 1e-4
    assert result["step"] == 8
