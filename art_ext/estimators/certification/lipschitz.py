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

import contextlib
import hashlib
import logging
import math
from typing import Any

import numpy as np

from art_ext.backend import framework_of, get_backend
from art_ext.estimators.certification.graph import (
    LayerRecord,
    LipschitzGraph,
    PowerIterationState,
    conv_spectral_bound,
    sound_layer_bound,
)

logger = logging.getLogger(__name__)

#: Rows per call of the rebuilt graph when certify checks it against the classifier's outputs.
CHECK_CHUNK = 128

__all__ = [
    "LayerRecord",
    "LipschitzCertifier",
    "PowerIterationState",
    "build_graph",
    "conv_spectral_bound",
    "sound_layer_bound",
]


# ---------------------------------------------------------------------------------------------------- classifiers
def _check_classifier(classifier: Any) -> str:
    from art.estimators.classification.classifier import ClassifierMixin

    if not isinstance(classifier, ClassifierMixin):
        raise TypeError(
            "`classifier` must be an ART PyTorchClassifier, TensorFlowV2Classifier or KerasClassifier, got "
            f"{type(classifier).__name__}."
        )
    try:
        framework = framework_of(classifier)
    except TypeError as err:
        raise TypeError(f"`classifier`: {err}") from err
    if getattr(classifier, "postprocessing_defences", None):
        names = ", ".join(type(d).__name__ for d in classifier.postprocessing_defences)
        raise TypeError(
            f"`classifier` has postprocessing defences ({names}); a Lipschitz certificate bounds the logits, which "
            "these change. Certify the classifier without postprocessing_defences."
        )
    return framework


def _standardisation_types() -> tuple:
    from art.preprocessing.standardisation_mean_std.numpy import StandardisationMeanStd
    from art.preprocessing.standardisation_mean_std.pytorch import StandardisationMeanStdPyTorch
    from art.preprocessing.standardisation_mean_std.tensorflow import StandardisationMeanStdTensorFlow

    return StandardisationMeanStd, StandardisationMeanStdPyTorch, StandardisationMeanStdTensorFlow


