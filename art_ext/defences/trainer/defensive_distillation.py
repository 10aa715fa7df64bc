"""
Defensive distillation at a temperature T (Papernot et al., 2016), written once against :mod:`art_ext.backend`.

A teacher is trained on hard labels with the softmax at temperature T, ``softmax(z / T)``; its soft labels
``F_T(x) = softmax(z_teacher(x) / T)`` then train the student (the classifier) at the same temperature. The student is
deployed unchanged, at T = 1: its logits come out about T times larger than those of a normally trained network, which
is what saturates its float32 softmax (see :mod:`art_ext.evaluations.gradient_masking`).

| Paper link: https://arxiv.org/abs/1511.04508
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from art.defences.trainer.trainer import Trainer
from tqdm.auto import trange

from art_ext.backend import get_backend
from art_ext.utils.checks import check_finite, check_labels, check_positive
from art_ext.utils.outputs import PROBABILITY_FLOOR
from art_ext.utils.outputs import check_output_kind as _check_output
from art_ext.utils.outputs import logits_from_outputs as logits_tensor
from art_ext.utils.outputs import output_kind_of as infer_output

logger = logging.getLogger(__name__)

__all__ = ["DefensiveDistillationTrainer", "infer_output", "logits_numpy", "soft_labels", "train_at_temperature"]

#: Smallest positive normal float32; probabilities are clamped to it before taking their log.


def _check_classifier(classifier: Any, name: str) -> None:
    from art.estimators.classification.classifier import ClassifierMixin

    if not isinstance(classifier, ClassifierMixin) or not hasattr(classifier, "predict"):
        raise TypeError(f"`{name}` must be an ART classifier, got {type(classifier).__name__}.")


def logits_numpy(outputs: np.ndarray, output: str) -> np.ndarray:
    """
    Logits from a classifier's outputs: the outputs themselves, or ``log p`` for probability outputs. ``log p`` equals
    the logits up to a per-row constant, which every softmax (at any temperature) ignores.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    if output == "probabilities":
        return np.log(np.maximum(outputs, PROBABILITY_FLOOR))
    return outputs


def soft_labels(classifier: Any, x: np.ndarray, temperature: float, output: str = "auto", batch_size: int = 128):
    """
    The soft labels ``F_T(x) = softmax(z(x) / T)`` of a classifier, computed in float64 from its predictions.

    :param classifier: An ART classifier (logits or probabilities; any framework).
    :param x: Inputs ``(nb_samples, ...)``.
    :param temperature: The temperature T.
    :param output: ``"auto"``, ``"logits"`` or ``"probabilities"``.
    :return: float32 ``(nb_samples, nb_classes)``.
    """
    output = infer_output(classifier, x, output, batch_size)
    z = logits_numpy(classifier.predict(x, batch_size=batch_size), output) / temperature
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def train_at_temperature(
    classifier: Any,
    x: np.ndarray,
    targets: np.ndarray,
    temperature: float,
    nb_epochs: int,
    batch_size: int,
    output: str = "logits",
    optimizer: Any = None,
    rng: np.random.Generator | None = None,
    verbose: bool = True,
    desc: str = "distillation",
) -> list[float]:
    """
    Train an ART classifier in place on (soft) targets with the cross-entropy of ``softmax(z / T)``.

    For probability outputs the logits are recovered as ``log p`` (clamped at the smallest normal float32), so the
    loss is the same; only rows whose float32 probabilities have already underflowed lose part of their gradient.

    :param classifier: ART classifier (PyTorch or TensorFlow) trained in place.
    :param x: Inputs ``(nb_samples, ...)``, float32.
    :param targets: Target distributions ``(nb_samples, nb_classes)`` (one-hot rows for hard labels).
    :param temperature: The temperature T.
    :param nb_epochs: Epochs.
    :param batch_size: Batch size.
    :param output: Whether the classifier returns ``"logits"`` or ``"probabilities"``.
    :param optimizer: Optimizer over the model's weights (default: the classifier's own, else Adam 1e-3).
    :param rng: Generator for the shuffling.
    :param verbose: Progress bar.
    :param desc: Progress-bar label.
    :return: Mean loss of each epoch.
    """
    ops = get_backend(classifier)
    model = ops.model_of(classifier)
    weights = ops.trainable_weights(model)
    if optimizer is None:
        optimizer = ops.optimizer_of(classifier)
    if optimizer is None:
        optimizer = ops.make_optimizer(weights, "adam", 1e-3)
    rng = np.random.default_rng() if rng is None else rng
    device = ops.device_of(classifier)
    x = np.asarray(x, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.float32)
    n = len(x)
    history: list[float] = []
    try:
        for _ in trange(nb_epochs, desc=desc, disable=not verbose):
            order = rng.permutation(n)
            losses = []
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                xb = ops.asarray(x[idx], device=device)
                tb = ops.asarray(targets[idx], device=device)

                def loss_fn(xb=xb, tb=tb):
                    z = logits_tensor(ops, ops.forward(classifier, xb, training=True), output)
                    return ops.cross_entropy(z / temperature, tb)

                losses.append(ops.train_step(model, optimizer, loss_fn, weights))
            history.append(float(np.mean(losses)))
    except KeyboardInterrupt:
        logger.warning(
            "Training at T=%g interrupted after %d epochs; keeping the weights so far.", temperature, len(history)
        )
    return history


