"""`wrap` computes what the model computes; `strip(prune(m))` computes what `prune(m)` computes.

Every case of the channel analysis (tests/models.py) and four keras.applications models, in
inference mode, to max-abs difference <= 1e-4 x max(1, output scale).
"""

import keras
import numpy as np
import pytest

import tfm_fuse
from tfm_fuse.pruning.methods import keep_count
from tests import models
from tests.models import CASES, assert_equivalent, channel_count, sample

L = keras.layers
RATE = 0.3


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, built):
    """(model, input, pruned model, stripped model) per case, built once for the module."""
    model = built(request.param)
    pruned = tfm_fuse.prune(model, rate=RATE)
    return model, sample(model), pruned, tfm_fuse.strip(pruned)


def test_wrap_is_identity(case):
    model, x, _, _ = case
    assert_equivalent(tfm_fuse.wrap(model), model, x)


def test_strip_equals_masked(case):
    _, x, pruned, stripped = case
    assert_equivalent(stripped, pruned, x)


def test_strip_leaves_no_wrapper_and_is_smaller(case):
    model, _, _, stripped = case
    assert not any(isinstance(layer, tfm_fuse.PruneWrapper) for layer in stripped.layers)
    before, after = tfm_fuse.profile(model), tfm_fuse.profile(stripped)
    assert after.params < before.params and after.macs < before.macs


def test_outputs_keep_their_channels(case):
    model, x, _, stripped = case
    for a, b in zip(keras.tree.flatten(model(x)), keras.tree.flatten(stripped(x))):
        assert a.shape == b.shape


def test_prune_masks_the_rate_of_each_prunable_group(built):
    model = built("conv_bn_act")
    small = tfm_fuse.strip(tfm_fuse.prune(model, rate=RATE))
    assert channel_count(small, L.Conv2D) == [keep_count(n, RATE, None) for n in (12, 10, 10)]
    assert small.get_layer("stem_bn").get_weights()[0].shape == (keep_count(12, RATE, None),)


def test_align_keeps_multiples(built):
    model = built("conv_bn_act")
    small = tfm_fuse.strip(tfm_fuse.prune(model, rate=0.5, align=4))
    assert channel_count(small, L.Conv2D) == [8, 8, 8]  # 12 → 6 → 8; 10 → 5 → 8


def test_rate_zero_strips_nothing(built):
    model = built("residual_add")
    small = tfm_fuse.strip(tfm_fuse.prune(model, rate=0.0))
    assert tfm_fuse.profile(small).params == tfm_fuse.profile(model).params
    assert_equivalent(small, model, sample(model))


def test_grouped_conv_is_kept_whole(built):
    small = tfm_fuse.strip(tfm_fuse.prune(built("grouped_conv"), rate=RATE))
    grouped = small.get_layer("grouped")
    assert grouped.groups == 4 and grouped.filters == 16
    assert grouped.input.shape[-1] == 8


def test_se_conv_block_is_pruned_through_the_multiply(built):
    small = tfm_fuse.strip(tfm_fuse.prune(built("se_conv"), rate=RATE))
    kept = keep_count(16, RATE, None)
    assert small.get_layer("block").filters == kept
    assert small.get_layer("excite").filters == kept


def test_se_dense_block_is_pruned_through_the_reshape(built):
    small = tfm_fuse.strip(tfm_fuse.prune(built("se_dense"), rate=RATE))
    kept = keep_count(16, RATE, None)
    assert small.get_layer("block").filters == kept
    assert small.get_layer("excite").units == kept
    assert tuple(small.get_layer("se_reshape").target_shape) == (1, 1, kept)
    assert small.get_layer("squeeze").units == keep_count(4, RATE, None)


def test_flatten_dense_rows_follow_channels(built):
    small = tfm_fuse.strip(tfm_fuse.prune(built("flatten_dense"), rate=RATE))
    kept = small.get_layer("last_conv").filters
    assert kept == keep_count(5, RATE, None)
    assert small.get_layer("fc").get_weights()[0].shape[0] == 4 * 4 * kept


def test_shared_layer_stays_shared(built):
    small = tfm_fuse.strip(tfm_fuse.prune(built("shared_layers"), rate=RATE))
    shared = small.get_layer("shared")
    assert len(shared._inbound_nodes) == 2
    assert shared.filters == keep_count(12, RATE, None)


def test_sequential_round_trips_to_a_functional_model(built):
    model = built("sequential")
    small = tfm_fuse.strip(tfm_fuse.prune(model, rate=RATE))
    assert isinstance(small, keras.Model)
    assert_equivalent(small, tfm_fuse.prune(model, rate=RATE), sample(model))


def test_strip_of_unpruned_model_is_an_equal_copy(built):
    model = built("depthwise_separable")
    copy = tfm_fuse.strip(model)
    assert copy is not model
    assert tfm_fuse.profile(copy).params == tfm_fuse.profile(model).params
    assert_equivalent(copy, model, sample(model))


def test_stripped_model_saves_and_loads(built, tmp_path):
    model = built("concat_into_add")
    small = tfm_fuse.strip(tfm_fuse.prune(model, rate=RATE))
    path = tmp_path / "small.keras"
    small.save(path)
    loaded = keras.models.load_model(path)
    x = sample(model)
    np.testing.assert_allclose(loaded(x), small(x), atol=1e-6)


# --- keras.applications ------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(models.APPLICATIONS))
def test_application_prune_strip_equivalence(name):
    model = models.application(name)
    x = sample(model)
    assert_equivalent(tfm_fuse.wrap(model), model, x)
    pruned = tfm_fuse.prune(model, rate=RATE)
    stripped = tfm_fuse.strip(pruned)
    diff = assert_equivalent(stripped, pruned, x)
    before, after = tfm_fuse.profile(model), tfm_fuse.profile(stripped)
    reduction = before.reduction(after)
    print(f"\n{name}: max-abs diff {diff:.2e}; params {before.params:,} -> {after.params:,} "
          f"(-{reduction['params']:.0%}); MACs {before.macs:,} -> {after.macs:,} "
          f"(-{reduction['macs']:.0%})")
    assert reduction["params"] > 0.2 and reduction["macs"] > 0.2
    assert stripped.output.shape == model.output.shape


def test_strip_before_fupruner_ran_says_nothing_was_pruned(built):
    masked = tfm_fuse.prune(built("residual_add"), method="fupruner", rate=0.5)
    with pytest.warns(UserWarning, match="never trained with callbacks.FuPruner"):
        small = tfm_fuse.strip(masked)
    assert small.count_params() == built("residual_add").count_params()
