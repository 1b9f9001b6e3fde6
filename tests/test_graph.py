"""The channel analysis: which channels `graph.analyze` ties together, and which it pins."""

import keras
import numpy as np
import pytest

import tfm_fuse
from tests import models

L = keras.layers


def group(graph, layer: str, side: str = "out"):
    """The group holding the first channel of that layer side."""
    for g in graph.groups:
        if (layer, side) in g.members and 0 in g.members[(layer, side)][:, 0]:
            return g
    raise AssertionError(f"no group holds ({layer}, {side})")


def groups_touching(graph, layer: str, side: str):
    return [g for g in graph.groups if (layer, side) in g.members]


@pytest.fixture(scope="module")
def analysed(built):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = tfm_fuse.analyze(built(name))
        return cache[name]

    return get


def test_nodes_are_topological_and_tensors_linked(analysed):
    g = analysed("concat_into_add")
    produced = set(g.inputs)
    for node in g.nodes:
        assert set(node.inputs) <= produced, f"{node.layer.name} runs before its inputs exist"
        produced |= set(node.outputs)
        for t in node.inputs:
            assert node.index in g.tensors[t].consumers
    assert set(g.outputs) <= produced
    assert all(g.tensors[t].is_output for t in g.outputs)


def test_every_tensor_channel_has_an_id(analysed):
    g = analysed("conv_bn_act")
    for t in g.tensors:
        assert len(t.channels) == t.shape[-1]


def test_conv_bn_act_consumers_share_one_group(analysed):
    g = analysed("conv_bn_act")
    grp = group(g, "stem", "out")
    assert grp.prunable and grp.size == 12
    expected = {("stem", "out"), ("stem_bn", "in"), ("stem_bn", "out"),
                ("consumer_a", "in"), ("consumer_b", "in")}
    assert expected <= set(grp.members)
    for key in expected:  # the same channel sits at the same position everywhere
        np.testing.assert_array_equal(grp.members[key][:, 0], np.arange(12))


def test_input_and_output_channels_are_pinned(analysed):
    g = analysed("conv_bn_act")
    inp = group(g, "stem", "in")
    out = groups_touching(g, g.model.layers[-1].name, "out")[0]
    assert not inp.prunable and "input" in inp.reason
    assert not out.prunable and "output" in out.reason


def test_two_outputs_both_pinned(built):
    g = tfm_fuse.analyze(built("two_outputs"))
    assert not group(g, "feature_out", "out").prunable
    assert not group(g, "logits", "out").prunable


@pytest.mark.parametrize("merge", ["residual_add", "residual_subtract", "residual_multiply",
                                   "residual_maximum"])
def test_residual_merge_ties_both_branches(analysed, merge):
    g = analysed(merge)
    convs = [layer.name for layer in g.model.layers if isinstance(layer, L.Conv2D)]
    # stem, and the last conv of each of the two blocks, all write the residual stream
    stream = group(g, convs[0], "out")
    assert stream.prunable and stream.size == 10
    writers = {name for name, side in stream.members if side == "out" and name.startswith("conv")}
    assert writers == {convs[0], convs[2], convs[4]}


def test_concatenate_offsets(analysed):
    g = analysed("concat_offsets")
    a, b, stem = group(g, "branch_a"), group(g, "branch_b"), group(g, "stem")
    np.testing.assert_array_equal(a.members[("reader", "in")][:, 0], np.arange(0, 6))
    np.testing.assert_array_equal(b.members[("reader", "in")][:, 0], np.arange(6, 16))
    np.testing.assert_array_equal(stem.members[("reader", "in")][:, 0], np.arange(16, 24))
    assert a.prunable and b.prunable and stem.prunable


def test_concatenate_feeding_add_splits_the_full_width_conv(analysed):
    g = analysed("concat_into_add")
    a, b = group(g, "branch_a"), group(g, "branch_b")
    np.testing.assert_array_equal(a.members[("full", "out")][:, 0], np.arange(0, 6))
    np.testing.assert_array_equal(b.members[("full", "out")][:, 0], np.arange(6, 16))
    assert a.prunable and b.prunable


