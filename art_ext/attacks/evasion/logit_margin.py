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

from art_ext.attacks.evasion._fgsm_common import (
    batch_mask,
    check_broadcastable,
    check_mask,
    check_random_state,
    check_same_kind,
    check_value,
    check_value_or_array,
    make_rng,
    resolve_estimator,
)
from art_ext.backend import get_backend
from art_ext.utils.checks import check_clip_values, check_finite, check_flag, check_labels, check_sample_shape
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

    As ART's ``ProjectedGradientDescent``: untargeted by default (away from the labels `y`, or from the model's
    predictions without `y`); ``targeted=True`` moves towards the target labels `y` (the margin
    ``max_{j != t} z_j - z_t`` is minimised); ``mask`` leaves the features where it is zero untouched; with
    ``norm=np.inf``, `eps` and `eps_step` may be arrays broadcastable to the inputs (per feature, or per sample).

    | Paper link: https://arxiv.org/abs/1608.04644
    """

    attack_params = EvasionAttack.attack_params + [
        "norm",
        "eps",
        "eps_step",
        "max_iter",
        "targeted",
        "num_random_init",
        "output",
        "batch_size",
        "verbose",
    ]
    _estimator_requirements = (BaseEstimator, LossGradientsMixin, ClassifierMixin)

    def __init__(
        self,
        classifier: Any = None,
        norm: Any = np.inf,
        eps: float | np.ndarray = 0.3,
        eps_step: float | np.ndarray | None = None,
        max_iter: int = 10,
        targeted: bool = False,
        num_random_init: int = 0,
        output: str = "auto",
        batch_size: int = 128,
        verbose: bool = False,
        *,
        estimator: Any = None,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        """
        Create a :class:`LogitMarginAttack`.

        :param classifier: ART ``PyTorchClassifier``, ``TensorFlowV2Classifier`` or ``KerasClassifier`` (logits or
            probabilities).
        :param norm: ``np.inf`` or ``2``.
        :param eps: Budget, in input units: a number, or (``norm=np.inf``) an array broadcastable to the inputs.
        :param eps_step: Step size (default: `eps` for one step, ``2.5 * eps / max_iter`` otherwise, as ART's PGD);
            a number, or an array of the shape of `eps` when `eps` is one.
        :param max_iter: Gradient steps (1 = FGSM with step `eps`).
        :param targeted: Move towards the labels `y` given to :meth:`generate` (required) instead of away from them.
        :param num_random_init: As in ART's PGD: ``0`` starts at `x`; ``k > 0`` starts ``k`` times at a random point
            of the `eps` ball (uniform in l-inf, uniform direction and radius in l2; masked features stay) and keeps,
            per input, the end point of the most adversarial margin.
        :param output: ``"auto"``, ``"logits"`` or ``"probabilities"``: what the classifier outputs.
        :param batch_size: Batch size.
        :param verbose: Log each batch.
        :param estimator: The classifier under ART's name (``ProjectedGradientDescent(estimator=...)``); give either
            `classifier` or `estimator`.
        :param random_state: Seed (int) or numpy ``Generator`` of the random starts.
        """
        super().__init__(estimator=resolve_estimator(classifier, estimator))
        self.norm = norm
        self.eps = eps
        self.eps_step = eps_step
        self.max_iter = max_iter
        self._targeted = targeted
        self.num_random_init = num_random_init
        self.random_state = random_state
        self.output = output
        self.batch_size = batch_size
        self.verbose = verbose
        self._check_params()

    def _check_params(self) -> None:
        self.norm = norm_value(self.norm)
        check_value_or_array(self.eps, "eps", array_allow_zero=True)
        if self.eps_step is not None:
            check_value_or_array(self.eps_step, "eps_step")
            check_same_kind(self.eps, self.eps_step)
        if self.norm != np.inf and isinstance(self.eps, np.ndarray):
            raise ValueError("Per-feature `eps` arrays need `norm=np.inf`; pass a number as `eps` for norm 2.")
        check_value(self.max_iter, "max_iter", integer=True)
        check_flag(self.targeted, "targeted")
        check_value(self.num_random_init, "num_random_init", integer=True, allow_zero=True)
        check_random_state(self.random_state)
        check_value(self.batch_size, "batch_size", integer=True)
        check_output_kind(self.output)
        check_flag(self.verbose, "verbose")

    def _budget(self) -> tuple[Any, Any]:
        """`eps` and the step size used (numbers or float32 arrays)."""
        steps = int(self.max_iter)
        eps = self.eps.astype(np.float32) if isinstance(self.eps, np.ndarray) else float(self.eps)
        if self.eps_step is None:
            step = eps if steps == 1 else 2.5 * eps / steps
        else:
            step = self.eps_step.astype(np.float32) if isinstance(self.eps_step, np.ndarray) else float(self.eps_step)
        return eps, step

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> np.ndarray:
        """
        Generate adversarial examples.

        :param x: Inputs ``(nb_samples, ...)`` matching the classifier's input shape.
        :param y: Labels, indices ``(nb_samples,)`` or one-hot: the true labels (untargeted; ``None`` uses the
            classifier's predictions) or the target labels (``targeted=True``, required).
        :param mask: Optional array broadcastable to `x` (or one per sample); features where it is zero are not
            perturbed, as in ART.
        :return: Adversarial examples, float32, of the shape of `x`.
        """
        classifier = self.estimator
        x = check_finite(x, "x").astype(np.float32)
        check_sample_shape(x, classifier.input_shape)
        check_clip_values(x, classifier.clip_values)
        mask = check_mask(x, kwargs.get("mask"))
        eps, step = self._budget()
        check_broadcastable(eps, x, "eps")
        check_broadcastable(step, x, "eps_step")
        if y is None:
            if self.targeted:
                raise ValueError("Target labels `y` need to be provided for a targeted attack.")
            labels = predict_in_batches(classifier, x, self.batch_size).argmax(axis=1)
        else:
            labels = check_labels(y, classifier.nb_classes, n=len(x))
        ops = get_backend(classifier)
        device = ops.device_of(classifier)
        output = output_kind_of(classifier, x, self.output)
        # Untargeted: ascend the margin of the true class; targeted: descend the margin of the target class.
        direction = -1.0 if self.targeted else 1.0
        rng = make_rng(self.random_state)
        out = np.empty_like(x)
        for start in range(0, len(x), self.batch_size):
            stop = min(start + self.batch_size, len(x))
            x0 = ops.asarray(x[start:stop], device=device)
            onehot = ops.one_hot(ops.asarray(labels[start:stop], dtype="int64", device=device), classifier.nb_classes)
            batch_eps = _tensor(ops, batch_mask(eps, x, start, stop), device)
            batch_step = _tensor(ops, batch_mask(step, x, start, stop), device)
            batch_keep = _tensor(ops, _keep(batch_mask(mask, x, start, stop)), device)

            def per_sample_margin(xa, onehot=onehot):
                z = logits_from_outputs(ops, ops.forward(classifier, xa), output)
                return (ops.max(z - onehot * 1e9, axis=1) - ops.sum(z * onehot, axis=1)) * direction

            def margin(xa, per_sample_margin=per_sample_margin):
                return ops.sum(per_sample_margin(xa))

            best, best_score = None, None
            for _ in range(max(1, int(self.num_random_init))):
                x_adv = x0 if self.num_random_init == 0 else self._random_start(ops, x0, batch_eps, batch_keep, rng)
                x_adv = self._iterate(ops, margin, x0, x_adv, batch_eps, batch_step, batch_keep)
                if self.num_random_init <= 1:
                    best = x_adv
                    continue
                score = ops.to_numpy(per_sample_margin(x_adv))
                if best is None:
                    best, best_score = ops.to_numpy(x_adv), score
                else:
                    better = score > best_score
                    best[better], best_score[better] = ops.to_numpy(x_adv)[better], score[better]
            out[start:stop] = best if isinstance(best, np.ndarray) else ops.to_numpy(best)
            if self.verbose:
                logger.info("Logit-margin attack: %d / %d inputs", stop, len(x))
        return out

    def _random_start(self, ops: Any, x0: Any, eps: Any, keep: Any, rng: np.random.Generator) -> Any:
        """A random point of the `eps` ball around `x0` (masked features kept), inside the clip values."""
        shape = tuple(ops.shape(x0))
        device = ops.device_of(self.estimator)
        if self.norm == np.inf:
            noise = ops.asarray(rng.uniform(-1.0, 1.0, size=shape).astype(np.float32), device=device)
            noise = noise * eps
        else:
            direction = rng.standard_normal(size=shape).reshape(shape[0], -1)
            direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-12
            radius = rng.uniform(0.0, 1.0, size=(shape[0], 1)) ** (1.0 / direction.shape[1])
            noise = ops.asarray((direction * radius).reshape(shape).astype(np.float32), device=device)
            noise = noise * eps
        if keep is not None:
            noise = noise * keep
        x_start = x0 + noise
        clip = self.estimator.clip_values
        return x_start if clip is None else ops.clip(x_start, clip[0], clip[1])

    def _iterate(self, ops: Any, margin: Any, x0: Any, x_adv: Any, eps: Any, step: Any, keep: Any) -> Any:
        """`max_iter` projected gradient steps on the margin from `x_adv`."""
        clip = self.estimator.clip_values
        for _ in range(int(self.max_iter)):
            _, (grad,) = ops.value_and_grad(margin, [x_adv])
            if keep is not None:
                grad = grad * keep
            if self.norm == np.inf:
                x_adv = ops.clip(x_adv + step * ops.sign(grad), x0 - eps, x0 + eps)
            else:
                x_adv = x_adv + step * ops.l2_normalize(grad)
                delta = x_adv - x0
                scale = ops.minimum(eps / ops.per_sample_norm(delta, keepdims=True), 1.0)
                x_adv = x0 + delta * scale
            if clip is not None:
                x_adv = ops.clip(x_adv, clip[0], clip[1])
            x_adv = ops.stop_gradient(x_adv)
        return x_adv


def _keep(mask: np.ndarray | None) -> np.ndarray | None:
    """1 where a feature may be perturbed, 0 where ``mask`` is zero (ART's convention)."""
    return None if mask is None else (np.asarray(mask) != 0).astype(np.float32)


def _tensor(ops: Any, value: Any, device: Any) -> Any:
    """Arrays become tensors on the device; numbers and ``None`` stay as they are."""
    if isinstance(value, np.ndarray):
        return ops.asarray(value.astype(np.float32), device=device)
    return value
