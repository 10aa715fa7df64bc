"""
Lipschitz-margin training (LMT): cross-entropy on logits whose non-target entries are raised by the margin a
certificate of radius ``c`` needs, with the Lipschitz constant estimated differentiably at every step.

| Paper link: https://arxiv.org/abs/1802.04034
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from art.defences.trainer.trainer import Trainer
from tqdm.auto import trange

from art_ext.backend import get_backend
from art_ext.estimators.certification.classifier_graph import _check_classifier, build_graph
from art_ext.estimators.certification.graph import LipschitzGraph, PowerIterationState
from art_ext.utils.checks import check_finite, check_labels, check_positive

logger = logging.getLogger(__name__)

__all__ = ["LipschitzMarginTrainer"]


class LipschitzMarginTrainer(Trainer):
    """
    Lipschitz-margin training (Tsuzuku et al., 2018). Each step minimises the cross-entropy of
    ``f(x) + c_t * K(x)``, where ``K_j = sqrt(2) L`` for every non-target class ``j`` (``pairwise=False``, the paper's
    form) or ``K_j = ||w_y - w_j|| L_prev`` with the rows ``w`` of the last dense layer (``pairwise=True``, the
    tighter form :class:`~art_ext.estimators.certification.LipschitzCertifier` certifies with). ``L`` follows the
    model's computation graph exactly as the certifier reads it (``torch.fx`` / Keras functional graph, verified
    against the model's outputs before training): one power-iteration step per dense/convolution node with persistent
    vectors (differentiable, so the penalty also shrinks the weights' spectral norms), ``|gamma| / sqrt(var + eps)``
    for batch norms, the constants of the other nodes, sums over residual branches and root sums of squares over
    concatenations. Any model the certifier accepts can be trained; any other is refused before training. ``c_t`` grows linearly from 0 to ``c`` over the first
    ``warmup_epochs`` epochs. Power iteration approaches each norm from below: certify the trained model with
    :class:`~art_ext.estimators.certification.LipschitzCertifier`, which uses guaranteed bounds.

    | Paper link: https://arxiv.org/abs/1802.04034
    """

    def __init__(
        self,
        classifier: Any,
        c: float = 0.1,
        warmup_epochs: int = 5,
        pairwise: bool = True,
        optimizer: Any = None,
        learning_rate: float | None = None,
        random_state: int | None = None,
        verbose: bool = True,
    ) -> None:
        """
        :param classifier: ART ``PyTorchClassifier``, ``TensorFlowV2Classifier`` or ``KerasClassifier`` outputting
                           logits; trained in place.
        :param c: Target certified l2 radius (the margin scale).
        :param warmup_epochs: Epochs over which ``c`` grows linearly from 0 (0: full ``c`` from the first step).
        :param pairwise: Use the pairwise last-layer margin (when the logits come from a dense layer).
        :param optimizer: Optimizer over the model's weights; default: the classifier's own optimizer, else Adam.
        :param learning_rate: Learning rate to set on the optimizer (default: keep its own).
        :param random_state: Seed of the shuffling and of the power-iteration start vectors.
        :param verbose: Show progress bars.
        """
        _check_classifier(classifier)
        super().__init__(classifier)
        self.c = c
        self.warmup_epochs = warmup_epochs
        self.pairwise = pairwise
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.verbose = verbose
        self.history: list[dict] = []
        self._check_params()
        build_graph(classifier)  # refuse a model that cannot be certified before anything is spent

    def _check_params(self) -> None:
        check_positive(self.c, "c", allow_zero=True)
        check_positive(self.warmup_epochs, "warmup_epochs", integer=True, allow_zero=True)
        if not isinstance(self.pairwise, bool):
            raise TypeError("`pairwise` must be a bool.")
        if self.learning_rate is not None:
            check_positive(self.learning_rate, "learning_rate")
        if not isinstance(self.verbose, bool):
            raise TypeError("`verbose` must be a bool.")

    # ------------------------------------------------------------------ the margin term
    def _margin_offsets(self, ops: Any, graph: LipschitzGraph, state: PowerIterationState, labels: Any) -> tuple:
        """``(K, L)``: per-sample, per-class logit offsets ``(batch, nb_classes)`` and the Lipschitz estimate."""
        nb_classes = self.classifier.nb_classes
        last = graph.last_dense()
        one_hot = ops.one_hot(labels, nb_classes)
        if self.pairwise and last is not None:
            src, node = last
            l_prev = graph.estimate(state, upto=src)
            w = node.weight_fn()  # (nb_classes, features)
            w_y = ops.matmul(one_hot, w)
            diff = w_y[:, None, :] - w[None, :, :]
            dist = ops.sqrt(ops.sum(diff * diff, axis=-1) + 1e-12)
            lipschitz = l_prev * state.spectral_norm(node)
            return dist * l_prev * (1.0 - one_hot), lipschitz
        lipschitz = graph.estimate(state)
        return (1.0 - one_hot) * (math.sqrt(2.0) * lipschitz), lipschitz

    # ------------------------------------------------------------------ training
    def fit(self, x: np.ndarray, y: np.ndarray, nb_epochs: int = 20, batch_size: int = 128, **kwargs) -> None:
        """
        Train the classifier in place. Ctrl-C stops after the current step and keeps the weights reached.

        :param x: Training inputs ``(nb_samples, ...)``.
        :param y: Labels, indices ``(nb_samples,)`` or one-hot ``(nb_samples, nb_classes)``.
        :param nb_epochs: Number of epochs.
        :param batch_size: Batch size.
        """
        check_positive(nb_epochs, "nb_epochs", integer=True)
        check_positive(batch_size, "batch_size", integer=True)
        x = check_finite(x, "x").astype(np.float32)
        if x.shape[1:] != tuple(self.classifier.input_shape):
            raise ValueError(f"`x` must have shape (nb_samples, {tuple(self.classifier.input_shape)}), got {x.shape}.")
        y = check_labels(y, self.classifier.nb_classes, len(x))

        ops = get_backend(self.classifier)
        model = ops.model_of(self.classifier)
        optimizer = self.optimizer or ops.optimizer_of(self.classifier)
        if optimizer is None:
            optimizer = ops.make_optimizer(ops.trainable_weights(model), "adam", self.learning_rate or 1e-3)
        elif self.learning_rate is not None:
            ops.set_learning_rate(optimizer, self.learning_rate)
        rng = np.random.default_rng(self.random_state)
        graph = build_graph(self.classifier)
        # ART's predict-time preprocessing, which the graph holds as its first node (mean/std only; else refused)
        preprocess = graph.nodes[1].forward if graph.nodes[1].note == "preprocessing" else (lambda t: t)
        state = PowerIterationState(ops, rng)
        steps_per_epoch = math.ceil(len(x) / batch_size)
        warmup_steps = self.warmup_epochs * steps_per_epoch
        step = 0
        try:
            for epoch in trange(nb_epochs, desc="LMT epochs", disable=not self.verbose):
                order = rng.permutation(len(x))
                losses, lipschitz = [], 0.0
                c_now = self.c
                for start in range(0, len(x), batch_size):
                    idx = order[start : start + batch_size]
                    xb = ops.asarray(x[idx], device=ops.device_of(self.classifier))
                    yb = ops.asarray(y[idx], dtype="int64", device=ops.device_of(self.classifier))
                    c_now = self.c * min(1.0, (step + 1) / warmup_steps) if warmup_steps else self.c
                    aux: dict = {}

                    def loss_fn(xb=xb, yb=yb, c_now=c_now, aux=aux):
                        logits = ops.call_model(model, preprocess(xb), training=True)
                        offsets, lip = self._margin_offsets(ops, graph, state, yb)
                        aux["L"] = lip
                        return ops.cross_entropy(logits + c_now * offsets, yb)

                    losses.append(ops.train_step(model, optimizer, loss_fn))
                    lipschitz = float(ops.to_numpy(aux["L"]))
                    step += 1
                self.history.append({"epoch": epoch, "loss": float(np.mean(losses)), "L": lipschitz, "c": c_now})
                logger.info(
                    "LMT epoch %d: loss %.4f, L estimate %.3f, c %.3f", epoch, np.mean(losses), lipschitz, c_now
                )
        except KeyboardInterrupt:
            logger.warning("LMT training interrupted after %d steps; keeping the weights reached.", step)

    def predict(self, x: np.ndarray, **kwargs) -> np.ndarray:
        """The classifier's predictions (logits) on `x`."""
        return self.classifier.predict(x, **kwargs)
