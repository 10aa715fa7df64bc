"""
The warning signs of gradient masking of Athalye, Carlini and Wagner (2018) and Carlini et al. (2019), each a verdict
with its evidence, computed from which inputs each attack fooled.

| Paper link: https://arxiv.org/abs/1802.00420
| Paper link: https://arxiv.org/abs/1902.06705
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from art_ext.evaluations.gradient_masking.battery import ATTACKS, BLACK_BOX_ATTACKS, CE_ATTACKS, LOGIT_ATTACKS

__all__ = ["warning_signs"]


def warning_signs(
    fooled: dict[str, list[np.ndarray]],
    stats: dict,
    eps: Sequence[float],
    tolerance: float = 0.1,
    zero_gradient_threshold: float = 0.25,
) -> list[dict]:
    """
    The warning signs, each ``{"name", "title", "triggered", "evidence"}``.

    A group of attacks (e.g. the cross-entropy ones) fools an input when any of its attacks does. Group A "beats"
    group B at an eps when, over the same inputs, A's success exceeds B's by more than `tolerance` and the inputs only
    A fools outnumber those only B fools by at least two standard deviations of a sign test
    (``n_A - n_B >= 2 sqrt(n_A + n_B)``), so that a handful of inputs on a small subset cannot trigger a sign.

    :param fooled: Attack key -> one boolean array per eps (which inputs the attack fooled).
    :param stats: Gradient statistics (``zero_gradient_share``, ``saturated_share``, ``softmax_jacobian_norms``,
                  ``logit_jacobian_norms``), as :meth:`GradientMaskingAnalysis.gradient_statistics` returns them.
    :param eps: The budgets, increasing, one per entry of each ``fooled`` list.
    :param tolerance: Margin in success rate above which one attack "beats" another.
    :param zero_gradient_threshold: Share of exactly-zero gradients, or of saturated softmax rows, that counts as
                                    vanishing gradients.
    :return: The signs, in a fixed order.
    """
    tol = tolerance
    eps = list(eps)
    signs = []

    def group(keys):
        present = [k for k in keys if k in fooled]
        if not present:
            return None
        return [np.any([fooled[k][i] for k in present], axis=0) for i in range(len(eps))]

    def beats(a, b):
        """Largest margin by which group `a` beats group `b`: (triggered, index of eps, rate a, rate b)."""
        best = (False, 0, -np.inf)
        for i, (fa, fb) in enumerate(zip(a, b)):
            only_a, only_b = int(np.sum(fa & ~fb)), int(np.sum(~fa & fb))
            diff = (only_a - only_b) / len(fa)
            significant = only_a - only_b >= 2.0 * math.sqrt(only_a + only_b) and only_a > only_b
            if (diff > tol and significant, diff) > (best[0], best[2]):
                best = (diff > tol and significant, i, diff)
        i = best[1]
        return best[0], i, float(np.mean(a[i])), float(np.mean(b[i]))

    def names(keys):
        return " / ".join(ATTACKS[k] for k in keys if k in fooled)

    zero, saturated = stats["zero_gradient_share"], stats["saturated_share"]
    signs.append(
        {
            "name": "vanishing_gradients",
            "title": "Gradients vanish",
            # Whether a saturated row's float32 gradient is exactly zero depends on the processor's softmax kernel
            # (1.0 or 0.99999994); the saturated share, computed in float64 from the logits, does not.
            "triggered": bool(max(zero, saturated) >= zero_gradient_threshold),
            "evidence": f"{zero:.0%} of the inputs have an exactly-zero cross-entropy gradient and "
            f"{saturated:.0%} a saturated softmax (1 - max p within the float32 epsilon); median softmax-Jacobian "
            f"norm {float(np.median(stats['softmax_jacobian_norms'])):.3g} against logit-Jacobian norm "
            f"{float(np.median(stats['logit_jacobian_norms'])):.3g}.",
        }
    )

    found = []
    for one, it in (("fgsm_ce", "pgd_ce"), ("fgsm_margin", "pgd_margin")):
        if one in fooled and it in fooled:
            triggered, i, ra, rb = beats(fooled[one], fooled[it])
            found.append((triggered, ra - rb, one, it, i, ra, rb))
    if found:
        triggered, _, one, it, i, ra, rb = max(found)
        signs.append(
            {
                "name": "one_step_beats_iterative",
                "title": "One-step attack beats iterative attack",
                "triggered": bool(triggered),
                "evidence": f"{ATTACKS[one]} {ra:.0%} against {ATTACKS[it]} {rb:.0%} at eps={eps[i]:g}.",
            }
        )

    white = group(CE_ATTACKS)
    black = group(BLACK_BOX_ATTACKS)
    if white is not None and black is not None:
        triggered, i, ra, rb = beats(black, white)
        signs.append(
            {
                "name": "black_box_beats_white_box",
                "title": "Black-box or transfer attack beats white-box attack",
                "triggered": bool(triggered),
                "evidence": f"{names(BLACK_BOX_ATTACKS)} {ra:.0%} against white-box "
                f"{names(CE_ATTACKS)} {rb:.0%} at eps={eps[i]:g}.",
            }
        )

    if white is not None:
        curve = np.array([float(np.mean(f)) for f in white])
        signs.append(
            {
                "name": "no_full_success_at_large_eps",
                "title": "Success does not reach ~100% at the largest eps",
                "triggered": bool(curve[-1] < 1.0 - tol),
                "evidence": f"white-box {names(CE_ATTACKS)}: {curve[-1]:.0%} at eps={eps[-1]:g}.",
            }
        )
        drops = np.diff(curve) if len(eps) > 1 else np.zeros(1)
        flat = len(eps) > 1 and curve[-1] - curve[0] < tol and curve[-1] < 1.0 - tol
        dropping = bool(drops.min() < -tol)
        signs.append(
            {
                "name": "not_growing_with_eps",
                "title": "Success does not grow with eps",
                "triggered": bool(flat or dropping),
                "evidence": f"white-box {names(CE_ATTACKS)} goes from {curve[0]:.0%} at eps={eps[0]:g} to "
                f"{curve[-1]:.0%} at eps={eps[-1]:g}"
                + (f"; it drops by {-drops.min():.0%} between two budgets" if dropping else "")
                + ".",
            }
        )

    logit = group(LOGIT_ATTACKS)
    if white is not None and logit is not None:
        triggered, i, ra, rb = beats(logit, white)
        signs.append(
            {
                "name": "logit_beats_softmax",
                "title": "Logit-space attacks succeed where softmax-gradient attacks fail",
                "triggered": bool(triggered),
                "evidence": f"{names(LOGIT_ATTACKS)} {ra:.0%} against {names(CE_ATTACKS)} {rb:.0%} at eps={eps[i]:g}.",
            }
        )
    return signs
