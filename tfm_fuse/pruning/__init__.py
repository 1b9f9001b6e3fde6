"""Pruning: wrappers holding channel masks, importance criteria, and the `prune` entry point."""

from tfm_fuse.pruning.masks import group_mask, removable, set_group_mask
from tfm_fuse.pruning.prune import prune, wrap
from tfm_fuse.pruning.wrapper import PruneWrapper
