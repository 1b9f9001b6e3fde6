"""tfmot's pruning-guide code shape, through `tfm_fuse.compat.tfmot`, on a Keras 3 model."""

import keras
import numpy as np
import pytest

import tfm_fuse
from tfm_fuse.compat import tfmot
from tfm_fuse.errors import ConfigError


def _data():
    (x, y), _ = tfm_fuse.app.data.load_mnist(n_train=512, n_test=0)
    return x, y


def test_the_pruning_guide_runs_on_a_keras3_model(tmp_path):
    x, y = _data()
    model = tfm_fuse.app.models.residual_cnn(widths=(8, 16), blocks_per_stage=1)
    batch_size, epochs = 64, 3
    end_step = int(np.ceil(len(x) / batch_size)) * epochs // 2

    # --- the guide's code, with only the import changed ---
    prune_low_magnitude = tfmot.sparsity.keras.prune_low_magnitude
    pruning_params = {"pruning_schedule": tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.10, final_sparsity=0.50, begin_step=0, end_step=end_step,
        frequency=2)}
    model_for_pruning = prune_low_magnitude(model, **pruning_params)
    model_for_pruning.compile(optimizer="adam", metrics=["accuracy"],
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep(),
                 tfmot.sparsity.keras.PruningSummaries(log_dir=str(tmp_path / "logs"))]
    model_for_pruning.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0,
                          callbacks=callbacks)
    model_for_export = tfmot.sparsity.keras.strip_pruning(model_for_pruning)
    # ---

    removed = tfm_fuse.profile(model).reduction(tfm_fuse.profile(model_for_export))["macs"]
    assert removed == pytest.approx(0.50, abs=0.03)  # sparsity = fraction of MACs removed
    pruner = callbacks[0]
    assert pruner._schedule.end_step == end_step and pruner._freq == 2  # the guide's schedule
    np.testing.assert_allclose(model_for_export.predict(x[:64], verbose=0),
                               model_for_pruning.predict(x[:64], verbose=0), atol=1e-4)
    logs = [p.name for p in (tmp_path / "logs").rglob("*") if p.is_file()]
    assert any("tfevents" in n or n == "pruning_summaries.csv" for n in logs), logs
    if "pruning_summaries.csv" in logs:
        header = (tmp_path / "logs" / "pruning_summaries.csv").read_text().splitlines()[0]
        assert "prune_macs_removed" in header


def test_element_wise_options_are_refused_by_name():
    model = tfm_fuse.app.models.residual_cnn(widths=(8,), blocks_per_stage=1)
    with pytest.raises(ConfigError, match=r"\['block_size'\] describe element-wise sparsity"):
        tfmot.sparsity.keras.prune_low_magnitude(model, block_size=(1, 4))
