"""tfm_fuse: fusion-aware structured pruning for Keras 3, and converters for edge accelerators."""

from tfm_fuse._quiet import silence_native_logs_in_cli

silence_native_logs_in_cli()


from tfm_fuse.errors import (
    ConfigError,
    ConversionError,
    TfmFuseError,
    UnsupportedLayerError,
    UnsupportedModelError,
)

__version__ = "0.1.0"

from tfm_fuse import graph
from tfm_fuse.graph import analyze
from tfm_fuse.pruning import PruneWrapper, prune, wrap
from tfm_fuse.strip import strip
from tfm_fuse import fusion, models, data
from tfm_fuse.fusion import fuse
from tfm_fuse.complexity import Profile, profile
