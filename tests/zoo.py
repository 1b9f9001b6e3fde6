"""The model zoo every transform is checked on: all `keras.applications` constructors, models
written after the Keras examples, and the shapes edge users deploy (nested backbones, two
heads). Shared by `tests/test_zoo.py` and `benchmarks/zoo.py` (which writes the table).

Each model is checked the way it will be used: BatchNorm statistics re-estimated on real
inputs (the shipped digits, as RGB in [0, 255]) — random statistics make deep nets explode and
turn float32 round-off into false failures — then `fuse(m)(x) ≈ m(x)`,
`strip(prune(m))(x) ≈ prune(m)(x)`, MACs cut, and the caller's model untouched.

Example:
    >>> row = check("MobileNetV3Small")
    >>> row["fuse_err"] <= 1e-4 and row["strip_err"] <= 1e-4
    True
"""

from __future__ import annotations

import gc
import hashlib
import time

import keras
import numpy as np

import tfm_fuse
from tfm_fuse.app.models import randomize_weights, reestimate_batchnorm

L = keras.layers

# keras.applications constructors and the smallest input each builds at without weights
APPLICATIONS = {name: 32 for name in (
    "ConvNeXtTiny ConvNeXtSmall ConvNeXtBase ConvNeXtLarge ConvNeXtXLarge "
    "DenseNet121 DenseNet169 DenseNet201 "
    "EfficientNetB0 EfficientNetB1 EfficientNetB2 EfficientNetB3 EfficientNetB4 EfficientNetB5 "
    "EfficientNetB6 EfficientNetB7 EfficientNetV2B0 EfficientNetV2B1 EfficientNetV2B2 "
    "EfficientNetV2B3 EfficientNetV2S EfficientNetV2M EfficientNetV2L "
    "MobileNet MobileNetV2 MobileNetV3Small MobileNetV3Large NASNetMobile NASNetLarge "
    "ResNet50 ResNet101 ResNet152 ResNet50V2 ResNet101V2 ResNet152V2 VGG16 VGG19").split()}
APPLICATIONS.update(InceptionV3=75, InceptionResNetV2=75, Xception=71)


def application(name: str) -> keras.Model:
    size = APPLICATIONS[name]
    kwargs = {"classifier_activation": None}  # logits: a softmax would hide differences
    return getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                              classes=10, **kwargs)


def keypoint_model() -> keras.Model:
    """The Keras keypoint-detection example: a nested MobileNetV2 backbone, `x / 127.5 - 1`."""
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(96, 96, 3))
    inputs = keras.Input((96, 96, 3))
    x = base(inputs / 127.5 - 1.0)
    x = L.SeparableConv2D(34, 3, activation="relu", name="kp_sep")(L.Dropout(0.3)(x))
    return keras.Model(inputs, L.SeparableConv2D(34, 1, activation="sigmoid", name="kp_out")(x),
                       name="keypoints")


def deeplab_model() -> keras.Model:
    """A DeepLabV3+-style segmenter after the Keras example: a ResNet50 backbone cut at two
    depths, dilated spatial pyramid pooling, an upsampled decoder (`keras.ops` resize)."""
    size = 64
    inputs = keras.Input((size, size, 3))
    backbone = keras.applications.ResNet50(weights=None, include_top=False, input_tensor=inputs)
    high = backbone.get_layer("conv4_block6_2_relu").output
    low = backbone.get_layer("conv2_block3_2_relu").output

    def conv_block(x, filters, kernel=3, dilation=1, name=""):
        x = L.Conv2D(filters, kernel, dilation_rate=dilation, padding="same", use_bias=False,
                     name=f"{name}_conv")(x)
        return L.ReLU(name=f"{name}_relu")(L.BatchNormalization(name=f"{name}_bn")(x))

    pooled = L.AveragePooling2D(pool_size=high.shape[1:3], name="aspp_pool")(high)
    pooled = conv_block(pooled, 32, 1, name="aspp_pool")
    pooled = L.UpSampling2D(size=high.shape[1:3], interpolation="bilinear")(pooled)
    branches = [pooled] + [conv_block(high, 32, 1 if d == 1 else 3, d, name=f"aspp_d{d}")
                           for d in (1, 6, 12, 18)]
    x = conv_block(L.Concatenate(name="aspp_cat")(branches), 32, 1, name="aspp_out")
    x = keras.ops.image.resize(x, low.shape[1:3], interpolation="bilinear")
    x = L.Concatenate(name="decoder_cat")([x, conv_block(low, 16, 1, name="low")])
    x = conv_block(conv_block(x, 32, name="dec1"), 32, name="dec2")
    x = keras.ops.image.resize(x, (size, size), interpolation="bilinear")
    return keras.Model(inputs, L.Conv2D(5, 1, name="classes")(x), name="deeplab")


