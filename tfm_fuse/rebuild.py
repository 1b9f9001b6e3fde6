"""Emit a new functional `keras.Model` from a `ModelGraph`, node by node, with rewrites.

The caller's model is never touched: every layer of the result is a fresh copy (from its config,
weights copied), except where a rewrite supplies something else. Fusion, stripping and pruning
wrappers are all rewrites passed to `rebuild`.

Example:
    >>> g = analyze(model)
    >>> def drop_dropout(node, inputs, builder):
    ...     if isinstance(node.layer, keras.layers.Dropout):
    ...         return inputs          # the node's output is its input
    ...     return None                # default: a copy of the layer
    >>> new_model = rebuild(g, drop_dropout)
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from tfm_fuse.errors import UnsupportedLayerError
from tfm_fuse.graph import ModelGraph, Node, TensorRef
from tfm_fuse.rules import has_weights, weight_name

Rewrite = Callable[[Node, list, "Builder"], "list | None"]


class Builder:
    """Creates layers for the new model and calls them like the original nodes were called."""

    def __init__(self):
        self._copies: dict[int, keras.Layer] = {}
        self._pending: dict[int, dict | list] = {}

    def copy(self, layer: keras.Layer) -> keras.Layer:
        """A copy of `layer` (one per original layer, so shared layers stay shared).

        A layer without weights that cannot be re-created from its config (a `Lambda` holding a
        Python function, an unregistered custom layer) is carried over as the same object: it
        has no state the new model could change."""
        if id(layer) not in self._copies:
            weights = layer.get_weights() if isinstance(layer, keras.Layer) else None  # keras.ops
            try:
                self._copies[id(layer)] = self.make(type(layer), layer.get_config(), weights)
            except UnsupportedLayerError:
                if has_weights(layer):
                    raise
                self._copies[id(layer)] = layer
        return self._copies[id(layer)]

    def make(self, cls: type, config: dict, weights: dict | list | None = None) -> keras.Layer:
        """A new layer from a config; `weights` (list, or dict by short name) set once it is built."""
        try:
            layer = cls.from_config(config)
        except Exception as e:  # noqa: BLE001 - re-raised with the layer named
            raise UnsupportedLayerError(
                config.get("name", cls.__name__),
                f"cannot be re-created from its config ({type(e).__name__}: {e}). Register the "
                "class with @keras.saving.register_keras_serializable and implement get_config.",
            ) from e
        if weights is not None:
            self._pending[id(layer)] = weights
        return layer

    def call(self, node: Node, layer, inputs: list) -> list:
        """Call `layer` with `node`'s arguments, `inputs` in place of its input tensors."""

        def fill(x):
            return inputs[x.index] if isinstance(x, TensorRef) else x

        args = keras.tree.map_structure(fill, node.args)
        kwargs = keras.tree.map_structure(fill, node.kwargs)
        return keras.tree.flatten(self.apply(layer, *args, **kwargs))

    def apply(self, layer, *args, **kwargs):
        """Call `layer` on symbolic tensors, then give it (and a wrapped layer) its weights."""
        out = layer(*args, **kwargs)
        self._set_pending(layer)
        if isinstance(layer, keras.layers.Wrapper):
            self._set_pending(layer.layer)
        return out

    def _set_pending(self, layer) -> None:
        weights = self._pending.pop(id(layer), None)
        if weights is None or (not len(weights) and not has_weights(layer)):
            return  # nothing to set (a keras.ops call holds no weights)
        if isinstance(weights, dict):
            missing = [v.path for v in layer.weights if weight_name(v) not in weights]
            if missing and _unnamed(layer) and len(weights) == len(layer.weights):
                weights = list(weights.values())  # add_weight without a name: by position
            elif missing:
                raise UnsupportedLayerError(layer.name, f"no value for weights {missing}")
            else:
                weights = [weights[weight_name(v)] for v in layer.weights]
        layer.set_weights([np.asarray(w) for w in weights])


def _unnamed(layer) -> bool:
    """Whether the layer's weights carry Keras's automatic names (`variable`, `variable_54`),
    which differ between a layer and its copy."""
    return all(weight_name(v).split("_")[0] == "variable" for v in layer.weights)


def rebuild(graph: ModelGraph, rewrite: Rewrite | None = None, *, name: str | None = None,
            builder: Builder | None = None) -> keras.Model:
    """A new functional model computing `graph`, with `rewrite` deciding node by node.

    Args:
        graph: the analysis of the model to copy.
        rewrite: `rewrite(node, inputs, builder)` returns the node's new output tensors, or
            `None` for a plain copy of the layer. Defaults to plain copies everywhere.
        name: the new model's name. Defaults to the original's.
        builder: a `Builder` to use (rewrites that share state may pass their own).

    Returns:
        A new `keras.Model` (functional even when the original was Sequential).
    """
    builder = builder or Builder()
    built: dict[int, keras.KerasTensor] = {}
    for t in graph.inputs:
        spec = graph.tensors[t]
        built[t] = keras.Input(batch_shape=spec.shape, dtype=spec.dtype, name=_input_name(graph, t))
    for node in graph.nodes:
        inputs = [built[t] for t in node.inputs]
        outputs = rewrite(node, inputs, builder) if rewrite else None
        if outputs is None:
            outputs = builder.call(node, builder.copy(node.layer), inputs)
        for t, out in zip(node.outputs, outputs):
            built[t] = out
    inputs = keras.tree.map_structure(lambda t: built[t], graph.inputs_struct)
    outputs = keras.tree.map_structure(lambda t: built[t], graph.outputs_struct)
    return keras.Model(inputs, outputs, name=name or graph.model.name)


def _input_name(graph: ModelGraph, t: int) -> str:
    index = graph.inputs.index(t)
    fn = getattr(graph.model, "_functional", graph.model)
    return fn.inputs[index]._keras_history.operation.name
