"""Pruning: wrappers holding channel masks, criteria, allocation, schedules, and entry points."""

from tfm_fuse.pruning.masks import group_mask, removable, set_group_mask
from tfm_fuse.pruning.methods import Method, prune, wrap
from tfm_fuse.pruning.wrapper import PruneWrapper
from tfm_fuse.pruning.budget import Budget
from tfm_fuse.pruning.complexity_driven import Mode, PruneReport, complexity_prune
from tfm_fuse.pruning import schedules
from tfm_fuse.pruning.schedules import Constant, PolynomialDecay, Stepwise
from tfm_fuse.pruning.pivoting import pivot
