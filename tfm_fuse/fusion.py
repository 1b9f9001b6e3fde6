"""`fuse`: FuPruner's aggressive fusion, as equivalent rewrites of a Keras model.

Each rewrite folds an operator into the parametric operator beside it, so that one pruning
decision later removes a channel everywhere it flows:

- `batchnorm`: Conv/Depthwise/Separable/Dense → BatchNormalization becomes one layer;
- `batchnorm_backward`: BatchNormalization → Conv/Depthwise/Dense (pre-activation blocks), where
  exact: the consumer has no implicit zero padding ('valid', or a 1×1 kernel);
- `padding`: ZeroPadding2D → Conv with 'valid' padding becomes one Conv with 'same' padding,
  where both pad identically for the known input size;
- `activation`: ReLU / ReLU6 / Activation(name) after a fused layer becomes its `activation`;
- `shortcuts`: an identity branch into a residual `Add` becomes a 1×1 convolution with identity
  weights, which decouples the block's output channels from its input's (off by default: it
  adds computation, and pays off only when those channels are then pruned).

Every rewrite is exact up to float round-off: `fuse(m)(x) ≈ m(x)` in inference mode.

Example:
    >>> fused = tfm_fuse.fuse(model)                 # all default rewrites
    >>> fused = tfm_fuse.fuse(model, padding=False)  # keep ZeroPadding2D layers
    >>> tfm_fuse.fusion.plan(model).folded            # what would be folded, and into what
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tfm_fuse import rules
from tfm_fuse.graph import ModelGraph, Node, analyze
from tfm_fuse.rebuild import Builder, rebuild

L = keras.layers
_FORWARD_HOSTS = (L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D,
                  L.SeparableConv1D, L.SeparableConv2D, L.Dense)
_BACKWARD_HOSTS = (L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D, L.Dense)
_PAD_HOSTS = (L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D)


def _is_host(layer, hosts: tuple) -> bool:
    """`layer` is one of `hosts`, or a subclass of one that computes as it does (it overrides
    neither `call` nor `convolution_op`, e.g. a subclass adding a property): folding a
    BatchNorm, an activation or padding into it is then exact. A subclass with its own
    computation (weight standardisation, a custom padding) is left as it is.

    Example:
        >>> class MyConv(keras.layers.Conv2D): pass
        >>> _is_host(MyConv(8, 3), _FORWARD_HOSTS)
        True
    """
    base = next((cls for cls in type(layer).__mro__ if cls in hosts), None)
    return base is not None and all(getattr(type(layer), name, None) is getattr(base, name, None)
                                    for name in ("call", "convolution_op"))


@dataclasses.dataclass
class FusionPlan:
    """What `fuse` will do: new configs and weights per host layer, nodes that disappear."""

    configs: dict[str, dict] = dataclasses.field(default_factory=dict)
    weights: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)
    skipped: set[int] = dataclasses.field(default_factory=set)  # node indices folded away
    folded: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)  # (kind, layer, host)
    shortcuts: dict[int, list[int]] = dataclasses.field(default_factory=dict)  # add node -> input positions

    def host(self, layer) -> tuple[dict, dict]:
        """The (mutable) config and weights of `layer` as they stand in the plan."""
        if layer.name not in self.configs:
            self.configs[layer.name] = layer.get_config()
            self.weights[layer.name] = rules.weights_by_name(layer)
        return self.configs[layer.name], self.weights[layer.name]


def _single_call(graph: ModelGraph, node: Node) -> bool:
    return len(graph.nodes_of(node.layer)) == 1


def _only_consumer(graph: ModelGraph, tensor: int) -> Node | None:
    """The one node reading `tensor`, if exactly one does and it is not a model output."""
    spec = graph.tensors[tensor]
    if spec.is_output or len(spec.consumers) != 1:
        return None
    return graph.nodes[spec.consumers[0]]


def _bn_affine(bn) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm in inference as `x * scale + shift`, per channel."""
    w = rules.weights_by_name(bn)
    gamma = w.get("gamma", np.ones_like(w["moving_mean"]))
    beta = w.get("beta", np.zeros_like(w["moving_mean"]))
    scale = gamma / np.sqrt(w["moving_variance"] + bn.epsilon)
    return scale, beta - w["moving_mean"] * scale


def _is_channel_bn(graph: ModelGraph, node: Node) -> bool:
    if not isinstance(node.layer, L.BatchNormalization) or not _single_call(graph, node):
        return False
    rank = len(graph.tensors[node.inputs[0]].shape)
    return rules.last_axis(node.layer.axis, rank)


