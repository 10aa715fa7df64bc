"""
Sound l2 Lipschitz certification of ART classifiers (Lipschitz-margin certificates).

The classifier's model is read into a framework-agnostic list of :class:`LayerRecord` (thin adapters in
:mod:`art_ext.estimators.certification.lipschitz_layers`); the bound arithmetic below is written once.

Two kinds of per-layer bound are computed from those records:

* **Sound bounds** (used by :class:`LipschitzCertifier`), in float64 numpy: the exact largest singular value (SVD) of
  a dense layer; for a convolution, the exact spectral norm of the *circular* convolution on a grid of size
  ``n + dilation * (k - 1)`` per spatial axis, i.e. the largest singular value over all frequencies of the
  ``c_out x c_in`` DFT blocks of the kernel. The zero-padded (and strided) convolution equals a coordinate
  restriction of that circular operator, so its norm is never larger. Batch normalisation (eval) following a
  linear layer is folded into its weights. The product is multiplied by ``1 + float_tolerance`` and every margin is
  reduced by ``float_tolerance * (1 + max |logit|)`` to absorb the float32 round-off of the network's own forward
  pass.
* **Differentiable estimates** (used by :class:`~art_ext.defences.trainer.LipschitzMarginTrainer`): one
  power-iteration step per linear layer with persistent vectors, written against :mod:`art_ext.backend`. Power
  iteration approaches the norm from below, so these are never used for a certificate.

| Paper link: https://arxiv.org/abs/1802.04034
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from art_ext.backend import framework_of, get_backend

logger = logging.getLogger(__name__)

__all__ = ["LayerRecord", "LipschitzCertifier", "conv_spectral_bound", "sound_layer_bound"]


@dataclass
class LayerRecord:
    """
    One layer of a model as the bound arithmetic sees it.

    ``kind`` is one of:

    * ``"dense"``: ``weight`` of shape ``(out, in)``; ``apply`` maps a batch to the bias-free output.
    * ``"conv"``: ``weight`` of shape ``(c_out, c_in / groups, kh, kw)``, ``in_spatial``, ``dilation``, ``groups``.
    * ``"bn"``: batch normalisation in eval mode; ``scale`` is ``gamma / sqrt(var + eps)`` per channel and
      ``scale_fn`` returns it as a framework tensor (for training).
    * ``"constant"``: a non-linear or parameter-free layer with Lipschitz constant ``factor`` (activations,
      pooling, flatten, dropout...).
    * ``"residual"``: ``branches`` is a list of record lists whose outputs are summed.
    """

    kind: str
    name: str
    weight: np.ndarray | None = None
    in_shape: tuple[int, ...] = ()
    in_spatial: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    apply: Callable[[Any], Any] | None = None
    weight_fn: Callable[[], Any] | None = None
    scale: np.ndarray | None = None
    scale_fn: Callable[[], Any] | None = None
    factor: float = 1.0
    note: str = ""
    branches: list[list[LayerRecord]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------- sound bounds
def conv_spectral_bound(weight: np.ndarray, in_spatial: tuple[int, int], dilation=(1, 1), groups: int = 1) -> float:
    """
    Guaranteed upper bound of the l2 operator norm of a 2-D convolution (any zero padding, any stride).

    :param weight: Kernel ``(c_out, c_in / groups, kh, kw)``.
    :param in_spatial: Input height and width.
    :param dilation: Kernel dilation.
    :param groups: Number of groups (the operator is block diagonal over groups).
    :return: The exact norm of the circular convolution on a ``(h + dh (kh - 1)) x (w + dw (kw - 1))`` grid.
    """
    weight = np.asarray(weight, dtype=np.float64)
    c_out, c_in_g, kh, kw = weight.shape
    keh, kew = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    grid = (int(in_spatial[0]) + keh - 1, int(in_spatial[1]) + kew - 1)
    dilated = np.zeros((c_out, c_in_g, keh, kew))
    dilated[:, :, :: dilation[0], :: dilation[1]] = weight
    best = 0.0
    per_group = c_out // groups
    for g in range(groups):
        spectrum = np.fft.fft2(dilated[g * per_group : (g + 1) * per_group], s=grid, axes=(2, 3))
        blocks = spectrum.transpose(2, 3, 0, 1)  # (grid_h, grid_w, c_out, c_in)
        best = max(best, float(np.linalg.svd(blocks, compute_uv=False).max()))
    return best


def sound_layer_bound(record: LayerRecord) -> float:
    """Guaranteed upper bound of one record's l2 Lipschitz constant (float64)."""
    if record.kind == "dense":
        return float(np.linalg.norm(np.asarray(record.weight, dtype=np.float64), 2))
    if record.kind == "conv":
        return conv_spectral_bound(record.weight, record.in_spatial, record.dilation, record.groups)
    if record.kind == "bn":
        return float(np.max(np.abs(record.scale)))
    if record.kind == "constant":
        return float(record.factor)
    if record.kind == "residual":
        return float(sum(sound_chain_bound(branch)[0] for branch in record.branches))
    raise ValueError(f"Unknown layer record kind {record.kind!r} ({record.name}).")


