"""What every converter needs first: a Keras model with static inputs, and sample inputs.

Samples for one input are one array `(n, *shape)`; for a model with several inputs, a dict
`{input name: array}` in the model's input order (what every runtime is fed by name). `count`
and `rows` read and slice both alike.

Example:
    >>> src = load_source(model)                  # or a `.keras` file / SavedModel directory
    >>> src.inputs[0].shape                       # batch fixed to 1
    (1, 32, 32, 3)
    >>> x = sample_array(ds, src, what="representative_data")   # (n, 32, 32, 3) float32
    >>> count(x), rows(x, 0, 10).shape
    (256, (10, 32, 32, 3))
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


Samples = Any  # np.ndarray (one input) | dict[str, np.ndarray] (several, in input order)


@dataclass(frozen=True)
class InputSpec:
    """One model input made static: its name, shape (batch 1) and dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass
class Source:
    """A Keras model whose inputs all have a fully static shape (batch 1).

    Args:
        model: the Keras model (never modified).
        inputs: one `InputSpec` per model input, in the model's input order.
        notes: what was changed to make the inputs static (for the report).
        batch_note: the note among `notes` that says the batch was fixed (`None` when the
            model's batch already was 1): a target that keeps a dynamic batch drops it.
    """

    model: Any
    inputs: list[InputSpec]
    notes: list[str] = field(default_factory=list)
    batch_note: str | None = None

    @property
    def input_name(self) -> str:
        """The input's name, or the inputs' names joined, for messages."""
        return "', '".join(spec.name for spec in self.inputs)

    @property
    def shapes(self) -> str:
        """The inputs' static shapes, for messages: `(1, 32, 32, 3)` or `(1, 8, 8, 3), (1, 4)`."""
        return ", ".join(str(spec.shape) for spec in self.inputs)

    def predict(self, x: Samples) -> np.ndarray | list[np.ndarray]:
        """Keras inference-mode outputs for `x`: one array, or a list in the model's output
        order (`keras.tree.flatten`: a dict's outputs by sorted key) when there are several."""
        return outputs_of(self.model(as_call_inputs(self.model, x), training=False))

    def tensor_specs(self, batch: int | None = 1) -> list:
        """One `tf.TensorSpec` per input, named as the input, with batch `batch`."""
        import tensorflow as tf

        return [tf.TensorSpec((batch, *spec.shape[1:]), spec.dtype, name=spec.name)
                for spec in self.inputs]

    def export_saved_model(self, path: str | os.PathLike) -> str:
        """Exports a SavedModel whose serving signature has these static inputs (named as
        the model's inputs), and returns its path: `path`, or a temporary folder when `path`
        holds a glob character (`[`, `]`, `*`, `?`), which TensorFlow's variable reader would
        take as a pattern (`out/model[1]` fails with "Failed to find any matching files")."""
        import tempfile

        if any(c in str(path) for c in "[]*?"):
            path = tempfile.mkdtemp(prefix="tfm_fuse_saved_model_")  # the caller removes it
        specs = self.tensor_specs()
        signature = specs if len(specs) == 1 else [_pack_like_inputs(self.model, specs)]
        try:
            self.model.export(str(path), format="tf_saved_model", input_signature=signature,
                              verbose=False)
        except Exception as e:  # noqa: BLE001 - reported with context
            if (refused := files.as_storage_error(e)) is not None:
                raise refused from e
            raise ConversionError(f"Keras SavedModel export of input '{self.input_name}' "
                                  f"{self.shapes} failed: {e}") from e
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


def _pack_like_inputs(model: Any, flat: list) -> Any:
    """`flat` (one item per input, in `model.inputs` order) in the structure of the model's
    inputs: a list, or a dict keyed as the model's `keras.Input` dict."""
    import keras

    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, dict):
        return keras.tree.pack_sequence_as(struct, flat)
    return list(flat)


def as_call_inputs(model: Any, x: Samples) -> Any:
    """Samples in the structure `model` is called with: one array, a list in `model.inputs`
    order, or a dict keyed as the model's `keras.Input` dict."""
    if not isinstance(x, dict):
        return x
    return _pack_like_inputs(model, [x[_input_name(t)] for t in model.inputs])


