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

from art_ext.backend import get_backend
from art_ext.backend.distributed import all_reduce, broadcast, get_context, unwrap_model
from art_ext.defences.trainer._distributed import shared_seed
from art_ext.defences.trainer._loop import (
    TrainingLoop,
    array_batches,
    check_lr_schedule,
    check_validation_data,
    check_value,
    generator_batches,
    validation_accuracy,
)
from art_ext.estimators.certification.classifier_graph import build_graph, check_certifiable_classifier
from art_ext.estimators.certification.graph import LipschitzGraph, PowerIterationState
from art_ext.utils.checks import ArgumentTypeError, check_finite, check_labels, check_positive

logger = logging.getLogger(__name__)

__all__ = ["LipschitzMarginTrainer"]

#: Training objectives of :class:`LipschitzMarginTrainer`.
OBJECTIVES = ("lmt", "gloro")


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
        lr_schedule: Any = None,
        objective: str = "lmt",
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
        :param lr_schedule: ``None`` (constant learning rate), ``"linear"`` (constant for the first half of the
                            epochs, then linearly towards zero) or a callable ``epoch -> factor`` of the starting
                            rate.
        :param objective: ``"lmt"`` (the paper's loss: every non-target logit raised by its margin, ``c_t K_j``) or
                          ``"gloro"`` (Leino et al., 2021: one extra "bottom" logit ``max_{i != j} f_i + c_t K_ji``
                          built from the predicted class ``j``, appended to the logits and never the label, so the
                          loss asks for a prediction certified at radius ``c_t``).
        """
        if check_certifiable_classifier(classifier) == "pytorch":
            import torch

            if isinstance(unwrap_model(classifier.model), torch.jit.ScriptModule):
                raise TypeError(
                    "`classifier` holds a TorchScript model, whose graph is read from a frozen copy of its weights: "
                    "train the eager nn.Module and script it afterwards."
                )
        super().__init__(classifier)
        self.c = c
        self.warmup_epochs = warmup_epochs
        self.pairwise = pairwise
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.verbose = verbose
        self.lr_schedule = lr_schedule
        self.objective = objective
        self.history: list[dict] = []
        self.interrupted = False
        self._check_params()
        build_graph(classifier)  # refuse a model that cannot be certified before anything is spent

    def _check_params(self) -> None:
        check_positive(self.c, "c", allow_zero=True)
        check_positive(self.warmup_epochs, "warmup_epochs", integer=True, allow_zero=True)
        if not isinstance(self.pairwise, bool):
            raise ArgumentTypeError(f"`pairwise` must be a bool, got {self.pairwise!r}.")
        if self.learning_rate is not None:
            check_positive(self.learning_rate, "learning_rate")
        if self.random_state is not None and not isinstance(self.random_state, np.random.Generator):
            check_value(self.random_state, "random_state", integer=True, allow_zero=True)
        if not isinstance(self.verbose, bool):
            raise ArgumentTypeError("`verbose` must be a bool.")
        check_lr_schedule(self.lr_schedule)
        if self.objective not in OBJECTIVES:
            raise ValueError(f"`objective` must be one of {OBJECTIVES}, got {self.objective!r}.")

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

    def _gloro_logits(self, ops: Any, logits: Any, graph: LipschitzGraph, state: PowerIterationState, eps: Any):
        """
        ``(logits with the bottom logit appended (batch, nb_classes + 1), Lipschitz estimate)``: the bottom logit is
        ``max_{i != j} f_i + eps K_ji`` with ``j`` the predicted class and ``K_ji`` the bound of the margin
        ``f_j - f_i`` (pairwise last-layer rows, or ``sqrt(2) L``).

        | Paper link: https://arxiv.org/abs/2102.08452
        """
        nb_classes = self.classifier.nb_classes
        predicted_class = ops.argmax(ops.stop_gradient(logits), axis=1)
        predicted = ops.one_hot(predicted_class, nb_classes)
        offsets, lipschitz = self._margin_offsets(ops, graph, state, predicted_class)
        bottom = ops.max(logits + eps * offsets - 1e9 * predicted, axis=1, keepdims=True)
        return ops.concat([logits, bottom], axis=1), lipschitz

    # ------------------------------------------------------------------ training
    def fit(self, x: np.ndarray, y: np.ndarray, nb_epochs: int = 20, batch_size: int = 128, **kwargs) -> None:
        """
        Train the classifier in place.

        :param x: Training inputs ``(nb_samples, ...)``.
        :param y: Labels, indices ``(nb_samples,)`` or one-hot ``(nb_samples, nb_classes)``.
        :param nb_epochs: Number of epochs.
        :param batch_size: Batch size.
        :param validation_data: Optional ``(x_val, y_val)``: accuracy after each epoch, recorded in the history
                                (``"val_accuracy"``) and shown in the progress bar.
        :param catch_interrupt: ``False`` lets Ctrl-C raise ``KeyboardInterrupt``; by default training stops with a
                                warning, keeps the weights so far and sets :attr:`interrupted`.
        """
        check_positive(nb_epochs, "nb_epochs", integer=True)
        check_positive(batch_size, "batch_size", integer=True)
        x = check_finite(x, "x").astype(np.float32)
        if x.shape[1:] != tuple(self.classifier.input_shape):
            raise ValueError(f"`x` must have shape (nb_samples, {tuple(self.classifier.input_shape)}), got {x.shape}.")
        y = check_labels(y, self.classifier.nb_classes, len(x))
        validation = check_validation_data(self.classifier, kwargs.get("validation_data"))
        rng = np.random.default_rng(self.random_state)
        world = get_context().world_size  # steps of one epoch on this rank (epoch_indices' sharding)
        steps_per_epoch = math.ceil(math.ceil(len(x) / world) / max(1, batch_size // world))
        self._train(
            lambda epoch: array_batches((x, y), batch_size, rng, self.classifier),
            nb_epochs,
            steps_per_epoch,
            rng,
            validation,
            kwargs.get("catch_interrupt"),
        )

    def fit_generator(self, generator: Any, nb_epochs: int = 20, **kwargs) -> None:
        """
        Train the classifier in place on the ``(x, y)`` batches of an ART ``DataGenerator``.

        :param generator: An ART ``DataGenerator``.
        :param nb_epochs: Number of epochs (``ceil(size / batch_size)`` batches each).
        :param validation_data: Optional ``(x_val, y_val)``, as in :meth:`fit`.
        :param catch_interrupt: As in :meth:`fit`.
        """
        check_positive(nb_epochs, "nb_epochs", integer=True)
        validation = check_validation_data(self.classifier, kwargs.get("validation_data"))
        nb_classes = self.classifier.nb_classes

        def batches(epoch: int):
            for xb, yb in generator_batches(generator, self.classifier):
                yield xb, check_labels(yb, nb_classes, len(xb), name="generator labels")

        steps_per_epoch = int(math.ceil(generator.size / generator.batch_size))
        rng = np.random.default_rng(self.random_state)
        self._train(batches, nb_epochs, steps_per_epoch, rng, validation, kwargs.get("catch_interrupt"))

    def _train(
        self,
        batches: Any,
        nb_epochs: int,
        steps_per_epoch: int,
        rng: np.random.Generator,
        validation: Any,
        catch_interrupt: Any,
    ) -> None:
        """The shared training loop on the LMT loss (see :mod:`art_ext.defences.trainer._loop`)."""
        clf = self.classifier
        ops = get_backend(clf)
        optimizer = self.optimizer
        if optimizer is not None and self.learning_rate is not None:
            ops.set_learning_rate(optimizer, self.learning_rate)
        loop = TrainingLoop(
            clf,
            nb_epochs,
            desc="GloRo" if self.objective == "gloro" else "LMT",
            verbose=self.verbose,
            optimizer=optimizer,
            learning_rate=self.learning_rate,
            lr_schedule=self.lr_schedule,
            catch_interrupt=catch_interrupt,
            input_dtypes=("float32", "int64"),
        )
        # The graph is read on the module inside a DistributedDataParallel wrapper; the loss runs through the wrapper.
        graph = build_graph(clf)
        # ART's predict-time preprocessing, which the graph holds as its first node (mean/std only; else refused)
        preprocess = graph.nodes[1].forward if graph.nodes[1].note == "preprocessing" else (lambda t: t)
        # Power-iteration start vectors from a seed common to all ranks (then re-broadcast after every epoch).
        state = PowerIterationState(ops, np.random.default_rng(shared_seed(rng)))
        warmup_steps = self.warmup_epochs * steps_per_epoch
        counter = {"step": 0, "c": self.c, "L": None}

        def wrapped(epoch: int):
            for batch in batches(epoch):
                step = counter["step"]
                counter["c"] = self.c * min(1.0, (step + 1) / warmup_steps) if warmup_steps else self.c
                counter["step"] = step + 1
                xb, yb = batch
                yield xb, (np.asarray(yb).argmax(axis=1) if np.ndim(yb) == 2 else yb)

        def loss_fn(xb, yb):
            logits = ops.call_model(loop.model, preprocess(xb), training=True)
            if self.objective == "gloro":  # the label is never the bottom class (index nb_classes)
                extended, counter["L"] = self._gloro_logits(ops, logits, graph, state, counter["c"])
                return ops.cross_entropy(extended, yb)
            offsets, lip = self._margin_offsets(ops, graph, state, yb)
            counter["L"] = lip
            return ops.cross_entropy(logits + counter["c"] * offsets, yb)

        def on_epoch_end(epoch: int, loss: float) -> dict:
            _sync_vectors(ops, state, ops.device_of(clf))
            lipschitz = float(ops.to_numpy(counter["L"])) if counter["L"] is not None else 0.0
            lipschitz = _max_over_ranks(lipschitz)  # the same (upper) estimate on every rank
            entry = {"epoch": epoch, "loss": loss, "L": lipschitz, "c": counter["c"]}
            postfix = {"L": f"{lipschitz:.3f}", "c": f"{counter['c']:.3f}"}
            if validation is not None:
                entry["val_accuracy"] = validation_accuracy(clf, validation[0], validation[1])
                postfix["val_acc"] = f"{entry['val_accuracy']:.3f}"
            self.history.append(entry)
            logger.info("LMT epoch %d: loss %.4f, L estimate %.3f, c %.3f", epoch, loss, lipschitz, counter["c"])
            return postfix

        result = loop.run(loss_fn, wrapped, on_epoch_end)
        self.interrupted = result.interrupted

    def predict(self, x: np.ndarray, **kwargs) -> np.ndarray:
        """The classifier's predictions (logits) on `x`."""
        return self.classifier.predict(x, **kwargs)


def _sync_vectors(ops: Any, state: PowerIterationState, device: Any) -> None:
    """Replace every rank's power-iteration vectors by rank 0's (no-op on one process)."""
    if not get_context().is_distributed:
        return
    for key, vector in list(state.vectors.items()):  # the same (graph) order on every rank
        value = broadcast(np.asarray(ops.to_numpy(vector)), src=0)
        state.vectors[key] = ops.asarray(value, device=device)


def _max_over_ranks(value: float) -> float:
    """The largest value over the ranks (itself on one process): one upper estimate shared by every rank."""
    if not get_context().is_distributed:
        return value
    return float(all_reduce(np.array([value], np.float64), "max")[0])
