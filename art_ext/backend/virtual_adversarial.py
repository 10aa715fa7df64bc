"""
The virtual adversarial direction of Miyato et al. (TPAMI 2018), written once over the backend, as plain functions.

It sits in the lowest layer so that estimators (the text classifiers' embedding perturbations), attacks
(:class:`art_ext.attacks.evasion.VirtualAdversarialPerturbation`) and trainers
(:class:`art_ext.defences.trainer.VirtualAdversarialTrainer`) share it without importing each other. Two flavours:
:func:`virtual_adversarial_direction` by autograd power iteration, and
:func:`virtual_adversarial_direction_fd` by per-coordinate finite differences of predictions only (ART's
``VirtualAdversarialMethod`` algorithm, for query-only classifiers).

| Paper link: https://arxiv.org/abs/1704.03976
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = [
    "kl_divergence_log_probs",
    "unit_direction",
    "virtual_adversarial_direction",
    "virtual_adversarial_direction_fd",
]


def kl_divergence_log_probs(ops: Any, log_p: Any, log_q: Any, reduce: str = "mean") -> Any:
    """
    KL(p || q) per sample from log-probabilities, reduced by ``"mean"``, ``"sum"`` or ``"none"``.
    """
    kl = ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)
    if reduce == "mean":
        return ops.mean(kl)
    if reduce == "sum":
        return ops.sum(kl)
    return kl


def unit_direction(ops: Any, d: Any, mask: Any = None) -> Any:
    """
    Scale each sample of `d` to unit l2 norm (zero stays zero). Dividing by the largest magnitude first keeps tiny
    float32 gradients (of order ``xi``) from vanishing in the squared norm.

    :param mask: Optional 0/1 tensor broadcastable to `d` (e.g. ``(batch, time, 1)`` for text padding).
    """
    if mask is not None:
        d = d * mask
    ndim = len(ops.shape(d))
    scale = ops.max(ops.abs(ops.flatten(d)), axis=1)
    d = d / ops.reshape(scale + 1e-30, (-1,) + (1,) * (ndim - 1))
    return ops.l2_normalize(d)


def virtual_adversarial_direction(
    ops: Any,
    log_prob_fn: Callable[[Any], Any],
    z: Any,
    log_p: Any,
    xi: float,
    n_power_iterations: int,
    rng: np.random.Generator,
    mask: Any = None,
    device: Any = None,
) -> Any:
    """
    Unit direction ``d`` maximising ``KL(p(.|z) || p(.|z + xi d))`` to second order, by power iteration on the
    Hessian: ``d <- normalise(grad_d KL(p || p(z + xi d)))`` starting from Gaussian noise.

    :param ops: The backend.
    :param log_prob_fn: Maps a (perturbed) input tensor to ``(batch, nb_classes)`` log-probabilities.
    :param z: The inputs (images, or normalised word embeddings); gradients do not flow into it.
    :param log_p: Log-probabilities at `z`, held constant.
    :param xi: Finite-difference radius of the power iteration, in the units of `z`.
    :param n_power_iterations: Number of power iterations ``K``.
    :param rng: Source of the starting noise.
    :param mask: Optional 0/1 tensor restricting the direction (padding positions of text).
    :param device: Device of the noise (PyTorch).
    :return: Per-sample unit-norm direction of the shape of `z`, without gradient.
    """
    z = ops.stop_gradient(z)
    log_p = ops.stop_gradient(log_p)
    d = unit_direction(ops, ops.random_normal(ops.shape(z), rng, device=device), mask)
    for _ in range(n_power_iterations):
        # The sum over the batch keeps each sample's gradient independent of the batch size.
        _, (grad,) = ops.value_and_grad(
            lambda r: kl_divergence_log_probs(ops, log_p, log_prob_fn(z + r), reduce="sum"), [d * xi]
        )
        d = unit_direction(ops, ops.stop_gradient(grad), mask)
    return d


def _kl_numpy(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) per row of probabilities, in float64 (rows normalised first, as ``scipy.stats.entropy``)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
    q = q / np.maximum(q.sum(axis=1, keepdims=True), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(np.maximum(p, 1e-300)) - np.log(np.maximum(q, 1e-300))), 0.0)
    return terms.sum(axis=1)


def _normalise_rows(d: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    return d / np.maximum(norm, 1e-12)


def virtual_adversarial_direction_fd(
    prob_fn: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    p: np.ndarray,
    xi: float,
    n_power_iterations: int,
    finite_diff: float,
    rng: np.random.Generator,
    chunk_size: int = 256,
) -> np.ndarray:
    """
    The virtual adversarial direction from predictions only, by ART's algorithm: power iteration whose gradient
    ``grad_d KL(p || p(x + xi d))`` is estimated by forward differences of step `finite_diff`, one coordinate at a
    time. Each iteration costs ``len(x) * (1 + nb_features)`` predictions.

    :param prob_fn: Maps flat inputs ``(n, nb_features)`` to probabilities ``(n, nb_classes)`` (it counts queries).
    :param x: Flat inputs ``(nb_samples, nb_features)``, float.
    :param p: Probabilities at `x` ``(nb_samples, nb_classes)``.
    :param xi: Radius of the power iteration (ART's implicit value is 1: a unit step).
    :param n_power_iterations: Number of power iterations.
    :param finite_diff: Step of the forward differences.
    :param rng: Source of the starting noise.
    :param chunk_size: Inputs sent per ``prob_fn`` call (at least one coordinate's probes, ``len(x)`` inputs).
    :return: Unit directions ``(nb_samples, nb_features)``, float32.
    """
    n, m = x.shape
    step = max(1, chunk_size // n)
    d = rng.standard_normal(size=(n, m)).astype(np.float64)
    for _ in range(n_power_iterations):
        d = _normalise_rows(d)
        base = x + xi * d
        kl0 = _kl_numpy(p, prob_fn(base.astype(np.float32)))
        grad = np.zeros((n, m), dtype=np.float64)
        for start in range(0, m, step):
            idx = np.arange(start, min(start + step, m))
            probe = np.repeat(base[None], len(idx), axis=0)  # (k, n, m)
            probe[np.arange(len(idx)), :, idx] += finite_diff
            q = prob_fn(probe.reshape(-1, m).astype(np.float32)).reshape(len(idx), n, -1)
            for j, col in enumerate(idx):
                grad[:, col] = (_kl_numpy(p, q[j]) - kl0) / finite_diff
        d = grad
    return _normalise_rows(d).astype(np.float32)
