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
from typing import Any, Callable, Iterable

import numpy as np
from art.defences.trainer.trainer import Trainer

from art_ext.backend import get_backend
from art_ext.defences.trainer._loop import (
    LoopResult,
    TrainingLoop,
    array_batches,
    check_validation_data,
    check_value,
    generator_batches,
    validation_accuracy,
)
from art_ext.utils.checks import check_classifier, check_finite, check_labels
from art_ext.utils.outputs import PROBABILITY_FLOOR, check_output_kind, logits_from_outputs, output_kind_of

logger = logging.getLogger(__name__)

__all__ = [
    "DefensiveDistillationTrainer",
    "logits_numpy",
    "run_at_temperature",
    "soft_labels",
    "train_at_temperature",
]


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
    output = output_kind_of(classifier, x, output, batch_size)
    z = logits_numpy(classifier.predict(x, batch_size=batch_size), output) / temperature
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def _distillation_loss(ops: Any, classifier: Any, temperature: float, output: str):
    def loss_fn(xb, tb):
        z = logits_from_outputs(ops, ops.forward(classifier, xb, training=True), output)
        return ops.cross_entropy(z / temperature, tb)

    return loss_fn


def _compile_default(classifier: Any) -> bool:
    """``tf.function`` for TensorFlow classifiers (ART's TensorFlowV2Classifier compiles its train step too)."""
    return get_backend(classifier).name == "tensorflow"


def run_at_temperature(
    classifier: Any,
    batches: Callable[[int], Iterable[tuple[np.ndarray, np.ndarray]]],
    temperature: float,
    nb_epochs: int,
    output: str = "logits",
    optimizer: Any = None,
    verbose: bool = True,
    desc: str = "distillation",
    on_epoch_end: Callable[[int, float], dict | None] | None = None,
    compile: bool | None = None,
    catch_interrupt: bool | None = None,
) -> LoopResult:
    """
    Train an ART classifier in place on batches of ``(x, targets)`` with the cross-entropy of ``softmax(z / T)``,
    through the shared :class:`~art_ext.defences.trainer._loop.TrainingLoop`.

    :param batches: ``batches(epoch)`` yields ``(x, target distributions)`` numpy batches.
    :param compile: Compile the step (default: on TensorFlow).
    :return: The loop's result (loss history, ``interrupted``).
    """
    ops = get_backend(classifier)
    loop = TrainingLoop(
        classifier,
        nb_epochs,
        desc=desc,
        verbose=verbose,
        optimizer=optimizer,
        compile=_compile_default(classifier) if compile is None else compile,
        catch_interrupt=catch_interrupt,
    )
    return loop.run(_distillation_loss(ops, classifier, temperature, output), batches, on_epoch_end)


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
    compile: bool | None = None,
) -> list[float]:
    """
    Train an ART classifier in place on (soft) targets with the cross-entropy of ``softmax(z / T)``.

    For probability outputs the logits are recovered as ``log p`` (clamped at the smallest normal float32), so the
    loss is the same; only rows whose float32 probabilities have already underflowed lose part of their gradient.
    The classifier's fit-time preprocessing defences apply to every batch, as in ART's ``fit``.

    :param classifier: ART classifier (PyTorch, TensorFlow v2 or Keras) trained in place.
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
    :param compile: Compile the training step (default: on TensorFlow, with ``tf.function``).
    :return: Mean loss of each epoch (Ctrl-C stops early with a warning).
    """
    rng = np.random.default_rng() if rng is None else rng
    arrays = (np.asarray(x, dtype=np.float32), np.asarray(targets, dtype=np.float32))
    result = run_at_temperature(
        classifier,
        lambda epoch: array_batches(arrays, batch_size, rng, classifier),
        temperature,
        nb_epochs,
        output=output,
        optimizer=optimizer,
        verbose=verbose,
        desc=desc,
        compile=compile,
    )
    return result.history


