"""One analysis of a Keras model: its layers, tensors and channel groups.

Fusion, pruning, profiling and stripping all read a `ModelGraph`; none walks Keras on its own.
A *channel group* is a set of channels that must be removed together: a convolution's filters,
the BatchNorm entries and activations they flow through, the matching input rows of every
consumer, and everything a residual `Add` ties to them.

Example:
    >>> g = tfm_fuse.graph.analyze(model)
    >>> [(grp.size, grp.prunable) for grp in g.groups]
    [(16, True), (3, False), ...]
"""

from __future__ import annotations

import dataclasses
import warnings

import keras
import numpy as np

from tfm_fuse import application_rules, op_rules, rules  # noqa: F401 (they register rules)
from tfm_fuse.errors import ConfigError, UnsupportedLayerError, UnsupportedModelError
from tfm_fuse.nesting import has_nested, inline_nested, walk
from tfm_fuse.rules import TensorRef  # noqa: F401 (graph.TensorRef: what Node.args hold)


@dataclasses.dataclass(frozen=True, eq=False)
class Tensor:
    """A symbolic tensor of the model; `channels` holds a group-channel id per last-axis entry."""

    id: int
    shape: tuple
    dtype: str
    producer: int | None
    consumers: tuple[int, ...]
    is_input: bool
    is_output: bool
    channels: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class Node:
    """One call of a layer: which tensors went in and out, and the call's other arguments."""

    index: int
    layer: keras.Operation
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    args: tuple
    kwargs: dict


@dataclasses.dataclass(frozen=True, eq=False)
class ChannelGroup:
    """Channels removed together. `channels[j]` is the id of the group's j-th channel.

    `members` maps `(layer name, side)` to an array of shape `(size, k)`: the positions on that
    layer's input (`"in"`) or output (`"out"`) channel axis that the group's channels occupy.
    """

    id: int
    channels: np.ndarray
    members: dict[tuple[str, str], np.ndarray]
    prunable: bool
    reason: str = ""

    @property
    def size(self) -> int:
        return len(self.channels)


