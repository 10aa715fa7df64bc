"""MNIST from the four original IDX gzip files (never downloaded)."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

from art_ext.data._common import DataNotFoundError, resolve_folder, to_channels

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def _read_idx(path: str, expected_dims: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise DataNotFoundError(f"{path} is not a readable gzip file ({err}); expected an MNIST IDX .gz file.") from err
    if len(data) < 4 + 4 * expected_dims:
        raise DataNotFoundError(f"{path} is truncated; expected an IDX file with {expected_dims} dimension(s).")
    zero, dtype_code, dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or dims != expected_dims:
        raise DataNotFoundError(
            f"{path} is not an unsigned-byte IDX file with {expected_dims} dimension(s) "
            f"(header: magic {zero}, type {dtype_code:#x}, dims {dims})."
        )
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise DataNotFoundError(f"{path} holds {body.size} bytes of data, expected {int(np.prod(shape))} for {shape}.")
    return body.reshape(shape)


def load_mnist(
    path: str | os.PathLike | None = None, channels_first: bool = True, flatten: bool = False
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], float, float]:
    """
    Load MNIST (60,000 train / 10,000 test, 28x28) from the original IDX gzip files.

    :param path: Folder holding the four ``*-idx?-ubyte.gz`` files; default ``$ART_EXT_DATA/mnist``.
    :param channels_first: ``(n, 1, 28, 28)`` when True, ``(n, 28, 28, 1)`` when False.
    :param flatten: Return ``(n, 784)`` vectors instead of images.
    :return: ``(x_train, y_train), (x_test, y_test), 0.0, 1.0`` with float32 images in ``[0, 1]`` and int64 labels.
    :raises DataNotFoundError: When a file is missing or corrupt (never a download attempt).
    """
    folder = resolve_folder(path, "mnist", list(MNIST_FILES.values()))
    arrays = {
        key: _read_idx(os.path.join(folder, name), 3 if "images" in key else 1) for key, name in MNIST_FILES.items()
    }
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise DataNotFoundError(f"MNIST {split} images and labels in {folder} differ in length.")

    def images(a: np.ndarray) -> np.ndarray:
        x = a.astype(np.float32) / 255.0
        return x.reshape(len(x), -1) if flatten else to_channels(x, channels_first)

    return (
        (images(arrays["train_images"]), arrays["train_labels"].astype(np.int64)),
        (images(arrays["test_images"]), arrays["test_labels"].astype(np.int64)),
        0.0,
        1.0,
    )
