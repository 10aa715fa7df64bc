"""Input checks that raise clear errors naming the argument."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def check_finite(x: Any, name: str = "x") -> np.ndarray:
    """
    Return `x` as a numpy array after checking it is numeric and free of NaN and infinity.

    :raises TypeError: When `x` is not numeric.
    :raises ValueError: When `x` is empty or holds NaN or infinity.
    """
    if x is None:
        raise TypeError(f"`{name}` must be an array, got None.")
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise TypeError(f"`{name}` must be numeric, got dtype {arr.dtype}.")
    if arr.size == 0:
        raise ValueError(f"`{name}` is empty.")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return arr


def check_positive(value: Any, name: str, integer: bool = False, allow_zero: bool = False) -> None:
    """
    Check that a hyper-parameter is a positive (or non-negative) number.

    :raises TypeError: When it is not a number (or not an integer where one is required).
    :raises ValueError: When it is not positive.
    """
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"`{name}` must be {'an integer' if integer else 'a number'}, got {value!r}.")
    if value < 0 or (value == 0 and not allow_zero) or (not integer and not np.isfinite(value)):
        raise ValueError(f"`{name}` must be {'non-negative' if allow_zero else 'positive'}, got {value!r}.")


def check_labels(y: Any, nb_classes: int, n: int | None = None, name: str = "y") -> np.ndarray:
    """
    Normalise labels to int64 indices of shape ``(nb_samples,)``.

    :param y: Index labels ``(nb_samples,)`` or one-hot/soft labels ``(nb_samples, nb_classes)``.
    :param nb_classes: Number of classes.
    :param n: Expected number of samples, if known.
    :raises ValueError: On a wrong shape, out-of-range index, non-integral index or NaN.
    """
    arr = check_finite(y, name)
    if arr.ndim == 2 and arr.shape[1] == nb_classes:
        idx = arr.argmax(axis=1)
    elif arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1):
        flat = arr.reshape(-1)
        if np.issubdtype(flat.dtype, np.floating) and not np.all(flat == np.round(flat)):
            raise ValueError(f"`{name}` holds non-integral class indices.")
        idx = flat.astype(np.int64)
        if idx.min() < 0 or idx.max() >= nb_classes:
            raise ValueError(f"`{name}` holds class indices outside [0, {nb_classes - 1}].")
    else:
        raise ValueError(
            f"`{name}` must be index labels (nb_samples,) or one-hot labels (nb_samples, {nb_classes}), "
            f"got shape {arr.shape}."
        )
    if n is not None and len(idx) != n:
        raise ValueError(f"`{name}` has {len(idx)} labels for {n} samples.")
    return idx.astype(np.int64)


class ParameterValueError(ValueError, TypeError):
    """
    A bad hyper-parameter value. A ``ValueError`` as in ART's ``_check_params``; also a ``TypeError`` so that code
    written when art_ext raised ``TypeError`` for non-numbers keeps working.
    """


def check_param(value: Any, name: str, integer: bool = False, allow_zero: bool = False) -> None:
    """
    :func:`check_positive` raising :class:`ParameterValueError` (a ``ValueError``, as ART) for every bad value.

    :raises ParameterValueError: When `value` is not a positive (or non-negative) number, or integer where required.
    """
    try:
        check_positive(value, name, integer=integer, allow_zero=allow_zero)
    except (TypeError, ValueError) as err:
        raise ParameterValueError(str(err)) from None