@dataclasses.dataclass(frozen=True, eq=False)
class ModelGraph:
    """The result of `analyze`: nodes in topological order, tensors, channel groups.

    `model` is the analysed model; when the given one nests models, it is its flat equivalent
    (`nesting.inline_nested`: the same layer objects, nested models replayed inline)."""

    model: keras.Model
    nodes: tuple[Node, ...]
    tensors: tuple[Tensor, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    groups: tuple[ChannelGroup, ...]
    inputs_struct: object
    outputs_struct: object

    def consumers(self, tensor_id: int) -> list[Node]:
        return [self.nodes[i] for i in self.tensors[tensor_id].consumers]

    def producer(self, tensor_id: int) -> Node | None:
        p = self.tensors[tensor_id].producer
        return None if p is None else self.nodes[p]

    def nodes_of(self, layer) -> list[Node]:
        return [n for n in self.nodes if n.layer is layer]

    @property
    def layers(self) -> list[keras.Operation]:
        """Each distinct layer once, in topological order."""
        seen, out = set(), []
        for n in self.nodes:
            if id(n.layer) not in seen:
                seen.add(id(n.layer))
                out.append(n.layer)
        return out


def functional_view(model) -> keras.Model:
    """The functional graph behind a Sequential or functional Keras 3 model, or a clear error."""
    module = type(model).__module__
    if not isinstance(model, keras.Model):
        if module.startswith(("tf_keras", "keras.engine", "tensorflow.python.keras")) or hasattr(
            model, "_is_graph_network"
        ):
            raise UnsupportedModelError(
                f"Model '{getattr(model, 'name', model)}' is a tf_keras (Keras 2) model. tfm_fuse "
                "works on Keras 3 models: rebuild it with `import keras` (Keras 3), or save it "
                "and load it with keras.models.load_model."
            )
        raise UnsupportedModelError(
            f"Expected a keras.Model. Received: {type(model).__name__} from {module}"
        )
    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise UnsupportedModelError(
                f"Sequential model '{model.name}' has no known input shape yet: start it with "
                "keras.Input(shape) or call model.build(input_shape) first."
            )
        return functional
    if not isinstance(model, keras.src.models.functional.Functional):
        raise UnsupportedModelError(
            f"Model '{model.name}' is a subclassed keras.Model ({type(model).__name__}): its "
            "layers are only connected inside call(), so the channels they share cannot be "
            "analysed. Build it with the functional API or keras.Sequential."
        )
    return model


def analyze(model: keras.Model, *, allow_unknown: bool = False,
            input_shape: tuple | list[tuple] | None = None) -> ModelGraph:
    """Analyse a Sequential or functional model into nodes, tensors and channel groups.

    Args:
        model: a built Keras 3 `Sequential` or functional `Model`. Not modified.
        allow_unknown: keep layers of unknown type (their channels pinned, with a warning)
            instead of raising. Defaults to `False`.
        input_shape: analyse at this input size, without the batch axis (a list of shapes for
            several inputs), e.g. `(224, 224, 3)` for a model built on `keras.Input((None,
            None, 3))`. Defaults to the model's own input shapes.

    Returns:
        A `ModelGraph`.

    Raises:
        UnsupportedModelError: subclassed, Keras 2 or unbuilt models (nested functional and
            Sequential models are analysed through: see `tfm_fuse.nesting`).
        UnsupportedLayerError: a layer type the analysis does not know (unless allowed).
    """
    fn = functional_view(model)
    shapes = check_input_shape(fn, input_shape)
    if has_nested(fn) or shapes is not None:
        fn = model = inline_nested(fn, shapes)  # the graph's model is the flat one: `nesting`
    knodes = walk(fn)
    tensor_index: dict[int, int] = {}
    kts: list = []

    def tid(kt) -> int:
        if id(kt) not in tensor_index:
            tensor_index[id(kt)] = len(kts)
            kts.append(kt)
        return tensor_index[id(kt)]

    for kt in fn.inputs:
        tid(kt)
    nodes = []
    for i, kn in enumerate(knodes):
        ins = tuple(tid(t) for t in kn.input_tensors)
        outs = tuple(tid(t) for t in kn.outputs)
        position = {id(t): k for k, t in enumerate(kn.input_tensors)}

        def ref(x, position=position):
            return TensorRef(position[id(x)]) if isinstance(x, keras.KerasTensor) else x

        args = keras.tree.map_structure(ref, tuple(kn.arguments.args))
        kwargs = keras.tree.map_structure(ref, dict(kn.arguments.kwargs))
        nodes.append(Node(i, kn.operation, ins, outs, args, kwargs))
    inputs = tuple(tid(t) for t in fn.inputs)
    outputs = tuple(tid(t) for t in fn.outputs)
    flow = _ChannelFlow(kts, inputs, outputs)
    channels = flow.run(nodes, allow_unknown)
    tensors = _tensors(kts, nodes, inputs, outputs, channels)
    groups = flow.groups(nodes, tensors)
    return ModelGraph(
        model=model,
        nodes=tuple(nodes),
        tensors=tuple(tensors),
        inputs=inputs,
        outputs=outputs,
        groups=tuple(groups),
        inputs_struct=keras.tree.map_structure(tid, getattr(fn, "_inputs_struct", fn.inputs)),
        outputs_struct=keras.tree.map_structure(tid, getattr(fn, "_outputs_struct", fn.outputs)),
    )


def check_input_shape(fn: keras.Model, input_shape) -> list[tuple] | None:
    """`input_shape` checked against the model's inputs: one shape per input, or `None`."""
    if input_shape is None:
        return None
    shapes = [input_shape] if len(fn.inputs) == 1 and not (
        input_shape and isinstance(input_shape[0], (tuple, list))) else list(input_shape)
    own = [tuple(t.shape)[1:] for t in fn.inputs]
    try:
        shapes = [tuple(int(d) for d in s) for s in shapes]
    except (TypeError, ValueError):
        shapes = None
    if shapes is None or len(shapes) != len(own) or any(
            len(s) != len(o) or any(d is not None and d != e for d, e in zip(o, s))
            for s, o in zip(shapes, own)):
        raise ConfigError(
            f"input_shape={input_shape!r} does not fit model '{fn.name}', whose inputs are "
            f"{own if len(own) > 1 else own[0]} (batch axis left out; None is free). Give one "
            "shape per input, e.g. input_shape=(224, 224, 3).")
    return shapes


def require_static(model: "ModelGraph | keras.Model", what: str) -> None:
    """A clear error when `what` (counting MACs, a budget) meets an input of unknown size."""
    model = model.model if isinstance(model, ModelGraph) else model
    shapes = [tuple(t.shape) for t in functional_view(model).inputs]
    dynamic = [s for s in shapes if any(d is None for d in s[1:])]
    if dynamic:
        raise ConfigError(
            f"Model '{model.name}' takes inputs of unknown size {dynamic[0]}: {what} needs "
            "every spatial size. Pass input_shape= with the size it will run at, e.g. "
            f"input_shape={tuple(224 if d is None else d for d in dynamic[0][1:])}.")


def _tensors(kts, nodes, inputs, outputs, channels) -> list[Tensor]:
    producers, consumers = {}, {i: [] for i in range(len(kts))}
    for n in nodes:
        for t in n.outputs:
            producers[t] = n.index
        for t in dict.fromkeys(n.inputs):
            consumers[t].append(n.index)
    return [
        Tensor(
            id=i,
            shape=tuple(kt.shape),
            dtype=str(kt.dtype),
            producer=producers.get(i),
            consumers=tuple(consumers[i]),
            is_input=i in inputs,
            is_output=i in outputs,
            channels=channels[i],
        )
        for i, kt in enumerate(kts)
    ]


class _ChannelFlow:
    """Union-find over channel ids, fed by each layer's rule in topological order."""

    def __init__(self, kts, inputs, outputs):
        self.kts, self.inputs, self.outputs = kts, inputs, outputs
        self.parent: list[int] = []
        self.pins: dict[int, str] = {}  # channel id -> reason it must stay
        self.layer_name = ""
        self.in_shapes: list[tuple] = []
        self.out_shapes: list[tuple] = []
        self.args: tuple = ()
        self.kwargs: dict = {}
        self.node_ids: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}

    # --- what rules may call -------------------------------------------------------------
    def fresh(self, n: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n)

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)

    def pin(self, ids: np.ndarray, reason: str) -> None:
        for x in ids.tolist():
            self.pins.setdefault(x, f"{self.layer_name}: {reason}")

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    # --- the analysis ----------------------------------------------------------------------
    def run(self, nodes: list[Node], allow_unknown: bool) -> list[np.ndarray]:
        ids: dict[int, np.ndarray] = {}
        for t in self.inputs:
            ids[t] = self.fresh(int(self.kts[t].shape[-1] or 1))
            self.layer_name = "model input"
            self.pin(ids[t], "channels of the model's input")
        first_call: dict[int, tuple] = {}
        for node in nodes:
            layer = node.layer
            self.layer_name = layer.name
            rule = rules.require_rule(layer, allow_unknown=allow_unknown)
            if rule is rules._UNKNOWN:
                warnings.warn(f"tfm_fuse: layer '{layer.name}' ({type(layer).__name__}) is unknown "
                              "to the analysis; its channels stay unpruned.", stacklevel=3)
            self.in_shapes = [tuple(self.kts[t].shape) for t in node.inputs]
            self.out_shapes = [tuple(self.kts[t].shape) for t in node.outputs]
            self.args, self.kwargs = node.args, node.kwargs
            ins = [ids[t] for t in node.inputs]
            if id(layer) in first_call and rules.has_weights(layer):  # a shared layer: same channels
                prev_ins, prev_outs = first_call[id(layer)]
                for a, b in zip(ins, prev_ins):
                    self.union(a, b)
                outs = prev_outs if isinstance(rule, rules.MixingRule) else rule.flow(layer, ins, self)
            else:
                outs = rule.flow(layer, ins, self)
            if len(outs) != len(node.outputs):
                raise UnsupportedLayerError(layer.name, f"has {len(node.outputs)} outputs; "
                                            "only single-output layers are analysed")
            first_call.setdefault(id(layer), (ins, outs))
            self.node_ids[node.index] = (ins, outs)
            for t, o in zip(node.outputs, outs):
                ids[t] = o
        self.layer_name = "model output"
        for t in self.outputs:
            self.pin(ids[t], "channels of the model's output")
        return [self.roots(ids[t]) for t in range(len(self.kts))]

    def roots(self, ids: np.ndarray) -> np.ndarray:
        return np.array([self.find(x) for x in ids.tolist()], dtype=np.int64)

    def groups(self, nodes: list[Node], tensors: list[Tensor]) -> list[ChannelGroup]:
        """Group channel roots that touch the same set of layer sides; order by first position."""
        touches: dict[int, set] = {}
        positions: dict[tuple[str, str], np.ndarray] = {}
        for node in nodes:
            if not rules.has_weights(node.layer):
                continue
            ins, outs = self.node_ids[node.index]
            for side, arrs in (("in", ins), ("out", outs)):
                if not arrs:
                    continue
                key = (node.layer.name, side)
                if key in positions:
                    continue
                positions[key] = self.roots(arrs[0])
                for r in set(positions[key].tolist()):
                    touches.setdefault(r, set()).add(key)
        pinned_roots: dict[int, str] = {}
        for x, reason in self.pins.items():
            pinned_roots.setdefault(self.find(x), reason)
        all_roots = sorted({r for t in tensors for r in t.channels.tolist()})
        by_signature: dict[tuple, list[int]] = {}
        for r in all_roots:
            sig = (tuple(sorted(touches.get(r, ()))), r in pinned_roots)
            by_signature.setdefault(sig, []).append(r)
        groups = []
        for (sig, pinned), roots in by_signature.items():
            if not sig:
                continue  # channels no weight touches (e.g. straight from the input to the output)
            members = {}
            for key in sig:
                pos = positions[key]
                members[key] = np.stack([np.flatnonzero(pos == r) for r in roots])
            first = members[sig[0]][:, 0]
            order = np.argsort(first, kind="stable")
            roots_arr = np.array(roots)[order]
            members = {k: v[order] for k, v in members.items()}
            reason = pinned_roots[roots[0]] if pinned else ""
            groups.append(ChannelGroup(len(groups), roots_arr, members, not pinned, reason))
        return groups