def _fold_forward(layer, config: dict, weights: dict, scale: np.ndarray, shift: np.ndarray):
    """Fold `y * scale + shift` on the layer's output channels into its weights."""
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        k = weights["kernel"]
        weights["kernel"] = k * scale.reshape(k.shape[-2:])
    elif isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        weights["pointwise_kernel"] = weights["pointwise_kernel"] * scale
    else:
        weights["kernel"] = weights["kernel"] * scale
    bias = weights.get("bias", np.zeros_like(scale))
    weights["bias"] = bias * scale + shift
    config["use_bias"] = True


def _fold_backward(layer, config: dict, weights: dict, scale: np.ndarray, shift: np.ndarray):
    """Fold `x * scale + shift` on the layer's input channels into its weights."""
    k = weights["kernel"]
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        extra = (k.sum(axis=tuple(range(k.ndim - 2))) * shift[:, None]).reshape(-1)
        weights["kernel"] = k * scale[:, None]
    elif isinstance(layer, L.Dense):
        extra = shift @ k
        weights["kernel"] = k * scale[:, None]
    else:  # Conv: kernel (..., cin, cout)
        extra = np.tensordot(k.sum(axis=tuple(range(k.ndim - 2))), shift, axes=([0], [0]))
        weights["kernel"] = k * scale[:, None]
    weights["bias"] = weights.get("bias", np.zeros_like(extra)) + extra
    config["use_bias"] = True


def _activation_name(layer) -> str | None:
    """The activation string a layer computes, if it is a plain activation layer."""
    if isinstance(layer, L.ReLU):
        cfg = layer.get_config()
        if cfg.get("negative_slope", 0) == 0 and cfg.get("threshold", 0) == 0:
            return {None: "relu", 6.0: "relu6"}.get(
                None if cfg.get("max_value") is None else float(cfg["max_value"]))
        return None
    if isinstance(layer, L.Activation):
        act = layer.get_config().get("activation")
        return act if isinstance(act, str) else None
    return None


def _plan_forward(graph, plan, batchnorm: bool, activation: bool) -> None:
    for node in graph.nodes:
        layer = node.layer
        if not _is_host(layer, _FORWARD_HOSTS) or not _single_call(graph, node):
            continue
        if layer.get_config().get("activation", "linear") != "linear":
            continue
        tensor = node.outputs[0]
        while (nxt := _only_consumer(graph, tensor)) is not None:
            if batchnorm and _is_channel_bn(graph, nxt) and nxt.index not in plan.skipped:
                config, weights = plan.host(layer)
                _fold_forward(layer, config, weights, *_bn_affine(nxt.layer))
                plan.folded.append(("batchnorm", nxt.layer.name, layer.name))
            elif activation and (act := _activation_name(nxt.layer)) and _single_call(graph, nxt):
                config, _ = plan.host(layer)
                config["activation"] = act
                plan.folded.append(("activation", nxt.layer.name, layer.name))
                plan.skipped.add(nxt.index)
                break
            else:
                break
            plan.skipped.add(nxt.index)
            tensor = nxt.outputs[0]


def _backward_ok(graph, node: Node) -> bool:
    layer = node.layer
    if not _is_host(layer, _BACKWARD_HOSTS) or not _single_call(graph, node):
        return False
    if isinstance(layer, L.Dense):
        return True
    if getattr(layer, "groups", 1) != 1:
        return False
    return layer.padding == "valid" or all(k == 1 for k in layer.kernel_size)


