"""Input checks shared by the FGSM-family attacks of this package (private)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from art.config import ART_NUMPY_DTYPE

from art_ext.utils.checks import ArgumentTypeError, check_finite, check_param


def check_inputs(estimator: Any, x: Any) -> np.ndarray:
    """`x` as float32 after checking it is finite and shaped like the estimator's input."""
    x = check_finite(x, "x")
    if x.ndim < 2:
        raise ValueError(f"`x` must be a batch of shape (nb_samples, ...), got shape {x.shape}.")
    expected = getattr(estimator, "input_shape", None)
    if expected is not None and tuple(x.shape[1:]) != tuple(expected):
        raise ValueError(f"`x` has sample shape {tuple(x.shape[1:])}, the classifier expects {tuple(expected)}.")
    return x.astype(ART_NUMPY_DTYPE, copy=False)


def check_mask(x: np.ndarray, mask: Any) -> np.ndarray | None:
    """ART's mask convention: broadcastable to `x` (or one per sample); zero entries are never perturbed."""
    if mask is None:
        return None
    mask = check_finite(mask, "mask")
    if mask.ndim > x.ndim:
        raise ValueError(f"`mask` of shape {mask.shape} has more dimensions than `x` {x.shape}.")
    try:
        np.broadcast_shapes(mask.shape, x.shape)
    except ValueError:
        raise ValueError(f"`mask` of shape {mask.shape} is not broadcastable to `x` of shape {x.shape}.") from None
    if np.any(mask < 0):
        raise ValueError("`mask` must be non-negative (zero entries are not perturbed).")
    return mask.astype(ART_NUMPY_DTYPE) if mask.dtype == np.bool_ else mask


def batch_mask(mask: Any, x: np.ndarray, start: int, stop: int) -> Any:
    """
    The slice of a per-sample array (a mask, ART's per-sample `eps`) for one batch; a broadcast array or a number is
    shared by every batch.
    """
    if isinstance(mask, np.ndarray) and mask.ndim == x.ndim and mask.shape[0] == x.shape[0] and x.shape[0] > 1:
        return mask[start:stop]
    return mask


def check_value(value: Any, name: str, integer: bool = False, allow_zero: bool = False) -> None:
    """A positive (or non-negative) number or integer; ``ValueError`` otherwise, as ART's ``_check_params``."""
    check_param(value, name, integer=integer, allow_zero=allow_zero)


def check_value_or_array(value: Any, name: str, allow_zero: bool = False, array_allow_zero: bool | None = None) -> None:
    """
    A positive number or an array of positive numbers (ART's per-feature ``eps``); ``ValueError`` otherwise (an
    :class:`~art_ext.utils.checks.ArgumentTypeError`, also a ``TypeError``, for a value of the wrong type).

    :param array_allow_zero: Whether zero entries are allowed in an array (default: `allow_zero`); ART's per-feature
        ``eps`` may hold zeros (features that are not perturbed).
    """
    if isinstance(value, np.ndarray):
        allow_zero = allow_zero if array_allow_zero is None else array_allow_zero
        if not np.issubdtype(value.dtype, np.number) or value.size == 0:
            raise ArgumentTypeError(f"`{name}` must be a non-empty numeric array, got dtype {value.dtype}.")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"`{name}` must be finite everywhere.")
        if np.any(value < 0) or (not allow_zero and np.any(value == 0)):
            raise ValueError(f"`{name}` must be {'non-negative' if allow_zero else 'positive'} everywhere.")
        return
    check_value(value, name, allow_zero=allow_zero)


def check_same_kind(eps: Any, eps_step: Any) -> None:
    """
    ART's rule: `eps` and `eps_step` are both numbers or both arrays of the same shape (an
    :class:`~art_ext.utils.checks.ArgumentTypeError`, a ``TypeError`` as in ART and a ``ValueError``, otherwise).
    """
    if isinstance(eps, np.ndarray) != isinstance(eps_step, np.ndarray):
        raise ArgumentTypeError("`eps` and `eps_step` must both be numbers or both be arrays (as in ART's FGSM/BIM).")
    if isinstance(eps, np.ndarray) and eps.shape != eps_step.shape:
        raise ValueError(f"`eps` {eps.shape} and `eps_step` {eps_step.shape} must have the same shape (as in ART).")


def check_broadcastable(value: Any, x: np.ndarray, name: str) -> None:
    """A per-feature array (`eps`, `eps_step`) must broadcast to `x` (or hold one row per sample)."""
    if not isinstance(value, np.ndarray):
        return
    try:
        if value.ndim > x.ndim:
            raise ValueError
        np.broadcast_shapes(value.shape, x.shape)
    except ValueError:
        raise ValueError(f"`{name}` of shape {value.shape} is not broadcastable to `x` of shape {x.shape}.") from None


def check_random_state(random_state: Any) -> None:
    if random_state is not None and not isinstance(random_state, (numbers.Integral, np.random.Generator)):
        raise ArgumentTypeError(f"`random_state` must be None, an int or a numpy Generator, got {random_state!r}.")
    if isinstance(random_state, numbers.Integral) and (isinstance(random_state, bool) or random_state < 0):
        raise ValueError(f"`random_state` must be a non-negative int, got {random_state!r}.")


def make_rng(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


def check_flag(value: Any, name: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"`{name}` must be a bool, got {value!r}.")


def resolve_estimator(classifier: Any, estimator: Any) -> Any:
    """The classifier given as `classifier` (art_ext's name) or `estimator` (ART's name), exactly one of them."""
    if classifier is not None and estimator is not None:
        raise ValueError("Give the classifier once: as `classifier` or as `estimator`, not both.")
    if classifier is None and estimator is None:
        raise ValueError("A classifier is required: pass `classifier=` (or ART's `estimator=`).")
    return classifier if classifier is not None else estimator
