"""Small real data shipped with tfm_fuse (MNIST test set, CC BY-SA 3.0, Y. LeCun and C. Cortes).

Example:
    >>> (x_train, y_train), (x_test, y_test) = tfm_fuse.app.data.load_mnist(n_train=2000, n_test=500)
    >>> x_train.shape
    (2000, 28, 28, 1)
"""

import gzip
from pathlib import Path

import numpy as np

_HERE = Path(__file__).parent


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist(n_train: int = 8000, n_test: int = 2000):
    """Split the shipped 10,000 MNIST images into disjoint train and test parts.

    Args:
        n_train: images for training, taken from the start. Defaults to `8000`.
        n_test: images for testing, taken from the end. Defaults to `2000`.

    Returns:
        `((x_train, y_train), (x_test, y_test))`, images as float32 in [0, 1] with shape
        `(n, 28, 28, 1)`, labels as int32.
    """
    if n_train < 0 or n_test < 0 or n_train + n_test > 10000:
        raise ValueError(
            f"n_train + n_test must be at most 10000 (the shipped images). "
            f"Received: n_train={n_train}, n_test={n_test}"
        )
    images = _read_idx(_HERE / "t10k-images-idx3-ubyte.gz").astype("float32")[..., None] / 255.0
    labels = _read_idx(_HERE / "t10k-labels-idx1-ubyte.gz").astype("int32")
    train = (images[:n_train], labels[:n_train])
    test = (images[10000 - n_test :], labels[10000 - n_test :])
    return train, test


def as_rgb(images: np.ndarray, size: int) -> np.ndarray:
    """Digits as inputs for RGB models (e.g. `keras.applications`): resized, 3 channels, [-1, 1].

    Example:
        >>> (x, _), _ = load_mnist(n_train=64, n_test=0)
        >>> as_rgb(x, 32).shape
        (64, 32, 32, 3)
    """
    import tensorflow as tf

    resized = tf.image.resize(images, (size, size)).numpy()
    return np.repeat(resized, 3, axis=-1) * 2.0 - 1.0
