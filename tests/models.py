"""Small model builders shared by the tests, and the equivalence check they all use.

Every builder returns a fresh, built model with random non-trivial weights (biases and
BatchNorm statistics included), so that equivalence tests compare something meaningful.

`random_model(draw, ...)` builds a random CNN from the building blocks below; it is the hook
for hypothesis property tests (`tests/test_properties.py`): draw a model, then check any
equivalence (wrap, strip, fuse) on it.

Example:
    >>> from tests.models import CASES, assert_equivalent, sample
    >>> m = CASES["residual_add"]()
    >>> assert_equivalent(tfm_fuse.wrap(m), m, sample(m))
"""

from __future__ import annotations

import keras
import numpy as np

from tfm_fuse.app.models import randomize_weights

L = keras.layers

TOLERANCE = 1e-4  # max-abs difference allowed, relative to max(1, output scale)


# --- weights, inputs, comparison ----------------------------------------------------------------
randomize = randomize_weights  # one implementation, shared with the benchmarks


def sample(model: keras.Model, batch: int = 2, seed: int = 1) -> np.ndarray | list[np.ndarray]:
    """Random inputs matching the model's input shapes (batch `batch`)."""
    rng = np.random.default_rng(seed)
    xs = [rng.normal(0.0, 1.0, (batch, *t.shape[1:])).astype("float32") for t in model.inputs]
    return xs[0] if len(xs) == 1 else xs


def predict(model: keras.Model, x) -> list[np.ndarray]:
    """The model's outputs (a flat list) in inference mode, as numpy."""
    return [keras.ops.convert_to_numpy(y) for y in keras.tree.flatten(model(x, training=False))]


def max_diff(a: keras.Model, b: keras.Model, x) -> tuple[float, float]:
    """(max-abs difference, output scale) of two models on `x`, over all outputs."""
    diff, scale = 0.0, 0.0
    for ya, yb in zip(predict(a, x), predict(b, x), strict=True):
        assert ya.shape == yb.shape, f"output shapes differ: {ya.shape} vs {yb.shape}"
        diff = max(diff, float(np.max(np.abs(ya - yb))))
        scale = max(scale, float(np.max(np.abs(yb))))
    return diff, scale


def assert_equivalent(candidate: keras.Model, reference: keras.Model, x) -> float:
    """Assert max|candidate(x) - reference(x)| <= 1e-4 * max(1, max|reference(x)|)."""
    diff, scale = max_diff(candidate, reference, x)
    assert diff <= TOLERANCE * max(1.0, scale), (
        f"max-abs difference {diff:.3g} exceeds {TOLERANCE} x max(1, {scale:.3g})")
    return diff


def channel_count(model: keras.Model, layer_type: type) -> list[int]:
    """Output channels of each layer of that type (unwrapping PruneWrappers), in layer order."""
    out = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, layer_type):
            out.append(int(layer.output.shape[-1]))
    return out


def _finish(inp, out, name: str, seed: int = 0) -> keras.Model:
    return randomize(keras.Model(inp, out, name=name), seed)


def _conv_bn_relu(x, filters: int, kernel: int = 3, strides: int = 1):
    x = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    return L.ReLU()(x)


