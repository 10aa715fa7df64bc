"""
Iterative least-likely class method (Kurakin, Goodfellow and Bengio, 2017): targeted BIM towards the class the model
finds least likely.

| Paper link: https://arxiv.org/abs/1611.01236
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from art.attacks.attack import EvasionAttack
from art.attacks.evasion import BasicIterativeMethod
from art.config import ART_NUMPY_DTYPE
from art.estimators.classification.classifier import ClassifierMixin
from art.estimators.estimator import BaseEstimator, LossGradientsMixin

from art_ext.attacks.evasion._fgsm_common import (
    check_flag,
    check_inputs,
    check_mask,
    check_value,
    check_value_or_array,
    resolve_estimator,
)
from art_ext.utils.outputs import predict_in_batches

logger = logging.getLogger(__name__)


#: Iterations used without ``clip_values`` when `max_iter` is not given: ART's ``BasicIterativeMethod`` default.
ART_BIM_MAX_ITER = 100


def kurakin_max_iter(eps_255: float) -> int:
    """
    Kurakin et al.'s number of iterations ``min(eps + 4, 1.25 * eps)`` for `eps` on the 0-255 scale, rounded up.

    :param eps_255: The l-inf budget on the 0-255 scale.
    :return: The number of iterations, at least 1.
    """
    return max(1, math.ceil(round(min(eps_255 + 4.0, 1.25 * eps_255), 6)))


class LeastLikelyClassMethod(EvasionAttack):
    """
    Iterative least-likely class method: with ``y_LL = argmin_y p(y | x)``, iterate
    ``x <- clip_{x, eps}(x - eps_step * sign(grad_x J(x, y_LL)))``, i.e. ART's :class:`BasicIterativeMethod`,
    targeted at the least-likely class. It reaches a far-away, semantically unrelated class (a stronger, harder
    goal than untargeted misclassification) and, being targeted, does not suffer from label leaking.

    Defaults follow the paper: one grey level per step (``eps_step = (clip_max - clip_min) / 255``) and
    ``max_iter = min(eps * 255 + 4, 1.25 * eps * 255)`` with `eps` converted to the 0-255 scale through
    the classifier's ``clip_values``. `eps` and `eps_step` may be arrays (per feature), as in ART's BIM; the rule
    then uses the largest `eps`.

    ``targeted`` is ART's flag that tells pipelines such as ``AutoAttack`` how to score the result; the attack always
    moves towards the least-likely class, which also misclassifies (``targeted=False`` scoring).

    | Paper link: https://arxiv.org/abs/1611.01236
    """

    attack_params = EvasionAttack.attack_params + ["eps", "eps_step", "max_iter", "targeted", "batch_size", "verbose"]
    _estimator_requirements = (BaseEstimator, LossGradientsMixin, ClassifierMixin)

    def __init__(
        self,
        classifier: Any = None,
        eps: float | np.ndarray = 0.3,
        eps_step: float | np.ndarray | None = None,
        max_iter: int | None = None,
        batch_size: int = 32,
        verbose: bool = True,
        *,
        targeted: bool = True,
        estimator: Any = None,
    ) -> None:
        """
        Create a :class:`LeastLikelyClassMethod` instance.

        :param classifier: A classifier with loss gradients (ART ``PyTorchClassifier``, ``TensorFlowV2Classifier``...).
        :param eps: l-inf budget, in input units (a number or an array broadcastable to the inputs).
        :param eps_step: Step size; ``None`` is one grey level, ``(clip_max - clip_min) / 255`` (needs ``clip_values``).
        :param max_iter: Number of iterations; ``None`` is ``min(eps_255 + 4, 1.25 * eps_255)`` with ``eps_255`` the
            budget on the 0-255 scale, or ART's BIM default of 100 without ``clip_values``.
        :param batch_size: Number of samples per gradient computation.
        :param verbose: Show progress bars.
        :param targeted: How ART pipelines score the result (``AutoAttack`` sets it): ``True`` compares with the
            labels given to :meth:`generate`, ``False`` checks for misclassification. The attack itself always targets
            the least-likely class.
        :param estimator: The classifier under ART's name (``BasicIterativeMethod(estimator=...)``); give either
            `classifier` or `estimator`.
        """
        super().__init__(estimator=resolve_estimator(classifier, estimator))
        self.eps = eps
        self.eps_step = eps_step
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.verbose = verbose
        self._targeted = targeted
        self._check_params()

    def _clip_width(self) -> float | None:
        clip_values = self.estimator.clip_values
        if clip_values is None:
            return None
        return float(np.max(np.asarray(clip_values[1], dtype=np.float64) - np.asarray(clip_values[0], np.float64)))

    @property
    def effective_eps_step(self) -> float | np.ndarray:
        """The step size used: `eps_step`, or one grey level of the clip range."""
        if self.eps_step is not None:
            return self.eps_step if isinstance(self.eps_step, np.ndarray) else float(self.eps_step)
        grey_level = self._clip_width() / 255.0
        if isinstance(self.eps, np.ndarray):
            return np.full(self.eps.shape, grey_level, dtype=np.float32)
        return grey_level

    @property
    def effective_max_iter(self) -> int:
        """
        The number of iterations used: `max_iter`, or Kurakin et al.'s rule on the 0-255 scale, or ART's BIM default
        (100) for a classifier without ``clip_values``.
        """
        if self.max_iter is not None:
            return int(self.max_iter)
        if self._clip_width() is None:
            return ART_BIM_MAX_ITER
        return kurakin_max_iter(float(np.max(self.eps)) / self._clip_width() * 255.0)

    def least_likely_class(self, x: np.ndarray) -> np.ndarray:
        """
        The class the classifier finds least likely for each input.

        :param x: Inputs of shape ``(nb_samples, ...)``.
        :return: Class indices of shape ``(nb_samples,)``.
        """
        x = check_inputs(self.estimator, x)
        return predict_in_batches(self.estimator, x, self.batch_size).argmin(axis=1)

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> np.ndarray:
        """
        Generate adversarial examples that the classifier assigns to its least-likely class.

        :param x: Inputs of shape ``(nb_samples, ...)`` matching the classifier's input shape.
        :param y: Not used: the target is always the least-likely class of the model on `x`. Accepted so that the
            attack fits ART pipelines that pass labels (e.g. ``AdversarialTrainer``).
        :param mask: Optional array broadcastable to `x` (or one per sample); features where it is zero are not
            perturbed.
        :return: Adversarial examples of the shape of `x`, float32.
        """
        x = check_inputs(self.estimator, x)
        mask = check_mask(x, kwargs.get("mask"))
        if y is not None:
            logger.info("LeastLikelyClassMethod ignores `y`: it targets the model's least-likely class.")
        targets = self.least_likely_class(x)
        one_hot = np.eye(self.estimator.nb_classes, dtype=ART_NUMPY_DTYPE)[targets]
        bim = BasicIterativeMethod(
            self.estimator,
            eps=self.eps if isinstance(self.eps, np.ndarray) else float(self.eps),
            eps_step=self.effective_eps_step,
            max_iter=self.effective_max_iter,
            targeted=True,
            batch_size=self.batch_size,
            verbose=self.verbose,
        )
        kwargs = {} if mask is None else {"mask": mask}
        return bim.generate(x, y=one_hot, **kwargs).astype(ART_NUMPY_DTYPE, copy=False)

    def _check_params(self) -> None:
        check_value_or_array(self.eps, "eps")
        if self.eps_step is not None:
            check_value_or_array(self.eps_step, "eps_step")
            if isinstance(self.eps, np.ndarray) != isinstance(self.eps_step, np.ndarray):
                raise ValueError("`eps` and `eps_step` must both be numbers or both be arrays (as in ART's BIM).")
        if self.max_iter is not None:
            check_value(self.max_iter, "max_iter", integer=True)
        if self.eps_step is None and self.estimator.clip_values is None:
            raise ValueError(
                "`eps_step=None` is one grey level of the classifier's clip_values, which are None: pass `eps_step` "
                "explicitly."
            )
        check_value(self.batch_size, "batch_size", integer=True)
        check_flag(self.verbose, "verbose")
        check_flag(self.targeted, "targeted")
