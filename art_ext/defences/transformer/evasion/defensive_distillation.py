"""
An ART-compatible defensive-distillation Transformer with a temperature, for logit- and probability-output models.

| Paper link: https://arxiv.org/abs/1511.04508
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from art.defences.transformer.transformer import Transformer

from art_ext.backend import get_backend
from art_ext.defences.trainer._loop import check_value
from art_ext.defences.trainer.defensive_distillation import (
    _check_classifier,
    _check_output,
    infer_output,
    soft_labels,
    train_at_temperature,
)
from art_ext.utils.checks import check_finite

logger = logging.getLogger(__name__)

__all__ = ["DefensiveDistillation"]


class DefensiveDistillation(Transformer):
    """
    Defensive distillation as ART's :class:`art.defences.transformer.evasion.DefensiveDistillation`: same parameters
    in the same order with the same defaults (``classifier, batch_size=128, nb_epochs=10``), same call
    (``transformer(x, transformed_classifier)``) and, at the default ``temperature=1``, ART's result. Added after
    ART's parameters: an explicit temperature, logit-output models (ART requires probabilities), a seed.

    The transformer's classifier is the teacher: its soft labels ``softmax(z_teacher(x) / T)`` train the
    transformed classifier at the same temperature ``T`` with its own optimizer. Distillation only scales the
    student's logits when the teacher was itself trained at ``T`` (e.g. the teacher of
    :class:`art_ext.defences.trainer.DefensiveDistillationTrainer`); from a teacher trained at T = 1 the student
    reproduces the teacher's logits (Hinton et al.). ``temperature=1`` (the default) is ART's transformer. On TensorFlow
    the training step is compiled with ``tf.function``.

    | Paper link: https://arxiv.org/abs/1511.04508
    """

    params = ["batch_size", "nb_epochs", "temperature", "output", "teacher_output", "random_state", "verbose"]

    def __init__(
        self,
        classifier: Any,
        batch_size: int = 128,
        nb_epochs: int = 10,
        temperature: float = 1.0,
        output: str = "auto",
        teacher_output: str = "auto",
        random_state: int | None = None,
        verbose: bool = False,
    ) -> None:
        """
        :param classifier: The trained teacher (any ART classifier, ``BlackBoxClassifier`` included; only its
                           ``predict`` is used).
        :param batch_size: Batch size.
        :param nb_epochs: Epochs of the transformed classifier.
        :param temperature: The temperature T of the soft labels and of the student's training softmax; ``1`` is
                            ART's behaviour (earlier art_ext versions defaulted to 100, the trainer's default: pass
                            ``temperature=100`` for that).
        :param output: Whether the transformed classifier returns ``"logits"`` or ``"probabilities"`` (``"auto"``).
        :param teacher_output: The same for the teacher.
        :param random_state: Seed of the shuffling.
        :param verbose: Progress bar.
        """
        _check_classifier(classifier, "classifier")
        super().__init__(classifier=classifier)
        self._is_fitted = True
        self.batch_size = batch_size
        self.nb_epochs = nb_epochs
        self.temperature = temperature
        self.output = output
        self.teacher_output = teacher_output
        self.random_state = random_state
        self.verbose = verbose
        self._check_params()

    def __call__(self, x: np.ndarray, transformed_classifier: Any) -> Any:
        """
        Train `transformed_classifier` in place on the teacher's soft labels at the temperature.

        :param x: Training inputs ``(nb_samples, ...)`` (no labels needed).
        :param transformed_classifier: ART ``PyTorchClassifier``, ``TensorFlowV2Classifier`` or ``KerasClassifier`` to
                                       distil into (its fit-time preprocessing defences apply, as in ART's fit).
        :return: The transformed classifier (deployed at T = 1).
        """
        _check_classifier(transformed_classifier, "transformed_classifier")
        try:
            get_backend(transformed_classifier)
        except (TypeError, ValueError) as err:
            raise TypeError(f"`transformed_classifier` must be trainable: {err}") from err
        if transformed_classifier.nb_classes != self.classifier.nb_classes:
            raise ValueError(
                f"`transformed_classifier` has {transformed_classifier.nb_classes} classes, "
                f"the teacher {self.classifier.nb_classes}."
            )
        x = check_finite(x, "x").astype(np.float32)
        if x.shape[1:] != tuple(transformed_classifier.input_shape):
            raise ValueError(
                f"`x` has sample shape {x.shape[1:]}, the transformed classifier expects "
                f"{tuple(transformed_classifier.input_shape)}."
            )
        targets = soft_labels(self.classifier, x, self.temperature, self.teacher_output, self.batch_size)
        train_at_temperature(
            transformed_classifier,
            x,
            targets,
            self.temperature,
            self.nb_epochs,
            self.batch_size,
            output=infer_output(transformed_classifier, x, self.output),
            rng=np.random.default_rng(self.random_state),
            verbose=self.verbose,
            desc=f"distillation at T={self.temperature:g}",
        )
        return transformed_classifier

    def fit(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> None:
        """No parameters to learn; does nothing (as ART's)."""

    def _check_params(self) -> None:
        check_value(self.batch_size, "batch_size", integer=True)
        check_value(self.nb_epochs, "nb_epochs", integer=True)
        check_value(self.temperature, "temperature")
        if self.random_state is not None:
            check_value(self.random_state, "random_state", integer=True, allow_zero=True)
        if not isinstance(self.verbose, bool):
            raise ValueError(f"`verbose` must be a bool, got {self.verbose!r}.")
        _check_output(self.output, "output")
        _check_output(self.teacher_output, "teacher_output")
