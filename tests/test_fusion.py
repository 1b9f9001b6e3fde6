"""fuse(): every rewrite is exact, switchable, and leaves the caller's model alone."""

import keras
import numpy as np
import pytest
from keras import layers as L

import tfm_fuse
from tfm_fuse.fusion import plan, same_padding
from tfm_fuse.app.models import randomize_weights as randomize


def assert_equivalent(a, b, x, tol=1e-4):
    ya, yb = np.asarray(a(x, training=False)), np.asarray(b(x, training=False))
    assert ya.shape == yb.shape
    scale = max(1.0, float(np.abs(ya).max()))
    assert np.abs(ya - yb).max() <= tol * scale, np.abs(ya - yb).max()


def folded_kinds(model, **switches):
    return sorted({kind for kind, _, _ in plan(model, **switches).folded})


@pytest.fixture(scope="module")
def mixed_model():
    i = keras.Input((12, 12, 3))
    x = L.ZeroPadding2D(((0, 1), (0, 1)))(i)
    x = L.Conv2D(8, 3, strides=2)(x)                       # padding folds to 'same'
    x = L.BatchNormalization()(x)                          # forward fold
    x = L.ReLU(max_value=6)(x)                             # epilogue relu6
    y = L.BatchNormalization()(x)                          # backward fold into the 1x1 conv
    y = L.Conv2D(8, 1)(y)
    y = L.BatchNormalization()(y)
    z = L.Add()([x, y])                                    # x fans out: identity shortcut
    d = L.DepthwiseConv2D(3, padding="same", use_bias=False)(z)
    d = L.BatchNormalization()(d)
    d = L.Activation("swish")(d)
    d = L.BatchNormalization()(d)                          # backward into a 'valid' depthwise
    d = L.DepthwiseConv2D(3)(d)
    s = L.SeparableConv2D(6, 3, padding="same")(d)
    s = L.BatchNormalization()(s)
    f = L.GlobalAveragePooling2D()(s)
    f = L.Dense(6)(f)
    f = L.BatchNormalization()(f)
    return randomize(keras.Model(i, L.Dense(3)(f)))


@pytest.fixture(scope="module")
def x12():
    return np.random.default_rng(1).uniform(size=(4, 12, 12, 3)).astype("float32")


def test_fuse_is_equivalent_and_removes_layers(mixed_model, x12):
    fused = tfm_fuse.fuse(mixed_model)
    assert_equivalent(mixed_model, fused, x12)
    names = [type(layer).__name__ for layer in fused.layers]
    assert "BatchNormalization" not in names
    assert "ZeroPadding2D" not in names and "ReLU" not in names and "Activation" not in names
    assert folded_kinds(mixed_model) == ["activation", "batchnorm", "batchnorm_backward", "padding"]


@pytest.mark.parametrize("switch", ["batchnorm", "batchnorm_backward", "padding", "activation"])
def test_each_switch_turns_its_rewrite_off(mixed_model, x12, switch):
    fused = tfm_fuse.fuse(mixed_model, **{switch: False})
    assert_equivalent(mixed_model, fused, x12)
    assert switch not in folded_kinds(mixed_model, **{switch: False})


def test_shortcuts_become_identity_convs_and_decouple_groups(mixed_model, x12):
    fused = tfm_fuse.fuse(mixed_model, shortcuts=True)
    assert_equivalent(mixed_model, fused, x12)
    assert any(layer.name.endswith("_shortcut_0") for layer in fused.layers)
    # without the shortcut conv, the Add ties the block input to its output: one group fewer
    plain = tfm_fuse.analyze(tfm_fuse.fuse(mixed_model))
    decoupled = tfm_fuse.analyze(fused)
    prunable = lambda g: sum(grp.prunable for grp in g.groups)  # noqa: E731
    assert prunable(decoupled) == prunable(plain) + 1


def test_caller_model_is_not_mutated(mixed_model, x12):
    before = [w.copy() for w in mixed_model.get_weights()]
    nodes = [len(layer._inbound_nodes) for layer in mixed_model.layers]
    y = np.asarray(mixed_model(x12, training=False))
    tfm_fuse.fuse(mixed_model, shortcuts=True)
    assert all(np.array_equal(a, b) for a, b in zip(before, mixed_model.get_weights()))
    assert nodes == [len(layer._inbound_nodes) for layer in mixed_model.layers]
    assert np.array_equal(y, np.asarray(mixed_model(x12, training=False)))


def test_backward_fold_refused_where_padding_would_differ(x12):
    i = keras.Input((12, 12, 3))
    x = L.BatchNormalization()(i)
    y = L.Conv2D(4, 3, padding="same")(x)  # zeros padded after BN != before BN
    m = randomize(keras.Model(i, y))
    assert "batchnorm_backward" not in folded_kinds(m)
    assert_equivalent(m, tfm_fuse.fuse(m), x12)


