"""scikit-learn's built-in 8x8 digits, shaped like ART's image data sets."""

from __future__ import annotations

import numpy as np

from art_ext.data._common import seeded_split, to_channels


def load_digits(
    channels_first: bool = True, test_size: float = 0.2, seed: int = 0, flatten: bool = False
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], float, float]:
    """
    Load scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), which ship with scikit-learn.

    :param channels_first: ``(n, 1, 8, 8)`` when True (PyTorch), ``(n, 8, 8, 1)`` when False (TensorFlow).
    :param test_size: Share of the images held out for testing.
    :param seed: Seed of the fixed train/test split.
    :param flatten: Return ``(n, 64)`` vectors instead of images.
    :return: ``(x_train, y_train), (x_test, y_test), min_value, max_value`` with float32 images in ``[0, 1]`` and
             int64 index labels, as ART's ``load_dataset`` returns (but with index labels).
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = (bunch.images / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    x = x.reshape(len(x), -1) if flatten else to_channels(x, channels_first)
    train, test = seeded_split(len(x), test_size, seed)
    return (x[train], y[train]), (x[test], y[test]), 0.0, 1.0
