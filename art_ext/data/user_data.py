"""
The data of ``art-ext audit``: an ``.npz`` with ``x`` and ``y``, a folder of images in class sub-folders, or the
built-in ``digits`` / local ``mnist``. Errors are :class:`AuditDataError` with one line naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = ["AuditData", "AuditDataError", "load_audit_data"]

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class AuditDataError(ValueError):
    """The data cannot be used; the message names the file or option to fix."""


@dataclass
class AuditData:
    """
    Data to audit on: ``x``, ``y`` (int64 indices); ``x_spare``, ``y_spare`` hold data that is *not* audited (a
    training split of a built-in set, or what the sample left out of the user's data), or ``None``.
    """

    x: np.ndarray
    y: np.ndarray
    x_spare: np.ndarray | None
    y_spare: np.ndarray | None
    source: str
    class_names: list[str] | None = None


def _labels(y: np.ndarray, source: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        y = y.argmax(axis=1)
    y = y.reshape(-1)
    if not np.issubdtype(y.dtype, np.number) or (np.issubdtype(y.dtype, np.floating) and np.any(y != np.round(y))):
        raise AuditDataError(f"DATA {source!r}: `y` must hold integer class indices (or one-hot rows).")
    if y.size and y.min() < 0:
        raise AuditDataError(f"DATA {source!r}: `y` holds negative class indices.")
    return y.astype(np.int64)


def _npz(path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("x", "y") if k not in archive.files]
            if missing:
                raise AuditDataError(f"DATA {path!r} has no array {missing[0]!r} (it holds {sorted(archive.files)}).")
            x, y = archive["x"], archive["y"]
    except AuditDataError:
        raise
    except Exception as error:  # noqa: BLE001
        raise AuditDataError(f"DATA {path!r} is not a readable .npz file ({type(error).__name__}: {error}).") from None
    if x.dtype.kind not in "fiu":  # complex values are not cast (that would drop their imaginary part)
        raise AuditDataError(f"DATA {path!r}: `x` must hold real numbers, got dtype {x.dtype}.")
    if len(x) != len(y):
        raise AuditDataError(f"DATA {path!r}: `x` has {len(x)} samples and `y` {len(y)}.")
    if len(x) == 0:
        raise AuditDataError(f"DATA {path!r} is empty.")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise AuditDataError(f"DATA {path!r}: `x` contains NaN or infinite values.")
    return x, _labels(y, path)


def _image_folder(path: str, channels_first: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image

    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    if not classes:
        raise AuditDataError(f"DATA {path!r} has no class sub-folders (expected DATA/<class>/<image files>).")
    images, labels, size, mode = [], [], None, None
    for index, name in enumerate(classes):
        folder = os.path.join(path, name)
        for file in sorted(os.listdir(folder)):
            if not file.lower().endswith(_IMAGE_EXTENSIONS):
                continue
            file_path = os.path.join(folder, file)
            try:
                with Image.open(file_path) as img:
                    img.load()
                    mode = mode or ("L" if img.mode in ("L", "1", "I;16") else "RGB")
                    arr = np.asarray(img.convert(mode), dtype=np.float32) / 255.0
            except Exception as error:  # noqa: BLE001
                raise AuditDataError(f"DATA image {file_path!r} cannot be read ({error}).") from None
            if size is None:
                size = arr.shape
            elif arr.shape != size:
                raise AuditDataError(
                    f"DATA image {file_path!r} has shape {arr.shape}, the first one {size}; resize all images to one "
                    "size (the audit does not resize)."
                )
            images.append(arr)
            labels.append(index)
    if not images:
        raise AuditDataError(f"DATA {path!r}: no image files ({', '.join(_IMAGE_EXTENSIONS)}) in its sub-folders.")
    x = np.stack(images)
    if x.ndim == 3:
        x = x[..., None]
    if channels_first:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), np.asarray(labels, dtype=np.int64), classes


def load_audit_data(
    spec: str, channels_first: bool = True, sample_size: int | None = None, seed: int = 0, mnist_path: str | None = None
) -> AuditData:
    """
    Load the data of an audit and draw its sample.

    :param spec: ``.npz`` file (arrays ``x`` and ``y``, ``x`` in the layout the model expects), a folder of images in
                 class sub-folders, ``"digits"`` (scikit-learn's, built in) or ``"mnist"`` (local files, see
                 :func:`art_ext.data.load_mnist`).
    :param channels_first: Layout of the images built here (folder, digits, mnist); an ``.npz`` is taken as it is.
    :param sample_size: Inputs audited (a seeded random subset); ``None`` keeps them all.
    :param seed: Seed of the subset.
    :param mnist_path: Folder of the MNIST files for ``"mnist"`` (default: ``$ART_EXT_DATA/mnist``).
    :return: The :class:`AuditData`; for the built-in sets the audited sample comes from the test split and the
             training split is the spare data.
    :raises AuditDataError: With one line naming the file.
    """
    if sample_size is not None and (not isinstance(sample_size, int) or sample_size <= 0):
        raise AuditDataError(f"--sample-size must be a positive integer, got {sample_size!r}.")
    names = None
    if spec == "digits":
        from art_ext.data import load_digits

        (xs, ys), (x, y), _, _ = load_digits(channels_first=channels_first)
    elif spec == "mnist":
        from art_ext.data import DataNotFoundError, load_mnist

        try:
            (xs, ys), (x, y), _, _ = load_mnist(mnist_path, channels_first=channels_first)
        except DataNotFoundError as error:
            raise AuditDataError(f"DATA 'mnist': {error}") from None
    elif os.path.isdir(spec):
        x, y, names = _image_folder(spec, channels_first)
        xs = ys = None
    elif os.path.isfile(spec):
        if not spec.endswith(".npz"):
            raise AuditDataError(f"DATA {spec!r} is not an .npz file, an image folder, 'digits' or 'mnist'.")
        x, y = _npz(spec)
        xs = ys = None
    else:
        raise AuditDataError(f"DATA {spec!r}: no such file or folder (nor 'digits' / 'mnist').")
    if sample_size is not None and sample_size < len(x):
        order = np.random.default_rng(seed).permutation(len(x))
        take, rest = np.sort(order[:sample_size]), np.sort(order[sample_size:])
        if xs is None:
            xs, ys = x[rest], y[rest]
        x, y = x[take], y[take]
    return AuditData(np.ascontiguousarray(x, dtype=np.float32), y, xs, ys, spec, names)