def preprocessing_affine(classifier: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """
    ART's predict-time preprocessing as an element-wise affine map ``x * a + b`` (``None`` for the identity).

    Only ART's mean/std standardisation is accepted (preprocessors applied at fit time only are ignored, as ART's
    predict ignores them); anything else raises a ``TypeError``.
    """
    kinds = _standardisation_types()
    ops_used = []
    for op in getattr(classifier, "preprocessing_operations", None) or []:
        if type(op) in kinds:
            std = np.asarray(op.std, dtype=np.float64)
            if np.any(std == 0):
                raise ValueError("`classifier` preprocessing has a zero standard deviation.")
            ops_used.append(op)
        elif getattr(op, "apply_predict", True):
            raise TypeError(
                f"`classifier` has preprocessing {type(op).__name__} applied at predict time, whose Lipschitz constant "
                "is unknown; only ART's mean/std standardisation can be certified."
            )
    if not ops_used:
        return None
    shape = (1,) + tuple(classifier.input_shape)
    zero, one = np.zeros(shape, dtype=np.float32), np.ones(shape, dtype=np.float32)
    for op in ops_used:
        zero, one = op(zero)[0], op(one)[0]
    zero, one = np.asarray(zero, dtype=np.float64), np.asarray(one, dtype=np.float64)
    return one - zero, zero


def preprocessing_factor(classifier: Any) -> float:
    """Lipschitz constant of ART's preprocessing: ``1 / min |std|`` for mean/std standardisation, else an error."""
    affine = preprocessing_affine(classifier)
    return 1.0 if affine is None else float(np.max(np.abs(affine[0])))


@contextlib.contextmanager
def no_grad(framework: str):
    """No autograd bookkeeping for evaluation-only forward passes."""
    if framework == "pytorch":
        import torch

        with torch.no_grad():
            yield
    else:
        yield


def fingerprint(classifier: Any, framework: str) -> str:
    """A digest of the model's parameters and buffers (values and identities) and of its preprocessing."""
    digest = hashlib.blake2b(digest_size=16)
    if framework == "pytorch":
        for name, tensor in classifier.model.state_dict(keep_vars=True).items():
            digest.update(f"{name}:{id(tensor)}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    else:
        for weight in classifier.model.weights:
            digest.update(f"{weight.path}:{id(weight)}:{tuple(weight.shape)}".encode())
            digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    for op in getattr(classifier, "preprocessing_operations", None) or []:
        digest.update(repr((type(op).__name__, getattr(op, "mean", None), getattr(op, "std", None))).encode())
    digest.update(repr([type(d).__name__ for d in getattr(classifier, "postprocessing_defences", None) or []]).encode())
    return digest.hexdigest()


def _probe_inputs(classifier: Any, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n,) + tuple(classifier.input_shape)
    clip = getattr(classifier, "clip_values", None)
    if clip is None:
        return rng.standard_normal(shape).astype(np.float32)
    low, high = (np.broadcast_to(np.asarray(v, dtype=np.float32), shape[1:]) for v in clip)
    return (low + (high - low) * rng.uniform(0, 1, size=shape)).astype(np.float32)


def build_graph(classifier: Any, check: bool = True) -> LipschitzGraph:
    """
    Read an ART classifier's model (and its mean/std preprocessing) into a verified :class:`LipschitzGraph`.

    :param classifier: ART ``PyTorchClassifier``, ``TensorFlowV2Classifier`` or ``KerasClassifier``.
    :param check: Compare the rebuilt graph with the classifier's own output on random inputs in ``clip_values``.
    :raises TypeError: When a node cannot be bounded or the rebuilt graph does not compute what the model computes.
    """
    framework = _check_classifier(classifier)
    ops = get_backend(framework)
    nodes = [LayerRecord(kind="input", name="input")]
    affine = preprocessing_affine(classifier)
    if affine is not None:
        a, b = affine
        a_t, b_t = (
            ops.asarray(a[0], device=ops.device_of(classifier)),
            ops.asarray(b[0], device=ops.device_of(classifier)),
        )
        nodes.append(
            LayerRecord(
                kind="constant",
                name="preprocessing (mean/std)",
                inputs=(0,),
                forward=lambda x: x * a_t + b_t,
                factor=float(np.max(np.abs(a))),
                note="preprocessing",
            )
        )
    if framework == "pytorch":
        from art_ext.estimators.certification.torch_graph import read_torch

        output = read_torch(classifier.model, nodes, ops)
    else:
        from art_ext.estimators.certification.keras_graph import read_keras

        output = read_keras(classifier.model, nodes, ops)
    graph = LipschitzGraph(nodes, output)
    with no_grad(framework):
        graph.run(ops.asarray(_probe_inputs(classifier, 2, 1), device=ops.device_of(classifier)), record_shapes=True)
    out_shape = nodes[output].out_shape
    if out_shape != (classifier.nb_classes,):
        raise TypeError(
            f"The model outputs per-sample shape {out_shape}, not (nb_classes,) = ({classifier.nb_classes},): logits "
            "must be one flat row per sample (a dense layer on a non-flat tensor keeps its leading axes; flatten first)."
        )
    for node in nodes:
        if node.factor_fn is not None:
            node.factor = float(node.factor_fn(node))
    if check:
        x = _probe_inputs(classifier, 4, 2)
        verify_graph(graph, classifier, x, np.asarray(classifier.predict(x), dtype=np.float64))
    return graph


def verify_graph(
    graph: LipschitzGraph, classifier: Any, x: np.ndarray, logits: np.ndarray, tol: float = 1e-4, compiled: bool = False
) -> None:
    """
    Raise a ``TypeError`` unless the rebuilt graph reproduces `logits` (the classifier's own outputs on `x`).

    :param compiled: On TensorFlow, run the graph as one ``tf.function`` (traced once per input shape).
    """
    framework = framework_of(classifier)
    ops = get_backend(framework)
    run = graph.run
    if compiled and framework == "tensorflow":
        if getattr(graph, "_tf_run", None) is None:
            import tensorflow as tf

            graph._tf_run = tf.function(graph.run)
        run = graph._tf_run
    with no_grad(framework):
        rebuilt = np.asarray(ops.to_numpy(run(ops.asarray(x, device=ops.device_of(classifier)))), np.float64)
    scale = 1.0 + np.abs(logits).max(initial=0.0)
    if rebuilt.shape != logits.shape or not np.all(np.abs(rebuilt - logits) <= tol * scale):
        gap = float(np.abs(rebuilt - logits).max()) if rebuilt.shape == logits.shape else float("nan")
        raise TypeError(
            f"The computation graph read from {type(classifier.model).__name__} does not reproduce the classifier's "
            f"outputs (shape {rebuilt.shape} vs {logits.shape}, largest difference {gap:.3g}): the model computes "
            "something its layers do not show (a forward hook, a layer subclass with its own forward, a patched "
            "method?). Remove it, or express it with certifiable layers."
        )


# ---------------------------------------------------------------------------------------------------- certifier
class LipschitzCertifier:
    """
    Sound l2 robustness certificates from a guaranteed upper bound ``L`` of the logit map's Lipschitz constant: the
    prediction ``t`` at ``x`` cannot change under any perturbation with l2 norm below ``margin / (sqrt(2) L)``, with
    ``margin = f_t(x) - max_{j != t} f_j(x)``. When the logits are the output of a dense layer on flat features with
    rows ``w_i``, the tighter pairwise radius ``min_j (f_t - f_j) / (||w_t - w_j|| L_prev)`` is used, ``L_prev``
    bounding the graph before it.

    The model's real computation graph is read (``torch.fx`` for PyTorch, the functional graph for Keras), bounded
    node by node, and checked against the classifier's own outputs before any certificate. Certifiable: dense/linear
    (on any axis), 2-D convolutions (zero padding, stride, dilation, groups), batch normalisation in eval mode,
    ReLU/LeakyReLU/ELU/Tanh/Sigmoid/GELU/SiLU/Softplus, max/average/adaptive/global pooling, flatten/view/reshape,
    dropout, sums and differences of branches (residual connections), concatenation, scaling by constants,
    :func:`art_ext.models.ResidualBlock`, and ART's mean/std preprocessing. Anything else (discontinuous or
    non-Lipschitz operations, postprocessing defences, other preprocessing) raises a ``TypeError`` naming it.

    | Paper link: https://arxiv.org/abs/1802.04034
    """

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
        self.framework = _check_classifier(classifier)
        if not isinstance(pairwise, bool):
            raise TypeError("`pairwise` must be a bool.")
        if not (isinstance(float_tolerance, (int, float)) and 0 <= float_tolerance < 0.1):
            raise ValueError(f"`float_tolerance` must be in [0, 0.1), got {float_tolerance!r}.")
        if not (isinstance(check_fraction, (int, float)) and 0 < check_fraction <= 1):
            raise ValueError(f"`check_fraction` must be in (0, 1], got {check_fraction!r}.")
        self.classifier = classifier
        self.check_fraction = float(check_fraction)
        self._rng = np.random.default_rng(0)
        self.pairwise = pairwise
        self.float_tolerance = float(float_tolerance)
        self.ops = get_backend(classifier)
        self._fingerprint = None
        self.refresh()

    # -------------------------------------------------------------- bounds
    def refresh(self) -> None:
        """Re-read the model and recompute the bounds (done automatically whenever the weights have changed)."""
        _check_classifier(self.classifier)
        self.graph = build_graph(self.classifier)
        self._bounds, self._table = self.graph.sound_bounds()
        self._fingerprint = fingerprint(self.classifier, self.framework)

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

    def certify(self, x: np.ndarray, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
        """
        Predict and certify. The graph the bound was computed on is run on (a random ``check_fraction`` of) `x` and
        compared with the classifier's outputs first; a mismatch raises a ``TypeError`` instead of a certificate.

        :param x: Inputs ``(nb_samples, ...)`` in the classifier's input shape.
        :param batch_size: Batch size of the forward passes.
        :return: ``(prediction, radius)``: predicted classes ``(nb_samples,)`` and certified l2 radii
                 ``(nb_samples,)``; no perturbation with l2 norm below ``radius[i]`` changes ``prediction[i]``.
        """
        from art_ext.utils.checks import check_finite

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
        for i in range(0, len(chosen), CHECK_CHUNK):
            rows = chosen[i : i + CHECK_CHUNK]
            verify_graph(self.graph, self.classifier, x[rows], logits[rows], compiled=True)
        return self._radii(logits)

    def certified_accuracy(self, x: np.ndarray, y: np.ndarray, radius: float, batch_size: int = 128) -> float:
        """Fraction of inputs classified correctly with a certified radius of at least `radius`."""
        from art_ext.utils.checks import check_labels

        y = check_labels(y, self.classifier.nb_classes, len(x))
        pred, radii = self.certify(x, batch_size)
        return float(np.mean((pred == y) & (radii >= radius)))

    def predict(self, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
        """The classifier's logits (float32)."""
        return self.logits(np.asarray(x, dtype=np.float32), batch_size).astype(np.float32)
