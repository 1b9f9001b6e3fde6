"""The exceptions tfm_fuse raises: one small hierarchy, every message names the culprit.

Example:
    >>> try:
    ...     tfm_fuse.prune(model, rate=1.5)
    ... except tfm_fuse.TfmFuseError as e:
    ...     print(e)
"""


class TfmFuseError(Exception):
    """Base class of every error raised on purpose by tfm_fuse."""


class UnsupportedModelError(TfmFuseError, ValueError):
    """The model as a whole cannot be analysed (subclassed, nested, not built, Keras 2...)."""


class UnsupportedLayerError(TfmFuseError, ValueError):
    """A layer the analysis cannot reason about.

    Args:
        layer_name: name of the offending layer.
        reason: what is wrong and what would be accepted.
    """

    def __init__(self, layer_name: str, reason: str):
        self.layer_name = layer_name
        self.reason = reason
        super().__init__(f"Layer '{layer_name}': {reason}")


class ConfigError(TfmFuseError, ValueError):
    """An option with a value outside what is accepted."""


class ConversionError(TfmFuseError, RuntimeError):
    """A converter could not produce or validate its artefact."""


class OutputError(TfmFuseError, OSError):
    """The OS refused to write an artefact (full disk, read-only file system, permission).

    Args:
        path: the artefact's final path.
        reason: what happened, and what became of the previous artefact.
        errno: the OS error number, as in `OSError.errno`.
    """

    def __init__(self, path, reason: str, errno: int | None = None):
        super().__init__(errno, reason)
        self.path, self.reason = str(path), reason
        self.filename = self.path

    def __str__(self) -> str:
        return f"Cannot write '{self.path}': {self.reason}"


def parse_choice(choices, value, name: str, what: str = ""):
    """`choices(value)` for a `StrEnum`, or a `ConfigError` naming the value and what is accepted.

    Example:
        >>> parse_choice(Scope, "layer", "scope")
        <Scope.LAYER: 'layer'>
    """
    try:
        return choices(value)
    except ValueError:
        raise ConfigError(f"Unknown {what or name}. Received: {name}={value!r}; "
                          f"accepted: {[c.value for c in choices]}") from None
