"""
Reading an ART estimator the way ART does: which framework it runs on, whether only its ``predict`` can be used, and
which of its preprocessing operations apply at fit and at predict time.

ART estimators carry ``preprocessing_operations``: preprocessing defences first (``SpatialSmoothing``,
``GaussianAugmentation``...), then the standardisation. Each has ``apply_fit`` and ``apply_predict`` flags. ART applies
them as follows, and art_ext does the same:

- **fit** (training): the operations with ``apply_fit`` are applied to the training data ``(x, y)``; a defence may
  change the batch (``GaussianAugmentation(augmentation=True)`` appends noisy copies and repeats their labels). The
  trainers call :func:`apply_fit_defences` on every batch for the non-differentiable ones; the differentiable ones
  (framework preprocessors and the standardisation) run inside the differentiable forward pass
  (:meth:`art_ext.backend.Backend.forward` with ``training=True``).
- **predict** and loss gradients: the operations with ``apply_predict`` are applied in order inside
  :meth:`art_ext.backend.Backend.forward`; a non-differentiable one runs on numpy and its backward pass is the
  defence's own ``estimate_gradient`` (BPDA; the identity for most defences), exactly as ART's ``loss_gradient``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["apply_fit_defences", "is_framework_preprocessor", "is_query_only", "is_standardisation"]


def is_query_only(estimator: Any) -> bool:
    """
    Whether only ``predict`` can be used on `estimator` (e.g. ART's ``BlackBoxClassifier``): no framework model and
    no loss gradients are available, so art_ext falls back to its query-only paths.

    :param estimator: An ART estimator.
    :return: ``True`` for an estimator of no supported framework.
    """
    from art_ext.backend import framework_of

    try:
        framework_of(estimator)
    except (TypeError, ValueError):
        return True
    return False


def is_standardisation(op: Any) -> bool:
    """Whether `op` is ART's mean/std standardisation (numpy, PyTorch or TensorFlow flavour)."""
    name = type(op).__name__
    return name.startswith("StandardisationMeanStd") and hasattr(op, "mean") and hasattr(op, "std")


def is_framework_preprocessor(op: Any, framework: str) -> bool:
    """Whether `op` is an ART preprocessor implemented in `framework` (differentiable, runs on tensors)."""
    if framework == "pytorch":
        from art.defences.preprocessor.preprocessor import PreprocessorPyTorch

        return isinstance(op, PreprocessorPyTorch)
    from art.defences.preprocessor.preprocessor import PreprocessorTensorFlowV2

    return isinstance(op, PreprocessorTensorFlowV2)


def _fit_ops(estimator: Any) -> list:
    return [op for op in getattr(estimator, "preprocessing_operations", None) or [] if op.apply_fit]


def apply_fit_defences(estimator: Any, x: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
    """
    Apply, on numpy, the estimator's non-differentiable preprocessing defences that ART applies at fit time
    (``apply_fit=True``), to a batch of training data and its labels, as ART's ``fit`` does.

    Differentiable operations (the standardisation, framework preprocessors) are left to the forward pass.

    :param estimator: An ART estimator.
    :param x: Training inputs (numpy).
    :param y: Their labels (indices, one-hot or soft), or ``None`` (unlabelled data).
    :return: ``(x, y)`` after the defences; a defence may add samples (and their labels).
    :raises ValueError: When a non-differentiable fit-time defence follows a differentiable one (ART's order is
                        defences first, then the standardisation).
    """
    from art_ext.backend import framework_of

    framework = framework_of(estimator)
    seen_differentiable = False
    for op in _fit_ops(estimator):
        if is_standardisation(op) or is_framework_preprocessor(op, framework):
            seen_differentiable = True
            continue
        if seen_differentiable:
            raise ValueError(
                f"Preprocessing defence {type(op).__name__} runs after a differentiable preprocessing step at fit time; "
                "list preprocessing defences before the standardisation (ART's order)."
            )
        x, y = op(x, y)
        x = np.asarray(x, dtype=np.float32)
    return x, y
