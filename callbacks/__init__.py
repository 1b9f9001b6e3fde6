"""Keras callbacks that drive pruning during `fit`.

Example:
    >>> from tfm_fuse import callbacks
    >>> masked.fit(x, y, callbacks=[callbacks.FuPruner(0.5)])
"""

from tfm_fuse.callbacks.fupruner import FuPruner

__all__ = ["FuPruner"]
