"""The application around the library: the `tfm-fuse` command (`cli`), the demo (`demo`), side
by side latency of deployed artefacts (`latency`), the demo's model (`models`) and the shipped
MNIST digits (`data`). The core (`tfm_fuse`, `tfm_fuse.pruning`, `tfm_fuse.callbacks`,
`tfm_fuse.converters`) imports none of it.

Example:
    >>> from tfm_fuse.app.data import load_mnist
    >>> (x, y), (x_test, y_test) = load_mnist(n_train=2000)
"""

import importlib

_SUBMODULES = ("cli", "data", "demo", "latency", "models")


def __getattr__(name: str):
    """`tfm_fuse.app.models`, ... imported when first used (PEP 562)."""
    if name not in _SUBMODULES:
        raise AttributeError(f"module 'tfm_fuse.app' has no attribute {name!r}")
    value = importlib.import_module(f"tfm_fuse.app.{name}")
    globals()[name] = value
    return value


__all__ = list(_SUBMODULES)