def count(x: Samples) -> int:
    """How many samples `x` holds."""
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def rows(x: Samples, start: int, stop: int | None = None) -> Samples:
    """Samples `start` to `stop` of `x` (every input alike)."""
    if isinstance(x, dict):
        return {name: a[start:stop] for name, a in x.items()}
    return x[start:stop]


def single_or_list(items: list) -> Any:
    """The one item, or the list when there are several: how every check returns outputs."""
    return items[0] if len(items) == 1 else items


def in_keras_order(named: dict) -> list:
    """A serving signature's outputs (`{"output_0": ..., "output_1": ...}` or a dict model's
    keys) as a list in the Keras model's output order (`keras_order`)."""
    names = list(named)
    return [named[names[i]] for i in keras_order(names)]


def outputs_of(out: Any) -> np.ndarray | list[np.ndarray]:
    """A Keras call's outputs as arrays: one array, or a list in `keras.tree.flatten` order."""
    import keras

    return single_or_list([np.asarray(o) for o in keras.tree.flatten(out)])


def load_source(model: ModelLike) -> Source:
    """Loads `model` and checks that its input can be made static.

    Args:
        model: a `keras.Model`, a `.keras` file, or a SavedModel directory (its
            `serving_default` signature is wrapped in a Keras model, several inputs in the
            order of their names).

    Returns:
        A `Source` whose batch dimension is fixed to 1 (with a note when it was dynamic).

    Raises:
        ConfigError: the path does not exist, or a spatial/channel dimension of an input is
            dynamic.
    """
    keras_model = _as_keras_model(model)
    specs, changed = [], []
    for tensor in keras_model.inputs:
        name, shape = _input_name(tensor), tuple(tensor.shape)
        dynamic = [i for i, d in enumerate(shape[1:], start=1) if d is None]
        if dynamic:
            raise ConfigError(
                f"Input '{name}' has dynamic dimension(s) {dynamic} in shape {shape}. Edge "
                f"targets need a static shape: build the model with e.g. "
                f"keras.Input(shape=(32, 32, 3)).")
        if shape[0] != 1:
            changed.append((name, shape[0]))
        dtype = str(getattr(tensor, "dtype", "float32")).replace("tf.", "")
        specs.append(InputSpec(name, (1, *shape[1:]), dtype))
    batch_note = None
    if changed:
        which = "', '".join(name for name, _ in changed)
        was = ("dynamic batch dimension" if all(b is None for _, b in changed)
               else f"batch {changed[0][1]}")
        batch_note = (f"Input{'s' if len(changed) > 1 else ''} '{which}': {was} fixed to 1 "
                      f"(the edge runtimes run batch 1).")
    return Source(keras_model, specs, [batch_note] if batch_note else [], batch_note)


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
    specs = sig.structured_input_signature[1]
    # a signature names its inputs but does not order them (TF lists them in a different
    # order from one process to the next): name order, so a tuple of samples always means
    # the same; a dict by input name is never ambiguous
    inputs = {key: keras.Input(batch_shape=tuple(specs[key].shape),
                               dtype=specs[key].dtype.name, name=key) for key in sorted(specs)}
    if len(inputs) == 1:
        out = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")(
            next(iter(inputs.values())))
    else:
        out = _keyword_tfsm_layer(path)(inputs)
    if isinstance(out, dict):  # the signature's outputs, in Keras's order
        out = single_or_list(in_keras_order(out))
    return keras.Model(list(inputs.values()) if len(inputs) > 1 else next(iter(inputs.values())),
                       out, name=path.name)


def _keyword_tfsm_layer(path: Path) -> Any:
    """A `TFSMLayer` for a signature of several inputs: a serving signature takes them as
    keyword arguments, which `TFSMLayer.call` (one positional `inputs`) cannot pass."""
    import keras

    class KeywordTFSMLayer(keras.layers.TFSMLayer):
        def call(self, inputs, training=False):
            return self.call_endpoint_fn(**inputs)

    return KeywordTFSMLayer(str(path), call_endpoint="serving_default")


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