def test_padding_fold_refused_when_not_identical():
    i = keras.Input((16, 16, 3))
    x = L.ZeroPadding2D(3)(i)                       # ResNet stem: 3+3 is not 'same' (2+3)
    m = randomize(keras.Model(i, L.Conv2D(4, 7, strides=2)(x)))
    assert "padding" not in folded_kinds(m)
    x = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32")
    assert_equivalent(m, tfm_fuse.fuse(m), x)


@pytest.mark.parametrize("size,kernel,stride,dilation,expected", [
    (12, 3, 1, 1, (1, 1)), (12, 3, 2, 1, (0, 1)), (13, 3, 2, 1, (1, 1)),
    (224, 7, 2, 1, (2, 3)), (10, 3, 1, 2, (2, 2)), (8, 1, 2, 1, (0, 0)),
])
def test_same_padding_matches_tensorflow(size, kernel, stride, dilation, expected):
    assert same_padding(size, kernel, stride, dilation) == expected
    x = np.random.default_rng(0).normal(size=(1, size, size, 1)).astype("float32")
    conv = L.Conv2D(1, kernel, strides=stride, dilation_rate=dilation, padding="same")
    pad = L.ZeroPadding2D((expected, expected))
    valid = L.Conv2D(1, kernel, strides=stride, dilation_rate=dilation)
    y = conv(x)
    valid.build(pad(x).shape)
    valid.set_weights(conv.get_weights())
    np.testing.assert_allclose(y, valid(pad(x)), atol=1e-5)


def test_shared_layers_are_not_folded(x12):
    i = keras.Input((12, 12, 3))
    conv = L.Conv2D(3, 3, padding="same")
    x = L.BatchNormalization()(conv(i))
    y = conv(x)
    m = randomize(keras.Model(i, y))
    assert_equivalent(m, tfm_fuse.fuse(m), x12)


def test_sequential_model(x12):
    m = randomize(keras.Sequential([
        keras.Input((12, 12, 3)), L.Conv2D(4, 3), L.BatchNormalization(), L.ReLU(),
        L.Flatten(), L.Dense(5), L.BatchNormalization(), L.Activation("relu"), L.Dense(2),
    ]))
    fused = tfm_fuse.fuse(m)
    assert_equivalent(m, fused, x12)
    assert len(fused.layers) == 5  # input, conv, flatten, dense, dense


# BatchNorms left after fusion: DenseNet's are pre-activation (BN -> ReLU -> Conv), which no
# exact rewrite can fold; EfficientNet's input Normalization is not a BatchNorm.
BN_LEFT = {"ResNet50": 0, "MobileNetV2": 0, "EfficientNetB0": 0, "DenseNet121": 62}


@pytest.mark.slow
@pytest.mark.parametrize("app", sorted(BN_LEFT))
def test_keras_applications(app):
    model = getattr(keras.applications, app)(
        weights=None, input_shape=(64, 64, 3), classes=10, classifier_activation=None)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # trained-looking BatchNorm statistics
        if isinstance(layer, L.BatchNormalization):
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape).astype("float32") * 0.1)
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, size=layer.moving_variance.shape)
                                         .astype("float32"))
    x = rng.uniform(0, 255, size=(2, 64, 64, 3)).astype("float32")
    fused = tfm_fuse.fuse(model)
    assert_equivalent(model, fused, x)
    n_bn = sum(isinstance(layer, L.BatchNormalization) for layer in fused.layers)
    assert n_bn == BN_LEFT[app]


class _TaggedConv(L.Conv2D):
    """A subclass that adds a property only: it computes as Conv2D does."""

    @property
    def tag(self):
        return "mine"


class _StandardizedConv(L.Conv2D):
    """A subclass with its own computation (weight standardisation): folding a BatchNorm
    into its kernel would change what it computes."""

    def convolution_op(self, inputs, kernel):
        mean = keras.ops.mean(kernel, axis=(0, 1, 2), keepdims=True)
        return super().convolution_op(inputs, kernel - mean)


@pytest.mark.parametrize("cls, folds", [(_TaggedConv, True), (_StandardizedConv, False)])
def test_subclass_of_a_host_is_fused_only_when_it_computes_like_it(x12, cls, folds):
    inputs = keras.Input((12, 12, 3))  # the analysis knows both by Conv2D's inherited rule
    x = L.BatchNormalization(name="bn")(cls(8, 3, padding="same", name="conv")(inputs))
    model = randomize(keras.Model(inputs, L.GlobalAveragePooling2D()(L.ReLU()(x))))
    fused = tfm_fuse.fuse(model)
    names = [layer.name for layer in fused.layers]
    assert ("bn" not in names) == folds, names
    np.testing.assert_allclose(fused(x12), model(x12), atol=1e-5)
