"""What the stripped model would cost, without stripping: params, MACs, activation bytes, and
the bytes of its parameters in a full-integer `.tflite` (what must fit the Edge TPU's memory).

`CostModel(graph)` turns every layer's cost into terms `const × Π kept(positions)`: a weight's
size scales with the kept positions on each channel axis, a layer's MACs with the kept fraction
of its input and output sides, an activation with its kept positions. Evaluating the terms for a
keep-vector over channel ids is cheap, so callbacks log it every update and complexity-driven
pruning re-evaluates it after every step. Totals equal `profile(strip(masked))` for Conv, Dense,
Depthwise and BatchNorm layers; a SeparableConv's depthwise MACs are counted as scaling with
both sides (slight under-estimate).

`int8_param_bytes` counts what the full-integer converter stores: 1 byte per weight of a
convolution or Dense kernel, 4 (int32) per output channel for its bias (the converter adds one
where the layer has none), BatchNormalization folded away; any other layer's weights at 1 byte.
It is what `converters._edgetpu_ops.check_tflite` reports as `parameter_bytes`, the figure the
Edge TPU compiler caches in on-chip memory ("Parameter data caching", coral.ai/docs/edgetpu/
compiler), less the per-channel quantization scales.

Example:
    >>> cm = CostModel(graph)
    >>> cm.totals(cm.keep_from_masks(masked_model))
    {'params': 12345, 'macs': 678900, 'activation_bytes': 45678, 'int8_param_bytes': 12970}
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np

from tfm_fuse import rules
from tfm_fuse.complexity import tensor_bytes
from tfm_fuse.graph import ModelGraph, require_static
from tfm_fuse.pruning.masks import removable

METRICS = ("params", "macs", "activation_bytes")     # what `complexity.profile` also counts
ALL_METRICS = METRICS + ("int8_param_bytes",)
INT8 = 3  # the index of int8_param_bytes
_BIASED = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


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
                if not isinstance(inner, keras.layers.BatchNormalization):  # folded in int8
                    width = 4 if name == "bias" and isinstance(inner, _BIASED) else 1
                    self.terms.append(Term(INT8, layer.name, const * width, factors))
            if isinstance(inner, _BIASED) and not getattr(inner, "use_bias", True):
                self.terms.append(Term(INT8, layer.name, 4.0, [(side_ch["out"], 1)]))
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
        sums = np.zeros(len(ALL_METRICS))
        for t in self.terms:
            sums[t.metric] += t.value(keep)
        return {m: int(round(v)) for m, v in zip(ALL_METRICS, sums)}

    def group_total(self, keep: np.ndarray, gid: int, metric: int) -> float:
        """Sum of the `metric` terms that depend on group `gid`'s channels."""
        return sum(self.terms[i].value(keep) for i in self.terms_of_group.get(gid, ())
                   if self.terms[i].metric == metric)


class MetricCost:
    """One metric of a `CostModel` (e.g. `INT8`) as `allocation.allocate_to_cost` reads it."""

    def __init__(self, model: CostModel, metric: int):
        from tfm_fuse.pruning.allocation import sharing_groups

        self.model, self.metric = model, metric
        self._neighbours = sharing_groups(model.terms_of_group)

    def predict(self, keep: np.ndarray) -> float:
        return float(sum(t.value(keep) for t in self.model.terms if t.metric == self.metric))

    def partial(self, keep: np.ndarray, gid: int) -> float:
        return self.model.group_total(keep, gid, self.metric)

    def neighbours(self, gid: int) -> list[int]:
        return self._neighbours.get(gid, [])
