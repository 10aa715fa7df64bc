"""Shared conventions of the loaders: float32 images in [0, 1], index labels, a seeded split, clear errors."""

from __future__ import annotations

import os

import numpy as np

#: Environment variable naming a data root; loaders look for ``mnist/`` and ``rt-polarity/`` below it.
DATA_ENV = "ART_EXT_DATA"


class DataNotFoundError(FileNotFoundError, ValueError):
    """A data file is missing or corrupt. art_ext never downloads data."""


def resolve_folder(path: str | os.PathLike | None, subfolder: str, required: list[str]) -> str:
    """
    Find the folder holding `required` files: `path` itself, else ``$ART_EXT_DATA/<subfolder>`` or ``$ART_EXT_DATA``.

    :raises DataNotFoundError: Naming every place looked at and the files expected there.
    """
    candidates = []
    if path is not None:
        candidates.append(os.fspath(path))
    else:
        root = os.environ.get(DATA_ENV)
        if root:
            candidates += [os.path.join(root, subfolder), root]
    for folder in candidates:
        if all(os.path.isfile(os.path.join(folder, name)) for name in required):
            return folder
    where = ", ".join(repr(c) for c in candidates) or f"nowhere (no path given and ${DATA_ENV} is not set)"
    raise DataNotFoundError(
        f"Could not find the {subfolder} files {required} in {where}. Pass `path=` to the folder holding them or "
        f"set ${DATA_ENV} to a folder containing '{subfolder}/'. art_ext never downloads data."
    )


def to_channels(x: np.ndarray, channels_first: bool) -> np.ndarray:
    """Add a channel axis to ``(n, h, w)`` images, first or last."""
    return x[:, None, :, :] if channels_first else x[:, :, :, None]


def seeded_split(n: int, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a fixed, seeded train/test split."""
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"`test_size` must be in (0, 1), got {test_size}.")
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_size))
    return np.sort(order[n_test:]), np.sort(order[:n_test])