def test_depthwise_passes_channels_separable_makes_new_ones(analysed):
    g = analysed("depthwise_separable")
    stem = group(g, "stem")
    assert {("depthwise", "in"), ("depthwise", "out"), ("separable", "in")} <= set(stem.members)
    sep = group(g, "separable", "out")
    assert sep is not stem and sep.size == 16 and sep.prunable


def test_depth_multiplier_is_pinned_with_reason():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="c")(inp)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw2")(x)
    out = L.Dense(2)(L.GlobalAveragePooling2D()(x))
    g = tfm_fuse.analyze(keras.Model(inp, out))
    grp = group(g, "c")
    assert not grp.prunable and "depth_multiplier=2" in grp.reason


def test_grouped_conv_is_pinned_with_reason(analysed):
    g = analysed("grouped_conv")
    for side in ("in", "out"):
        grp = group(g, "grouped", side)
        assert not grp.prunable
        assert "grouped" in grp.reason and "groups=4" in grp.reason


def test_se_with_dense_and_reshape_is_prunable(analysed):
    g = analysed("se_dense")
    block = group(g, "block")
    assert block.prunable  # Reshape (C,) → (1, 1, C) keeps the channel axis
    assert {("squeeze", "in"), ("excite", "out")} <= set(block.members)
    assert group(g, "squeeze").prunable


def test_reshape_that_moves_channels_is_pinned():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", name="c")(inp)
    x = L.Reshape((8, 32), name="fold")(x)
    out = L.Dense(2)(L.Flatten()(x))
    grp = group(tfm_fuse.analyze(keras.Model(inp, out)), "c")
    assert not grp.prunable and "fold" in grp.reason and "reshapes" in grp.reason


def test_se_with_keepdims_conv_is_prunable(analysed):
    g = analysed("se_conv")
    block = group(g, "block")
    assert block.prunable
    assert ("excite", "out") in block.members and ("squeeze", "in") in block.members


def test_flatten_gives_each_channel_its_spatial_rows(analysed):
    g = analysed("flatten_dense")
    grp = group(g, "last_conv")
    rows = grp.members[("fc", "in")]
    assert rows.shape == (5, 16)  # 5 channels × 4×4 positions
    np.testing.assert_array_equal(rows[1], np.arange(1, 80, 5))  # channel-last: stride C


def test_shared_layer_calls_share_channels(analysed):
    g = analysed("shared_layers")
    assert group(g, "stem") is group(g, "other")  # both feed the shared conv's input
    assert group(g, "shared").prunable


def test_sequential_is_analysed(analysed):
    g = analysed("sequential")
    assert sum(grp.prunable for grp in g.groups) == 3


@pytest.mark.parametrize("layer, reason", [
    (L.LayerNormalization(), "LayerNormalization normalizes over channels"),
    (L.Softmax(), "softmax over channels"),
    (L.Reshape((4, 4, 16)), "reshapes"),
    (L.Permute((3, 1, 2)), "reshapes"),
    (L.Rescaling(scale=[1.0, 2.0, 3.0, 4.0]), "per-channel rescaling"),
])
def test_channel_mixing_layers_pin_their_input(layer, reason):
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", name="c")(inp)
    x = layer(x)
    out = L.Dense(2)(L.GlobalAveragePooling2D()(L.Conv2D(5, 1)(x)))
    g = tfm_fuse.analyze(keras.Model(inp, out))
    grp = group(g, "c")
    assert not grp.prunable and reason in grp.reason


def test_elementwise_layers_keep_channels_prunable(analysed):
    g = analysed("elementwise_zoo")
    assert [grp.prunable for grp in g.groups] == [False, True, True, True, False]


def test_analyze_does_not_touch_the_model(built):
    model = built("residual_add")
    before = [len(layer._inbound_nodes) for layer in model.layers]
    tfm_fuse.analyze(model)
    assert [len(layer._inbound_nodes) for layer in model.layers] == before


def test_conv_transpose_makes_prunable_channels(analysed):
    g = analysed("conv_transpose")
    up = group(g, "up")
    assert up.prunable and up.size == 10 and ("head", "in") in up.members
