"""Compatibility layers for code written against other pruning libraries."""