def sample_array(data: Any, src: Source, *, what: str, max_samples: int = 256) -> Samples:
    """Normalises sample inputs: one array `(n, *shape)` for a single-input model, a dict
    `{input name: (n, *shape)}` for several inputs.

    Args:
        data: a `tf.data.Dataset`, a numpy array, a list of arrays, a generator, or a
            callable returning an iterable. Elements may be `x`, `(x,)`, `(x, y)` or
            `[x]`, batched or single samples. With several inputs, `x` is a tuple or list of
            arrays in the model's input order or a dict keyed by input name — given whole
            (`(xa, xb)`, `{"image": xa, "meta": xb}`) or as the elements of a dataset.
        src: the model source (expected shapes and dtypes).
        what: the argument name, used in messages (`"representative_data"`).
        max_samples: keep at most this many samples. Defaults to `256`.

    Raises:
        ConfigError: empty data, a missing input, a wrong shape, or a dtype that cannot feed
            the input.
    """
    several = len(src.inputs) > 1
    if isinstance(data, dict) and not several:  # {input name: array}, e.g. from an .npz
        data = _only_input(data, src.inputs[0], what)
    if isinstance(data, np.ndarray) or _is_tensor(data) or (several and _is_whole(data, src)):
        elements = [data]
    else:
        elements = _iter_elements(data, what, several)
    batches, n = [], 0
    for element in elements:  # stop reading once enough samples are in (a dataset may be huge)
        batches.append(_as_batches(element, src, what))
        n += len(batches[-1][0])
        if n >= max_samples:
            break
    if not batches:
        raise ConfigError(f"{what} for input '{src.input_name}' is empty. Accepted: at least "
                          f"one sample of shape {src.inputs[0].shape[1:]}.")
    arrays = [_finite(np.concatenate(parts, axis=0)[:max_samples], spec, what)
              for spec, parts in zip(src.inputs, zip(*batches))]
    if not several:
        return arrays[0]
    return {spec.name: a for spec, a in zip(src.inputs, arrays)}


def _only_input(data: dict, spec: InputSpec, what: str) -> Any:
    if spec.name in data:
        return data[spec.name]
    if len(data) == 1:
        return next(iter(data.values()))
    raise ConfigError(f"{what} holds arrays {sorted(map(str, data))}; the model's one input is "
                      f"'{spec.name}'.")


def _is_whole(data: Any, src: Source) -> bool:
    """`data` is the inputs themselves (a tuple/list of arrays, one per input, or a dict of
    them), not an iterable of samples."""
    if isinstance(data, dict):
        return True
    return isinstance(data, (tuple, list)) and len(data) == len(src.inputs) and all(
        isinstance(a, np.ndarray) or _is_tensor(a) for a in data)


def _iter_elements(data: Any, what: str, several: bool) -> Iterable[Any]:
    if callable(data) and not hasattr(data, "__iter__"):
        data = data()
    if not isinstance(data, Iterable) or isinstance(data, (str, bytes, dict)):
        raise ConfigError(f"{what} must be a tf.data.Dataset, a numpy array, a generator or a "
                          f"callable returning one. Received: {type(data).__name__}.")
    for element in data:
        if several:  # (x, y) with x a tuple/list/dict: the labels dropped
            if isinstance(element, (tuple, list)) and element and \
                    isinstance(element[0], (tuple, list, dict)):
                element = element[0]
            yield element
            continue
        while isinstance(element, (tuple, list)) and element:
            element = element[0]
        if isinstance(element, dict):
            element = next(iter(element.values()))
        yield element


def _is_tensor(data: Any) -> bool:
    return hasattr(data, "numpy") and hasattr(data, "shape") and hasattr(data, "dtype")


ONE_PER_INPUT = "a tuple in the inputs' order, or a dict keyed by input name"


