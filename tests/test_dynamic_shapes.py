"""Fully convolutional models (`keras.Input((None, None, 3))`): analysed, fused, pruned and
stripped at any size; costs counted at the size given as `input_shape=`."""

import keras
import numpy as np
import pytest

import tfm_fuse
from tests.models import assert_equivalent, randomize

L = keras.layers


def fully_convolutional() -> keras.Model:
    inp = keras.Input((None, None, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same", name="c1")(inp)))
    x = L.ReLU()(L.Conv2D(8, 3, padding="same", strides=2, name="c2")(x))
    return randomize(keras.Model(inp, L.Conv2D(3, 3, padding="same", name="c3")(x)))


def test_profile_counts_at_the_given_size():
    model = fully_convolutional()
    small, large = (tfm_fuse.profile(model, input_shape=(s, s, 3)) for s in (16, 32))
    assert large.macs == 4 * small.macs
    c1 = next(p for p in small.layers if p.name == "c1")
    assert c1.macs == 16 * 16 * 8 * 3 * 3 * 3


@pytest.mark.parametrize("call", [
    lambda m: tfm_fuse.profile(m),
    lambda m: tfm_fuse.prune(m, method="l1", rate=0.5),
    lambda m: tfm_fuse.prune(m, method="fupruner"),
])
def test_without_a_size_the_error_says_what_to_pass(call):
    model = fully_convolutional()
    with pytest.raises(tfm_fuse.ConfigError, match=r"unknown size.*input_shape="):
        call(model)  # prune(method="fupruner") too: before fit, where FuPruner needs the costs


@pytest.mark.parametrize("shape", [(32, 32), (32, 32, 4), "32x32", [(8, 8, 3), (8, 8, 3)]])
def test_a_shape_that_does_not_fit_is_refused(shape):
    with pytest.raises(tfm_fuse.ConfigError, match="does not fit"):
        tfm_fuse.profile(fully_convolutional(), input_shape=shape)


def test_pruned_and_stripped_model_keeps_dynamic_sizes():
    model = fully_convolutional()
    pruned = tfm_fuse.prune(model, method="l1", macs=0.5, input_shape=(32, 32, 3))
    small = tfm_fuse.strip(pruned)
    assert small.input_shape == (None, None, None, 3)
    x = np.random.default_rng(0).normal(size=(2, 40, 24, 3)).astype("float32")  # another size
    assert_equivalent(small, pruned, x)
    assert_equivalent(tfm_fuse.fuse(model), model, x)
    ratio = (tfm_fuse.profile(small, input_shape=(32, 32, 3)).macs
             / tfm_fuse.profile(model, input_shape=(32, 32, 3)).macs)
    assert 0.4 < ratio < 0.6