def _fold_batchnorm(records: list[LayerRecord]) -> list[LayerRecord]:
    """Fold an eval-mode batch norm into the dense/conv layer right before it (a tighter bound than a product)."""
    folded: list[LayerRecord] = []
    for record in records:
        prev = folded[-1] if folded else None
        if record.kind == "bn" and prev is not None and prev.kind in ("dense", "conv") and prev.weight is not None:
            scale = np.asarray(record.scale, dtype=np.float64)
            if scale.size == prev.weight.shape[0]:
                shape = (-1,) + (1,) * (prev.weight.ndim - 1)
                folded[-1] = LayerRecord(
                    **{
                        **prev.__dict__,
                        "weight": prev.weight * scale.reshape(shape),
                        "name": f"{prev.name}+{record.name}",
                    }
                )
                continue
        folded.append(record)
    return folded


def sound_chain_bound(records: list[LayerRecord]) -> tuple[float, list[tuple[str, float]]]:
    """Product of the sound per-layer bounds of a chain, and the per-layer table ``[(name, bound)]``."""
    total, table = 1.0, []
    for record in _fold_batchnorm(records):
        bound = sound_layer_bound(record)
        table.append((record.name, bound))
        total *= bound
    return total, table


# ---------------------------------------------------------------------------------------------------- training
class PowerIterationState:
    """Persistent power-iteration vectors, one per linear layer, for the differentiable Lipschitz estimate."""

    def __init__(self, ops: Any, rng: np.random.Generator) -> None:
        self.ops = ops
        self.rng = rng
        self.vectors: dict[int, Any] = {}

    def spectral_norm(self, record: LayerRecord) -> Any:
        """One power-iteration step on ``record.apply``; returns ``u^T A v`` (differentiable in the weights)."""
        ops = self.ops
        key = id(record)
        if key not in self.vectors:
            self.vectors[key] = ops.l2_normalize(ops.random_normal((1,) + tuple(record.in_shape), self.rng))
        v = self.vectors[key]
        u = ops.stop_gradient(ops.l2_normalize(record.apply(v)))
        _, (grad,) = ops.value_and_grad(lambda t: ops.sum(record.apply(t) * u), [v])
        v = ops.stop_gradient(ops.l2_normalize(grad))
        self.vectors[key] = v
        u = ops.stop_gradient(ops.l2_normalize(record.apply(v)))
        return ops.sum(u * record.apply(v))


def estimate_chain_bound(records: list[LayerRecord], state: PowerIterationState) -> Any:
    """Differentiable product of per-layer estimates (power iteration for linear layers)."""
    ops = state.ops
    total = None
    for record in records:
        if record.kind in ("dense", "conv"):
            factor = state.spectral_norm(record)
        elif record.kind == "bn":
            factor = ops.max(ops.abs(record.scale_fn()))
        elif record.kind == "residual":
            branches = [estimate_chain_bound(branch, state) for branch in record.branches]
            factor = branches[0]
            for other in branches[1:]:
                factor = factor + other
        else:
            if record.factor == 1.0:
                continue
            factor = record.factor
        total = factor if total is None else total * factor
    return 1.0 if total is None else total


# ---------------------------------------------------------------------------------------------------- model parsing
def _check_classifier(classifier: Any) -> str:
    from art.estimators.classification.classifier import ClassifierMixin

    if not isinstance(classifier, ClassifierMixin):
        raise TypeError(
            f"`classifier` must be an ART PyTorchClassifier or TensorFlowV2Classifier, got {type(classifier).__name__}."
        )
    try:
        return framework_of(classifier)
    except TypeError as err:
        raise TypeError(f"`classifier`: {err}") from err


def preprocessing_factor(classifier: Any) -> float:
    """Lipschitz constant of ART's preprocessing: ``1 / min |std|`` for mean/std standardisation, else an error."""
    factor = 1.0
    for op in getattr(classifier, "preprocessing_operations", None) or []:
        name = type(op).__name__
        if name.startswith("StandardisationMeanStd"):
            std = np.abs(np.asarray(op.std, dtype=np.float64))
            if np.any(std == 0):
                raise ValueError("`classifier` preprocessing has a zero standard deviation.")
            factor /= float(std.min())
        else:
            raise TypeError(
                f"`classifier` has preprocessing {name}, whose Lipschitz constant is unknown; only ART's mean/std "
                "standardisation is supported."
            )
    return factor


def parse_classifier(classifier: Any) -> list[LayerRecord]:
    """Layer records of an ART classifier's model (thin framework adapters)."""
    framework = _check_classifier(classifier)
    from art_ext.estimators.certification import lipschitz_layers

    if framework == "pytorch":
        return lipschitz_layers.parse_torch(classifier.model, tuple(classifier.input_shape))
    return lipschitz_layers.parse_keras(classifier.model, tuple(classifier.input_shape))


def split_last_dense(records: list[LayerRecord]) -> tuple[list[LayerRecord], LayerRecord | None]:
    """``(records before the last dense layer, last dense layer)`` when the logits are a dense layer's output."""
    for i in range(len(records) - 1, -1, -1):
        record = records[i]
        if record.kind == "dense":
            return records[:i], record
        if not (record.kind == "constant" and record.factor == 1.0 and record.note == "linear-identity"):
            break
    return records, None