def _as_batches(element: Any, src: Source, what: str) -> list[np.ndarray]:
    """One batch per input from one element: an array (one input), a tuple/list in input
    order or a dict keyed by input name (several)."""
    if len(src.inputs) == 1:
        return [_as_batch(np.asarray(element), src.inputs[0], what)]
    names = [spec.name for spec in src.inputs]
    if isinstance(element, dict):
        missing = [n for n in names if n not in element]
        if missing:
            raise ConfigError(f"{what} has no values for input(s) {missing} (its keys: "
                              f"{sorted(map(str, element))}); expected keys {names}.")
        parts = [element[n] for n in names]
    elif isinstance(element, (tuple, list)) and len(element) == len(names):
        parts = list(element)
    elif isinstance(element, np.ndarray) or _is_tensor(element):
        raise ConfigError(f"{what} is one array, but the model has {len(names)} inputs {names}: "
                          f"give one array per input ({ONE_PER_INPUT}).")
    else:
        raise ConfigError(f"{what}: the model has {len(names)} inputs {names}; each element "
                          f"must be a tuple of {len(names)} arrays in that order or a dict "
                          f"keyed by input name. Received: {type(element).__name__}"
                          f"{f' of {len(element)}' if isinstance(element, (tuple, list)) else ''}.")
    batches = [_as_batch(np.asarray(a), spec, what) for a, spec in zip(parts, src.inputs)]
    if len({len(b) for b in batches}) > 1:
        raise ConfigError(f"{what} holds {[len(b) for b in batches]} samples for inputs "
                          f"{names}; each sample needs a value for every input.")
    return batches


def _as_batch(a: np.ndarray, spec: InputSpec, what: str) -> np.ndarray:
    expected = spec.shape[1:]
    want_kind = np.dtype(spec.dtype).kind
    if a.dtype.kind not in _ACCEPTED_KINDS[want_kind]:
        raise ConfigError(
            f"{what} for input '{spec.name}' has dtype {a.dtype}; the model input is "
            f"{spec.dtype}. Accepted: {_KIND_NAMES[want_kind]} arrays (apply the model's "
            f"preprocessing first, e.g. x.astype('float32') / 255)."
        )
    if a.shape == expected:
        return a[None]
    if a.ndim == len(expected) + 1 and a.shape[1:] == expected and a.shape[0] > 0:
        return a
    raise ConfigError(
        f"{what} for input '{spec.name}' has samples of shape {a.shape}; expected "
        f"{expected} or a batch (n, {', '.join(map(str, expected))})."
    )


def _finite(x: np.ndarray, spec: InputSpec, what: str) -> np.ndarray:
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
        raise ConfigError(f"{what} for input '{spec.name}' holds NaN or infinite values "
                          f"(samples {bad[:5].tolist()}{'...' if len(bad) > 5 else ''} of {len(x)}"
                          "): calibration and validation need real, finite inputs.")
    return x.astype(spec.dtype, copy=False)


_ACCEPTED_KINDS = {"f": "f", "i": "iu", "u": "u", "b": "b"}
_KIND_NAMES = {"f": "floating-point", "i": "integer", "u": "unsigned integer", "b": "boolean"}


def random_inputs(src: Source, n: int = 8, seed: int = 0) -> Samples:
    """Seeded standard-normal inputs, for validation when the caller gave no data."""
    rng = np.random.default_rng(seed)
    arrays = {spec.name: rng.standard_normal((n, *spec.shape[1:])).astype(spec.dtype)
              for spec in src.inputs}
    return next(iter(arrays.values())) if len(arrays) == 1 else arrays


@dataclass
class Prepared:
    """What every converter starts from: the loaded model, its calibration and validation
    inputs, and the report begun with what loading changed."""

    src: Source
    rep: Samples | None
    x_val: Samples
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


def pick_validation(src: Source, validation_data: Any, representative: Samples | None,
                    notes: list[str], n: int = 64, max_validation: int = 2000) -> Samples:
    """Validation inputs: `validation_data` (up to `max_validation` samples), else the first
    `n` representative samples, else `n` seeded random ones."""
    if validation_data is not None:
        return sample_array(validation_data, src, what="validation_data",
                            max_samples=max_validation)
    if representative is not None:
        notes.append("Validated on the representative data (no validation_data given).")
        return rows(representative, 0, n)
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
