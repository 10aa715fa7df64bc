"""
The virtual adversarial direction (Miyato et al., TPAMI 2018), computed by autograd power iteration, and the ART
evasion attack built on it.

The math is written once against :mod:`art_ext.backend`; :class:`art_ext.defences.trainer.VirtualAdversarialTrainer`
reuses the functions of this module.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
from art.attacks.attack import EvasionAttack
from art.estimators.classification.classifier import ClassifierMixin
from art.estimators.estimator import BaseEstimator, LossGradientsMixin
from tqdm.auto import trange

from art_ext.backend import get_backend
from art_ext.utils.checks import check_finite, check_positive
from art_ext.utils.outputs import OUTPUT_KINDS, detect_output_kind, log_probabilities

logger = logging.getLogger(__name__)

__all__ = [
    "VirtualAdversarialPerturbation",
    "detect_output_kind",
    "kl_divergence_log_probs",
    "log_probabilities",
    "unit_direction",
    "virtual_adversarial_direction",
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


def _check_output_param(output: str) -> None:
    if output not in OUTPUT_KINDS:
        raise ValueError(f"`output` must be one of {OUTPUT_KINDS}, got {output!r}.")


class VirtualAdversarialPerturbation(EvasionAttack):
    """
    The virtual adversarial perturbation ``x + eps d`` of Miyato et al., with ``d`` the dominant eigenvector of the
    Hessian of ``KL(p(.|x) || p(.|x + r))`` found by autograd power iteration. A drop-in replacement for ART's
    ``VirtualAdversarialMethod``: it accepts its parameters, but works with logit and probability outputs and costs
    ``max_iter`` backward passes per batch instead of one forward pass per input dimension.

    | Paper link: https://arxiv.org/abs/1704.03976
    """

    attack_params = EvasionAttack.attack_params + [
        "eps",
        "xi",
        "max_iter",
        "finite_diff",
        "batch_size",
        "output",
        "random_state",
        "verbose",
    ]
    _estimator_requirements = (BaseEstimator, ClassifierMixin, LossGradientsMixin)

    def __init__(
        self,
        classifier: Any,
        eps: float = 0.1,
        xi: float = 1.0,
        max_iter: int = 1,
        finite_diff: float | None = None,
        batch_size: int = 128,
        output: str = "auto",
        random_state: int | np.random.Generator | None = None,
        verbose: bool = True,
    ) -> None:
        """
        :param classifier: A PyTorch or TensorFlow v2 ART classifier (logit or probability outputs).
        :param eps: l2 norm of the perturbation (ART's ``eps``).
        :param xi: Radius at which the power iteration probes the model, in input units. The papers' ``1e-6`` is
                   below float32 resolution; ``1.0`` is ART's implicit value (a unit random step) and works for
                   inputs of norm of a few units.
        :param max_iter: Number of power iterations (ART's name; the papers' ``K``).
        :param finite_diff: Accepted for compatibility with ART's ``VirtualAdversarialMethod`` and ignored: the
                            gradient comes from autograd, not from per-dimension finite differences.
        :param batch_size: Batch size.
        :param output: ``"logits"``, ``"probabilities"`` or ``"auto"`` (detected from the predictions).
        :param random_state: Seed or numpy ``Generator`` of the starting noise.
        :param verbose: Show a progress bar.
        """
        super().__init__(estimator=classifier)
        self.eps = eps
        self.xi = xi
        self.max_iter = max_iter
        self.finite_diff = finite_diff
        self.batch_size = batch_size
        self.output = output
        self.random_state = random_state
        self.verbose = verbose
        self._check_params()
        if getattr(classifier, "is_text_classifier", False):
            raise TypeError(
                "VirtualAdversarialPerturbation perturbs continuous inputs; for a text classifier use its embeddings "
                "with `classifier.adversarial_embeddings(x, eps)`."
            )
        self._ops = get_backend(classifier)
        self._rng = np.random.default_rng(random_state)

    def _check_params(self) -> None:
        check_positive(self.eps, "eps")
        check_positive(self.xi, "xi")
        check_positive(self.max_iter, "max_iter", integer=True)
        check_positive(self.batch_size, "batch_size", integer=True)
        if self.finite_diff is not None:
            check_positive(self.finite_diff, "finite_diff")
        _check_output_param(self.output)
        if not isinstance(self.verbose, bool):
            raise ValueError("`verbose` must be a bool.")

    def output_kind(self, x: np.ndarray) -> str:
        """The classifier's output kind, detected on a few inputs when ``output="auto"``."""
        if self.output != "auto":
            return self.output
        return detect_output_kind(self.estimator.predict(x[:32], batch_size=32))

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
        ops, est = self._ops, self.estimator
        device = ops.device_of(est)
        n_batches = int(np.ceil(len(x) / self.batch_size))
        for b in trange(n_batches, desc="VAP", disable=not self.verbose):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            z = ops.asarray(x[sl], device=device)

            def log_prob_fn(inputs):
                return log_probabilities(ops, ops.forward(est, inputs, training=False), kind)

            log_p = log_prob_fn(z)
            d = virtual_adversarial_direction(
                ops, log_prob_fn, z, log_p, self.xi, self.max_iter, self._rng, None, device
            )
            yield sl, ops.to_numpy(d)
