"""
A gradient-masking analysis for any ART classifier (:class:`GradientMaskingAnalysis`, its attack battery, its warning
signs and its :class:`GradientMaskingReport`) and :func:`temperature_sweep`, the shape of Papernot et al.'s table for
defensive distillation.

| Paper link: https://arxiv.org/abs/1802.00420
| Paper link: https://arxiv.org/abs/1902.06705
| Paper link: https://arxiv.org/abs/1607.04311
"""

from __future__ import annotations

from typing import Any

import numpy as np

from art_ext.attacks.evasion.logit_margin import LogitMarginAttack
from art_ext.evaluations.gradient_masking.analysis import GradientMaskingAnalysis
from art_ext.evaluations.gradient_masking.battery import ATTACKS
from art_ext.evaluations.gradient_masking.report import GradientMaskingReport
from art_ext.evaluations.gradient_masking.signs import warning_signs
from art_ext.evaluations.gradient_masking.sweep import TemperatureSweepResult, temperature_sweep

__all__ = [
    "ATTACKS",
    "GradientMaskingAnalysis",
    "GradientMaskingReport",
    "TemperatureSweepResult",
    "margin_attack",
    "temperature_sweep",
    "warning_signs",
]


def margin_attack(
    classifier: Any,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    norm: Any = np.inf,
    steps: int = 10,
    step_size: float | None = None,
    output: str = "auto",
    batch_size: int = 128,
) -> np.ndarray:
    """
    FGSM (``steps=1``) or PGD on the logit margin: a one-call form of
    :class:`~art_ext.attacks.evasion.LogitMarginAttack`.

    :param classifier: ART classifier (PyTorch or TensorFlow).
    :param x: Inputs ``(nb_samples, ...)``.
    :param y: Index labels ``(nb_samples,)`` or one-hot labels.
    :param eps: Budget.
    :param norm: ``np.inf`` or ``2``.
    :param steps: Gradient steps (1 = FGSM with step `eps`).
    :param step_size: Step size (default: `eps` for one step, ``2.5 * eps / steps`` otherwise).
    :param output: ``"auto"``, ``"logits"`` or ``"probabilities"``.
    :param batch_size: Batch size.
    :return: Adversarial examples, float32, within `eps` of `x` and inside the classifier's clip values.
    """
    attack = LogitMarginAttack(
        classifier, norm=norm, eps=eps, eps_step=step_size, max_iter=steps, output=output, batch_size=batch_size
    )
    return attack.generate(x, y)
