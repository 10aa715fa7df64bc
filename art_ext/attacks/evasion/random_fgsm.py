"""
R+FGSM: a random sign step of size `alpha`, then an FGSM step of size `eps - alpha` (Tramèr et al., 2018).

| Paper link: https://arxiv.org/abs/1705.07204
"""

from __future__ import annotations

import logging
import numbers
from typing import Any

import numpy as np
from art.attacks.attack import EvasionAttack
from art.attacks.evasion import FastGradientMethod
from art.config import ART_NUMPY_DTYPE
from art.estimators.classification.classifier import ClassifierMixin
from art.estimators.estimator import BaseEstimator, LossGradientsMixin

from art_ext.attacks.evasion._fgsm_common import (
    check_broadcastable,
    check_flag,
    check_inputs,
    check_mask,
    check_random_state,
    check_value,
    check_value_or_array,
    make_rng,
    resolve_estimator,
)
from art_ext.utils.checks import check_clip_values, check_labels
from art_ext.utils.outputs import predict_in_batches

logger = logging.getLogger(__name__)


class RandomFGSM(EvasionAttack):
    """
    R+FGSM (Tramèr et al., 2018): a single-step l-inf attack that first leaves the data point, where the loss of a
    model adversarially trained with FGSM is sharply curved, by a random sign step, then takes an FGSM step:

    ``x' = clip(x + alpha * sign(N(0, I)))``, ``x_adv = clip(x' + (eps - alpha) * sign(grad_x J(x', y)))``.

    The l-inf distance to `x` never exceeds `eps`: inputs outside the classifier's ``clip_values`` are refused (the
    clipping could otherwise move them further). The gradient step is ART's :class:`FastGradientMethod`, so the
    estimator needs what FGSM needs (loss gradients); `eps` and `alpha` may be arrays broadcastable to the inputs
    (per feature, or one row per sample), as ART's FGSM takes `eps`.

    | Paper link: https://arxiv.org/abs/1705.07204
    """

    attack_params = EvasionAttack.attack_params + [
        "eps",
        "alpha",
        "targeted",
        "batch_size",
        "random_state",
        "verbose",
    ]
    _estimator_requirements = (BaseEstimator, LossGradientsMixin)

    def __init__(
        self,
        classifier: Any = None,
        eps: float = 0.3,
        alpha: float = 0.05,
        targeted: bool = False,
        batch_size: int = 32,
        random_state: int | np.random.Generator | None = None,
        verbose: bool = True,
        *,
        estimator: Any = None,
    ) -> None:
        """
        Create a :class:`RandomFGSM` instance.

        :param classifier: An estimator with loss gradients, as ART's FGSM takes (``PyTorchClassifier``,
            ``TensorFlowV2Classifier``, ``KerasClassifier``...).
        :param eps: Total l-inf budget, in input units: a number, or an array broadcastable to the inputs (zero
            entries are not perturbed).
        :param alpha: Size of the random sign step, ``0 <= alpha < eps`` (the paper uses ``alpha = eps / 2``); an
            array (or a number) with ``alpha <= eps`` everywhere when `eps` is an array.
        :param targeted: Move towards the labels `y` given to :meth:`generate` instead of away from them.
        :param batch_size: Number of samples per gradient computation.
        :param random_state: Seed (int) or numpy ``Generator`` of the random step; an int makes every
            :meth:`generate` call reproducible.
        :param verbose: Show a progress bar over batches.
        :param estimator: The classifier under ART's name (``FastGradientMethod(estimator=...)``); give either
                          `classifier` or `estimator`.
        """
        super().__init__(estimator=resolve_estimator(classifier, estimator))
        self.eps = eps
        self.alpha = alpha
        self.targeted = targeted
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose
        self._check_params()

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> np.ndarray:
        """
        Generate adversarial examples.

        :param x: Inputs of shape ``(nb_samples, ...)`` matching the estimator's input shape, within its
            ``clip_values``.
        :param y: Labels as indices ``(nb_samples,)`` or one-hot ``(nb_samples, nb_classes)``: the true labels
            (untargeted) or the targets (targeted, required). Untargeted and ``None``: the model's predictions on `x`,
            which avoids label leaking.
        :param mask: Optional array broadcastable to `x` (or one per sample); features where it is zero are not
            perturbed, neither by the random nor by the gradient step.
        :return: Adversarial examples of the shape of `x`, float32.
        """
        x = check_inputs(self.estimator, x)
        check_clip_values(x, self.estimator.clip_values)
        mask = check_mask(x, kwargs.get("mask"))
        check_broadcastable(self.eps, x, "eps")
        check_broadcastable(self.alpha, x, "alpha")
        if y is None and self.targeted:
            raise ValueError("`y` (target labels) is required when `targeted=True`.")
        if isinstance(self.estimator, ClassifierMixin):
            nb_classes = self.estimator.nb_classes
            if y is None:
                labels = predict_in_batches(self.estimator, x, self.batch_size).argmax(axis=1)
            else:
                labels = check_labels(y, nb_classes, n=len(x))
            y = np.eye(nb_classes, dtype=ART_NUMPY_DTYPE)[labels]
        elif y is None:  # ART's FGSM on other estimators: their own predictions on the clean inputs
            y = self.estimator.predict(x, batch_size=self.batch_size)

        rng = make_rng(self.random_state)
        eps, alpha = _as_float(self.eps), _as_float(self.alpha)
        gradient_eps = eps - alpha
        if isinstance(gradient_eps, np.ndarray):
            gradient_eps = np.broadcast_to(gradient_eps, np.broadcast_shapes(np.shape(eps), np.shape(alpha))).copy()
            # ART's FGSM steps by `eps` (its `eps_step` only serves `minimal=True`), but wants a positive array
            gradient_step = np.maximum(gradient_eps, np.float32(1e-12))
        else:
            gradient_step = gradient_eps
        gradient_attack = FastGradientMethod(
            self.estimator,
            norm=np.inf,
            eps=gradient_eps,
            eps_step=gradient_step,
            targeted=self.targeted,
            batch_size=self.batch_size,
        )
        step = alpha * np.where(rng.standard_normal(x.shape) >= 0.0, 1.0, -1.0)
        if mask is not None:
            step = np.where(mask == 0, 0.0, step)
        x_random = (x + step).astype(ART_NUMPY_DTYPE)
        clip_values = self.estimator.clip_values
        if clip_values is not None:
            x_random = np.clip(x_random, clip_values[0], clip_values[1]).astype(ART_NUMPY_DTYPE)
        if self.verbose:
            logger.info("R+FGSM: random step of %s, gradient step of %s on %d inputs", alpha, gradient_eps, len(x))
        return gradient_attack.generate(x_random, y, mask=mask).astype(ART_NUMPY_DTYPE, copy=False)

    def _check_params(self) -> None:
        check_value_or_array(self.eps, "eps", array_allow_zero=True)
        check_value_or_array(self.alpha, "alpha", allow_zero=True)
        if not isinstance(self.eps, np.ndarray) and not isinstance(self.alpha, np.ndarray):
            if self.alpha >= self.eps:
                raise ValueError(
                    f"`alpha` must be smaller than `eps` (the gradient step is eps - alpha), got alpha={self.alpha!r}, "
                    f"eps={self.eps!r}."
                )
        else:
            try:
                too_big = np.any(np.asarray(self.alpha) > np.asarray(self.eps))
            except ValueError:
                raise ValueError(
                    f"`alpha` {np.shape(self.alpha)} and `eps` {np.shape(self.eps)} must broadcast together."
                ) from None
            if too_big:
                raise ValueError(
                    "`alpha` must not exceed `eps` anywhere (the gradient step is eps - alpha); with a per-feature "
                    "`eps`, pass `alpha` as an array too, e.g. `alpha=eps / 2`."
                )
        if isinstance(self.eps, numbers.Real) and self.estimator.clip_values is not None:
            width = float(np.max(np.asarray(self.estimator.clip_values[1]) - np.asarray(self.estimator.clip_values[0])))
            if self.eps > width:
                logger.warning("`eps`=%s exceeds the width %s of the classifier's clip_values.", self.eps, width)
        check_flag(self.targeted, "targeted")
        check_value(self.batch_size, "batch_size", integer=True)
        check_random_state(self.random_state)
        check_flag(self.verbose, "verbose")


def _as_float(value: Any) -> Any:
    return value.astype(ART_NUMPY_DTYPE) if isinstance(value, np.ndarray) else float(value)