# ---------------------------------------------------------------------------------------------------- certifier
class LipschitzCertifier:
    """
    Sound l2 robustness certificates from a guaranteed upper bound ``L`` of the logit map's Lipschitz constant: the
    prediction ``t`` at ``x`` cannot change under any perturbation with l2 norm below ``margin / (sqrt(2) L)``, with
    ``margin = f_t(x) - max_{j != t} f_j(x)``. When the logits are the output of a dense layer with rows ``w_i``, the
    tighter pairwise radius ``min_j (f_t - f_j) / (||w_t - w_j|| L_prev)`` is used, ``L_prev`` bounding the layers
    before it.

    Supported layers (PyTorch and Keras): dense/linear, 2-D convolutions (zero padding, stride, dilation, groups),
    batch normalisation in eval mode, ReLU, LeakyReLU, ELU, Tanh, Sigmoid, max/average pooling, global pooling,
    flatten, dropout, :func:`art_ext.models.ResidualBlock`, and ART's mean/std preprocessing. Any other layer raises a
    ``TypeError`` naming it.

    | Paper link: https://arxiv.org/abs/1802.04034
    """

    def __init__(self, classifier: Any, pairwise: bool = True, float_tolerance: float = 1e-5) -> None:
        """
        :param classifier: ART ``PyTorchClassifier`` or ``TensorFlowV2Classifier`` whose model outputs logits.
        :param pairwise: Use the pairwise last-layer radius when the logits come from a dense layer.
        :param float_tolerance: Relative slack added to ``L`` and (times ``1 + max |logit|``) removed from margins,
                                to cover float32 round-off in the forward pass.
        """
        self.framework = _check_classifier(classifier)
        if not isinstance(pairwise, bool):
            raise TypeError("`pairwise` must be a bool.")
        if not (isinstance(float_tolerance, (int, float)) and 0 <= float_tolerance < 0.1):
            raise ValueError(f"`float_tolerance` must be in [0, 0.1), got {float_tolerance!r}.")
        self.classifier = classifier
        self.pairwise = pairwise
        self.float_tolerance = float(float_tolerance)
        self.ops = get_backend(classifier)
        self.records = parse_classifier(classifier)

    # -------------------------------------------------------------- bounds
    def refresh(self) -> None:
        """Re-read the model's weights (call after training the classifier further)."""
        self.records = parse_classifier(self.classifier)

    def layer_bounds(self) -> list[tuple[str, float]]:
        """Sound per-layer bounds ``[(layer, bound)]`` (batch norms folded into the layer before them)."""
        table = [("preprocessing", preprocessing_factor(self.classifier))]
        return table + sound_chain_bound(self.records)[1]

    def lipschitz_bound(self) -> float:
        """
        A guaranteed upper bound of the l2 Lipschitz constant of the logit map (input to logits).

        :return: ``L`` as a float.
        """
        total, _ = sound_chain_bound(self.records)
        return float(total * preprocessing_factor(self.classifier) * (1.0 + self.float_tolerance))

    def _pairwise_parts(self) -> tuple[np.ndarray, float] | None:
        head, last = split_last_dense(self.records)
        if not self.pairwise or last is None:
            return None
        w = np.asarray(last.weight, dtype=np.float64)
        diff = np.sqrt(((w[:, None, :] - w[None, :, :]) ** 2).sum(-1))
        l_prev = sound_chain_bound(head)[0] * preprocessing_factor(self.classifier) * (1.0 + self.float_tolerance)
        return diff, l_prev

    # -------------------------------------------------------------- certificates
    def logits(self, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
        """Logits of the classifier in batches, as float64."""
        outs = [
            np.asarray(self.classifier.predict(x[i : i + batch_size], batch_size=batch_size), dtype=np.float64)
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(outs) if outs else np.zeros((0, self.classifier.nb_classes))

    def radii_from_logits(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictions and certified radii from precomputed logits ``(nb_samples, nb_classes)``."""
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
                ratio = gaps / (math.sqrt(2.0) * self.lipschitz_bound())
        ratio[rows, pred] = np.inf
        radius = ratio.min(1) if logits.shape[1] > 1 else np.full(len(logits), np.inf)
        return pred, radius.astype(np.float32)

    def certify(self, x: np.ndarray, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
        """
        Predict and certify.

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
        return self.radii_from_logits(self.logits(x, batch_size))

    def certified_accuracy(self, x: np.ndarray, y: np.ndarray, radius: float, batch_size: int = 128) -> float:
        """Fraction of inputs classified correctly with a certified radius of at least `radius`."""
        from art_ext.utils.checks import check_labels

        y = check_labels(y, self.classifier.nb_classes, len(x))
        pred, radii = self.certify(x, batch_size)
        return float(np.mean((pred == y) & (radii >= radius)))

    def predict(self, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
        """The classifier's logits (float32)."""
        return self.logits(np.asarray(x, dtype=np.float32), batch_size).astype(np.float32)