class DefensiveDistillationTrainer(Trainer):
    """
    Defensive distillation with a temperature: teacher trained at T on hard labels (unless a fitted one is given),
    student (the classifier, trained in place) trained at T on the teacher's soft labels, deployed at T = 1.

    Works with logit-output and probability-output classifiers of PyTorch, TensorFlow v2 and Keras; for probability
    outputs the logits are recovered as ``log p`` (see :func:`train_at_temperature`). The classifier's own optimizer
    is used; its fit-time preprocessing defences apply as in ART's ``fit``.

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
        teacher_factory: Callable[[], Any] | None = None,
    ) -> None:
        """
        :param classifier: The student, an ART ``PyTorchClassifier``, ``TensorFlowV2Classifier`` or
                           ``KerasClassifier``; trained in place.
        :param temperature: The temperature T (Papernot et al. use 100 on MNIST).
        :param teacher: A fitted ART classifier giving the soft labels (ideally trained at `temperature`). ``None``:
                        a new teacher is trained at T on the hard labels in :meth:`fit` (see `teacher_factory`).
        :param teacher_epochs: Epochs of the teacher (default: those of the student).
        :param output: Whether the student returns ``"logits"`` or ``"probabilities"``; ``"auto"`` detects it.
        :param teacher_output: The same for the teacher.
        :param random_state: Seed of the teacher's initialisation and of the shuffling.
        :param verbose: Progress bars.
        :param teacher_factory: Without `teacher`: a function returning a fresh, untrained ART classifier to train as
                                the teacher. Default: a re-initialised copy of the student (PyTorch and TensorFlow v2
                                classifiers), or the student's ``clone_for_refitting()`` as ART does (Keras).
        """
        check_classifier(classifier, "classifier")
        get_backend(classifier)
        super().__init__(classifier)
        self.temperature = temperature
        self.teacher = teacher
        self.teacher_epochs = teacher_epochs
        self.output = output
        self.teacher_output = teacher_output
        self.random_state = random_state
        self.verbose = verbose
        self.teacher_factory = teacher_factory
        self.history: dict[str, list[float]] = {}
        #: Whether Ctrl-C stopped the last :meth:`fit` (the weights trained so far are kept).
        self.interrupted = False
        self._check_params()

    def _check_params(self) -> None:
        check_value(self.temperature, "temperature")
        if self.teacher is not None:
            check_classifier(self.teacher, "teacher")
            if self.teacher.nb_classes != self.classifier.nb_classes:
                raise ValueError(
                    f"`teacher` has {self.teacher.nb_classes} classes, the classifier {self.classifier.nb_classes}."
                )
        if self.teacher_epochs is not None:
            check_value(self.teacher_epochs, "teacher_epochs", integer=True)
        check_output_kind(self.output, "output")
        check_output_kind(self.teacher_output, "teacher_output")
        if self.random_state is not None:
            check_value(self.random_state, "random_state", integer=True, allow_zero=True)
        if self.teacher_factory is not None and not callable(self.teacher_factory):
            raise ValueError("`teacher_factory` must be a function returning a fresh ART classifier.")
        if not isinstance(self.verbose, bool):
            raise ValueError("`verbose` must be a bool.")

    def _new_teacher(self) -> Any:
        if self.teacher_factory is not None:
            teacher = self.teacher_factory()
            check_classifier(teacher, "teacher_factory()")
            get_backend(teacher)
            return teacher
        name = type(self.classifier).__name__
        errors = []
        if name in ("PyTorchClassifier", "TensorFlowV2Classifier"):
            from art_ext.estimators.classification.utils import clone_classifier

            try:
                return clone_classifier(self.classifier, reinitialise=True, seed=self.random_state)
            except Exception as err:  # noqa: BLE001 (fall back to ART's own cloning)
                errors.append(str(err))
        try:
            if self.random_state is not None and get_backend(self.classifier).name == "tensorflow":
                import keras

                keras.utils.set_random_seed(self.random_state)
            if name == "KerasClassifier":
                try:
                    return self.classifier.clone_for_refitting()
                except (ValueError, TypeError) as err:  # plain-function initialisers: rebuild the layers ourselves
                    errors.append(str(err))
                    return _refit_keras_clone(self.classifier)
            return self.classifier.clone_for_refitting()
        except Exception as err:  # noqa: BLE001 (any cloning failure gets the same advice)
            errors.append(str(err))
            raise ValueError(
                f"Cannot clone the student {name} to train a teacher ({'; '.join(errors)}); pass a fitted `teacher=` "
                "or `teacher_factory=` (a function returning a fresh classifier)."
            ) from err

    def _validation(self, validation_data: Any, batch_size: int):
        val = check_validation_data(self.classifier, validation_data)
        if val is None:
            return None
        self.history["validation"] = []

        def on_epoch_end(epoch: int, loss: float) -> dict:
            acc = validation_accuracy(self.classifier, val[0], val[1], batch_size)
            self.history["validation"].append(acc)
            return {"val_acc": f"{acc:.3f}"}

        return on_epoch_end

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        nb_epochs: int = 20,
        batch_size: int = 128,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        **kwargs,
    ) -> None:
        """
        Train the teacher (if none was given) and then the student, both at the temperature.

        :param x: Training inputs ``(nb_samples, ...)``.
        :param y: Labels, indices ``(nb_samples,)`` or one-hot ``(nb_samples, nb_classes)``.
        :param nb_epochs: Epochs of the student (and of the teacher unless `teacher_epochs` is set).
        :param batch_size: Batch size.
        :param validation_data: Optional ``(x_val, y_val)``: the student's accuracy on it after each epoch is
                                recorded in ``history["validation"]`` and shown in the progress bar.
        :param catch_interrupt: ``False`` lets Ctrl-C raise ``KeyboardInterrupt``; by default training stops with a
                                warning, keeps the weights so far and sets :attr:`interrupted`.
        """
        check_value(nb_epochs, "nb_epochs", integer=True)
        check_value(batch_size, "batch_size", integer=True)
        x = check_finite(x, "x").astype(np.float32)
        if x.shape[1:] != tuple(self.classifier.input_shape):
            raise ValueError(
                f"`x` has sample shape {x.shape[1:]}, the classifier expects {self.classifier.input_shape}."
            )
        nb_classes = self.classifier.nb_classes
        one_hot = np.eye(nb_classes, dtype=np.float32)[check_labels(y, nb_classes, n=len(x))]
        on_epoch_end = self._validation(validation_data, batch_size)
        rng = np.random.default_rng(self.random_state)

        def soft(teacher_output):
            self.soft_labels_ = soft_labels(self.teacher, x, self.temperature, teacher_output, batch_size)
            arrays = (x, self.soft_labels_)
            return lambda epoch: array_batches(arrays, batch_size, rng, self.classifier)

        self._distil(
            x,
            lambda estimator: array_batches((x, one_hot), batch_size, rng, estimator),
            soft,
            nb_epochs,
            on_epoch_end,
            kwargs.get("catch_interrupt"),
        )

    def fit_generator(self, generator: Any, nb_epochs: int = 20, **kwargs) -> None:
        """
        Train from an ART ``DataGenerator`` of ``(x, y)`` batches: the teacher (if none was given) on the hard labels,
        then the student on the teacher's soft labels of each batch, both at the temperature.

        :param generator: An ART ``DataGenerator``.
        :param nb_epochs: Epochs of the student (and of the teacher unless `teacher_epochs` is set).
        :param validation_data: Optional ``(x_val, y_val)``, as in :meth:`fit`.
        :param catch_interrupt: As in :meth:`fit`.
        """
        check_value(nb_epochs, "nb_epochs", integer=True)
        nb_classes = self.classifier.nb_classes
        first_x, _ = next(iter(generator_batches(generator)))
        on_epoch_end = self._validation(kwargs.get("validation_data"), generator.batch_size)

        def hard(estimator):
            for xb, yb in generator_batches(generator, estimator):
                yield xb, np.eye(nb_classes, dtype=np.float32)[check_labels(yb, nb_classes, len(xb))]

        def soft(teacher_output):
            def batches(epoch):
                for xb, _ in generator_batches(generator, self.classifier):
                    yield xb, soft_labels(self.teacher, xb, self.temperature, teacher_output, len(xb))

            return batches

        self._distil(first_x, hard, soft, nb_epochs, on_epoch_end, kwargs.get("catch_interrupt"))

    def _distil(self, x_sample, hard, soft, nb_epochs, on_epoch_end, catch_interrupt) -> None:
        """
        The teacher (when none was given) on the batches ``hard(teacher)`` of hard labels, then the student on the
        batches ``soft(teacher_output)(epoch)`` of soft labels, both at the temperature.
        """
        self.interrupted = False
        teacher_output = self.teacher_output
        if self.teacher is None:
            teacher = self._new_teacher()
            teacher_output = output_kind_of(teacher, x_sample, self.output)
            result = run_at_temperature(
                teacher,
                lambda epoch: hard(teacher),
                self.temperature,
                self.teacher_epochs or nb_epochs,
                output=teacher_output,
                verbose=self.verbose,
                desc=f"teacher at T={self.temperature:g}",
                catch_interrupt=catch_interrupt,
            )
            self.history["teacher"] = result.history
            self.teacher = teacher
            if result.interrupted:
                self.interrupted = True
                return
        result = run_at_temperature(
            self.classifier,
            soft(teacher_output),
            self.temperature,
            nb_epochs,
            output=output_kind_of(self.classifier, x_sample, self.output),
            verbose=self.verbose,
            desc=f"student at T={self.temperature:g}",
            on_epoch_end=on_epoch_end,
            catch_interrupt=catch_interrupt,
        )
        self.history["student"] = result.history
        self.interrupted = result.interrupted

    def predict(self, x: np.ndarray, **kwargs) -> np.ndarray:
        """Predictions of the distilled classifier, deployed at T = 1 (its logits or probabilities as they are)."""
        return self.classifier.predict(x, **kwargs)


def _refit_keras_clone(classifier: Any) -> Any:
    """
    ART's ``KerasClassifier.clone_for_refitting`` for models Keras cannot clone from their config (layers built with
    plain-function initialisers, as in ART's own test models): the layers are rebuilt with the functions they hold,
    compiled with a fresh copy of the model's optimizer and its loss.
    """
    from art.estimators.classification import KerasClassifier

    from art_ext.estimators.classification.utils import clone_keras_model, preprocessing_of

    model = clone_keras_model(classifier.model)
    optimizer = getattr(classifier.model, "optimizer", None)
    model.compile(
        optimizer=type(optimizer).from_config(optimizer.get_config()) if optimizer is not None else "adam",
        loss=classifier.model.loss,
    )
    return KerasClassifier(
        model=model,
        use_logits=classifier._use_logits,
        channels_first=classifier.channels_first,
        clip_values=classifier.clip_values,
        preprocessing=preprocessing_of(classifier),
    )
