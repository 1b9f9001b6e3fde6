"""User-facing entry points: wrap a model for pruning, and prune it.

Example:
    >>> masked = tfm_fuse.prune(model, method="l1", rate=0.3)   # one-shot, masks set now
    >>> masked = tfm_fuse.prune(model, method="fupruner", rate=0.5, align=8)  # for the callback
    >>> thin = tfm_fuse.prune(model, method="complexity", mode="FA", target=0.5)  # prune at init
    >>> small = tfm_fuse.strip(masked)
"""

from __future__ import annotations

import numbers
from enum import StrEnum
from typing import Iterable

import keras
import numpy as np

from tfm_fuse.errors import ConfigError, parse_choice
from tfm_fuse.graph import check_input_shape, functional_view, require_static
from tfm_fuse.pruning import criteria
from tfm_fuse.pruning.allocation import aligned_keep, check_align, parse_scope
from tfm_fuse.pruning.budget import Budget, Kind
from tfm_fuse.pruning.updater import (DEFAULT_CRITERION, DEFAULT_SCOPE, MaskUpdater,
                                       PruningOptions, write_options)
from tfm_fuse.pruning.wrapping import prunable_layers, wrap  # noqa: F401 (public here too)
from tfm_fuse.validation import check_finite_weights, check_fraction


def keep_count(size: int, rate: float, align: int | None) -> int:
    """How many of `size` channels to keep at pruning `rate`, rounded up to a multiple of `align`."""
    return aligned_keep(size, size - int(np.floor(rate * size)), align)


def validate_rate(rate: float, name: str = "rate") -> float:
    return check_fraction(rate, name)


class Method(StrEnum):
    """What `prune` does: one-shot magnitude masks, FuPruner preparation, or prune-at-init."""

    L1 = "l1"
    L2 = "l2"
    FUSED = "fused"
    FUPRUNER = "fupruner"
    COMPLEXITY = "complexity"


# which options each method reads; any other option given is a mistake worth saying
_APPLIES = {
    "criterion": {Method.FUPRUNER},
    "scope": {Method.FUPRUNER, Method.L1, Method.L2, Method.FUSED},
    "mode": {Method.COMPLEXITY},
    "target": {Method.COMPLEXITY},
    "seed": {Method.COMPLEXITY},
    "layers": {Method.FUPRUNER, Method.L1, Method.L2, Method.FUSED},
}
_COMPLEXITY_MODE = {Kind.PARAMS: "PA", Kind.MACS: "FA", Kind.MEMORY: "MA"}
# what `prune(fuse=None)` fuses first, chosen on the validation digits of
# benchmarks/fusion_ablation.py (residual CNN, macs=0.5 and latency=0.5 on ONNX Runtime): the
# model as given, 0.949 / 0.783; padding+activations folded and shortcuts as 1×1 the same;
# BatchNorm folded before training 0.529 / 0.160 (the fine-tune loses its normalisation)
DEFAULT_FUSION: bool | dict = False


def _parse_method(method: str) -> Method:
    return parse_choice(Method, method, "method", "pruning method")


