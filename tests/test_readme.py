"""The README's code runs as written (a new user pastes it)."""

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).parents[1] / "README.md"


def readme_block(heading: str) -> str:
    """The first ```python block after `heading` in README.md."""
    text = README.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_pruning_during_fit_snippet_runs_as_written(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_block("## Pruning during fit"), "README.md", "exec"), scope)
    reduction = scope["tfm_fuse"].profile(scope["model"]).reduction(
        scope["tfm_fuse"].profile(scope["small"]))
    assert reduction["macs"] == pytest.approx(0.5, abs=0.02)
    pred = scope["small"].predict(scope["x_test"], verbose=0)
    assert float(np.mean(pred.argmax(-1) == scope["y_test"])) > 0.95
    assert "'macs'" in capsys.readouterr().out


def test_own_layer_rule_snippet_runs_as_written(capsys):
    from tfm_fuse import rules

    scope: dict = {}
    x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype("float32")
    try:
        exec(compile(readme_block("## Models it accepts"), "README.md", "exec"), scope)
        masked = scope["tfm_fuse"].prune(scope["model"], method="l1", rate=0.5)  # what was cut
        np.testing.assert_allclose(scope["small"](x), masked(x), atol=1e-5)
    finally:  # the snippet registers a rule for its class: leave the registry as it was
        rules._RULES.pop(scope.get("ChannelScale"), None)
    assert "(8,)" in capsys.readouterr().out
    assert scope["small"].count_params() < scope["model"].count_params()


TESTED = ("## Ten lines", "## Models it accepts", "## Pruning during fit",
          "## Pruning to a latency budget")


def test_ten_lines_run_as_written(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)  # the snippet saves small.keras
    scope: dict = {}
    exec(compile(readme_block("## Ten lines"), "README.md", "exec"), scope)
    out = capsys.readouterr().out
    assert "'macs'" in out and (tmp_path / "small.keras").exists()
    x = np.random.default_rng(0).uniform(0, 1, size=(2, 96, 96, 3)).astype("float32")
    np.testing.assert_allclose(scope["small"](x), scope["masked"](x), atol=1e-5)


def test_every_python_block_of_the_readme_is_run_by_a_test():
    """A block added under another heading needs a test here (this fails until it has one)."""
    text = README.read_text()
    headings = []
    for match in re.finditer(r"```python\n", text):
        before = text[:match.start()]
        headings.append(re.findall(r"^## .*$", before, re.M)[-1])
    assert headings and set(headings) <= set(TESTED), set(headings) - set(TESTED)
    assert len(headings) == len(set(headings))  # one block per section: readme_block finds it


@pytest.mark.slow
def test_latency_budget_snippet_runs_as_written(monkeypatch, tmp_path):
    from tfm_fuse.converters._edgetpu_ops import SRAM_BYTES
    from tfm_fuse.pruning.cost import CostModel

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TFM_FUSE_CACHE", str(tmp_path / "cache"))
    scope: dict = {}
    exec(compile(readme_block("## Pruning to a latency budget"), "README.md", "exec"), scope)
    tfm_fuse = scope["tfm_fuse"]
    assert tfm_fuse.profile(scope["small"]).macs < tfm_fuse.profile(scope["model"]).macs
    cost = CostModel(tfm_fuse.analyze(scope["fits"]))
    assert cost.totals(cost.full())["int8_param_bytes"] <= SRAM_BYTES
    assert 8e6 < scope["fits"].count_params() < 8.8e6  # the comment's figure
