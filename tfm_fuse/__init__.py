"""tfm_fuse: fusion-aware structured pruning for Keras 3, and converters for edge accelerators.

Example:
    >>> import tfm_fuse
    >>> fused = tfm_fuse.fuse(model)                          # equivalent rewrite
    >>> masked = tfm_fuse.prune(model, method="l1", rate=0.3)  # channel masks
    >>> small = tfm_fuse.strip(masked)                          # physically smaller, equal outputs
    >>> print(tfm_fuse.profile(small))

`import tfm_fuse` changes no process state (no file descriptor, stream or environment
variable): each name below is imported on first use, so the command line can quiet
TensorFlow's native logs before TensorFlow loads. When Keras is already imported (`import
keras, tfm_fuse`), the classes tfm_fuse saves in `.keras` files (`PruneWrapper`, the schedules)
are registered at once, so `keras.models.load_model` reads a masked model right away; otherwise
they are registered by the first use of tfm_fuse (or by `tfm_fuse.files.load_model`).
"""

import importlib
import sys

__version__ = "0.1.0"

# public name -> the module that defines it (imported on first access)
_EXPORTS = {
    "ConfigError": "tfm_fuse.errors", "ConversionError": "tfm_fuse.errors",
    "OutputError": "tfm_fuse.errors", "TfmFuseError": "tfm_fuse.errors",
    "UnsupportedLayerError": "tfm_fuse.errors", "UnsupportedModelError": "tfm_fuse.errors",
    "Profile": "tfm_fuse.complexity", "profile": "tfm_fuse.complexity",
    "fuse": "tfm_fuse.fusion", "analyze": "tfm_fuse.graph",
    "PruneWrapper": "tfm_fuse.pruning", "prune": "tfm_fuse.pruning", "wrap": "tfm_fuse.pruning",
    "strip": "tfm_fuse.pruning.stripping",
}
_SUBMODULES = ("callbacks", "converters", "files", "fusion", "graph", "pruning", "rules",
               "nesting", "rebuild", "complexity", "validation", "errors", "compat", "app")


def __getattr__(name: str):
    """`tfm_fuse.fuse`, `tfm_fuse.converters`, ... imported when first used (PEP 562)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"tfm_fuse.{name}")
    else:
        raise AttributeError(f"module 'tfm_fuse' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def register_saved_classes() -> None:
    """Register the Keras-serializable classes that `.keras` files of masked models name."""
    importlib.import_module("tfm_fuse.pruning")


if "keras" in sys.modules:  # Keras (and TensorFlow) already loaded: registering costs nothing
    register_saved_classes()


def __dir__():
    return sorted([*globals(), *_EXPORTS, *_SUBMODULES])


__all__ = sorted([*_EXPORTS, *_SUBMODULES])