def prune(model: keras.Model, *, method: str = "l1", rate: float | None = None,
          macs: float | None = None, params: float | None = None, memory: float | None = None,
          latency: float | None = None, runtime: str | None = None, fits: str | None = None,
          align: int | None = None, fuse: bool | dict | None = None,
          criterion: str | None = None, scope: str | None = None,
          mode: str | None = None, target: float | None = None, seed: int | None = None,
          layers: Iterable[str] | None = None, allow_unknown: bool = False,
          input_shape: tuple | list[tuple] | None = None) -> keras.Model:
    """Prune `model`: one-shot, prepared for the `FuPruner` callback, or complexity-driven.

    The budget is one of `rate` (fraction of channels), `macs`, `params` or `memory` (fraction
    of the stripped model's MACs, parameters or activation bytes to remove), `latency`
    (fraction of its latency measured on `runtime`) or `fits="edgetpu"` (its full-integer
    parameters fit the Edge TPU's on-chip memory).

    Args:
        model: a Sequential or functional Keras 3 model. Not modified.
        method: `"l1"`, `"l2"`, `"fused"`: mask the lowest-norm channels now (one-shot).
            `"fupruner"`: wrap with masks at 1; `callbacks.FuPruner` moves them during `fit`,
            towards the budget, with the options given here (saved with the model).
            `"complexity"`: prune at initialisation to a thin model (see `complexity_prune`).
            Defaults to `"l1"`.
        rate: fraction of channels to mask, in [0, 1). Defaults to `0.3` for one-shot methods.
        macs: fraction of MACs to remove. Defaults to `0.5` for `"fupruner"` and
            `"complexity"` when no budget is given.
        params: fraction of parameters to remove.
        memory: fraction of activation memory to remove.
        latency: fraction of the latency on `runtime` to remove (`0.5`: twice as fast). The
            model's layers are timed there once at several widths (cached), and channels go
            where they save the most time per importance lost (`pruning.latency_model`).
        runtime: where `latency` is measured: `"litert_int8"` (full-integer LiteRT, XNNPACK:
            the Coral and phone path), `"openvino_cpu"` or `"onnxruntime"`.
        fits: `"edgetpu"`: remove the least important channels per byte until the
            full-integer parameters fit the Edge TPU's 8 MiB on-chip memory.
        align: keep a multiple of this many channels per group. Defaults to `None` (with a
            `latency` budget: the runtime's measured channel block).
        fuse: fuse first, then rank and mask the fused model's filters (FuPruner's catalysis):
            `True` for `tfm_fuse.fuse`'s default rewrites (BatchNorm, padding, activations
            folded), or a dict of its switches, e.g. `{"shortcuts": True}` to make identity
            shortcuts 1×1 convolutions so each residual block's channels are pruned on their
            own. The model trained and pruned is then the fused one. Defaults to
            `DEFAULT_FUSION` (chosen by `benchmarks/fusion_ablation.py`).
        criterion: FuPruner's ranking, `"l1"`, `"l2"` or `"fused"`. Defaults to `"l2"`.
        scope: `"global"` (one ranking over all groups) or `"layer"` (the same rate in each).
            Defaults to `"global"` for FuPruner, `"layer"` for one-shot methods.
        mode: complexity mode, `"PA"`, `"FA"` or `"MA"`; the same as `params=`, `macs=`,
            `memory=` with `method="complexity"`. Defaults to `"FA"`.
        target: complexity reduction to reach, in [0, 1); the same as the budget.
        seed: complexity sampling seed. Defaults to `0`.
        layers: restrict wrapping to these layer names. Defaults to all prunable layers.
        allow_unknown: pin unknown layer types instead of raising. Defaults to `False`.
        input_shape: count the budget's costs at this input size (without the batch axis);
            needed for a model of unknown spatial size, e.g. `keras.Input((None, None, 3))`.

    Returns:
        A wrapped model (`tfm_fuse.strip` makes it smaller), or for `"complexity"` a thin model.
        With `"fupruner"`, all masks are still 1: nothing is pruned until `fit` runs with
        `callbacks.FuPruner()`.

    Raises:
        ConfigError: an unknown method, criterion, scope or mode; a budget out of [0, 1) or more
            than one budget; an option the method does not use.

    Example:
        >>> masked = prune(model, method="fupruner", macs=0.5)      # then fit with FuPruner()
        >>> thin = prune(model, method="complexity", params=0.5)    # = mode="PA", target=0.5
    """
    method = _parse_method(method)
    fusion_switches = _fusion_switches(fuse, method)
    given = {"criterion": criterion, "scope": scope, "mode": mode, "target": target,
             "seed": seed, "layers": layers}
    for name, value in given.items():
        if value is not None and method not in _APPLIES[name]:
            users = ", ".join(sorted(f"'{m.value}'" for m in _APPLIES[name]))
            raise ConfigError(f"`{name}` is not an option of method='{method.value}'; it applies "
                              f"to method={users}. Received: {name}={value!r}")
    if isinstance(layers, str):
        raise ConfigError(f"`layers` must be a list of layer names. Received: layers={layers!r}; "
                          f"accepted e.g. layers=[{layers!r}]")
    if not isinstance(allow_unknown, bool):
        raise ConfigError(f"`allow_unknown` must be True or False. Received: {allow_unknown!r}")
    if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool)
                             or seed < 0):
        raise ConfigError(f"`seed` must be an integer >= 0 or None. Received: seed={seed!r}")
    budget = Budget.from_options(rate=rate, macs=macs, params=params, memory=memory,
                                 latency=latency, default=None)
    if fits is not None:
        budget = _fits_budget(fits, budget)
    if runtime is not None or (budget is not None and budget.kind is Kind.LATENCY):
        runtime = _latency_runtime(runtime, budget)
    check_finite_weights(model, "pruning")  # NaN norms would rank channels arbitrarily
    if input_shape is not None:  # checked (and made a list of shapes) once, here
        input_shape = [list(s) for s in check_input_shape(functional_view(model), input_shape)]
    elif method is not Method.COMPLEXITY:
        require_static(model, "pruning to a budget (its cost model)")  # before fit, not in it
    align = check_align(align)
    if method is Method.COMPLEXITY:
        return _complexity(model, budget, mode, target, align, seed, allow_unknown)
    if fusion_switches is not None:
        from tfm_fuse.fusion import fuse as fuse_model

        model = fuse_model(model, **fusion_switches, allow_unknown=allow_unknown)
    budget = budget or (Budget() if method is Method.FUPRUNER else Budget(Kind.RATE, 0.3))
    scope = parse_scope(scope or (DEFAULT_SCOPE if method is Method.FUPRUNER else "layer")).value
    if method is Method.FUPRUNER:
        criteria.get(criterion or DEFAULT_CRITERION)
        wrapped = wrap(model, layers=layers, allow_unknown=allow_unknown)
        budget = _resolve_fit(budget, wrapped, allow_unknown, input_shape)
        options = PruningOptions(budget=budget, criterion=criterion or DEFAULT_CRITERION,
                                 scope=scope, align=align, allow_unknown=allow_unknown,
                                 input_shape=input_shape, runtime=runtime)
        if budget.kind is Kind.LATENCY:  # measure now (cached), not in the middle of fit
            MaskUpdater(wrapped, allow_unknown=allow_unknown, input_shape=input_shape,
                        runtime=runtime, align=align).latency_model()
        write_options(wrapped, options)
        return wrapped
    wrapped = wrap(model, layers=layers, allow_unknown=allow_unknown)
    budget = _resolve_fit(budget, wrapped, allow_unknown, input_shape)
    updater = MaskUpdater(wrapped, criterion=method.value, scope=scope, align=align,
                          zero_masked=False, allow_unknown=allow_unknown, input_shape=input_shape,
                          runtime=runtime)
    updater.update(budget.value, budget.kind)
    return wrapped


