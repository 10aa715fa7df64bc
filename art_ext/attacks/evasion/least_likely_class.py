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
    batch_mask,
    check_flag,
    check_inputs,
    check_mask,
    check_same_kind,
    check_value,
    check_value_or_array,
    resolve_estimator,
)
from art_ext.utils.checks import check_labels
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

    ``targeted=False`` (the default) is what ART's pipelines expect of an attack that is given true labels: it runs
    inside ``AdversarialTrainer`` (which refuses targeted attacks) and is scored as untargeted by ``AutoAttack``; the
    labels `y` are not used and the attack moves towards the least-likely class, which also misclassifies.
    ``targeted=True`` (what ``AutoAttack(targeted=True)`` sets) is ART's targeted BIM: the labels `y` given to
    :meth:`generate` are the targets; without `y` the targets are the least-likely classes.

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
        targeted: bool = False,
        batch_size: int = 32,
        verbose: bool = True,
        *,
        estimator: Any = None,
    ) -> None:
        """
        Create a :class:`LeastLikelyClassMethod` instance.

        :param classifier: A classifier with loss gradients (ART ``PyTorchClassifier``, ``TensorFlowV2Classifier``...).
        :param eps: l-inf budget, in input units (a number or an array broadcastable to the inputs).
        :param eps_step: Step size; ``None`` is one grey level, ``(clip_max - clip_min) / 255`` (needs ``clip_values``).
        :param max_iter: Number of iterations; ``None`` is ``min(eps_255 + 4, 1.25 * eps_255)`` with ``eps_255`` the
            budget on the 0-255 scale, or ART's BIM default of 100 without ``clip_values``.
        :param targeted: ``False``: the labels given to :meth:`generate` are not used, the target is the least-likely
            class (ART pipelines score the result as untargeted; ``AdversarialTrainer`` accepts the attack).
            ``True``: the labels given to :meth:`generate` are the targets (least-likely classes without labels), as
            in ART's targeted BIM; ``AutoAttack(targeted=True)`` sets it.
        :param batch_size: Number of samples per gradient computation.
        :param verbose: Show progress bars.
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
        :param y: With ``targeted=False``, not used (the target is the least-likely class of the model on `x`); it is
            accepted since ART pipelines pass true labels (e.g. ``AdversarialTrainer``). With ``targeted=True``, the
            target labels (indices or one-hot); ``None`` targets the least-likely classes.
        :param mask: Optional array broadcastable to `x` (or one per sample); features where it is zero are not
            perturbed.
        :return: Adversarial examples of the shape of `x`, float32.
        """
        x = check_inputs(self.estimator, x)
        mask = check_mask(x, kwargs.get("mask"))
        if y is not None and self.targeted:
            targets = check_labels(y, self.estimator.nb_classes, n=len(x))
        else:
            if y is not None:
                logger.info("LeastLikelyClassMethod ignores `y` (targeted=False): it targets the least-likely class.")
            targets = self.least_likely_class(x)
        one_hot = np.eye(self.estimator.nb_classes, dtype=ART_NUMPY_DTYPE)[targets]
        eps = self.eps if isinstance(self.eps, np.ndarray) else float(self.eps)
        eps_step = self.effective_eps_step
        per_sample = isinstance(eps, np.ndarray) and eps.ndim == x.ndim and eps.shape[0] == len(x) > 1
        # ART's BIM slices a per-sample `eps` by batch on some estimators only (not on its numpy path, which
        # KerasClassifier takes): with one `eps` row per sample, each batch gets its own attack.
        step = self.batch_size if per_sample else len(x)
        x_adv = np.empty_like(x)
        for start in range(0, len(x), step):
            stop = min(start + step, len(x))
            bim = BasicIterativeMethod(
                self.estimator,
                eps=batch_mask(eps, x, start, stop) if per_sample else eps,
                eps_step=batch_mask(eps_step, x, start, stop) if per_sample else eps_step,
                max_iter=self.effective_max_iter,
                targeted=True,
                batch_size=self.batch_size,
                verbose=self.verbose,
            )
            mask_batch = batch_mask(mask, x, start, stop) if per_sample else mask
            kwargs = {} if mask_batch is None else {"mask": mask_batch}
            x_adv[start:stop] = bim.generate(x[start:stop], y=one_hot[start:stop], **kwargs)
        return x_adv

    def _check_params(self) -> None:
        check_value_or_array(self.eps, "eps", array_allow_zero=True)
        if self.eps_step is not None:
            check_value_or_array(self.eps_step, "eps_step")
            check_same_kind(self.eps, self.eps_step)
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
