"""Agreement of an artefact's outputs with the Keras model's.

Example:
    >>> m = compare(keras_out, artefact_out)
    >>> m["max_abs_error_rel"] <= 1e-3, m["top1_agreement"]
    (True, 1.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    """Max-abs error (absolute and relative to the output scale) and top-1 agreement.

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
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64).reshape(ref.shape)
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


def check_float(name: str, metrics: dict[str, Any], max_rel: float) -> list[str]:
    """Issues for a float artefact whose relative max-abs error exceeds `max_rel`."""
    rel = metrics["max_abs_error_rel"]
    if rel <= max_rel:
        return []
    return [f"{name}: max-abs error {rel:.3g} of the output scale exceeds the accepted "
            f"{max_rel:g} (on {metrics['n_samples']} samples)."]


def check_int8(name: str, metrics: dict[str, Any], min_top1: float | None) -> list[str]:
    """Issues for an int8 artefact whose top-1 agreement is below `min_top1`."""
    top1 = metrics.get("top1_agreement")
    if min_top1 is None or top1 is None or top1 >= min_top1:
        return []
    return [f"{name}: top-1 agreement with Keras {top1:.2%} is below the accepted "
            f"{min_top1:.2%} (on {metrics['n_samples']} samples; pass min_top1=None to "
            f"only report it)."]


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Real values of a quantized tensor: `(q - zero_point) * scale`."""
    return (q.astype(np.float32) - zero_point) * scale


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """Quantizes real values with rounding and saturation to `dtype`."""
    info = np.iinfo(dtype)
    q = np.round(x / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)
