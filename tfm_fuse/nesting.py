"""Nested models inlined: one flat functional model calling the same layer objects.

The transfer-learning idiom `base = MobileNetV2(include_top=False); x = base(inputs)` puts a
whole model inside another as one "layer". The analysis needs the backbone's layers next to the
head's, because a channel group can run across the boundary (the backbone's last convolution
feeds the head's pooling and Dense). `inline_nested` replays the outer model node by node and
every nested functional or Sequential model (at any depth) layer by layer, on fresh symbolic
inputs. The replay calls the *same* layer objects, so it holds the caller's weights without a
copy and a backbone called twice stays shared (its layers appear once, called twice).

Everything built from the analysis (`fuse`, `prune`, `strip`) is therefore flat: the backbone's
layers appear directly in the result under their own names. That is what every converter does
anyway, and it lets pruning decide one channel group across the boundary.

A nested call's `training=` argument is recorded on its layers that take one (Keras 3's
functional call overrides it with the outer call's `training` anyway, in both models alike).

Example:
    >>> base = keras.applications.MobileNetV2(weights=None, include_top=False,
    ...                                        input_shape=(32, 32, 3))
    >>> inputs = keras.Input((32, 32, 3))
    >>> model = keras.Model(inputs, keras.layers.Dense(10)(
    ...     keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))))
    >>> flat = inline_nested(model)
    >>> any(isinstance(layer, keras.Model) for layer in flat.layers)
    False
"""

from __future__ import annotations

import keras

from tfm_fuse.errors import UnsupportedModelError

Functional = keras.src.models.functional.Functional


def has_nested(model: keras.Model) -> bool:
    """Whether a functional model calls another model or a composite layer (see `composite`)."""
    return any(isinstance(layer, keras.Model) or composite(layer) for layer in model.layers)


def composite(layer) -> bool:
    """A layer without a rule of its own that is built from sublayers (a keras-hub block, a
    user's residual block): its `call` is traced on symbolic tensors, sublayer by sublayer."""
    from tfm_fuse.rules import UNTRACEABLE, get_rule

    return (isinstance(layer, keras.Layer) and get_rule(layer) is None
            and layer not in UNTRACEABLE
            and any(True for _ in layer._flatten_layers(include_self=False, recursive=False)))


def inline_nested(model: keras.Model, input_shapes: list[tuple] | None = None) -> keras.Model:
    """`model` with nested models and composite layers inlined, level after level."""
    flat = _inline_once(model, input_shapes)
    for _ in range(MAX_DEPTH):
        if not has_nested(flat):
            return flat
        flat = _inline_once(flat)
    raise UnsupportedModelError(f"Model '{model.name}' nests models or composite layers more "
                                f"than {MAX_DEPTH} levels deep.")


MAX_DEPTH = 32


def _inline_once(model: keras.Model, input_shapes: list[tuple] | None = None) -> keras.Model:
    """`model` (functional) with every nested model and composite layer replayed inline.

    With `input_shapes` (one shape per input, without the batch axis), the replay runs at that
    size: the static twin of a model with dynamic spatial sizes (`analyze(input_shape=)`).

    Raises:
        UnsupportedModelError: two different layers of the result with one name (e.g. the
            same constructor called twice: both have a layer 'Conv1').
    """
    shapes = input_shapes or [tuple(t.shape)[1:] for t in model.inputs]
    inputs = [keras.Input(batch_shape=(t.shape[0], *shape), dtype=t.dtype,
                          name=t._keras_history.operation.name)
              for t, shape in zip(model.inputs, shapes)]
    outputs = _replay(model, inputs, training=None, path=model.name)
    try:
        return keras.Model(
            keras.tree.pack_sequence_as(_struct(model, "_inputs_struct", "inputs"), inputs),
            keras.tree.pack_sequence_as(_struct(model, "_outputs_struct", "outputs"), outputs),
            name=model.name)
    except ValueError as e:
        if "should be unique" not in str(e):
            raise
        raise UnsupportedModelError(
            f"Model '{model.name}' holds two different layers with one name once its nested "
            f"models are inlined ({e}). This happens when one constructor is called twice "
            "(e.g. two keras.applications backbones): give the inner layers distinct names, or "
            "call one backbone instance twice to share it.") from None


def _struct(model, private: str, public: str):
    value = getattr(model, private, None)
    return getattr(model, public) if value is None else value


def _replay(model: keras.Model, inputs: list, training, path: str) -> list:
    """The flat outputs of `model` called on `inputs` (flat), nested models inlined."""
    fn = _functional(model, path)
    values = {id(t): x for t, x in zip(fn.inputs, inputs)}
    for node in walk(fn):
        op = node.operation

        def value(x):
            return values[id(x)] if isinstance(x, keras.KerasTensor) else x

        args = keras.tree.map_structure(value, tuple(node.arguments.args))
        kwargs = keras.tree.map_structure(value, dict(node.arguments.kwargs))
        if isinstance(op, keras.Model) and isinstance(_functional_or_none(op), Functional):
            inner_training = kwargs.pop("training", training)
            flat_in = [values[id(t)] for t in node.input_tensors]
            outs = _replay(op, flat_in, inner_training, f"{path}/{op.name}")
        else:
            if training is not None and "training" not in kwargs and getattr(
                    op, "_call_has_training_arg", False):
                kwargs["training"] = training
            traced = _trace(op, args, kwargs) if isinstance(op, keras.Model) or composite(op) else None
            outs = keras.tree.flatten(op(*args, **kwargs) if traced is None else traced)
        for t, x in zip(node.outputs, outs):
            values[id(t)] = x
    return [values[id(t)] for t in fn.outputs]


def _trace(op, args, kwargs):
    """`op.call` on symbolic tensors: its sublayers and keras.ops calls enter the flat graph.
    `None` if it cannot run on them (e.g. it calls TensorFlow directly): the layer then stays
    one node, unknown to the analysis, with the reason remembered for its error message."""
    from tfm_fuse.rules import UNTRACEABLE

    if not getattr(op, "_call_has_training_arg", False):
        kwargs = {k: v for k, v in kwargs.items() if k != "training"}
    kwargs = {k: v for k, v in kwargs.items() if k != "mask" or v is not None}
    try:
        return op.call(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - reported by the analysis, with the layer named
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        UNTRACEABLE[op] = f"its call() could not be traced on symbolic tensors ({type(e).__name__}: {first_line[:200]})"
        return None


def walk(fn: keras.Model):
    """Nodes of `fn` in topological order, as (keras node) list, from its outputs backwards."""
    order, state = [], {}
    stack = [(t._keras_history, False) for t in reversed(fn.outputs)]
    while stack:
        (op, node_index, _), expanded = stack.pop()
        node = op._inbound_nodes[node_index]
        key = id(node)
        if node.is_input or state.get(key) == "done":
            continue
        if expanded:
            state[key] = "done"
            order.append(node)
            continue
        if state.get(key) == "open":
            continue
        state[key] = "open"
        stack.append(((op, node_index, 0), True))
        for t in reversed(node.input_tensors):
            stack.append((t._keras_history, False))
    return order


def _functional_or_none(model: keras.Model):
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    return model if isinstance(model, Functional) else None


def _functional(model: keras.Model, path: str) -> keras.Model:
    functional = _functional_or_none(model)
    if functional is None:
        raise UnsupportedModelError(
            f"Layer '{path}' is a nested subclassed model ({type(model).__name__}): its layers "
            "are connected only inside call(), so they cannot be analysed. Build it with the "
            "functional API or keras.Sequential.")
    return functional
