"""The gradient statistics of the gradient-masking analysis: what an attacker's gradients look like."""

from __future__ import annotations

from typing import Any

import numpy as np

from art_ext.backend import get_backend
from art_ext.utils.outputs import logits_from_outputs

__all__ = ["gradient_statistics", "saturated_rows"]

#: A softmax row counts as saturated when ``1 - max p`` is at most this (the float32 machine epsilon, 2**-23): its
#: float32 maximum is then 1.0 or one of the two float32 numbers just below it, depending on the kernel's rounding.
SATURATION_TOLERANCE = float(np.finfo(np.float32).eps)


def saturated_rows(logits: np.ndarray, tolerance: float = SATURATION_TOLERANCE) -> np.ndarray:
    """
    Which rows of `logits` have a saturated softmax: ``1 - max p <= tolerance``, computed in float64 and in log
    space (``log sum_{j != top} exp(z_j - z_top) <= log tolerance``), so that the verdict does not depend on whether a
    processor's float32 softmax kernel rounds the maximum to exactly 1.0 or to 0.99999994.

    :param logits: ``(nb_samples, nb_classes)`` logits (or ``log p`` of probabilities: the same up to a per-row
                   constant).
    :param tolerance: Largest ``1 - max p`` that counts as saturated (default the float32 epsilon).
    :return: Boolean array of shape ``(nb_samples,)``.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"`logits` must have shape (nb_samples, nb_classes >= 2), got {z.shape}.")
    rows = np.arange(len(z))
    gaps = z - z.max(axis=1, keepdims=True)
    gaps[rows, z.argmax(axis=1)] = -np.inf
    runner_up = gaps.max(axis=1, keepdims=True)
    log_rest = runner_up[:, 0] + np.log(np.sum(np.exp(gaps - runner_up), axis=1))
    return log_rest <= np.log(tolerance)


def gradient_statistics(classifier: Any, x: np.ndarray, y: np.ndarray, output: str, batch_size: int = 128) -> dict:
    """
    ``||grad_x CE||_2`` as ART's ``loss_gradient`` returns it (what FGSM uses), the share of exactly-zero ones,
    the share of rows whose softmax is saturated (``1 - max p`` within the float32 epsilon, see
    :func:`saturated_rows`), and per-input Frobenius norms of the
    softmax and logit Jacobians with respect to the input.

    :param classifier: ART ``PyTorchClassifier`` or ``TensorFlowV2Classifier``.
    :param x: Inputs.
    :param y: Index labels.
    :param output: ``"logits"`` or ``"probabilities"``: what the classifier outputs.
    :param batch_size: Batch size of the Jacobians.
    :return: ``grad_norms``, ``zero_gradient_share``, ``saturated_share``, ``softmax_jacobian_norms`` and
             ``logit_jacobian_norms``.
    """
    clf = classifier
    nb_classes = clf.nb_classes
    onehot = np.eye(nb_classes, dtype=np.float32)[y]
    grad = np.asarray(clf.loss_gradient(x, onehot), dtype=np.float32).reshape(len(x), -1)
    grad_norms = np.sqrt((grad.astype(np.float64) ** 2).sum(axis=1))
    zero_share = float(np.mean(np.all(grad == 0.0, axis=1)))

    ops = get_backend(clf)
    device = ops.device_of(clf)
    saturated, jac_soft, jac_logit = [], [], []
    for start in range(0, len(x), batch_size):
        xb = ops.asarray(x[start : start + batch_size], device=device)
        z = logits_from_outputs(ops, ops.forward(clf, xb), output)
        saturated.append(saturated_rows(ops.to_numpy(z)))
        soft_sq, logit_sq = 0.0, 0.0
        for k in range(nb_classes):
            for kind in ("softmax", "logit"):

                def fn(xa, k=k, kind=kind):
                    zz = logits_from_outputs(ops, ops.forward(clf, xa), output)
                    out = ops.softmax(zz) if kind == "softmax" else zz
                    return ops.sum(out[:, k])

                _, (g,) = ops.value_and_grad(fn, [xb])
                sq = ops.to_numpy(ops.sum(ops.flatten(g) * ops.flatten(g), axis=1)).astype(np.float64)
                if kind == "softmax":
                    soft_sq = soft_sq + sq
                else:
                    logit_sq = logit_sq + sq
        jac_soft.append(np.sqrt(soft_sq))
        jac_logit.append(np.sqrt(logit_sq))
    return {
        "grad_norms": grad_norms,
        "zero_gradient_share": zero_share,
        "saturated_share": float(np.mean(np.concatenate(saturated))),
        "softmax_jacobian_norms": np.concatenate(jac_soft),
        "logit_jacobian_norms": np.concatenate(jac_logit),
    }
