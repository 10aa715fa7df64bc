"""
FGSM / PGD on the logit margin ``max_{j != y} z_j - z_y``, the loss of Carlini and Wagner (2017).

The logits of a defensively distilled network scale with its temperature but their gradient does not vanish, unlike
that of the cross-entropy of its saturated float32 softmax: this attack is the white-box probe that
:class:`~art_ext.evaluations.GradientMaskingAnalysis` runs next to ART's cross-entropy FGSM and PGD.

| Paper link: https://arxiv.org/abs/1608.04644
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from art.attacks.attack import EvasionAttack
from art.estimators.classification.classifier import ClassifierMixin
from art.estimators.estimator import BaseEstimator, LossGradientsMixin

from art_ext.backend import get_backend
from art_ext.utils.checks import (
    check_clip_values,
    check_finite,
    check_flag,
    check_labels,
    check_positive,
    check_sample_shape,
)
from art_ext.utils.outputs import check_output_kind, logits_from_outputs, output_kind_of, predict_in_batches

logger = logging.getLogger(__name__)

__all__ = ["LogitMarginAttack", "norm_value"]


def norm_value(norm: Any, name: str = "norm") -> float:
    """
    ``np.inf`` or ``2.0`` from the spellings ART accepts (``np.inf``, ``"inf"``, ``2``, ``"2"``).

    :raises ValueError: For any other norm.
    """
    if isinstance(norm, str):
        norm = norm.strip().lower()
    if norm in (np.inf, "inf", float("inf")) and not isinstance(norm, bool):
        return np.inf
    if norm in (2, 2.0, "2") and not isinstance(norm, bool):
        return 2.0
    raise ValueError(f"`{name}` must be np.inf or 2, got {norm!r}.")


class LogitMarginAttack(EvasionAttack):
    """
    FGSM (``max_iter=1``) or PGD on the logit margin ``max_{j != y} z_j - z_y``, l-inf or l2. For probability
    outputs the logits are taken as ``log p`` (equal to the logits up to a per-row constant the margin ignores).
    The adversarial examples stay within `eps` of `x` and inside the classifier's clip values.

    | Paper link: https://arxiv.org/abs/1608.04644
    """

    attack_params = EvasionAttack.attack_params + [
        "norm",
        "eps",
        "eps_step",
        "max_iter",
        "output",
        "batch_size",
        "verbose",
    ]
    _estimator_requirements = (BaseEstimator, LossGradientsMixin, ClassifierMixin)

    def __init__(
        self,
        classifier: Any,
        norm: Any = np.inf,
        eps: float = 0.3,
        eps_step: float | None = None,
        max_iter: int = 10,
        output: str = "auto",
        batch_size: int = 128,
        verbose: bool = False,
    ) -> None:
        """
        Create a :class:`LogitMarginAttack`.

        :param classifier: ART ``PyTorchClassifier`` or ``TensorFlowV2Classifier`` (logits or probabilities).
        :param norm: ``np.inf`` or ``2``.
        :param eps: Budget, in input units.
        :param eps_step: Step size (default: `eps` for one step, ``2.5 * eps / max_iter`` otherwise, as ART's PGD).
        :param max_iter: Gradient steps (1 = FGSM with step `eps`).
        :param output: ``"auto"``, ``"logits"`` or ``"probabilities"``: what the classifier outputs.
        :param batch_size: Batch size.
        :param verbose: Log each batch.
        """
        super().__init__(estimator=classifier)
        self.norm = norm
        self.eps = eps
        self.eps_step = eps_step
        self.max_iter = max_iter
        self.output = output
        self.batch_size = batch_size
        self.verbose = verbose
        self._check_params()

    def _check_params(self) -> None:
        self.norm = norm_value(self.norm)
        check_positive(self.eps, "eps")
        if self.eps_step is not None:
            check_positive(self.eps_step, "eps_step")
        check_positive(self.max_iter, "max_iter", integer=True)
        check_positive(self.batch_size, "batch_size", integer=True)
        check_output_kind(self.output)
        check_flag(self.verbose, "verbose")

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> np.ndarray:
        """
        Generate adversarial examples.

        :param x: Inputs ``(nb_samples, ...)`` matching the classifier's input shape.
        :param y: True labels, indices ``(nb_samples,)`` or one-hot; ``None`` uses the classifier's predictions.
        :return: Adversarial examples, float32, of the shape of `x`.
        """
        classifier = self.estimator
        x = check_finite(x, "x").astype(np.float32)
        check_sample_shape(x, classifier.input_shape)
        check_clip_values(x, classifier.clip_values)
        if y is None:
            labels = predict_in_batches(classifier, x, self.batch_size).argmax(axis=1)
        else:
            labels = check_labels(y, classifier.nb_classes, n=len(x))
        ops = get_backend(classifier)
        device = ops.device_of(classifier)
        output = output_kind_of(classifier, x, self.output)
        eps, steps = float(self.eps), int(self.max_iter)
        step = (eps if steps == 1 else 2.5 * eps / steps) if self.eps_step is None else float(self.eps_step)
        clip = classifier.clip_values
        out = np.empty_like(x)
        for start in range(0, len(x), self.batch_size):
            x0 = ops.asarray(x[start : start + self.batch_size], device=device)
            onehot = ops.one_hot(
                ops.asarray(labels[start : start + self.batch_size], dtype="int64", device=device),
                classifier.nb_classes,
            )
            x_adv = x0

            def margin(xa, onehot=onehot):
                z = logits_from_outputs(ops, ops.forward(classifier, xa), output)
                z_true = ops.sum(z * onehot, axis=1)
                z_other = ops.max(z - onehot * 1e9, axis=1)
                return ops.sum(z_other - z_true)

            for _ in range(steps):
                _, (grad,) = ops.value_and_grad(margin, [x_adv])
                if self.norm == np.inf:
                    x_adv = ops.clip(x_adv + step * ops.sign(grad), x0 - eps, x0 + eps)
                else:
                    x_adv = x_adv + step * ops.l2_normalize(grad)
                    delta = x_adv - x0
                    scale = ops.minimum(eps / ops.per_sample_norm(delta, keepdims=True), 1.0)
                    x_adv = x0 + delta * scale
                if clip is not None:
                    x_adv = ops.clip(x_adv, float(clip[0]), float(clip[1]))
                x_adv = ops.stop_gradient(x_adv)
            out[start : start + self.batch_size] = ops.to_numpy(x_adv)
            if self.verbose:
                logger.info("Logit-margin attack: %d / %d inputs", min(start + self.batch_size, len(x)), len(x))
        return out
