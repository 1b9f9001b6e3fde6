"""tfm_fuse: fusion-aware structured pruning for Keras 3, and converters for edge accelerators."""

from tfm_fuse.errors import (
    ConfigError,
    ConversionError,
    TfmFuseError,
    UnsupportedLayerError,
    UnsupportedModelError,
)

__version__ = "0.1.0"
