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
