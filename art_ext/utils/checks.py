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


def check_param(value: Any, name: str, integer: bool = False, allow_zero: bool = False) -> None:
    """
    :func:`check_positive` for hyper-parameters checked in ``_check_params``: every bad value raises a ``ValueError``
    as in ART (:class:`ArgumentTypeError`, also a ``TypeError``, for a value of the wrong type).

    :raises ArgumentTypeError: When `value` is not a number (or not an integer where one is required).
    :raises ValueError: When it is not positive (non-negative with `allow_zero`).
    """
    try:
        check_positive(value, name, integer=integer, allow_zero=allow_zero)
    except TypeError as err:
        raise ArgumentTypeError(str(err)) from None


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


class ArgumentTypeError(ValueError, TypeError):
    """
    An argument of the wrong type. It is both a ``ValueError`` (what ART's ``_check_params`` raises for any bad
    hyper-parameter) and a ``TypeError`` (what Python raises for a wrong type), so callers may catch either.
    """


def check_flag(value: Any, name: str) -> None:
    """
    :raises ArgumentTypeError: When `value` is not a bool (``0``, ``1``, ``"yes"`` and ``None`` are refused).
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"`{name}` must be True or False, got {value!r}.")


def check_random_state(value: Any, name: str = "random_state", generator: bool = False) -> None:
    """
    A seed: ``None`` or a non-negative int (or a numpy ``Generator`` when `generator` is true).

    :raises ArgumentTypeError: On any other type (a string, a float, a bool).
    :raises ValueError: On a negative int.
    """
    if value is None or (generator and isinstance(value, np.random.Generator)):
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        kinds = "None, a non-negative int or a numpy Generator" if generator else "None or a non-negative int"
        raise ArgumentTypeError(f"`{name}` must be {kinds}, got {value!r}.")
    if value < 0:
        raise ValueError(f"`{name}` must be a non-negative int, got {value!r}.")


def check_choice(value: Any, choices: Any, name: str) -> None:
    """:raises ValueError: When `value` is not one of `choices` (named in the message)."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(repr(c) for c in choices)}; got {value!r}.")


def check_classifier(classifier: Any, name: str = "classifier") -> None:
    """:raises TypeError: When `classifier` is not an ART classifier with ``predict``."""
    from art.estimators.classification.classifier import ClassifierMixin

    if not isinstance(classifier, ClassifierMixin) or not hasattr(classifier, "predict"):
        raise TypeError(f"`{name}` must be an ART classifier, got {type(classifier).__name__}.")


def check_sample_shape(x: np.ndarray, input_shape: Any, name: str = "x") -> None:
    """
    :raises ValueError: When `x` is not a batch ``(nb_samples, *input_shape)``.
    """
    x = np.asarray(x)
    expected = tuple(input_shape) if input_shape is not None else None
    if x.ndim < 2:
        raise ValueError(f"`{name}` must be a batch of shape (nb_samples, ...), got shape {x.shape}.")
    if expected is not None and tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"`{name}` has sample shape {tuple(x.shape[1:])}, the classifier expects {expected} "
            f"(a batch of shape (nb_samples, {', '.join(str(d) for d in expected)}))."
        )


#: Relative slack of :func:`check_clip_values` (float rounding of inputs scaled into the range).
CLIP_TOLERANCE = 1e-5


def check_clip_values(x: Any, clip_values: Any, name: str = "x") -> None:
    """
    Refuse inputs outside a classifier's ``clip_values`` (e.g. uint8 images in [0, 255] given to a model trained on
    [0, 1]): attacks would clip them into the range, budgets would be measured from points the model never saw and
    every number would be silently wrong. art_ext raises rather than warns, everywhere the same way.

    :param x: Inputs.
    :param clip_values: ``(min, max)`` of the classifier, or ``None`` (nothing is checked).
    :param name: Name of the argument in the message.
    :raises ValueError: When a value of `x` lies outside ``clip_values`` by more than a relative
                        :data:`CLIP_TOLERANCE` of the range.
    """
    if clip_values is None:
        return
    low, high = (np.asarray(v, dtype=np.float64) for v in clip_values)
    arr = np.asarray(x)
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.number):
        return
    lo, hi = float(arr.min()), float(arr.max())
    slack = CLIP_TOLERANCE * float(np.max(high - low)) if np.all(high > low) else 0.0
    if np.any(arr < low - slack) or np.any(arr > high + slack):
        hint = " (uint8 images? divide them by 255)" if hi > 1.5 and float(np.max(high)) <= 1.0 else ""
        raise ValueError(
            f"`{name}` holds values in [{lo:g}, {hi:g}], outside the classifier's clip_values "
            f"[{float(np.min(low)):g}, {float(np.max(high)):g}]{hint}: scale `{name}` into that range or build the "
            "classifier with clip_values matching the data."
        )
