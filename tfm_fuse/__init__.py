"""tfm_fuse: fusion-aware structured pruning for Keras 3, and converters for edge accelerators.

Example:
    >>> import tfm_fuse
    >>> fused = tfm_fuse.fuse(model)                          # equivalent rewrite
    >>> masked = tfm_fuse.prune(model, method="l1", rate=0.3)  # channel masks
    >>> small = tfm_fuse.strip(masked)                          # physically smaller, equal outputs
    >>> print(tfm_fuse.profile(small))
"""

from tfm_fuse._quiet import silence_native_logs_in_cli

silence_native_logs_in_cli()

from tfm_fuse import data, fusion, graph, models  # noqa: E402
from tfm_fuse.complexity import Profile, profile  # noqa: E402
from tfm_fuse.errors import (  # noqa: E402
    ConfigError,
    ConversionError,
    TfmFuseError,
    UnsupportedLayerError,
    UnsupportedModelError,
)
from tfm_fuse.fusion import fuse  # noqa: E402
from tfm_fuse.graph import analyze  # noqa: E402
from tfm_fuse.pruning import PruneWrapper, prune, wrap  # noqa: E402
from tfm_fuse.pruning.stripping import strip  # noqa: E402  (the import graph is acyclic:
#                                                  tests/test_imports.py; no order matters)

__version__ = "0.1.0"


def __getattr__(name: str):
    """`tfm_fuse.callbacks` and `tfm_fuse.converters` without importing them first."""
    if name in ("callbacks", "converters"):
        import importlib

        return importlib.import_module(f"tfm_fuse.{name}")
    raise AttributeError(f"module 'tfm_fuse' has no attribute {name!r}")

__all__ = [
    "ConfigError", "ConversionError", "Profile", "PruneWrapper", "TfmFuseError",
    "UnsupportedLayerError", "UnsupportedModelError", "analyze", "callbacks", "converters",
    "data", "fuse", "fusion",
    "graph", "models", "profile", "prune", "strip", "wrap",
]