def _plan_backward(graph, plan) -> None:
    for node in graph.nodes:
        if node.index in plan.skipped or not _is_channel_bn(graph, node):
            continue
        out = graph.tensors[node.outputs[0]]
        consumers = graph.consumers(out.id)
        if out.is_output or not consumers or not all(_backward_ok(graph, c) for c in consumers):
            continue
        scale, shift = _bn_affine(node.layer)
        for c in consumers:
            config, weights = plan.host(c.layer)
            _fold_backward(c.layer, config, weights, scale, shift)
            plan.folded.append(("batchnorm_backward", node.layer.name, c.layer.name))
        plan.skipped.add(node.index)


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """The (before, after) zeros TensorFlow's 'same' padding adds along one axis."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _plan_padding(graph, plan) -> None:
    for node in graph.nodes:
        if not isinstance(node.layer, L.ZeroPadding2D) or not _single_call(graph, node):
            continue
        conv = _only_consumer(graph, node.outputs[0])
        if conv is None or not _is_host(conv.layer, _PAD_HOSTS) or not _single_call(graph, conv):
            continue
        layer, shape = conv.layer, graph.tensors[node.inputs[0]].shape
        if layer.padding != "valid" or None in shape[1:3] or layer.data_format == "channels_first":
            continue
        wanted = tuple(same_padding(int(shape[1 + i]), layer.kernel_size[i], layer.strides[i],
                                    layer.dilation_rate[i]) for i in range(2))
        if tuple(tuple(p) for p in node.layer.padding) != wanted:
            continue
        config, _ = plan.host(layer)
        config["padding"] = "same"
        plan.skipped.add(node.index)
        plan.folded.append(("padding", node.layer.name, layer.name))


def _plan_shortcuts(graph, plan) -> None:
    for node in graph.nodes:
        if not isinstance(node.layer, L.Add):
            continue
        fanned = [k for k, t in enumerate(node.inputs)
                  if len(graph.tensors[t].shape) == 4 and len(graph.tensors[t].consumers) > 1]
        if fanned and len(fanned) < len(node.inputs):
            plan.shortcuts[node.index] = fanned
            plan.folded += [("shortcut", node.layer.name, f"{node.layer.name}_shortcut_{k}")
                            for k in fanned]


def plan(model: keras.Model | ModelGraph, *, batchnorm: bool = True, batchnorm_backward: bool = True,
         padding: bool = True, activation: bool = True, shortcuts: bool = False) -> FusionPlan:
    """Decide the rewrites `fuse` makes, without building anything. Same switches as `fuse`."""
    graph = model if isinstance(model, ModelGraph) else analyze(model, allow_unknown=True)
    result = FusionPlan()
    if batchnorm or activation:
        _plan_forward(graph, result, batchnorm, activation)
    if batchnorm_backward:
        _plan_backward(graph, result)
    if padding:
        _plan_padding(graph, result)
    if shortcuts:
        _plan_shortcuts(graph, result)
    return result


def fuse(model: keras.Model, *, batchnorm: bool = True, batchnorm_backward: bool = True,
         padding: bool = True, activation: bool = True, shortcuts: bool = False,
         allow_unknown: bool = False) -> keras.Model:
    """An equivalent model with BatchNorm, padding, activations (and shortcuts) fused.

    Args:
        model: a Sequential or functional Keras 3 model. Not modified.
        batchnorm: fold BatchNorm into the layer before it. Defaults to `True`.
        batchnorm_backward: fold BatchNorm into the layers after it, where exact. Defaults to `True`.
        padding: fold ZeroPadding2D into the next convolution, where exact. Defaults to `True`.
        activation: carry ReLU/ReLU6/Activation as the fused layer's epilogue. Defaults to `True`.
        shortcuts: express identity shortcuts of residual `Add`s as 1×1 convolutions.
            Defaults to `False`.
        allow_unknown: keep unknown layer types as they are instead of raising. Defaults to `False`.

    Returns:
        A new functional model whose outputs equal `model`'s in inference mode.
    """
    graph = analyze(model, allow_unknown=allow_unknown)
    decided = plan(graph, batchnorm=batchnorm, batchnorm_backward=batchnorm_backward,
                   padding=padding, activation=activation, shortcuts=shortcuts)
    hosts: dict[str, keras.Layer] = {}

    def rewrite(node: Node, inputs: list, builder: Builder):
        if node.index in decided.skipped:
            return [inputs[0]]
        if node.index in decided.shortcuts:
            inputs = [_identity_conv(builder, node, k, x) if k in decided.shortcuts[node.index]
                      else x for k, x in enumerate(inputs)]
            return builder.call(node, builder.copy(node.layer), inputs)
        name = node.layer.name
        if name not in decided.configs:
            return None
        if name not in hosts:
            hosts[name] = builder.make(type(node.layer), decided.configs[name], decided.weights[name])
        return builder.call(node, hosts[name], inputs)

    return rebuild(graph, rewrite)


def _identity_conv(builder: Builder, node: Node, k: int, x):
    channels = int(x.shape[-1])
    config = L.Conv2D(channels, 1, use_bias=False, name=f"{node.layer.name}_shortcut_{k}",
                      dtype=node.layer.dtype_policy).get_config()
    eye = np.eye(channels, dtype="float32")[None, None]
    return builder.apply(builder.make(L.Conv2D, config, {"kernel": eye}), x)
