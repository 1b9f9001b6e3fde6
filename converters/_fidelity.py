"""Agreement of an artefact's outputs with the Keras model's.

Example:
    >>> m = compare(keras_out, artefact_out)
    >>> m["max_abs_error_rel"] <= 1e-3, m["top1_agreement"]
    (True, 1.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np


def compare(reference, candidate) -> dict[str, Any]:
    """Max-abs error (absolute and relative to the output scale) and top-1 agreement.

    For a model with several outputs, `reference` and `candidate` are lists (in the model's
    output order): each output is compared on its own scale (`outputs`, one dict each), and
    the top-level figures are the worst of them — the largest relative error, the lowest
    top-1 agreement — so that every check reads them as for one output.

    The output scale is `max(|reference|)`, so `max_abs_error_rel` is the worst error as a
    fraction of the largest Keras output. Top-1 agreement is reported when the last axis has
    more than one element (a classifier).

    Args:
        reference: Keras outputs, shape `(n, ...)`.
        candidate: the artefact's outputs (dequantized), same shape.

    Returns:
        A dict with `n_samples`, `max_abs_error`, `output_scale`, `max_abs_error_rel`,
        `mean_abs_error` and, for classifiers, `top1_agreement`.
    """
    if isinstance(reference, (list, tuple)):
        if not isinstance(candidate, (list, tuple)) or len(candidate) != len(reference):
            got = len(candidate) if isinstance(candidate, (list, tuple)) else 1
            return _mismatch(len(reference), got)
        each = [compare(r, c) for r, c in zip(reference, candidate)]
        # NaN (a mismatched output) first: max() alone would pass over it
        worst = max(each, key=lambda m: (not np.isfinite(m["max_abs_error_rel"]),
                                         m["max_abs_error_rel"]))
        metrics = {**worst, "outputs": each}
        top1 = [m.get("top1_agreement", float("nan")) for m in each
                if "top1_agreement" in m or not np.isfinite(m["max_abs_error_rel"])]
        if top1:
            metrics["top1_agreement"] = float("nan") if np.isnan(top1).any() else min(top1)
        return metrics
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    if isinstance(candidate, (list, tuple)) or got.size != ref.size:
        return _mismatch(1, len(candidate) if isinstance(candidate, (list, tuple)) else 1) \
            if isinstance(candidate, (list, tuple)) else {**_mismatch(1, 1),
                                                          "shapes": [list(ref.shape),
                                                                     list(got.shape)]}
    got = got.reshape(ref.shape)
    err = np.abs(ref - got)
    scale = float(np.max(np.abs(ref))) or 1.0
    metrics: dict[str, Any] = {
        "n_samples": int(ref.shape[0]),
        "max_abs_error": float(err.max()),
        "output_scale": scale,
        "max_abs_error_rel": float(err.max() / scale),
        "mean_abs_error": float(err.mean()),
    }
    if ref.ndim >= 2 and ref.shape[-1] > 1:
        flat_ref = ref.reshape(-1, ref.shape[-1])
        flat_got = got.reshape(-1, ref.shape[-1])
        agree = np.argmax(flat_ref, -1) == np.argmax(flat_got, -1)
        metrics["top1_agreement"] = float(agree.mean())
    return metrics


def _mismatch(expected: int, got: int) -> dict[str, Any]:
    nan = float("nan")  # never ok (NaN metrics fail every report)
    return {"n_samples": 0, "max_abs_error": nan, "output_scale": nan, "max_abs_error_rel": nan,
            "mean_abs_error": nan, "outputs_expected": expected, "outputs_got": got}


def check_float(name: str, metrics: dict[str, Any], max_rel: float) -> list[str]:
    """Issues for a float artefact whose relative max-abs error exceeds `max_rel`."""
    rel = metrics["max_abs_error_rel"]
    if rel <= max_rel:
        return []
    return [f"{name}: max-abs error {rel:.3g} of the output scale exceeds the accepted "
            f"{max_rel:g} (on {metrics['n_samples']} samples)."]


def fp16_floor(model: Any, x: np.ndarray, reference: np.ndarray) -> float | None:
    """The error FP16 weights cost by themselves: the Keras model, BatchNorm folded (as the
    toolchains fold it), every weight rounded to FP16, run in float32 — relative to `reference`.

    No FP16-weight artefact can be expected to do better; one that does much worse has a
    conversion problem. Works on a copy (the caller's model is not touched). `None` when there
    is no meaningful floor: a wrapped SavedModel (`TFSMLayer` runs its own variables), a model
    Keras cannot copy, or a weight beyond FP16's range.

    Example:
        >>> fp16_floor(model, x, model(x))              # about 4e-4 for the demo's thin ResNet
        0.000419
    """
    import keras

    from tfm_fuse import fuse
    from tfm_fuse.converters._source import as_call_inputs, count, outputs_of, rows
    from tfm_fuse.errors import TfmFuseError

    if any(isinstance(layer, keras.layers.TFSMLayer) for layer in model.layers):
        return None
    try:
        try:
            copy = fuse(model)
        except TfmFuseError:
            copy = keras.models.clone_model(model)
            copy.set_weights(model.get_weights())
        rounded = [w.astype(np.float16).astype(w.dtype) if w.dtype.kind == "f" else w
                   for w in copy.get_weights()]
        if not all(np.isfinite(w).all() for w in rounded if w.dtype.kind == "f"):
            return None
        copy.set_weights(rounded)
        # eager calls, not predict(): a new model per conversion would retrace (and warn)
        chunks = [outputs_of(copy(as_call_inputs(copy, rows(x, i, i + 64)), training=False))
                  for i in range(0, count(x), 64)]
        out = (np.concatenate(chunks) if not isinstance(chunks[0], list) else
               [np.concatenate(parts) for parts in zip(*chunks)])
    except Exception:  # noqa: BLE001 - a side measurement: no floor rather than a failed IR
        return None
    floor = compare(reference, out)["max_abs_error_rel"]
    return floor if np.isfinite(floor) else None


def check_fp16(name: str, metrics: dict[str, Any], max_rel: float, floor: float | None,
               margin: float = 1.5) -> list[str]:
    """Issues for an FP16-weight artefact whose error exceeds `max(max_rel, margin × floor)`,
    `floor` being what rounding the weights to FP16 alone costs (see `fp16_floor`)."""
    allowed = max(max_rel, margin * floor) if floor is not None else max_rel
    rel = metrics["max_abs_error_rel"]
    if rel <= allowed:
        return []
    floor_txt = (f"; FP16 weights alone cost {floor:.3g}, so up to {allowed:.3g} is accepted"
                 if floor is not None and allowed > max_rel else "")
    return [f"{name}: max-abs error {rel:.3g} of the output scale exceeds the accepted "
            f"{max_rel:g}{floor_txt} (on {metrics['n_samples']} samples)."]


def check_top1(name: str, metrics: dict[str, Any], min_top1: float | None) -> list[str]:
    """Issues for a reduced-precision artefact (int8, FP16 compute) whose top-1 agreement
    with Keras is below `min_top1`."""
    top1 = metrics.get("top1_agreement")
    if min_top1 is None or top1 is None or top1 >= min_top1:
        return []
    return [f"{name}: top-1 agreement with Keras {top1:.2%} is below the accepted "
            f"{min_top1:.2%} (on {metrics['n_samples']} samples; pass min_top1=None to "
            f"only report it)."]
