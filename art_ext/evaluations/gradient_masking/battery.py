"""
The attack battery of :class:`~art_ext.evaluations.GradientMaskingAnalysis`: its keys and labels, and the two attacks
that are not ART classes (C&W counted at each eps, random noise).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from art_ext.utils.outputs import predict_in_batches

__all__ = ["ATTACKS", "BLACK_BOX_ATTACKS", "CE_ATTACKS", "LOGIT_ATTACKS", "perturbation_norms"]

#: Attack battery: key -> label. Keys are what ``attacks=`` accepts.
ATTACKS = {
    "fgsm_ce": "FGSM (cross-entropy)",
    "pgd_ce": "PGD (cross-entropy)",
    "fgsm_margin": "FGSM (logit margin)",
    "pgd_margin": "PGD (logit margin)",
    "cw_l2": "C&W L2",
    "transfer": "Transfer (PGD on surrogate)",
    "square": "Square (gradient-free)",
    "noise": "Random noise",
}
#: White-box attacks through the softmax cross-entropy.
CE_ATTACKS = ("fgsm_ce", "pgd_ce")
#: White-box attacks in logit space.
LOGIT_ATTACKS = ("fgsm_margin", "pgd_margin", "cw_l2")
#: Attacks that use no gradient of the analysed classifier.
BLACK_BOX_ATTACKS = ("transfer", "square", "noise")


def perturbation_norms(delta: np.ndarray, norm: float) -> np.ndarray:
    """Per-sample l-inf or l2 norms of `delta`."""
    flat = delta.reshape(len(delta), -1).astype(np.float64)
    return np.abs(flat).max(axis=1) if norm == np.inf else np.sqrt((flat**2).sum(axis=1))


def cw_at_budgets(
    classifier: Any, x: np.ndarray, x_adv: np.ndarray, y: np.ndarray, eps: Sequence[float], norm: float, batch_size: int
) -> tuple[list[np.ndarray], dict[str, float]]:
    """
    A minimal-perturbation attack's examples counted at each eps: the example where its perturbation fits in eps,
    the clean input elsewhere; and its unbounded success with the median l2 and l-inf norms of its successes.
    """
    dist = perturbation_norms(x_adv - x, norm)
    fooled = predict_in_batches(classifier, x_adv, batch_size).argmax(1) != y
    l2 = perturbation_norms(x_adv - x, 2.0)
    linf = perturbation_norms(x_adv - x, np.inf)
    unbounded = {
        "success": float(np.mean(fooled)),
        "median_l2": float(np.median(l2[fooled])) if fooled.any() else float("nan"),
        "median_linf": float(np.median(linf[fooled])) if fooled.any() else float("nan"),
    }
    flat_adv, flat_x = x_adv.reshape(len(x), -1), x.reshape(len(x), -1)
    advs = [np.where((dist <= e * (1 + 1e-6))[:, None], flat_adv, flat_x).reshape(x.shape) for e in eps]
    return advs, unbounded


def noise_attack(
    classifier: Any,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    norm: float,
    nb_draws: int,
    rng: np.random.Generator,
    batch_size: int,
) -> np.ndarray:
    """Random sign (l-inf) or Gaussian direction (l2) noise of size `eps`; an input counts as fooled if any draw does."""
    clip = classifier.clip_values
    best = x.copy()
    fooled = np.zeros(len(x), dtype=bool)
    for _ in range(nb_draws):
        if norm == np.inf:
            delta = eps * rng.choice([-1.0, 1.0], size=x.shape)
        else:
            delta = rng.standard_normal(x.shape)
            delta *= eps / np.sqrt((delta.reshape(len(x), -1) ** 2).sum(1)).reshape((-1,) + (1,) * (x.ndim - 1))
        cand = x + delta.astype(np.float32)
        if clip is not None:
            cand = np.clip(cand, clip[0], clip[1])
        new = (predict_in_batches(classifier, cand, batch_size).argmax(1) != y) & ~fooled
        best[new] = cand[new]
        fooled |= new
    return best
