"""What every converter needs first: a Keras model with a static input, and sample inputs.

Example:
    >>> src = load_source(model)                  # or a `.keras` file / SavedModel directory
    >>> src.input_shape                           # batch fixed to 1
    (1, 32, 32, 3)
    >>> x = sample_array(ds, src, what="representative_data")   # (n, 32, 32, 3) float32
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfm_fuse.errors import ConfigError, ConversionError
from tfm_fuse import files
from tfm_fuse.files import load_model

ModelLike = Any  # keras.Model | str | os.PathLike (".keras" file or SavedModel directory)


@dataclass
class Source:
    """A single-input Keras model with a fully static input shape (batch 1).

    Args:
        model: the Keras model (never modified).
        input_name: the model input's name, used in messages.
        input_shape: the static shape including the batch dimension (1).
        input_dtype: the input's dtype name, e.g. `"float32"`.
        notes: what was changed to make the input static (for the report).
        batch_note: the note among `notes` that says the batch was fixed (`None` when the
            model's batch already was 1): a target that keeps a dynamic batch drops it.
    """

    model: Any
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str
    notes: list[str] = field(default_factory=list)
    batch_note: str | None = None

    def predict(self, x: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """Keras inference-mode outputs for `x`: one array, or a list in the model's output
        order (`keras.tree.flatten`: a dict's outputs by sorted key) when there are several."""
        return outputs_of(self.model(x, training=False))

    def export_saved_model(self, path: str | os.PathLike) -> str:
        """Exports a SavedModel whose serving signature has this static input shape."""
        import tensorflow as tf

        spec = tf.TensorSpec(self.input_shape, self.input_dtype, name=self.input_name)
        try:
            self.model.export(str(path), format="tf_saved_model", input_signature=[spec],
                              verbose=False)
        except Exception as e:  # noqa: BLE001 - reported with context
            if (refused := files.as_storage_error(e)) is not None:
                raise refused from e
            raise ConversionError(f"Keras SavedModel export of input '{self.input_name}' "
                                  f"{self.input_shape} failed: {e}") from e
        return str(path)


def keras_order(names: list[str]) -> list[int]:
    """Positions of `names` (a serving signature's output names) in the Keras model's output
    order: `model.export` names a list's outputs `output_0, output_1, ...` (ordered by their
    number, not as strings: `output_10` after `output_9`) and a dict's by key, which
    `keras.tree.flatten` sorts.

    Example:
        >>> keras_order(["output_1", "output_10", "output_0", "output_2"])
        [2, 0, 3, 1]
    """
    def key(i: int):
        head, _, tail = names[i].rpartition("_")
        return (0, int(tail), "") if head == "output" and tail.isdigit() else (1, 0, names[i])

    return sorted(range(len(names)), key=key)


def outputs_of(out: Any) -> np.ndarray | list[np.ndarray]:
    """A Keras call's outputs as arrays: one array, or a list in `keras.tree.flatten` order."""
    import keras

    arrays = [np.asarray(o) for o in keras.tree.flatten(out)]
    return arrays[0] if len(arrays) == 1 else arrays


def load_source(model: ModelLike) -> Source:
    """Loads `model` and checks that its input can be made static.

    Args:
        model: a `keras.Model`, a `.keras` file, or a SavedModel directory (its
            `serving_default` signature is wrapped in a Keras model).

    Returns:
        A `Source` whose batch dimension is fixed to 1 (with a note when it was dynamic).

    Raises:
        ConfigError: the path does not exist, the model has several inputs, or a
            spatial/channel dimension of the input is dynamic.
    """
    keras_model = _as_keras_model(model)
    if len(keras_model.inputs) != 1:
        names = [t.name for t in keras_model.inputs]
        raise ConfigError(f"Converters accept single-input models. Received "
                          f"{len(names)} inputs: {names}.")
    tensor = keras_model.inputs[0]
    name = _input_name(tensor)
    shape = tuple(tensor.shape)
    batch_note = None
    if shape[0] is None:
        batch_note = (f"Input '{name}': dynamic batch dimension fixed to 1 "
                      f"(the edge runtimes run batch 1).")
    elif shape[0] != 1:
        batch_note = f"Input '{name}': batch {shape[0]} replaced by 1."
    notes = [batch_note] if batch_note else []
    dynamic = [i for i, d in enumerate(shape[1:], start=1) if d is None]
    if dynamic:
        raise ConfigError(
            f"Input '{name}' has dynamic dimension(s) {dynamic} in shape {shape}. Edge targets "
            f"need a static shape: build the model with e.g. keras.Input(shape=(32, 32, 3))."
        )
    dtype = str(getattr(tensor, "dtype", "float32")).replace("tf.", "")
    return Source(keras_model, name, (1, *shape[1:]), dtype, notes, batch_note)


def _input_name(tensor: Any) -> str:
    name = getattr(tensor, "name", None) or "input"
    return name.split(":")[0]


def _as_keras_model(model: ModelLike) -> Any:
    import keras

    if isinstance(model, keras.Model):
        if not model.built or not getattr(model, "inputs", None):
            raise ConfigError(f"Model '{model.name}' has no defined inputs (subclassed or not "
                              f"built). Accepted: a functional or Sequential model with Input.")
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise ConfigError(f"model must be a keras.Model, a .keras file or a SavedModel "
                          f"directory. Received: {type(model).__name__}.")
    path = Path(model)
    if path.is_dir() and (path / "saved_model.pb").exists():
        return _wrap_saved_model(path)
    if path.is_dir():
        raise ConfigError(f"Model path '{path}' is a directory without saved_model.pb: "
                          f"expected a .keras file or a SavedModel directory.")
    return load_model(path)  # one loader for the CLI and the API: one line for any bad file


def _wrap_saved_model(path: Path) -> Any:
    import keras
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    sig = loaded.signatures.get("serving_default")
    if sig is None:
        raise ConfigError(f"SavedModel '{path}' has no 'serving_default' signature.")
    specs = list(sig.structured_input_signature[1].values())
    if len(specs) != 1:
        raise ConfigError(f"SavedModel '{path}': converters accept a single input. "
                          f"Received {len(specs)}: {[s.name for s in specs]}.")
    spec = specs[0]
    inp = keras.Input(batch_shape=tuple(spec.shape), dtype=spec.dtype.name, name=spec.name)
    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
    out = layer(inp)
    if isinstance(out, dict):
        out = next(iter(out.values()))
    return keras.Model(inp, out, name=path.name)


def require_calibration(data: Any, target: str) -> None:
    """A `ConfigError` naming `target` when its int8 calibration inputs are missing.

    Example:
        >>> require_calibration(None, "edgetpu")
        Traceback (most recent call last):
        tfm_fuse.errors.ConfigError: edgetpu quantizes to int8 and needs calibration inputs: ...
    """
    if data is None:
        raise ConfigError(f"{target} quantizes to int8 and needs calibration inputs: pass "
                          "representative_data= (a few hundred preprocessed inputs shaped like "
                          "the model input: an array, a tf.data.Dataset or a generator).")


def sample_array(data: Any, src: Source, *, what: str, max_samples: int = 256) -> np.ndarray:
    """Normalises sample inputs into one array of shape `(n, *input_shape[1:])`.

    Args:
        data: a `tf.data.Dataset`, a numpy array, a list of arrays, a generator, or a
            callable returning an iterable. Elements may be `x`, `(x,)`, `(x, y)` or
            `[x]`, batched or single samples.
        src: the model source (expected shape and dtype).
        what: the argument name, used in messages (`"representative_data"`).
        max_samples: keep at most this many samples. Defaults to `256`.

    Raises:
        ConfigError: empty data, wrong shape, or a dtype that cannot feed the input.
    """
    expected = src.input_shape[1:]
    if isinstance(data, np.ndarray) or _is_tensor(data):
        elements = [np.asarray(data)]
    else:
        elements = _iter_elements(data, what)
    batches, n = [], 0
    for element in elements:  # stop reading once enough samples are in (a dataset may be huge)
        batches.append(_as_batch(element, expected, src, what))
        n += len(batches[-1])
        if n >= max_samples:
            break
    if not batches:
        raise ConfigError(f"{what} for input '{src.input_name}' is empty. Accepted: at least "
                          f"one sample of shape {expected}.")
    x = np.concatenate(batches, axis=0)[:max_samples]
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
        raise ConfigError(f"{what} for input '{src.input_name}' holds NaN or infinite values "
                          f"(samples {bad[:5].tolist()}{'...' if len(bad) > 5 else ''} of {len(x)}"
                          "): calibration and validation need real, finite inputs.")
    return x.astype(src.input_dtype, copy=False)


def _iter_elements(data: Any, what: str) -> Iterable[np.ndarray]:
    if callable(data) and not hasattr(data, "__iter__"):
        data = data()
    if not isinstance(data, Iterable) or isinstance(data, (str, bytes, dict)):
        raise ConfigError(f"{what} must be a tf.data.Dataset, a numpy array, a generator or a "
                          f"callable returning one. Received: {type(data).__name__}.")
    for element in data:
        while isinstance(element, (tuple, list)) and element:
            element = element[0]
        if isinstance(element, dict):
            element = next(iter(element.values()))
        yield np.asarray(element)


def _is_tensor(data: Any) -> bool:
    return hasattr(data, "numpy") and hasattr(data, "shape") and hasattr(data, "dtype")


def _as_batch(a: np.ndarray, expected: tuple[int, ...], src: Source, what: str) -> np.ndarray:
    want_kind = np.dtype(src.input_dtype).kind
    if a.dtype.kind not in _ACCEPTED_KINDS[want_kind]:
        raise ConfigError(
            f"{what} for input '{src.input_name}' has dtype {a.dtype}; the model input is "
            f"{src.input_dtype}. Accepted: {_KIND_NAMES[want_kind]} arrays (apply the model's "
            f"preprocessing first, e.g. x.astype('float32') / 255)."
        )
    if a.shape == expected:
        return a[None]
    if a.ndim == len(expected) + 1 and a.shape[1:] == expected and a.shape[0] > 0:
        return a
    raise ConfigError(
        f"{what} for input '{src.input_name}' has samples of shape {a.shape}; expected "
        f"{expected} or a batch (n, {', '.join(map(str, expected))})."
    )


_ACCEPTED_KINDS = {"f": "f", "i": "iu", "u": "u", "b": "b"}
_KIND_NAMES = {"f": "floating-point", "i": "integer", "u": "unsigned integer", "b": "boolean"}


def random_inputs(src: Source, n: int = 8, seed: int = 0) -> np.ndarray:
    """Seeded standard-normal inputs, for validation when the caller gave no data."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *src.input_shape[1:])).astype(src.input_dtype)


@dataclass
class Prepared:
    """What every converter starts from: the loaded model, its calibration and validation
    inputs, and the report begun with what loading changed."""

    src: Source
    rep: np.ndarray | None
    x_val: np.ndarray
    report: Any


def prepare(model: ModelLike, out_dir: str | os.PathLike, *, target: str, overwrite: bool,
            validation_data: Any = None, representative_data: Any = None,
            needs_calibration: bool = False, max_samples: int = 500) -> Prepared:
    """The converters' shared first steps, in order: the destination checked (before any
    work), the model loaded, the calibration inputs required and sampled, the report begun,
    the validation inputs picked (the calibration inputs or seeded random ones when none).

    Raises:
        ConfigError: an existing destination without `overwrite`, a bad model, missing or
            malformed calibration or validation inputs.
    """
    from tfm_fuse.converters.report import Report

    files.check_destination(out_dir, overwrite=overwrite)
    src = load_source(model)
    if needs_calibration:
        require_calibration(representative_data, target)
    rep = None if representative_data is None else sample_array(
        representative_data, src, what="representative_data", max_samples=max_samples)
    report = Report(target=target, notes=list(src.notes))
    x_val = pick_validation(src, validation_data, rep, report.notes)
    return Prepared(src, rep, x_val, report)


def pick_validation(src: Source, validation_data: Any, representative: np.ndarray | None,
                    notes: list[str], n: int = 64, max_validation: int = 2000) -> np.ndarray:
    """Validation inputs: `validation_data` (up to `max_validation` samples), else the first
    `n` representative samples, else `n` seeded random ones."""
    if validation_data is not None:
        return sample_array(validation_data, src, what="validation_data",
                            max_samples=max_validation)
    if representative is not None:
        notes.append("Validated on the representative data (no validation_data given).")
        return representative[:n]
    notes.append("Validated on seeded random-normal inputs (no validation_data given).")
    return random_inputs(src, n)


def call_tool(what: str, fn: Callable[[], Any]) -> Any:
    """Runs a toolchain call, turning its exception into a `ConversionError` naming `what`."""
    try:
        return fn()
    except (ConfigError, ConversionError):
        raise
    except Exception as e:  # noqa: BLE001 - the toolchain's errors are re-raised with context
        if (refused := files.as_storage_error(e)) is not None:  # the destination's fault:
            raise refused from e                               # Staging reports OutputError
        raise ConversionError(f"{what} failed: {type(e).__name__}: {e}") from e
