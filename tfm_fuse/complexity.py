"""`profile`: parameters, multiply-accumulates and activation memory, per layer and in total.

Counts are for one sample (batch 1). MACs come from each layer type's rule
(`tfm_fuse.rules`); activation memory is the bytes of each layer's output tensors. A
`PruneWrapper` counts as the layer it wraps (its masks are bookkeeping, not parameters).

Example:
    >>> report = tfm_fuse.profile(model)
    >>> report.params, report.macs, report.activation_bytes
    (274442, 40551424, 2359296)
    >>> print(report)          # a table, one row per layer
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np

from tfm_fuse import rules
from tfm_fuse.graph import ModelGraph, analyze, require_static


@dataclasses.dataclass(frozen=True)
class LayerProfile:
    """One layer's share: parameters, MACs and output activation bytes (summed over its calls)."""

    name: str
    type: str
    params: int
    macs: int
    activation_bytes: int
    output_shape: tuple


@dataclasses.dataclass(frozen=True)
class Profile:
    """Per-layer profiles in topological order, and totals."""

    layers: tuple[LayerProfile, ...]

    @property
    def params(self) -> int:
        return sum(p.params for p in self.layers)

    @property
    def macs(self) -> int:
        return sum(p.macs for p in self.layers)

    @property
    def activation_bytes(self) -> int:
        return sum(p.activation_bytes for p in self.layers)

    def __getitem__(self, name: str) -> LayerProfile:
        for p in self.layers:
            if p.name == name:
                return p
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "params": self.params,
            "macs": self.macs,
            "activation_bytes": self.activation_bytes,
            "layers": [dataclasses.asdict(p) for p in self.layers],
        }

    def reduction(self, other: "Profile") -> dict[str, float]:
        """How much smaller `other` is than `self`, per metric: 1 - other / self."""
        return {k: 1.0 - getattr(other, k) / max(getattr(self, k), 1)
                for k in ("params", "macs", "activation_bytes")}

    def __str__(self) -> str:
        head = f"{'layer':<32} {'type':<22} {'params':>10} {'MACs':>14} {'act. bytes':>12}"
        rows = [head, "-" * len(head)]
        for p in self.layers:
            rows.append(f"{p.name[:32]:<32} {p.type[:22]:<22} {p.params:>10,} {p.macs:>14,} "
                        f"{p.activation_bytes:>12,}")
        rows.append("-" * len(head))
        rows.append(f"{'total':<55} {self.params:>10,} {self.macs:>14,} {self.activation_bytes:>12,}")
        return "\n".join(rows)


def _param_count(layer) -> int:
    layer = rules.unwrap(layer)  # a PruneWrapper counts as the layer it wraps
    return int(sum(math.prod(v.shape) for v in getattr(layer, "weights", ())))


def tensor_bytes(shape: tuple, dtype: str) -> int:
    """Bytes of one sample of a tensor of `shape` (batch axis first, ignored) and `dtype`."""
    return math.prod(int(d) for d in shape[1:]) * np.dtype(keras.backend.standardize_dtype(dtype)).itemsize


def profile(model: keras.Model | ModelGraph, *, allow_unknown: bool = True,
            input_shape: tuple | list[tuple] | None = None) -> Profile:
    """Count parameters, MACs and activation memory of every layer of `model`.

    Args:
        model: a Sequential or functional model, or its `ModelGraph`.
        allow_unknown: count unknown layer types as 0 MACs instead of raising. Defaults to `True`.
        input_shape: count at this input size (without the batch axis); needed when the model
            takes inputs of unknown spatial size, e.g. `keras.Input((None, None, 3))`.

    Returns:
        A `Profile`; `str()` gives a table, `.to_dict()` a JSON-ready dict.
    """
    graph = model if isinstance(model, ModelGraph) else analyze(
        model, allow_unknown=allow_unknown, input_shape=input_shape)
    require_static(graph, "counting MACs and activation memory")
    by_layer: dict[int, dict] = {}
    for node in graph.nodes:
        layer = node.layer
        in_shapes = [graph.tensors[t].shape for t in node.inputs]
        out_shapes = [graph.tensors[t].shape for t in node.outputs]
        rule = rules.get_rule(layer)
        macs = rule.macs(layer, in_shapes, out_shapes) if rule else 0
        act = sum(tensor_bytes(graph.tensors[t].shape, graph.tensors[t].dtype) for t in node.outputs)
        entry = by_layer.setdefault(id(layer), {
            "name": layer.name, "type": type(layer).__name__, "params": _param_count(layer),
            "macs": 0, "activation_bytes": 0, "output_shape": tuple(out_shapes[0])})
        entry["macs"] += int(macs)
        entry["activation_bytes"] += int(act)
    return Profile(tuple(LayerProfile(**e) for e in by_layer.values()))