def _fusion_switches(fuse, method: Method) -> dict | None:
    """`fuse=` as keyword arguments of `tfm_fuse.fuse`, or None: prune the model as it is."""
    import inspect

    from tfm_fuse.fusion import fuse as fuse_model

    fuse = DEFAULT_FUSION if fuse is None else fuse
    if fuse is False:
        return None
    if method is Method.COMPLEXITY:
        if fuse is DEFAULT_FUSION:
            return None
        raise ConfigError("method='complexity' builds a new thin model at initialisation; "
                          f"there is nothing to fuse first. Received: fuse={fuse!r}")
    switches = [name for name, p in inspect.signature(fuse_model).parameters.items()
                if p.kind is p.KEYWORD_ONLY and name != "allow_unknown"]
    if fuse is True:
        return {}
    if not isinstance(fuse, dict) or set(fuse) - set(switches) or not all(
            isinstance(v, bool) for v in fuse.values()):
        raise ConfigError(f"`fuse` is True, False or a dict of tfm_fuse.fuse switches to "
                          f"True/False ({', '.join(switches)}). Received: fuse={fuse!r}")
    return dict(fuse)


def _fits_budget(fits, budget: Budget | None) -> Budget:
    """`fits="edgetpu"` as a budget of int8 parameter bytes (its value set by `_resolve_fit`)."""
    if fits != "edgetpu":
        raise ConfigError(f"`fits` names the memory to fit; accepted: fits='edgetpu'. "
                          f"Received: fits={fits!r}")
    if budget is not None:
        raise ConfigError(f"Give one pruning budget: fits='edgetpu' or {budget.kind.value}=, "
                          f"not both. Received: fits={fits!r}, {budget.kind.value}={budget.value!r}")
    return Budget(Kind.INT8_BYTES, 0.0)


