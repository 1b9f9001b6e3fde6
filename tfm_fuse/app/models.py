"""Small reference models: the residual CNN the demo, examples and benchmarks use.

Example:
    >>> model = tfm_fuse.app.models.residual_cnn(input_shape=(28, 28, 1), widths=(16, 32, 64))
"""

from __future__ import annotations

import keras
from keras import layers as L


def _block(x, filters: int, stride: int, name: str):
    y = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = L.BatchNormalization(momentum=0.9, name=f"{name}_bn1")(y)
    y = L.ReLU(name=f"{name}_relu1")(y)
    y = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = L.BatchNormalization(momentum=0.9, name=f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        x = L.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        x = L.BatchNormalization(momentum=0.9, name=f"{name}_proj_bn")(x)
    return L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([x, y]))


def residual_cnn(input_shape: tuple = (28, 28, 1), widths: tuple = (16, 32, 64),
                 blocks_per_stage: int = 1, classes: int = 10, name: str = "residual_cnn"):
    """A ResNet-style CNN: a stem, `len(widths)` stages of residual blocks, GAP, Dense.

    Args:
        input_shape: `(H, W, C)` of one sample. Defaults to MNIST's `(28, 28, 1)`.
        widths: channels per stage; every stage after the first halves the resolution.
            Defaults to `(16, 32, 64)`.
        blocks_per_stage: residual blocks per stage. Defaults to `1`.
        classes: output logits. Defaults to `10`.
        name: the model's name. Defaults to `"residual_cnn"`.

    Returns:
        An uncompiled functional `keras.Model` that outputs logits.
    """
    inputs = keras.Input(input_shape, name="image")
    x = L.Conv2D(widths[0], 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = L.ReLU(name="stem_relu")(L.BatchNormalization(momentum=0.9, name="stem_bn")(x))
    for s, width in enumerate(widths):
        for b in range(blocks_per_stage):
            stride = 2 if s > 0 and b == 0 else 1
            x = _block(x, width, stride, f"stage{s + 1}_block{b + 1}")
    x = L.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, L.Dense(classes, name="logits")(x), name=name)


def randomize_weights(model: keras.Model, seed: int = 0) -> keras.Model:
    """Give every weight a non-trivial random value, in place, so equivalence checks mean something.

    BatchNorm statistics and biases become random too (variances and scales in [0.5, 1.5]);
    kernels are scaled by their fan-in so activations stay of order one. Nested models too.

    Example:
        >>> m = randomize_weights(keras.applications.ResNet50(weights=None), seed=1)
    """
    import numpy as np

    from tfm_fuse.rules import weight_name

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            randomize_weights(layer, seed + 1)
            continue
        values = []
        for v in getattr(layer, "weights", ()):
            name, shape = weight_name(v), tuple(v.shape)
            if name in ("moving_variance", "variance", "gamma"):
                values.append(rng.uniform(0.5, 1.5, shape))
            elif name in ("beta", "moving_mean", "mean", "bias"):
                values.append(rng.normal(0.0, 0.1, shape))
            elif len(shape) >= 2:
                fan_in = int(np.prod(shape[:-1])) if len(shape) > 2 else shape[0]
                values.append(rng.normal(0.0, 1.0 / np.sqrt(max(fan_in, 1)), shape))
            else:
                values.append(rng.normal(0.0, 0.5, shape))
        if values:
            layer.set_weights([np.asarray(x, dtype=v.dtype) for x, v in zip(values, layer.weights)])
    return model


def reestimate_batchnorm(model: keras.Model, x, batch_size: int = 256) -> keras.Model:
    """Sets every BatchNorm's moving statistics to the statistics of its inputs over `x`, in place.

    After a short training the moving averages (momentum 0.99) still remember the first steps,
    and inference-mode outputs can be far from training-mode ones (a MobileNetV2 trained 3
    epochs on 8,000 digits: 8 % held-out accuracy before, 92 % after). Do it before converting.
    Per-batch means and variances are combined exactly (weighted by batch size), for every
    BatchNorm, those of nested models included.

    Example:
        >>> reestimate_batchnorm(model, x_train[:1024])
    """
    import numpy as np

    from tfm_fuse.errors import ConfigError

    if len(x) == 0:
        raise ConfigError("reestimate_batchnorm needs at least one sample. Received: empty x.")
    layers = [l for l in model._flatten_layers(include_self=False)  # nested models' too
              if isinstance(l, keras.layers.BatchNormalization)]
    saved = [(l.momentum, l.moving_mean.numpy(), l.moving_variance.numpy()) for l in layers]
    stats = [[] for _ in layers]  # per layer: (n, mean, variance) of each batch
    try:
        for layer in layers:
            layer.momentum = 0.0  # the moving statistics become those of the batch just seen
        for i in range(0, len(x), batch_size):
            batch = x[i:i + batch_size]
            model(batch, training=True)
            for layer, seen in zip(layers, stats):
                seen.append((len(batch), layer.moving_mean.numpy(), layer.moving_variance.numpy()))
    except BaseException:
        for layer, (_, mean, var) in zip(layers, saved):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(var)
        raise
    finally:
        for layer, (momentum, _, _) in zip(layers, saved):
            layer.momentum = momentum
    for layer, seen in zip(layers, stats):
        n = np.array([s[0] for s in seen], dtype="float64")[:, None]
        means, variances = np.stack([s[1] for s in seen]), np.stack([s[2] for s in seen])
        mean = (n * means).sum(0) / n.sum()
        variance = (n * (variances + (means - mean) ** 2)).sum(0) / n.sum()
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))
    return model
