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
