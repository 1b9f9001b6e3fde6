"""What the stripped model would cost, without stripping: params, MACs, activation bytes.

`CostModel(graph)` turns every layer's cost into terms `const × Π kept(positions)`: a weight's
size scales with the kept positions on each channel axis, a layer's MACs with the kept fraction
of its input and output sides, an activation with its kept positions. Evaluating the terms for a
keep-vector over channel ids is cheap, so callbacks log it every update and complexity-driven
pruning re-evaluates it after every step. Totals equal `profile(strip(masked))` for Conv, Dense,
Depthwise and BatchNorm layers; a SeparableConv's depthwise MACs are counted as scaling with
both sides (slight under-estimate).

Example:
    >>> cm = CostModel(graph)
    >>> cm.totals(cm.keep_from_masks(masked_model))
    {'params': 12345, 'macs': 678900, 'activation_bytes': 45678}
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfm_fuse import rules
from tfm_fuse.complexity import tensor_bytes
from tfm_fuse.graph import ModelGraph, require_static
from tfm_fuse.pruning.masks import removable

METRICS = ("params", "macs", "activation_bytes")


@dataclasses.dataclass
class Term:
    metric: int
    layer: str
    const: float
    factors: list  # (channel ids of a tensor, repeat)

    def value(self, keep: np.ndarray) -> float:
        v = self.const
        for ch, repeat in self.factors:
            v *= float(keep[ch].sum()) * repeat
        return v


class CostModel:
    """Costs of the model `graph` describes, as functions of which channel ids are kept."""

    def __init__(self, graph: ModelGraph):
        require_static(graph, "pruning to a budget (its cost model)")
        self.graph = graph
        self.n_ids = 1 + max((int(t.channels.max()) for t in graph.tensors if len(t.channels)),
                             default=0)
        self.terms: list[Term] = []
        seen: set[int] = set()
        for node in graph.nodes:
            self._node_terms(node, first=id(node.layer) not in seen)
            seen.add(id(node.layer))
        owner = np.full(self.n_ids, -1)
        for g in graph.groups:
            owner[g.channels] = g.id
        self.terms_of_group: dict[int, list[int]] = {}
        for i, term in enumerate(self.terms):
            for gid in {int(owner[c]) for ch, _ in term.factors for c in np.unique(ch)}:
                self.terms_of_group.setdefault(gid, []).append(i)

    def _node_terms(self, node, first: bool) -> None:
        g, layer = self.graph, node.layer
        rule = rules.get_rule(layer)
        axes = rule.weight_axes(layer) if rule else ()
        side_ch = {"in": g.tensors[node.inputs[0]].channels if node.inputs else None,
                   "out": g.tensors[node.outputs[0]].channels}
        inner = rules.unwrap(layer)
        if first:
            for v in getattr(inner, "weights", ()):  # a keras.ops call has none
                name, shape = rules.weight_name(v), tuple(int(d) for d in v.shape)
                const, factors = float(math.prod(shape)), []
                for ax in axes:
                    if ax.name == name and side_ch[ax.side] is not None:
                        const /= shape[ax.axis % len(shape)]
                        factors.append((side_ch[ax.side], ax.repeat))
                self.terms.append(Term(0, layer.name, const, factors))
        in_shapes = [g.tensors[t].shape for t in node.inputs]
        out_shapes = [g.tensors[t].shape for t in node.outputs]
        for const, sides in (rule.mac_terms(layer, in_shapes, out_shapes) if rule else []):
            self.terms.append(Term(1, layer.name, float(const),
                                   [(side_ch[s], 1) for s in sides]))
        for t in node.outputs:
            spec = g.tensors[t]
            total = tensor_bytes(spec.shape, spec.dtype)
            self.terms.append(Term(2, layer.name, total / max(len(spec.channels), 1),
                                   [(spec.channels, 1)]))

    def full(self) -> np.ndarray:
        return np.ones(self.n_ids, dtype=bool)

    def keep_from_masks(self, model) -> np.ndarray:
        """Channel ids `strip(model)` keeps (model: the wrapped model `graph` analyses)."""
        keep = self.full()
        for gid, drop in removable(model, self.graph).items():
            keep[self.graph.groups[gid].channels[drop]] = False
        return keep

    def values(self, keep: np.ndarray) -> np.ndarray:
        """Per-term values."""
        return np.array([t.value(keep) for t in self.terms])

    def totals(self, keep: np.ndarray) -> dict[str, int]:
        sums = np.zeros(3)
        for t in self.terms:
            sums[t.metric] += t.value(keep)
        return {m: int(round(v)) for m, v in zip(METRICS, sums)}