def two_head_detector() -> keras.Model:
    """A detection-style model: a shared trunk, a class head and a box head (two outputs)."""
    inputs = keras.Input((32, 32, 3))
    x = inputs / 255.0
    for i, width in enumerate((16, 32, 64)):
        x = L.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name=f"trunk{i}")(x)
        x = L.Activation("swish")(L.BatchNormalization(name=f"trunk{i}_bn")(x))
    classes = L.Conv2D(10, 1, name="class_head")(L.Conv2D(32, 3, padding="same", activation="relu")(x))
    boxes = L.Conv2D(4, 1, name="box_head")(L.Conv2D(32, 3, padding="same", activation="relu")(x))
    return keras.Model(inputs, [classes, boxes], name="detector")


def super_resolution() -> keras.Model:
    """The Keras super-resolution example (ESPCN): any input size, sub-pixel upscaling with
    `keras.ops.depth_to_space`."""
    inputs = keras.Input((None, None, 1))
    x = L.Conv2D(32, 5, padding="same", activation="relu")(inputs)
    x = L.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = L.Conv2D(9, 3, padding="same")(x)
    return keras.Model(inputs, keras.ops.depth_to_space(x, 3) if hasattr(keras.ops, "depth_to_space")
                       else L.UpSampling2D(3)(x), name="espcn")


def _hub():
    import keras_hub  # a test extra: `pip install -e ".[test]"`

    return keras_hub.models


def hub_mobilenet_v3(image_shape=(64, 64, 3)) -> keras.Model:
    """keras-hub's MobileNetV3 backbone (its docstring's configuration): blocks are composite
    layers (`InvertedResidualBlock`, `DepthwiseConvBlock`, squeeze-and-excite), depthwise
    convolutions are `Conv2D(groups=C)`."""
    return _hub().MobileNetBackbone(
        stackwise_expansion=[[40, 56], [64, 144, 144], [72, 72], [144, 288, 288]],
        stackwise_num_blocks=[2, 3, 2, 3],
        stackwise_num_filters=[[16, 16], [24, 24, 24], [24, 24], [48, 48, 48]],
        stackwise_kernel_size=[[3, 3], [5, 5, 5], [5, 5], [5, 5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1, 1], [1, 1], [2, 1, 1]],
        stackwise_se_ratio=[[None, None], [0.25] * 3, [0.3, 0.3], [0.3, 0.25, 0.25]],
        stackwise_activation=[["relu", "relu"], ["hard_swish"] * 3, ["hard_swish"] * 2,
                              ["hard_swish"] * 3],
        stackwise_padding=[[1, 1], [2, 2, 2], [2, 2], [2, 2, 2]],
        output_num_filters=288, depthwise_filters=8, depthwise_stride=2,
        depthwise_residual=False, last_layer_filter=288, squeeze_and_excite=0.5,
        image_shape=image_shape)


def hub_efficientnet_v2() -> keras.Model:
    """keras-hub's EfficientNetV2-style backbone: `FusedMBConvBlock` and `MBConvBlock` layers."""
    return _hub().EfficientNetBackbone(
        stackwise_width_coefficients=[1.0] * 4, stackwise_depth_coefficients=[1.0] * 4,
        stackwise_kernel_sizes=[3, 3, 3, 3], stackwise_num_repeats=[1, 2, 2, 2],
        stackwise_input_filters=[24, 24, 48, 64], stackwise_output_filters=[24, 48, 64, 128],
        stackwise_expansion_ratios=[1, 4, 4, 4],
        stackwise_squeeze_and_excite_ratios=[0.0, 0.0, 0.0, 0.25],
        stackwise_strides=[1, 2, 2, 2], stackwise_block_types=["fused", "fused", "fused", "unfused"],
        stackwise_force_input_filters=[0] * 4, stackwise_nores_option=[False] * 4,
        input_shape=(64, 64, 3), num_features=256)


def hub_resnet_v2() -> keras.Model:
    """keras-hub's pre-activation ResNet (its docstring's configuration, 32x32)."""
    return _hub().ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 64, 64],
        stackwise_num_blocks=[2, 2, 2], stackwise_num_strides=[1, 2, 2],
        block_type="basic_block", use_pre_activation=True, image_shape=(32, 32, 3))


def hub_mobilenet_classifier() -> keras.Model:
    """A keras-hub task model: the MobileNetV3 backbone nested in an image classifier."""
    return _hub().MobileNetImageClassifier(backbone=hub_mobilenet_v3(), num_classes=10)


def hub_deeplab_segmenter() -> keras.Model:
    """A keras-hub task model with a nested encoder of several outputs: DeepLabV3 on the
    pyramid outputs (P2, P4) of a ResNet backbone."""
    hub = _hub()
    encoder = hub.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 64, 64],
        stackwise_num_blocks=[1, 1, 1], stackwise_num_strides=[1, 2, 2],
        block_type="basic_block", image_shape=(64, 64, 3))
    backbone = hub.DeepLabV3Backbone(
        image_encoder=encoder, low_level_feature_key="P2", spatial_pyramid_pooling_key="P4",
        upsampling_size=4, dilation_rates=[2, 4], projection_filters=16, image_shape=(64, 64, 3))
    return hub.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=4)


