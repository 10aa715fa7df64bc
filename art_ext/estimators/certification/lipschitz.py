"""
Sound l2 Lipschitz certification of ART classifiers (Lipschitz-margin certificates).

The classifier's model is read into its real computation graph (``torch.fx`` tracing for PyTorch, the functional
graph for Keras; :mod:`art_ext.estimators.certification.graph`), every node rebuilt from the extracted parameters.
Before any certificate the rebuilt graph is run and compared with the classifier's own output, on random inputs in
``clip_values`` when the graph is read and on the inputs of every :meth:`LipschitzCertifier.certify` call: a graph
that does not compute what the model computes (hooks, custom ``forward`` methods, reused modules read once...) is an
error, never a certificate. The bound arithmetic is written once:

* **Sound bounds** (used by :class:`LipschitzCertifier`), in float64 numpy: the exact largest singular value (SVD) of
  a dense layer; for a convolution, the exact spectral norm of the *circular* convolution on a grid of size
  ``n + dilation * (k - 1)`` per spatial axis, which dominates the zero-padded (and strided) convolution. Batch
  normalisation (eval) following a linear layer is folded into its weights; average pooling of any geometry is
  bounded by ``sqrt(max row sum * max column sum)``. Sums of branches add their bounds, concatenations take the root
  of the sum of squares. The result is multiplied by ``1 + float_tolerance`` and every margin is reduced by
  ``float_tolerance * (1 + max |logit|)`` to absorb float32 round-off.
* **Differentiable estimates** (used by :class:`~art_ext.defences.trainer.LipschitzMarginTrainer`): one
  power-iteration step per linear node with persistent vectors, following the same graph. Power iteration approaches
  the norm from below, so these are never used for a certificate.

The weights are fingerprinted when the bound is computed and again at every call: a certificate of a model that has
changed since is never issued (the graph and its bounds are recomputed).

| Paper link: https://arxiv.org/abs/1802.04034
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from art.estimators.classification.classifier import ClassGradientsMixin, ClassifierMixin
from art.estimators.estimator import BaseEstimator, LossGradientsMixin, NeuralNetworkMixin

from art_ext.backend import get_backend
from art_ext.estimators.certification.classifier_graph import (  # noqa: F401 (re-exported)
    build_graph,
    check_certifiable_classifier,
    fingerprint,
    preprocessing_affine,
    preprocessing_factor,
    verify_graph,
)
from art_ext.estimators.certification.graph import (
    LayerRecord,
    PowerIterationState,
    conv_spectral_bound,
    sound_layer_bound,
)
from art_ext.utils.checks import ArgumentTypeError

logger = logging.getLogger(__name__)

#: Rows per call of the rebuilt graph when certify checks it against the classifier's outputs.
CHECK_CHUNK = 128
#: On TensorFlow the check of a graph runs eagerly until it has checked more than this many chunks in all, then
#: compiled: its trace costs about what compiling saves on five chunks, so it is paid only once it pays off.
EAGER_CHUNKS = 4

__all__ = [
    "LayerRecord",
    "LipschitzCertifier",
    "PowerIterationState",
    "build_graph",
    "conv_spectral_bound",
    "sound_layer_bound",
]


# ---------------------------------------------------------------------------------------------------- certifier
class LipschitzCertifier(ClassGradientsMixin, ClassifierMixin, NeuralNetworkMixin, LossGradientsMixin, BaseEstimator):
    """
    Sound l2 robustness certificates from a guaranteed upper bound ``L`` of the logit map's Lipschitz constant: the
    prediction ``t`` at ``x`` cannot change under any perturbation with l2 norm below ``margin / (sqrt(2) L)``, with
    ``margin = f_t(x) - max_{j != t} f_j(x)``. When the logits are the output of a dense layer on flat features with
    rows ``w_i``, the tighter pairwise radius ``min_j (f_t - f_j) / (||w_t - w_j|| L_prev)`` is used, ``L_prev``
    bounding the graph before it.

    Like ART's certifiers (``PyTorchRandomizedSmoothing``, ``PyTorchIBPClassifier``, ``PytorchDeepZ``), it is an ART
    classifier that also certifies: ``predict``, ``fit``, ``loss_gradient``, ``class_gradient``, ``compute_loss``
    and ``get_activations`` are those of the wrapped classifier (whose preprocessing applies, once), so ART's attacks,
    trainers and metrics take it as they take the classifier, and :meth:`certify` returns ``(prediction, radius)``
    as ART's ``certify`` does. After ``fit`` (or any change of the weights) the bound is recomputed before the next
    certificate.

    The model's real computation graph is read (``torch.fx`` for PyTorch modules, the frozen graph for TorchScript
    models, scripted or traced, the functional graph for Keras), bounded node by node, and checked against the
    classifier's own outputs before any certificate. Certifiable: dense/linear (on any axis), 1-D and 2-D
    convolutions (any padding mode, stride, dilation, groups), transposed convolutions, nearest/bilinear upsampling
    and padding layers, weights under ``torch.nn.utils.parametrizations`` (the computed weight is bounded),
    batch normalisation in eval mode, ReLU/LeakyReLU/ELU/Tanh/Sigmoid/GELU/SiLU/Softplus, clamp/clip, abs,
    :class:`art_ext.models.GroupSort`/:class:`~art_ext.models.MaxMin`, max/average/adaptive/global pooling,
    flatten/view/reshape, dropout, sums and differences of branches (residual connections), concatenation, scaling
    by constants, :func:`art_ext.models.ResidualBlock`, and ART's mean/std preprocessing. Anything else
    (discontinuous or not globally Lipschitz operations such as LayerNorm, GroupNorm, products of branches or
    division by a norm, postprocessing defences, other preprocessing) raises a ``TypeError`` naming the node.

    | Paper link: https://arxiv.org/abs/1802.04034
    """

    estimator_params = (
        BaseEstimator.estimator_params
        + NeuralNetworkMixin.estimator_params
        + ClassifierMixin.estimator_params
        + ["pairwise", "float_tolerance", "check_fraction"]
    )

    def __init__(
        self, classifier: Any, pairwise: bool = True, float_tolerance: float = 1e-5, check_fraction: float = 0.1
    ) -> None:
        """
        :param classifier: ART ``PyTorchClassifier``, ``TensorFlowV2Classifier`` or ``KerasClassifier`` whose model
                           outputs logits.
        :param pairwise: Use the pairwise last-layer radius when the logits come from a dense layer.
        :param float_tolerance: Relative slack added to ``L`` and (times ``1 + max |logit|``) removed from margins,
                                to cover float32 round-off in the forward pass.
        :param check_fraction: Fraction of the inputs of each :meth:`certify` call (at least 64 of them, drawn at
                               random, rounded up to a multiple of 128 rows) on which the rebuilt graph is run and
                               compared with the classifier's outputs; 1.0 checks every input (twice the cost of a
                               prediction).
        """
        self.framework = check_certifiable_classifier(classifier)
        self.classifier = classifier
        # The wrapped classifier applies its own preprocessing (and defences): none is added here.
        super().__init__(
            model=classifier.model,
            clip_values=classifier.clip_values,
            channels_first=getattr(classifier, "channels_first", False),
            preprocessing_defences=None,
            postprocessing_defences=None,
            preprocessing=None,
        )
        self._nb_classes = classifier.nb_classes
        self._layer_names = getattr(classifier, "layer_names", None)
        self.pairwise = pairwise
        self.float_tolerance = float_tolerance
        self.check_fraction = check_fraction
        self._check_params()
        self._rng = np.random.default_rng(0)
        self.ops = get_backend(classifier)
        self._fingerprint = None
        self.refresh()

    def _check_params(self) -> None:
        super()._check_params()
        if not isinstance(self.pairwise, (bool, np.bool_)):
            raise ArgumentTypeError(f"`pairwise` must be a bool, got {self.pairwise!r}.")
        if isinstance(self.float_tolerance, bool) or not (
            isinstance(self.float_tolerance, (int, float)) and 0 <= self.float_tolerance < 0.1
        ):
            raise ValueError(f"`float_tolerance` must be in [0, 0.1), got {self.float_tolerance!r}.")
        if isinstance(self.check_fraction, bool) or not (
            isinstance(self.check_fraction, (int, float)) and 0 < self.check_fraction <= 1
        ):
            raise ValueError(f"`check_fraction` must be in (0, 1], got {self.check_fraction!r}.")
        self.float_tolerance = float(self.float_tolerance)
        self.check_fraction = float(self.check_fraction)

    # -------------------------------------------------------------- ART estimator interface (delegated)
    @property
    def input_shape(self) -> tuple[int, ...]:
        """The wrapped classifier's input shape."""
        return tuple(self.classifier.input_shape)

    @property
    def channels_first(self) -> bool:
        """Whether the wrapped classifier takes channels first."""
        return self._channels_first

    def fit(self, x: np.ndarray, y: np.ndarray, batch_size: int = 128, nb_epochs: int = 20, **kwargs) -> None:
        """
        Train the wrapped classifier (its own ``fit``); the bound is recomputed before the next certificate.

        :param x: Training inputs.
        :param y: Labels, one-hot or indices.
        :param batch_size: Batch size.
        :param nb_epochs: Epochs.
        """
        self.classifier.fit(x, y, batch_size=batch_size, nb_epochs=nb_epochs, **kwargs)

    def fit_generator(self, generator: Any, nb_epochs: int = 20, **kwargs) -> None:
        """Train the wrapped classifier on an ART ``DataGenerator``."""
        self.classifier.fit_generator(generator, nb_epochs=nb_epochs, **kwargs)

    def loss_gradient(self, x: np.ndarray, y: np.ndarray, **kwargs) -> np.ndarray:
        """The wrapped classifier's loss gradient with respect to `x`."""
        return self.classifier.loss_gradient(x, y, **kwargs)

    def class_gradient(self, x: np.ndarray, label: Any = None, **kwargs) -> np.ndarray:
        """The wrapped classifier's class gradients with respect to `x`."""
        return self.classifier.class_gradient(x, label=label, **kwargs)

    def compute_loss(self, x: np.ndarray, y: np.ndarray, **kwargs) -> np.ndarray:
        """The wrapped classifier's loss."""
        return self.classifier.compute_loss(x, y, **kwargs)

    def get_activations(self, x: np.ndarray, layer: int | str, batch_size: int = 128, framework: bool = False):
        """The wrapped classifier's activations at `layer`."""
        return self.classifier.get_activations(x, layer, batch_size=batch_size, framework=framework)

    def clone_for_refitting(self) -> LipschitzCertifier:
        """A certifier of the wrapped classifier's ``clone_for_refitting()``, with the same parameters."""
        return LipschitzCertifier(
            self.classifier.clone_for_refitting(),
            pairwise=self.pairwise,
            float_tolerance=self.float_tolerance,
            check_fraction=self.check_fraction,
        )

    # -------------------------------------------------------------- bounds
    def refresh(self) -> None:
        """Re-read the model and recompute the bounds (done automatically whenever the weights have changed)."""
        check_certifiable_classifier(self.classifier)
        self.graph = build_graph(self.classifier)
        self._bounds, self._table = self.graph.sound_bounds()
        self._fingerprint = fingerprint(self.classifier, self.framework)
        self._checked_chunks = 0  # chunks of inputs this graph was checked on (see EAGER_CHUNKS)

    def _current(self) -> None:
        """Recompute the graph and its bounds if the model changed since they were computed."""
        if fingerprint(self.classifier, self.framework) != self._fingerprint:
            logger.info("The classifier's weights changed since the bound was computed; recomputing it.")
            self.refresh()

    @property
    def records(self) -> list[LayerRecord]:
        """The nodes of the model's computation graph (topological order), as last read."""
        return self.graph.nodes

    def layer_bounds(self) -> list[tuple[str, float]]:
        """Sound per-node factors ``[(node, bound)]`` (batch norms folded into the layer before them)."""
        self._current()
        return list(self._table)

    def lipschitz_bound(self) -> float:
        """
        A guaranteed upper bound of the l2 Lipschitz constant of the logit map (input to logits), for the weights
        the model holds now.

        :return: ``L`` as a float.
        """
        self._current()
        return float(self._bounds[self.graph.output] * (1.0 + self.float_tolerance))

    def _pairwise_parts(self) -> tuple[np.ndarray, float] | None:
        last = self.graph.last_dense()
        if not self.pairwise or last is None:
            return None
        src, node = last
        w = np.asarray(node.weight, dtype=np.float64)
        diff = np.sqrt(((w[:, None, :] - w[None, :, :]) ** 2).sum(-1))
        return diff, self._bounds[src] * (1.0 + self.float_tolerance)

    # -------------------------------------------------------------- certificates
    def logits(self, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
        """Logits of the classifier in batches, as float64."""
        if len(x) == 0:
            return np.zeros((0, self.classifier.nb_classes))
        return np.asarray(self.classifier.predict(x, batch_size=batch_size), dtype=np.float64)

    def radii_from_logits(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """
        Predictions and certified radii from the classifier's logits ``(nb_samples, nb_classes)`` for the weights it
        holds now (prefer :meth:`certify`, which also checks the graph against the model on the inputs).
        """
        self._current()
        return self._radii(logits)

    def _radii(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits = np.asarray(logits, dtype=np.float64)
        pred = logits.argmax(1)
        rows = np.arange(len(logits))
        gaps = logits[rows, pred][:, None] - logits  # f_t - f_j
        slack = self.float_tolerance * (1.0 + np.abs(logits).max(1, initial=0.0))[:, None]
        gaps = np.maximum(gaps - slack, 0.0)
        parts = self._pairwise_parts()
        with np.errstate(divide="ignore", invalid="ignore"):
            if parts is not None:
                diff, l_prev = parts
                denom = diff[pred] * l_prev
                ratio = np.where(denom > 0, gaps / denom, np.where(gaps > 0, np.inf, 0.0))
            else:
                ratio = gaps / (math.sqrt(2.0) * self._bounds[self.graph.output] * (1.0 + self.float_tolerance))
        ratio[rows, pred] = np.inf
        radius = ratio.min(1) if logits.shape[1] > 1 else np.full(len(logits), np.inf)
        return pred, radius.astype(np.float32)

    def certify(self, x: np.ndarray, batch_size: int = 128, **kwargs) -> tuple[np.ndarray, np.ndarray]:
        """
        Predict and certify. The graph the bound was computed on is run on (a random ``check_fraction`` of) `x` and
        compared with the classifier's outputs first; a mismatch raises a ``TypeError`` instead of a certificate.

        :param x: Inputs ``(nb_samples, ...)`` in the classifier's input shape.
        :param batch_size: Batch size of the forward passes.
        :param n: Accepted for ART's randomized-smoothing call ``certify(x, n=...)``: the number of noise samples,
                  which a deterministic Lipschitz certificate does not use (any positive integer).
        :return: ``(prediction, radius)``: predicted classes ``(nb_samples,)`` and certified l2 radii
                 ``(nb_samples,)``; no perturbation with l2 norm below ``radius[i]`` changes ``prediction[i]``.
        """
        from art_ext.utils.checks import check_finite

        unknown = set(kwargs) - {"n"}
        if unknown:
            raise TypeError(f"certify() got unexpected keyword arguments {sorted(unknown)}.")
        n = kwargs.get("n")
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0):
            raise ValueError(f"`n` must be a positive integer, got {n!r}.")
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != tuple(self.classifier.input_shape):
            raise ValueError(f"`x` must have shape (nb_samples, {tuple(self.classifier.input_shape)}), got {x.shape}.")
        check_finite(x, "x")
        if not (isinstance(batch_size, int) and batch_size > 0):
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
        self._current()
        logits = self.logits(x, batch_size)
        # Checked in chunks of exactly CHECK_CHUNK rows (a short draw is padded by repeating rows), so that a
        # compiled graph is traced once.
        count = min(len(x), max(64, math.ceil(self.check_fraction * len(x))))
        chosen = np.sort(self._rng.choice(len(x), size=count, replace=False)) if count < len(x) else np.arange(len(x))
        chosen = np.resize(chosen, -(-count // CHECK_CHUNK) * CHECK_CHUNK)
        self._checked_chunks += len(chosen) // CHECK_CHUNK
        compiled = self._checked_chunks > EAGER_CHUNKS
        for i in range(0, len(chosen), CHECK_CHUNK):
            rows = chosen[i : i + CHECK_CHUNK]
            verify_graph(self.graph, self.classifier, x[rows], logits[rows], compiled=compiled)
        return self._radii(logits)

    def certified_accuracy(self, x: np.ndarray, y: np.ndarray, radius: float, batch_size: int = 128) -> float:
        """Fraction of inputs classified correctly with a certified radius of at least `radius`."""
        from art_ext.utils.checks import check_labels

        y = check_labels(y, self.classifier.nb_classes, len(x))
        pred, radii = self.certify(x, batch_size)
        return float(np.mean((pred == y) & (radii >= radius)))

    def predict(self, x: np.ndarray, batch_size: int = 128, **kwargs) -> np.ndarray:
        """
        The wrapped classifier's logits, float32 ``(nb_samples, nb_classes)``: the certified classifier is the
        classifier itself (no smoothing, unlike randomized smoothing).
        """
        return self.logits(np.asarray(x, dtype=np.float32), batch_size).astype(np.float32)
