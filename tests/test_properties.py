"""Property test: on random CNNs, every equivalent rewrite computes what the model computes.

`random_cnns` draws a model from the building blocks of `tests.models.random_model`
(conv/BN/act, residual merges, concat, depthwise, separable, pooling, SE with Dense or 1×1
convs, GAP or Flatten → Dense). `EQUIVALENCES` lists the checks; each maps a model to
(candidate, reference). Add a rewrite (e.g. `fuse`) by adding an entry.
"""

import keras
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfm_fuse
from tests.models import assert_equivalent, random_model, sample

random_cnns = st.composite(random_model)


def _wrap(model):
    return tfm_fuse.wrap(model), model


def _strip(model):
    pruned = tfm_fuse.prune(model, rate=0.3)
    return tfm_fuse.strip(pruned), pruned


def _fuse(model):
    return tfm_fuse.fuse(model, shortcuts=True), model


def _strip_fused(model):
    """The FuPruner pipeline: fuse, prune the fused model's groups, strip."""
    pruned = tfm_fuse.prune(tfm_fuse.fuse(model, shortcuts=True), rate=0.3)
    return tfm_fuse.strip(pruned), pruned


# name -> model -> (candidate, reference) that must agree in inference mode
EQUIVALENCES = {
    "wrap": _wrap,
    "strip(prune)": _strip,
    "fuse": _fuse,
    "strip(prune(fuse))": _strip_fused,
}


# Keras layer constructors draw their seeds from Python's `random`, which hypothesis flags.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module")
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(random_cnns())
def test_random_cnn_equivalences(model):
    x = sample(model)
    for name, make in EQUIVALENCES.items():
        candidate, reference = make(model)
        try:
            assert_equivalent(candidate, reference, x)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None
    small = tfm_fuse.strip(tfm_fuse.prune(model, rate=0.3))
    assert tfm_fuse.profile(small).params <= tfm_fuse.profile(model).params
    keras.backend.clear_session()
