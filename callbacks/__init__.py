"""Keras callbacks that drive pruning during `fit`.

Example:
    >>> from tfm_fuse import callbacks
    >>> masked = tfm_fuse.prune(model, method="fupruner", macs=0.5)
    >>> masked.fit(x, y, validation_split=0.1, epochs=4, callbacks=[callbacks.FuPruner()])
"""

from tfm_fuse.callbacks.fupruner import FuPruner

__all__ = ["FuPruner"]