def _resolve_fit(budget: Budget, wrapped, allow_unknown: bool, input_shape) -> Budget:
    """An int8-bytes budget's value: the fraction to remove so that the parameters fit."""
    if budget.kind is not Kind.INT8_BYTES:
        return budget
    from tfm_fuse.converters._edgetpu_ops import SRAM_BYTES
    from tfm_fuse.graph import analyze
    from tfm_fuse.pruning.cost import CostModel

    cost = CostModel(analyze(wrapped, allow_unknown=allow_unknown, input_shape=input_shape))
    full = cost.totals(cost.full())["int8_param_bytes"]
    return budget.with_value(min(max(0.0, 1.0 - SRAM_BYTES / max(full, 1)), 0.99))


def _latency_runtime(runtime, budget: Budget | None) -> str:
    from tfm_fuse.pruning.latency_model import RUNTIMES, check_runtime

    if budget is None or budget.kind is not Kind.LATENCY:
        raise ConfigError(f"`runtime` is where a latency budget is measured; give latency= "
                          f"with it. Received: runtime={runtime!r}")
    if runtime is None:
        raise ConfigError(f"A latency budget is measured on a runtime. Received: "
                          f"latency={budget.value!r} without runtime=; accepted: "
                          f"runtime={' or '.join(repr(r) for r in RUNTIMES)}.")
    return check_runtime(runtime)


def _complexity(model, budget: Budget | None, mode, target, align, seed, allow_unknown):
    from tfm_fuse.pruning.complexity_driven import complexity_prune

    if budget is not None:
        if budget.kind in (Kind.LATENCY, Kind.INT8_BYTES):
            raise ConfigError(
                "method='complexity' prunes at initialisation to a count of params, MACs or "
                "memory; a measured latency or Edge TPU memory budget is allocated by "
                "method='fupruner' (during fit) or a one-shot method ('l1', 'l2', 'fused').")
        if budget.kind is Kind.RATE:
            raise ConfigError(
                "method='complexity' removes a fraction of params, MACs or memory, not of "
                f"channels. Received: rate={budget.value!r}; accepted: params=, macs=, memory= "
                "(or mode= with target=).")
        if target is not None:
            raise ConfigError("Give the complexity target once, as target= or as a budget, not "
                              f"both. Received: target={target!r}, "
                              f"{budget.kind.value}={budget.value!r}")
        if mode is not None and _COMPLEXITY_MODE[budget.kind] != str(mode).upper():
            raise ConfigError(f"mode={mode!r} and {budget.kind.value}= ask for different "
                              "metrics; give one of them.")
    mode = mode or (_COMPLEXITY_MODE[budget.kind] if budget else "FA")
    value = budget.value if budget else (0.5 if target is None else target)
    thin, _ = complexity_prune(model, mode=mode, target=value, align=align,
                               seed=0 if seed is None else seed, allow_unknown=allow_unknown)
    return thin
