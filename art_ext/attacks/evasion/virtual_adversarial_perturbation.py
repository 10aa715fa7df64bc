"""
The virtual adversarial perturbation (Miyato et al., TPAMI 2018) as an ART evasion attack, a drop-in for ART's
``VirtualAdversarialMethod``: autograd power iteration on white-box classifiers, ART's finite differences on
query-only ones (``BlackBoxClassifier``).

The math lives in :mod:`art_ext.backend.virtual_adversarial` (shared with the trainer and the text classifiers); its
functions are re-exported here for compatibility.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from art.attacks.attack import EvasionAttack
from art.estimators.classification.classifier import ClassifierMixin
from art.estimators.estimator import BaseEstimator, LossGradientsMixin
from tqdm.auto import trange

from art_ext.attacks.evasion._fgsm_common import check_random_state, check_value, make_rng
from art_ext.backend import get_backend, is_query_only
from art_ext.backend.virtual_adversarial import (
    kl_divergence_log_probs,
    unit_direction,
    virtual_adversarial_direction,
    virtual_adversarial_direction_fd,
)
from art_ext.utils.checks import check_finite
from art_ext.utils.outputs import OUTPUT_KINDS, PROBE_SIZE, detect_output_kind, log_probabilities

logger = logging.getLogger(__name__)

__all__ = [
    "VirtualAdversarialPerturbation",
    "detect_output_kind",
    "kl_divergence_log_probs",
    "log_probabilities",
    "unit_direction",
    "virtual_adversarial_direction",
]


class VirtualAdversarialPerturbation(EvasionAttack):
    """
    The virtual adversarial perturbation ``x + eps d`` of Miyato et al., with ``d`` the dominant eigenvector of the
    Hessian of ``KL(p(.|x) || p(.|x + r))``. A drop-in for ART's ``VirtualAdversarialMethod``: same parameters in
    the same order with the same defaults (``classifier, max_iter, finite_diff, eps, batch_size, verbose``), then its
    own (``xi``, ``output``, ``random_state``).

    - On a classifier with loss gradients (PyTorch, TensorFlow v2, Keras) ``d`` is found by autograd power iteration:
      ``max_iter`` backward passes per batch, for logit and probability outputs; `finite_diff` is not used.
    - On a query-only classifier (ART's ``BlackBoxClassifier``) it runs ART's algorithm: forward differences of step
      `finite_diff` per input coordinate, ``len(x) * (1 + nb_features) * max_iter + len(x)`` predictions, counted in
      :attr:`queries_used`.

    | Paper link: https://arxiv.org/abs/1704.03976
    """

    attack_params = EvasionAttack.attack_params + [
        "max_iter",
        "finite_diff",
        "eps",
        "batch_size",
        "verbose",
        "xi",
        "output",
        "random_state",
    ]
    _estimator_requirements = (BaseEstimator, ClassifierMixin)

    def __init__(
        self,
        classifier: Any,
        max_iter: int = 10,
        finite_diff: float = 1e-6,
        eps: float = 0.1,
        batch_size: int = 1,
        verbose: bool = True,
        xi: float = 1.0,
        output: str = "auto",
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        """
        :param classifier: An ART classifier: PyTorch, TensorFlow v2 or Keras (logit or probability outputs), or a
                           query-only one such as ``BlackBoxClassifier`` (finite differences).
        :param max_iter: Number of power iterations (ART's name; the papers' ``K``).
        :param finite_diff: Step of the forward differences on query-only classifiers (ART's meaning); a positive
                            float. Unused with loss gradients (autograd).
        :param eps: l2 norm of the perturbation.
        :param batch_size: Batch size.
        :param verbose: Show a progress bar.
        :param xi: Radius at which the power iteration probes the model, in input units; ``1.0`` is ART's implicit
                   value (a unit step). The papers' ``1e-6`` is below float32 resolution.
        :param output: ``"logits"``, ``"probabilities"`` or ``"auto"`` (detected from the predictions).
        :param random_state: Seed or numpy ``Generator`` of the starting noise; ``set_params(random_state=...)``
                             restarts the noise from the new seed.
        """
        super().__init__(estimator=classifier)
        self.max_iter = max_iter
        self.finite_diff = finite_diff
        self.eps = eps
        self.batch_size = batch_size
        self.verbose = verbose
        self.xi = xi
        self.output = output
        self.random_state = random_state
        self._check_params()
        if getattr(classifier, "is_text_classifier", False):
            raise TypeError(
                "VirtualAdversarialPerturbation perturbs continuous inputs; for a text classifier use its embeddings "
                "with `classifier.adversarial_embeddings(x, eps)`."
            )
        self.query_only = is_query_only(classifier) or not isinstance(classifier, LossGradientsMixin)
        self._ops = None if self.query_only else get_backend(classifier)
        self._rng = make_rng(random_state)
        self._queries_used = 0

    @property
    def queries_used(self) -> int:
        """Inputs sent to the classifier's ``predict`` by the finite-difference path, over every :meth:`generate`."""
        return self._queries_used

    def set_params(self, **kwargs) -> None:
        """Set attack parameters as ART does; a new `random_state` restarts the noise from it."""
        super().set_params(**kwargs)
        if "random_state" in kwargs:
            self._rng = make_rng(self.random_state)

    def _check_params(self) -> None:
        check_value(self.max_iter, "max_iter", integer=True)
        check_value(self.eps, "eps")
        if isinstance(self.finite_diff, bool) or not isinstance(self.finite_diff, float) or self.finite_diff <= 0:
            raise ValueError(f"`finite_diff` must be a positive float (as in ART), got {self.finite_diff!r}.")
        check_value(self.batch_size, "batch_size", integer=True)
        if not isinstance(self.verbose, bool):
            raise ValueError(f"`verbose` must be a bool, got {self.verbose!r}.")
        check_value(self.xi, "xi")
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"`output` must be one of {OUTPUT_KINDS}, got {self.output!r}.")
        check_random_state(self.random_state)

    def output_kind(self, x: np.ndarray) -> str:
        """The classifier's output kind, detected on a few inputs when ``output="auto"``."""
        if self.output != "auto":
            return self.output
        return detect_output_kind(self._predict(x[:PROBE_SIZE]))

    def _predict(self, x: np.ndarray) -> np.ndarray:
        out = self.estimator.predict(x, batch_size=max(len(x), 1))
        if self.query_only:
            self._queries_used += len(x)
        return np.asarray(out)

    def direction(self, x: np.ndarray) -> np.ndarray:
        """
        The unit virtual adversarial direction of each input.

        :param x: Inputs of shape ``(nb_samples,) + input_shape``.
        :return: Directions of the same shape, unit l2 norm per sample.
        """
        x = self._check_x(x)
        return np.concatenate([d for _, d in self._directions(x, self.output_kind(x))], axis=0)

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> np.ndarray:
        """
        Perturb inputs along their virtual adversarial direction, ``x + eps d``, clipped to the classifier's
        ``clip_values``.

        :param x: Inputs of shape ``(nb_samples,) + input_shape``.
        :param y: Ignored: the perturbation is label-free (it uses the classifier's own predictions).
        :return: Adversarial examples, float32, of the shape of `x`.
        """
        x = self._check_x(x)
        x_adv = np.empty_like(x)
        for sl, d in self._directions(x, self.output_kind(x)):
            x_adv[sl] = x[sl] + self.eps * d
        if self.estimator.clip_values is not None:
            low, high = self.estimator.clip_values
            x_adv = np.clip(x_adv, low, high)
        return x_adv.astype(np.float32)

    def _check_x(self, x: np.ndarray) -> np.ndarray:
        x = check_finite(x, "x").astype(np.float32)
        shape = tuple(self.estimator.input_shape)
        if x.shape[1:] != shape:
            raise ValueError(f"`x` must have shape (nb_samples,) + {shape}, got {x.shape}.")
        return x

    def _directions(self, x: np.ndarray, kind: str):
        n_batches = int(np.ceil(len(x) / self.batch_size))
        for b in trange(n_batches, desc="VAP", disable=not self.verbose):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            if self.query_only:
                yield sl, self._direction_fd(x[sl], kind)
            else:
                yield sl, self._direction_autograd(x[sl], kind)

    def _direction_autograd(self, xb: np.ndarray, kind: str) -> np.ndarray:
        ops, est = self._ops, self.estimator
        device = ops.device_of(est)
        z = ops.asarray(xb, device=device)

        def log_prob_fn(inputs):
            return log_probabilities(ops, ops.forward(est, inputs, training=False), kind)

        d = virtual_adversarial_direction(ops, log_prob_fn, z, log_prob_fn(z), self.xi, self.max_iter, self._rng)
        return ops.to_numpy(d)

    def _direction_fd(self, xb: np.ndarray, kind: str) -> np.ndarray:
        shape = tuple(self.estimator.input_shape)

        def prob_fn(flat: np.ndarray) -> np.ndarray:
            out = self._predict(flat.reshape((-1,) + shape)).astype(np.float64)
            if kind == "logits":
                out = np.exp(out - out.max(axis=1, keepdims=True))
                out /= out.sum(axis=1, keepdims=True)
            return out

        flat = xb.reshape(len(xb), -1).astype(np.float64)
        d = virtual_adversarial_direction_fd(
            prob_fn, flat, prob_fn(flat.astype(np.float32)), self.xi, self.max_iter, self.finite_diff, self._rng
        )
        return d.reshape(xb.shape)
