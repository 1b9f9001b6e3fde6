"""Pivoting (Sredojevic et al., arXiv 1712.01084): channel permutations as an equivalent rewrite.

`pivot(masked)` permutes the channels of every prunable group so that the kept channels come
first, in their original order, and the masked ones last. Every weight axis that runs over a
permuted tensor is permuted the same way (producers' filters, BatchNorm entries, consumers'
input rows, Concatenate segments, Flatten blocks), so the model computes the same outputs, and
each layer's kept weights form one dense leading block: `kernel[..., :k_in, :k_out]`. That is
the layout a runtime or converter can slice without a gather; `strip` of a pivoted model equals
`strip` of the original. Block-diagonal weights are not emitted as grouped convolutions,
because they measure slower per MAC removed than dense pruned counts on every runtime here
(`python benchmarks/grouped_vs_dense.py`: one layer of the benchmark models' shapes, groups 2
and 4 against the same MACs removed as output or input+output channels; median speed-up ÷ MAC
ratio grouped / dense: LiteRT int8 0.28 / 0.52, OpenVINO CPU 0.62 / 0.70, ONNX Runtime 0.80 /
0.83), and tf2onnx cannot convert a Keras grouped convolution at all. Dense counts at the
runtime's measured block (`pruning.latency_model`, or `align=`) are what pays.

Example:
    >>> masked = tfm_fuse.prune(model, method="l1", rate=0.5)
    >>> pivoted = pivot(masked)
    >>> np.allclose(pivoted(x), masked(x), atol=1e-5)
    True
"""

from __future__ import annotations

import keras
import numpy as np

from tfm_fuse import rules
from tfm_fuse.errors import UnsupportedModelError
from tfm_fuse.graph import ModelGraph, analyze
from tfm_fuse.pruning.masks import group_mask
from tfm_fuse.pruning.wrapper import PruneWrapper
from tfm_fuse.rebuild import Builder, rebuild


def channel_permutation(model: keras.Model, graph: ModelGraph) -> np.ndarray:
    """`pi[c]`: the channel id whose values move to where channel `c` was (kept first per group)."""
    n = 1 + max(int(t.channels.max()) for t in graph.tensors if len(t.channels))
    pi = np.arange(n)
    for group in graph.groups:
        if group.prunable:
            order = np.argsort(group_mask(model, group) == 0, kind="stable")
            pi[group.channels] = group.channels[order]
    return pi


def source_positions(ids: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """For each position of a tensor, the old position whose value it takes after permuting."""
    new = pi[ids]
    if not np.array_equal(np.sort(new), np.sort(ids)):
        raise UnsupportedModelError("A tensor holds channels of one group unevenly; pivoting it "
                                    "would not be a permutation.")
    src = np.empty(len(ids), dtype=np.int64)
    src[np.argsort(new, kind="stable")] = np.argsort(ids, kind="stable")
    return src


def _permuted_weights(layer, graph: ModelGraph, node, pi: np.ndarray) -> list[np.ndarray]:
    src = {"in": source_positions(graph.tensors[node.inputs[0]].channels, pi),
           "out": source_positions(graph.tensors[node.outputs[0]].channels, pi)}
    axes = rules.get_rule(layer).weight_axes(layer)
    out = []
    for v in layer.weights:
        name, value = rules.weight_name(v), keras.ops.convert_to_numpy(v)
        for ax in axes:
            if ax.name == name:
                s = src[ax.side]
                s = (s[:, None] * ax.repeat + np.arange(ax.repeat)).ravel()
                value = np.take(value, s, axis=ax.axis)
        if isinstance(layer, PruneWrapper) and name in ("in_mask", "out_mask"):
            value = value[src["in" if name == "in_mask" else "out"]]
        out.append(value)
    return out


def pivot(model: keras.Model, *, allow_unknown: bool = True) -> keras.Model:
    """A copy of `model` whose prunable channels are reordered kept-first; outputs unchanged.

    Args:
        model: a model holding `PruneWrapper`s (e.g. from `tfm_fuse.prune`). Not modified.
        allow_unknown: keep unknown layers pinned (`prune` already accepted them). Defaults to
            `True`.

    Returns:
        The pivoted model (still wrapped, masks permuted with the weights).
    """
    graph = analyze(model, allow_unknown=allow_unknown)
    pi = channel_permutation(model, graph)
    made: dict[int, keras.Layer] = {}

    def rewrite(node, inputs, builder: Builder):
        layer = node.layer
        rule = rules.get_rule(layer)
        if not rules.has_weights(layer) or rule is None or not rule.weight_axes(layer):
            return None
        if id(layer) not in made:
            weights = _permuted_weights(layer, graph, node, pi)
            made[id(layer)] = builder.make(type(layer), layer.get_config(), weights)
        return builder.call(node, made[id(layer)], inputs)

    return rebuild(graph, rewrite)