# --- one builder per case of the analysis ----------------------------------------------------------
def conv_bn_act(shape=(12, 12, 3)) -> keras.Model:
    """conv → BN → act → two consumers (a conv and a pooled head)."""
    inp = keras.Input(shape)
    x = L.Conv2D(12, 3, padding="same", use_bias=False, name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    a = L.Conv2D(10, 3, padding="same", activation="relu", name="consumer_a")(x)
    b = L.Conv2D(10, 1, name="consumer_b")(x)
    x = L.Concatenate()([a, b])
    x = L.GlobalAveragePooling2D()(x)
    return _finish(inp, L.Dense(5)(x), "conv_bn_act")


def residual(merge: type = L.Add, shape=(12, 12, 3)) -> keras.Model:
    """Two residual blocks merged with `merge` (Add, Subtract, Multiply, Maximum...)."""
    inp = keras.Input(shape)
    x = _conv_bn_relu(inp, 10)
    for _ in range(2):
        y = _conv_bn_relu(x, 8)
        y = L.Conv2D(10, 3, padding="same")(y)
        y = L.BatchNormalization()(y)
        x = L.Activation("relu")(merge()([x, y]))
    x = L.Conv2D(12, 3, strides=2, padding="same")(x)
    x = L.GlobalAveragePooling2D()(x)
    return _finish(inp, L.Dense(4)(x), f"residual_{merge.__name__.lower()}")


def concat_offsets(shape=(12, 12, 3)) -> keras.Model:
    """Concatenate of three branches of different widths, then a conv reading it."""
    inp = keras.Input(shape)
    x = L.Conv2D(8, 3, padding="same", name="stem")(inp)
    a = L.Conv2D(6, 1, name="branch_a")(x)
    b = L.ReLU()(L.BatchNormalization()(L.Conv2D(10, 3, padding="same", name="branch_b")(x)))
    c = L.MaxPooling2D(3, strides=1, padding="same")(x)
    x = L.Concatenate()([a, b, c])
    x = L.BatchNormalization()(x)
    x = L.Conv2D(16, 1, activation="relu", name="reader")(x)
    x = L.GlobalMaxPooling2D()(x)
    return _finish(inp, L.Dense(3)(x), "concat_offsets")


def concat_into_add(shape=(12, 12, 3)) -> keras.Model:
    """A Concatenate whose result feeds an Add with a conv of the full width."""
    inp = keras.Input(shape)
    x = _conv_bn_relu(inp, 8)
    a = L.Conv2D(6, 3, padding="same", name="branch_a")(x)
    b = L.Conv2D(10, 1, name="branch_b")(x)
    cat = L.Concatenate()([a, b])
    y = L.Conv2D(16, 3, padding="same", name="full")(x)
    x = L.ReLU()(L.Add()([cat, y]))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return _finish(inp, L.Dense(3)(x), "concat_into_add")


def depthwise_separable(shape=(12, 12, 3)) -> keras.Model:
    """Conv → DepthwiseConv2D (channels pass through) → SeparableConv2D → pointwise."""
    inp = keras.Input(shape)
    x = L.Conv2D(12, 3, padding="same", name="stem")(inp)
    x = L.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    x = L.SeparableConv2D(16, 3, padding="same", activation="relu", name="separable")(x)
    x = L.SeparableConv2D(10, 3, padding="same", depth_multiplier=2)(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False)(x)
    x = L.Conv2D(8, 1, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return _finish(inp, L.Dense(3)(x), "depthwise_separable")


def grouped_conv(shape=(12, 12, 3)) -> keras.Model:
    """A grouped Conv2D (groups=4) between ordinary convolutions: its channels are pinned."""
    inp = keras.Input(shape)
    x = _conv_bn_relu(inp, 8)
    x = L.Conv2D(16, 3, padding="same", groups=4, name="grouped")(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.Conv2D(12, 3, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return _finish(inp, L.Dense(3)(x), "grouped_conv")


def se_dense(shape=(12, 12, 3)) -> keras.Model:
    """Squeeze-and-excitation with Dense layers: GAP → Dense → Dense(sigmoid) → Reshape → Multiply."""
    inp = keras.Input(shape)
    x = L.Conv2D(16, 3, padding="same", name="block")(inp)
    s = L.GlobalAveragePooling2D()(x)
    s = L.Dense(4, activation="relu", name="squeeze")(s)
    s = L.Dense(16, activation="sigmoid", name="excite")(s)
    s = L.Reshape((1, 1, 16), name="se_reshape")(s)
    x = L.Multiply()([x, s])
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return _finish(inp, L.Dense(3)(x), "se_dense")


def se_conv(shape=(12, 12, 3)) -> keras.Model:
    """Squeeze-and-excitation with 1×1 convolutions on GlobalAveragePooling2D(keepdims=True)."""
    inp = keras.Input(shape)
    x = L.Conv2D(16, 3, padding="same", name="block")(inp)
    x = L.ReLU()(L.BatchNormalization()(x))
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Conv2D(4, 1, activation="swish", name="squeeze")(s)
    s = L.Conv2D(16, 1, activation="sigmoid", name="excite")(s)
    x = L.Multiply()([x, s])
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return _finish(inp, L.Dense(3)(x), "se_conv")


def flatten_dense(shape=(8, 8, 3)) -> keras.Model:
    """Conv → pooling → Flatten → Dense → Dense: each channel owns H×W rows of the first Dense."""
    inp = keras.Input(shape)
    x = _conv_bn_relu(inp, 6)
    x = L.MaxPooling2D()(x)
    x = L.Conv2D(5, 3, padding="same", activation="relu", name="last_conv")(x)
    x = L.Flatten()(x)
    x = L.Dense(12, activation="relu", name="fc")(x)
    return _finish(inp, L.Dense(3)(x), "flatten_dense")


def elementwise_zoo(shape=(12, 12, 3)) -> keras.Model:
    """Rescaling, Normalization, padding, pooling, dropout and many activations between convs."""
    inp = keras.Input(shape)
    x = L.Rescaling(1.0 / 2.0, offset=0.1)(inp)
    x = L.Normalization(mean=0.2, variance=1.5)(x)
    x = L.ZeroPadding2D(1)(x)
    x = L.Conv2D(10, 3)(x)
    x = L.BatchNormalization()(x)
    x = L.LeakyReLU(0.1)(x)
    x = L.Dropout(0.5)(x)
    x = L.AveragePooling2D(2)(x)
    x = L.Conv2D(12, 3, padding="same", activation="swish")(x)
    x = L.SpatialDropout2D(0.3)(x)
    x = L.Activation("tanh")(x)
    x = L.ELU()(x)
    x = L.PReLU(shared_axes=[1, 2])(x)
    x = L.Cropping2D(1)(x)
    x = L.UpSampling2D()(x)
    x = L.Rescaling(2.0)(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu6")(x)
    x = L.GlobalMaxPooling2D()(x)
    x = L.Dropout(0.2)(x)
    return _finish(inp, L.Dense(4, activation="softmax")(x), "elementwise_zoo")


def conv_transpose(shape=(8, 8, 3)) -> keras.Model:
    """An encoder-decoder: strided conv, Conv2DTranspose back up, conv head per pixel."""
    inp = keras.Input(shape)
    x = _conv_bn_relu(inp, 8, strides=2)
    x = L.Conv2DTranspose(10, 3, strides=2, padding="same", name="up")(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    return _finish(inp, L.Conv2D(2, 1, name="head")(x), "conv_transpose")


def shared_layers(shape=(10, 10, 3)) -> keras.Model:
    """One conv and one BN called on two inputs' branches: shared layers keep shared channels."""
    inp = keras.Input(shape)
    stem = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")
    shared = L.Conv2D(12, 3, padding="same", name="shared")
    bn = L.BatchNormalization(name="shared_bn")
    a = bn(shared(stem(inp)))
    b = bn(shared(L.Conv2D(8, 1, activation="relu", name="other")(inp)))
    x = L.Add()([a, b])
    x = L.Conv2D(6, 3, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return _finish(inp, L.Dense(3)(x), "shared_layers")


def sequential(shape=(10, 10, 3)) -> keras.Model:
    """A plain keras.Sequential CNN."""
    model = keras.Sequential([
        keras.Input(shape),
        L.Conv2D(8, 3, padding="same"),
        L.BatchNormalization(),
        L.ReLU(),
        L.MaxPooling2D(),
        L.Conv2D(12, 3, padding="same", activation="relu"),
        L.Flatten(),
        L.Dense(16, activation="relu"),
        L.Dense(3),
    ], name="sequential_cnn")
    return randomize(model)


def two_outputs(shape=(10, 10, 3)) -> keras.Model:
    """A model with a feature-map output and a logits output: outputs keep their channels."""
    inp = keras.Input(shape)
    x = _conv_bn_relu(inp, 10)
    feat = L.Conv2D(6, 3, padding="same", name="feature_out")(x)
    y = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    logits = L.Dense(4, name="logits")(L.GlobalAveragePooling2D()(y))
    return _finish(inp, [feat, logits], "two_outputs")


CASES = {
    "conv_bn_act": conv_bn_act,
    "residual_add": lambda: residual(L.Add),
    "residual_subtract": lambda: residual(L.Subtract),
    "residual_multiply": lambda: residual(L.Multiply),
    "residual_maximum": lambda: residual(L.Maximum),
    "concat_offsets": concat_offsets,
    "concat_into_add": concat_into_add,
    "depthwise_separable": depthwise_separable,
    "grouped_conv": grouped_conv,
    "conv_transpose": conv_transpose,
    "se_dense": se_dense,
    "se_conv": se_conv,
    "flatten_dense": flatten_dense,
    "elementwise_zoo": elementwise_zoo,
    "shared_layers": shared_layers,
    "sequential": sequential,
    "two_outputs": two_outputs,
}


# --- keras.applications ---------------------------------------------------------------------------
APPLICATIONS = {
    "ResNet50": ("ResNet50", 32),
    "MobileNetV2": ("MobileNetV2", 32),
    "EfficientNetB0": ("EfficientNetB0", 32),
    "DenseNet121": ("DenseNet121", 32),
}


def application(name: str, seed: int = 0) -> keras.Model:
    """A keras.applications model: `weights=None`, small input, 10 logits, random weights."""
    fn_name, size = APPLICATIONS[name]
    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, fn_name)(
        weights=None, input_shape=(size, size, 3), classes=10, include_top=True,
        classifier_activation=None)
    return randomize(model, seed)


# --- random CNNs for property tests ---------------------------------------------------------------
BLOCKS = ("conv", "residual", "concat", "depthwise", "separable", "pool", "se", "se_conv")


def random_model(draw, *, max_blocks: int = 5) -> keras.Model:
    """A random CNN from the building blocks in `BLOCKS`, ending in GAP or Flatten → Dense.

    Args:
        draw: hypothesis' `draw` (from a `@st.composite` strategy).
        max_blocks: at most this many blocks after the stem.

    Returns:
        A functional model with random weights (seeded by `draw`).
    """
    from hypothesis import event
    from hypothesis import strategies as st

    size = draw(st.sampled_from([8, 12]))
    width = draw(st.sampled_from([4, 6, 8]))
    inp = keras.Input((size, size, 3))
    x = _conv_bn_relu(inp, width)
    for _ in range(draw(st.integers(1, max_blocks))):
        block = draw(st.sampled_from(BLOCKS))
        event(f"block: {block}")
        x = _BLOCK_BUILDERS[block](x, draw)
    if draw(st.booleans()) or x.shape[1] > 4:
        x = L.GlobalAveragePooling2D()(x)
    else:
        x = L.Flatten()(x)
        x = L.Dense(draw(st.sampled_from([4, 8])), activation="relu")(x)
    out = L.Dense(3)(x)
    seed = draw(st.integers(0, 2**16))
    return _finish(inp, out, "random_cnn", seed)


def _width(draw) -> int:
    from hypothesis import strategies as st

    return draw(st.sampled_from([4, 6, 8, 10]))


def _block_conv(x, draw):
    from hypothesis import strategies as st

    x = L.Conv2D(_width(draw), draw(st.sampled_from([1, 3])), padding="same",
                 use_bias=draw(st.booleans()))(x)
    if draw(st.booleans()):
        x = L.BatchNormalization()(x)
    return L.Activation(draw(st.sampled_from(["relu", "swish", "linear", "relu6"])))(x)


def _block_residual(x, draw):
    from hypothesis import strategies as st

    merge = draw(st.sampled_from([L.Add, L.Subtract, L.Multiply, L.Maximum, L.Average]))
    y = _conv_bn_relu(x, _width(draw))
    y = L.Conv2D(int(x.shape[-1]), 3, padding="same")(y)
    y = L.BatchNormalization()(y)
    return merge()([x, y])


def _block_concat(x, draw):
    a = L.Conv2D(_width(draw), 1, activation="relu")(x)
    b = _conv_bn_relu(x, _width(draw))
    return L.Concatenate()([a, b, x])


def _block_depthwise(x, draw):
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.BatchNormalization()(x)
    return L.ReLU()(x)


def _block_separable(x, draw):
    from hypothesis import strategies as st

    return L.SeparableConv2D(_width(draw), 3, padding="same", activation="relu",
                             depth_multiplier=draw(st.sampled_from([1, 2])))(x)


def _block_pool(x, draw):
    from hypothesis import strategies as st

    if x.shape[1] < 4:
        return L.ZeroPadding2D(1)(x)
    kind = draw(st.sampled_from([L.MaxPooling2D, L.AveragePooling2D]))
    return kind(2)(x)


def _block_se(x, draw):
    c = int(x.shape[-1])
    s = L.GlobalAveragePooling2D()(x)
    s = L.Dense(max(2, c // 2), activation="relu")(s)
    s = L.Dense(c, activation="sigmoid")(s)
    return L.Multiply()([x, L.Reshape((1, 1, c))(s)])


def _block_se_conv(x, draw):
    c = int(x.shape[-1])
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Conv2D(max(2, c // 2), 1, activation="relu")(s)
    s = L.Conv2D(c, 1, activation="sigmoid")(s)
    return L.Multiply()([x, s])


_BLOCK_BUILDERS = {
    "conv": _block_conv,
    "residual": _block_residual,
    "concat": _block_concat,
    "depthwise": _block_depthwise,
    "separable": _block_separable,
    "pool": _block_pool,
    "se": _block_se,
    "se_conv": _block_se_conv,
}