class DefensiveDistillationTrainer(Trainer):
    """
    Defensive distillation with a temperature: teacher trained at T on hard labels (unless a fitted one is given),
    student (the classifier, trained in place) trained at T on the teacher's soft labels, deployed at T = 1.

    Works with logit-output and probability-output classifiers of PyTorch and TensorFlow; for probability outputs the
    logits are recovered as ``log p`` (see :func:`train_at_temperature`). The classifier's own optimizer is used.

    | Paper link: https://arxiv.org/abs/1511.04508
    """

    def __init__(
        self,
        classifier: Any,
        temperature: float = 100.0,
        teacher: Any = None,
        teacher_epochs: int | None = None,
        output: str = "auto",
        teacher_output: str = "auto",
        random_state: int | None = None,
        verbose: bool = True,
    ) -> None:
        """
        :param classifier: The student, an ART ``PyTorchClassifier`` or ``TensorFlowV2Classifier``; trained in place.
        :param temperature: The temperature T (Papernot et al. use 100 on MNIST).
        :param teacher: A fitted ART classifier giving the soft labels (ideally trained at `temperature`). ``None``:
                        a fresh copy of the student's architecture is trained at T on the hard labels in :meth:`fit`.
        :param teacher_epochs: Epochs of the teacher (default: those of the student).
        :param output: Whether the student returns ``"logits"`` or ``"probabilities"``; ``"auto"`` detects it.
        :param teacher_output: The same for the teacher.
        :param random_state: Seed of the teacher's initialisation and of the shuffling.
        :param verbose: Progress bars.
        """
        _check_classifier(classifier, "classifier")
        get_backend(classifier)
        super().__init__(classifier)
        self.temperature = temperature
        self.teacher = teacher
        self.teacher_epochs = teacher_epochs
        self.output = output
        self.teacher_output = teacher_output
        self.random_state = random_state
        self.verbose = verbose
        self.history: dict[str, list[float]] = {}
        self._check_params()

    def _check_params(self) -> None:
        check_positive(self.temperature, "temperature")
        if self.teacher is not None:
            _check_classifier(self.teacher, "teacher")
            if self.teacher.nb_classes != self.classifier.nb_classes:
                raise ValueError(
                    f"`teacher` has {self.teacher.nb_classes} classes, the classifier {self.classifier.nb_classes}."
                )
        if self.teacher_epochs is not None:
            check_positive(self.teacher_epochs, "teacher_epochs", integer=True)
        _check_output(self.output, "output")
        _check_output(self.teacher_output, "teacher_output")
        if not isinstance(self.verbose, bool):
            raise ValueError("`verbose` must be a bool.")

    def fit(self, x: np.ndarray, y: np.ndarray, nb_epochs: int = 20, batch_size: int = 128, **kwargs) -> None:
        """
        Train the teacher (if none was given) and then the student, both at the temperature.

        :param x: Training inputs ``(nb_samples, ...)``.
        :param y: Labels, indices ``(nb_samples,)`` or one-hot ``(nb_samples, nb_classes)``.
        :param nb_epochs: Epochs of the student (and of the teacher unless `teacher_epochs` is set).
        :param batch_size: Batch size.
        """
        check_positive(nb_epochs, "nb_epochs", integer=True)
        check_positive(batch_size, "batch_size", integer=True)
        x = check_finite(x, "x").astype(np.float32)
        if x.shape[1:] != tuple(self.classifier.input_shape):
            raise ValueError(
                f"`x` has sample shape {x.shape[1:]}, the classifier expects {self.classifier.input_shape}."
            )
        nb_classes = self.classifier.nb_classes
        labels = check_labels(y, nb_classes, n=len(x))
        rng = np.random.default_rng(self.random_state)
        output = infer_output(self.classifier, x, self.output)

        if self.teacher is None:
            from art_ext.estimators.classification.utils import clone_classifier

            teacher = clone_classifier(self.classifier, reinitialise=True, seed=self.random_state)
            self.history["teacher"] = train_at_temperature(
                teacher,
                x,
                np.eye(nb_classes, dtype=np.float32)[labels],
                self.temperature,
                self.teacher_epochs or nb_epochs,
                batch_size,
                output=output,
                rng=rng,
                verbose=self.verbose,
                desc=f"teacher at T={self.temperature:g}",
            )
            self.teacher = teacher
            teacher_output = output
        else:
            teacher_output = self.teacher_output
        self.soft_labels_ = soft_labels(self.teacher, x, self.temperature, teacher_output, batch_size)
        self.history["student"] = train_at_temperature(
            self.classifier,
            x,
            self.soft_labels_,
            self.temperature,
            nb_epochs,
            batch_size,
            output=output,
            rng=rng,
            verbose=self.verbose,
            desc=f"student at T={self.temperature:g}",
        )

    def predict(self, x: np.ndarray, **kwargs) -> np.ndarray:
        """Predictions of the distilled classifier, deployed at T = 1 (its logits or probabilities as they are)."""
        return self.classifier.predict(x, **kwargs)