HUB = {"keras-hub MobileNetV3 backbone": hub_mobilenet_v3,
       "keras-hub DeepLabV3 segmenter": hub_deeplab_segmenter,
       "keras-hub EfficientNetV2 backbone": hub_efficientnet_v2,
       "keras-hub ResNetV2 backbone": hub_resnet_v2,
       "keras-hub MobileNetV3 classifier": hub_mobilenet_classifier}

EXAMPLES = {"keypoints (nested MobileNetV2)": keypoint_model, "DeepLabV3+ (ResNet50)": deeplab_model,
            "two-head detector": two_head_detector}
ALL = {**{name: (lambda n=name: application(n)) for name in APPLICATIONS}, **EXAMPLES, **HUB}


def digits(shape: tuple, n: int) -> np.ndarray:
    """`n` shipped digits at `shape` (H, W, C), values in [0, 255]."""
    (x, _), _ = tfm_fuse.app.data.load_mnist(n_train=n, n_test=0)
    x = tfm_fuse.app.data.as_rgb(x, shape[0]) * 255.0
    if shape[1] != shape[0]:
        x = keras.ops.convert_to_numpy(keras.ops.image.resize(x, shape[:2]))
    return x[..., :shape[2]].astype("float32")


def _max_rel_diff(a: keras.Model, b: keras.Model, x) -> float:
    ya = [keras.ops.convert_to_numpy(t).astype("float64")
          for t in keras.tree.flatten(a(x, training=False))]
    yb = [keras.ops.convert_to_numpy(t).astype("float64")
          for t in keras.tree.flatten(b(x.astype(b.inputs[0].dtype), training=False))]
    return max(float(np.max(np.abs(p - q))) / max(1.0, float(np.max(np.abs(q))))
               for p, q in zip(ya, yb, strict=True))


TOLERANCE = 1e-4


def float64_twin(name: str, model: keras.Model) -> keras.Model:
    """The same model with the same weights, computing in float64."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        twin = ALL[name]()
    finally:
        keras.config.set_dtype_policy(previous)
    twin.set_weights([w.astype("float64") for w in model.get_weights()])
    return twin


def fuse_ok(row: dict) -> bool:
    """Fused within 1e-4 of the model, or no farther from its float64 twin than the float32
    model itself (x2): float32 round-off of a deep net, not a wrong fold."""
    if row["fuse_err"] <= TOLERANCE:
        return True
    return row["fuse_err_f64"] <= max(TOLERANCE, 2.0 * row["orig_err_f64"])


def check(name: str, rate: float = 0.5) -> dict:
    """Build `name`, calibrate it, and measure fuse / strip(prune) errors and the MACs cut."""
    start = time.perf_counter()
    keras.utils.set_random_seed(0)
    model = ALL[name]()
    randomize_weights(model, seed=0)
    shape = tuple(model.inputs[0].shape[1:])
    x = digits(shape, 36)
    reestimate_batchnorm(model, x[4:])
    x = x[:4]
    before = _fingerprint(model)
    full = tfm_fuse.profile(model)
    row = {"model": name, "layers": len(full.layers)}
    # one transformed copy alive at a time: ConvNeXtXLarge holds 1.4 GB of weights per copy
    fused = tfm_fuse.fuse(model)
    row["fuse_err"], row["fused_layers"] = _max_rel_diff(fused, model, x), len(fused.layers)
    if row["fuse_err"] > TOLERANCE:  # deep nets: the fusion, or float32 round-off of the model?
        reference = float64_twin(name, model)
        row["orig_err_f64"] = _max_rel_diff(model, reference, x)
        row["fuse_err_f64"] = _max_rel_diff(fused, reference, x)
        del reference
    del fused
    gc.collect()
    pruned = tfm_fuse.prune(model, method="l1", rate=rate)
    row["pruning_changed"] = _max_rel_diff(pruned, model, x)  # the checks can fail
    small = tfm_fuse.strip(pruned)
    row["strip_err"] = _max_rel_diff(small, pruned, x)
    row["macs_cut"] = 1.0 - tfm_fuse.profile(small).macs / full.macs
    del pruned, small
    row["caller_untouched"] = _fingerprint(model) == before
    row["seconds"] = time.perf_counter() - start
    del model
    gc.collect()
    return row


def _fingerprint(model: keras.Model) -> str:
    """A digest of every weight (no second copy of a large model in memory)."""
    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(keras.ops.convert_to_numpy(variable).tobytes())
    return digest.hexdigest()
