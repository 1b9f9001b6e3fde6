"""`profile` against hand counts, and the reduction it reports for a stripped model."""

import json

import keras
import pytest

import tfm_fuse
from tfm_fuse.pruning.methods import keep_count
from tests.models import sample

L = keras.layers


def one_layer(layer, shape):
    inp = keras.Input(shape)
    return keras.Model(inp, layer(inp)), layer.name


# (layer, input shape, params, MACs, output elements) counted by hand for one sample
HAND_COUNTS = {
    # 3×3×3 kernel, 4 filters + bias; every one of the 8×8×4 outputs needs 27 MACs
    "conv2d": (lambda: L.Conv2D(4, 3, padding="same"), (8, 8, 3), 27 * 4 + 4, 8 * 8 * 4 * 27, 256),
    "conv2d_valid_stride": (lambda: L.Conv2D(6, 3, strides=2, use_bias=False), (9, 9, 2),
                            3 * 3 * 2 * 6, 4 * 4 * 6 * 18, 96),
    # one 3×3 filter per channel + bias
    "depthwise": (lambda: L.DepthwiseConv2D(3, padding="same"), (8, 8, 4), 36 + 4, 64 * 4 * 9, 256),
    # depthwise 3×3×4, pointwise 4×6, bias 6
    "separable": (lambda: L.SeparableConv2D(6, 3, padding="same"), (8, 8, 4), 36 + 24 + 6,
                  64 * 4 * 9 + 64 * 4 * 6, 384),
    # groups=2: each filter sees 2 of the 4 input channels
    "grouped": (lambda: L.Conv2D(8, 3, padding="same", groups=2), (8, 8, 4), 3 * 3 * 2 * 8 + 8,
                64 * 8 * 9 * 2, 512),
    # every input pixel scatters a 3×3×4 → 3 product into the 8×8 output
    "transpose": (lambda: L.Conv2DTranspose(3, 3, strides=2, padding="same"), (4, 4, 4),
                  3 * 3 * 3 * 4 + 3, 4 * 4 * 4 * 9 * 3, 192),
    # BN: gamma, beta, moving mean and variance; foldable, so no MACs of its own
    "batchnorm": (lambda: L.BatchNormalization(), (8, 8, 5), 4 * 5, 0, 320),
    "dense": (lambda: L.Dense(5), (64,), 64 * 5 + 5, 64 * 5, 5),
    # Dense over a sequence applies its kernel at every step
    "dense_3d": (lambda: L.Dense(5), (7, 4), 4 * 5 + 5, 7 * 4 * 5, 35),
    "pooling": (lambda: L.MaxPooling2D(), (8, 8, 3), 0, 0, 48),
}


@pytest.mark.parametrize("case", sorted(HAND_COUNTS))
def test_single_layer_matches_hand_count(case):
    make, shape, params, macs, elements = HAND_COUNTS[case]
    model, name = one_layer(make(), shape)
    p = tfm_fuse.profile(model)[name]
    assert (p.params, p.macs) == (params, macs)
    assert p.activation_bytes == elements * 4  # float32
    assert p.params == model.get_layer(name).count_params()


def test_flatten_dense_hand_count():
    inp = keras.Input((4, 4, 3))
    x = L.Conv2D(4, 3, padding="same", name="c")(inp)
    x = L.Flatten(name="f")(x)
    out = L.Dense(5, name="d")(x)
    report = tfm_fuse.profile(keras.Model(inp, out))
    assert report["d"].params == 64 * 5 + 5 and report["d"].macs == 64 * 5
    assert report["f"].params == 0 and report["f"].macs == 0
    assert report.params == (27 * 4 + 4) + 325
    assert report.macs == 16 * 4 * 27 + 320


def test_totals_dict_and_table():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", name="c")(inp)
    out = L.Dense(2, name="d")(L.GlobalAveragePooling2D(name="gap")(x))
    report = tfm_fuse.profile(keras.Model(inp, out))
    assert report.params == sum(p.params for p in report.layers)
    assert report.macs == sum(p.macs for p in report.layers) == 6912 + 8
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["params"] == report.params and as_dict["macs"] == report.macs
    assert [row["name"] for row in as_dict["layers"]] == ["c", "gap", "d"]
    table = str(report)
    assert "c" in table and "total" in table and f"{report.macs:,}" in table


def test_shared_layer_counts_params_once_and_macs_per_call():
    inp = keras.Input((8, 8, 3))
    conv = L.Conv2D(3, 3, padding="same", name="shared")
    out = L.Dense(2)(L.GlobalAveragePooling2D()(conv(conv(inp))))
    p = tfm_fuse.profile(keras.Model(inp, out))["shared"]
    assert p.params == 84 and p.macs == 2 * 64 * 3 * 27


def test_wrapper_counts_as_its_layer(built):
    model = built("residual_add")
    assert tfm_fuse.profile(tfm_fuse.wrap(model)).params == tfm_fuse.profile(model).params
    assert tfm_fuse.profile(tfm_fuse.wrap(model)).macs == tfm_fuse.profile(model).macs


def test_stripped_profile_shows_the_reduction():
    """conv(10) → conv(8) → GAP → Dense(3) at rate 0.3 keeps 7 and 6 filters."""
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(10, 3, padding="same", name="c1")(inp)
    x = L.Conv2D(8, 3, padding="same", name="c2")(x)
    out = L.Dense(3, name="d")(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    k1, k2 = keep_count(10, 0.3, None), keep_count(8, 0.3, None)
    assert (k1, k2) == (7, 6)
    small = tfm_fuse.strip(tfm_fuse.prune(model, rate=0.3))
    before, after = tfm_fuse.profile(model), tfm_fuse.profile(small)
    assert after.params == (27 * k1 + k1) + (9 * k1 * k2 + k2) + (k2 * 3 + 3)
    assert after.macs == 64 * k1 * 27 + 64 * k2 * 9 * k1 + k2 * 3
    assert after.activation_bytes < before.activation_bytes
    reduction = before.reduction(after)
    assert reduction["params"] == pytest.approx(1 - after.params / before.params)
    assert 0 < reduction["macs"] < 1


def test_profile_accepts_an_analysis(built):
    model = built("concat_offsets")
    assert tfm_fuse.profile(tfm_fuse.analyze(model)).macs == tfm_fuse.profile(model).macs


def test_profile_does_not_run_the_model(built, monkeypatch):
    """Profiling is arithmetic on the graph: no layer computes on real values (revert to
    counting MACs from a forward pass and this fails)."""
    model = built("sequential")
    computed = []
    for cls in {type(layer) for layer in model.layers}:
        real_call = cls.call

        def recording_call(self, *args, _real=real_call, **kwargs):
            if not isinstance(args[0], keras.KerasTensor):  # concrete inputs: a real run
                computed.append(self.name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "call", recording_call)
    model(sample(model))
    assert computed, "the check itself must see a real run"
    computed.clear()
    tfm_fuse.profile(model)
    assert computed == []
