"""
The one training loop of art_ext's trainers; each trainer only supplies its loss.

Usage (a trainer's ``fit``)::

    loop = TrainingLoop(classifier, nb_epochs, desc="VAT", verbose=True, learning_rate=None)
    result = loop.run(loss_fn, lambda epoch: array_batches((x, y), batch_size, rng, classifier))
    self.history, self.interrupted = result.history, result.interrupted

- ``loss_fn(*batch)`` returns the scalar loss tensor of one batch (it calls the model itself, through
  :meth:`art_ext.backend.Backend.forward` with ``training=True``); ``batch`` is a tuple of tensors.
- ``batches(epoch)`` yields the batches of one epoch as tuples of numpy arrays; :func:`array_batches` shuffles
  arrays and applies the estimator's fit-time preprocessing defences to every batch (as ART's ``fit``),
  :func:`generator_batches` reads an ART ``DataGenerator``.
- Optimizer: the classifier's own (``PyTorchClassifier(optimizer=...)``, ``TensorFlowV2Classifier(optimizer=...)``,
  the optimizer a ``KerasClassifier``'s model was compiled with); with `learning_rate` its learning rate is set;
  without one, Adam at `learning_rate` (default 1e-3).
- ``lr_schedule``: ``None`` keeps the learning rate; ``"linear"`` keeps it for the first half of the epochs and
  decays it linearly towards zero over the second half (the shape of the VAT paper's schedule); a callable
  ``f(epoch) -> factor`` multiplies the starting learning rate by ``factor`` at the start of each epoch.
- ``on_epoch_end(epoch, mean_loss)`` may return a dict shown in the progress bar (e.g. validation accuracy).
- Ctrl-C stops training and keeps the weights trained so far, with a ``RuntimeWarning`` and
  ``result.interrupted = True``; scripts that want the ``KeyboardInterrupt`` pass ``catch_interrupt=False`` or call
  :func:`set_catch_interrupt` once.
- ``compile=True`` compiles the step (``tf.function`` on TensorFlow; ignored on PyTorch).
- Under ``torchrun`` (DistributedDataParallel) or a ``tf.distribute`` strategy scope the loop is data-parallel:
  see :mod:`art_ext.defences.trainer._distributed`.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Any, Callable, Iterable

import numpy as np

from art_ext.backend import apply_fit_defences, get_backend
from art_ext.backend.distributed import progress
from art_ext.defences.trainer._distributed import epoch_indices, make_step, mean_over_ranks
from art_ext.utils.checks import check_param

logger = logging.getLogger(__name__)

__all__ = [
    "LR_SCHEDULES",
    "BestWeights",
    "LoopResult",
    "TrainingLoop",
    "array_batches",
    "check_restore_best",
    "check_value",
    "generator_batches",
    "set_catch_interrupt",
    "validation_accuracy",
]

_CATCH_INTERRUPT = [True]

#: The named learning-rate schedules of the trainers' ``lr_schedule`` (``None`` or a callable also work).
LR_SCHEDULES = ("linear",)


def set_catch_interrupt(catch: bool) -> None:
    """
    Choose what Ctrl-C does inside art_ext's training loops: ``True`` (default) stops training, keeps the weights
    so far and warns; ``False`` lets the ``KeyboardInterrupt`` propagate (for scripts).

    :param catch: Whether to catch the interrupt.
    """
    if not isinstance(catch, bool):
        raise ValueError(f"`catch` must be a bool, got {catch!r}.")
    _CATCH_INTERRUPT[0] = catch


def check_value(value: Any, name: str, integer: bool = False, allow_zero: bool = False) -> None:
    """A positive (or non-negative) number or integer, else ``ValueError`` naming it (as ART's ``_check_params``)."""
    check_param(value, name, integer=integer, allow_zero=allow_zero)


def check_lr_schedule(lr_schedule: Any) -> None:
    """``None``, a name in :data:`LR_SCHEDULES` or a callable, else ``ValueError`` naming ``lr_schedule``."""
    if lr_schedule is not None and not callable(lr_schedule) and lr_schedule not in LR_SCHEDULES:
        raise ValueError(
            f"`lr_schedule` must be None, one of {LR_SCHEDULES} or a callable epoch -> factor, got {lr_schedule!r}."
        )


def lr_factor(lr_schedule: Any, epoch: int, nb_epochs: int) -> float:
    """The factor of the starting learning rate in `epoch` (0-based) of `nb_epochs` under `lr_schedule`."""
    if lr_schedule is None:
        return 1.0
    if lr_schedule == "linear":
        half = nb_epochs // 2
        return 1.0 if epoch < half else (nb_epochs - epoch) / (nb_epochs - half + 1)
    factor = float(lr_schedule(epoch))
    if not np.isfinite(factor) or factor < 0:
        raise ValueError(f"`lr_schedule({epoch})` returned {factor!r}; it must return a finite factor >= 0.")
    return factor


@dataclasses.dataclass
class LoopResult:
    """What a training loop did: the mean loss of each completed epoch and whether Ctrl-C stopped it."""

    history: list[float]
    interrupted: bool = False


def array_batches(
    arrays: tuple[np.ndarray | None, ...],
    batch_size: int,
    rng: np.random.Generator,
    estimator: Any = None,
) -> Iterable[tuple[np.ndarray, ...]]:
    """
    One epoch of shuffled mini-batches of equally long arrays (``None`` entries stay ``None``); on several processes,
    this rank's shard in batches of ``batch_size // world_size`` (:mod:`art_ext.defences.trainer._distributed`).

    :param arrays: ``(x, y, ...)``; the first is the input.
    :param batch_size: Batch size.
    :param rng: Generator of the shuffling.
    :param estimator: When given and the second array holds labels, its fit-time preprocessing defences are applied
                      to ``(x, y)`` of every batch (:func:`art_ext.backend.apply_fit_defences`).
    """
    for idx in epoch_indices(len(arrays[0]), batch_size, rng):  # this rank's shard when distributed
        batch = tuple(None if a is None else a[idx] for a in arrays)
        if estimator is not None:
            batch = fit_batch(estimator, batch)
        yield batch


def fit_batch(estimator: Any, batch: tuple) -> tuple:
    """Apply the estimator's fit-time non-differentiable defences to ``(x, y, ...)`` of one batch."""
    if not getattr(estimator, "preprocessing_operations", None):
        return batch
    x, y = apply_fit_defences(estimator, batch[0], batch[1] if len(batch) > 1 else None)
    if len(batch) > 2 and len(x) != len(batch[0]):
        raise ValueError("A fit-time preprocessing defence changed the batch size of a batch with extra arrays.")
    return (x, y) + tuple(batch[2:]) if len(batch) > 1 else (x,)


def generator_batches(generator: Any, estimator: Any = None) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """
    One epoch of ``(x, y)`` batches from an ART ``DataGenerator`` (``ceil(size / batch_size)`` calls of
    ``get_batch()``), with the estimator's fit-time defences applied as :func:`array_batches` does.

    :param generator: An ART ``DataGenerator``.
    :param estimator: Optional estimator whose fit-time defences are applied.
    """
    from art.data_generators import DataGenerator

    if not isinstance(generator, DataGenerator):
        raise ValueError(f"`generator` must be an ART DataGenerator, got {type(generator).__name__}.")
    nb_batches = int(np.ceil(generator.size / generator.batch_size))
    for _ in range(nb_batches):
        x, y = generator.get_batch()
        batch = (np.asarray(x, dtype=np.float32), np.asarray(y))
        yield batch if estimator is None else fit_batch(estimator, batch)


def check_restore_best(restore_best: Any, validation: Any) -> bool:
    """A bool, ``True`` only with validation data, else ``ValueError`` naming ``restore_best``."""
    if not isinstance(restore_best, bool):
        raise ValueError(f"`restore_best` must be a bool, got {restore_best!r}.")
    if restore_best and validation is None:
        raise ValueError("`restore_best=True` needs `validation_data=(x_val, y_val)` to select on.")
    return restore_best


class BestWeights:
    """
    The weights of the epoch with the best validation accuracy so far (the earliest among ties), for a trainer's
    ``restore_best``: :meth:`update` after each epoch's validation, :meth:`restore` when training ends (an interrupted
    run included).

    :param classifier: The classifier being trained.
    :param enabled: ``False`` makes both methods no-ops.
    """

    def __init__(self, classifier: Any, enabled: bool) -> None:
        self._classifier = classifier
        self._enabled = enabled
        self._ops = get_backend(classifier) if enabled else None
        self._weights: list[np.ndarray] | None = None
        self._best = -np.inf
        self._epochs = 0
        self.best_epoch: int | None = None

    def update(self, accuracy: float) -> None:
        """Record one epoch's validation accuracy; copy the weights when it is the best so far."""
        self._epochs += 1
        if self._enabled and accuracy > self._best:
            self._best, self.best_epoch = accuracy, self._epochs
            self._weights = self._ops.get_weights(self._classifier)

    def restore(self) -> int | None:
        """Put the best epoch's weights back (when it was not the last); its 1-based number, or ``None``."""
        if self._weights is not None and self.best_epoch != self._epochs:
            self._ops.set_weights(self._classifier, self._weights)
            logger.info("Restored the weights of epoch %d (best validation accuracy).", self.best_epoch)
        return self.best_epoch


def validation_accuracy(classifier: Any, x_val: np.ndarray, y_val: np.ndarray, batch_size: int = 128) -> float:
    """Accuracy of `classifier` on ``(x_val, y_val)`` (labels as indices or one-hot)."""
    from art_ext.utils.checks import check_labels
    from art_ext.utils.outputs import predict_in_batches

    labels = check_labels(y_val, classifier.nb_classes, len(x_val), name="validation_data")
    preds = predict_in_batches(classifier, np.asarray(x_val, dtype=np.float32), batch_size)
    return float(np.mean(preds.argmax(axis=1) == labels))


def check_validation_data(classifier: Any, validation_data: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(x_val, y_val)`` checked against the classifier, or ``None``."""
    if validation_data is None:
        return None
    from art_ext.utils.checks import check_finite, check_labels

    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise ValueError("`validation_data` must be a tuple (x_val, y_val).")
    x_val = check_finite(validation_data[0], "validation_data[0]").astype(np.float32)
    if x_val.shape[1:] != tuple(classifier.input_shape):
        raise ValueError(
            f"`validation_data[0]` has sample shape {x_val.shape[1:]}, the classifier expects "
            f"{tuple(classifier.input_shape)}."
        )
    y_val = check_labels(validation_data[1], classifier.nb_classes, len(x_val), name="validation_data[1]")
    return x_val, y_val


class TrainingLoop:
    """
    Epochs of optimizer steps on a loss, with a progress bar, a loss history and Ctrl-C handling (see the module
    documentation).
    """

    def __init__(
        self,
        estimator: Any,
        nb_epochs: int,
        desc: str = "training",
        verbose: bool = True,
        optimizer: Any = None,
        learning_rate: float | None = None,
        compile: bool = False,
        catch_interrupt: bool | None = None,
        input_dtypes: tuple[str, ...] | None = None,
        lr_schedule: Any = None,
    ) -> None:
        """
        :param estimator: The ART classifier (or framework model) whose trainable weights are updated.
        :param nb_epochs: Number of epochs.
        :param desc: Progress-bar label.
        :param verbose: Show the progress bar.
        :param optimizer: Optimizer to use (default: the estimator's own, else Adam).
        :param learning_rate: Learning rate to set on the estimator's optimizer, or of the new Adam (default 1e-3).
        :param compile: Compile the step (``tf.function`` on TensorFlow).
        :param catch_interrupt: Catch Ctrl-C (default: the value of :func:`set_catch_interrupt`, ``True``).
        :param input_dtypes: dtype of each batch entry as a tensor (default ``"float32"``; e.g. ``"int64"`` for
                             labels or token ids).
        :param lr_schedule: ``None``, ``"linear"`` or a callable ``epoch -> factor`` of the starting learning rate.
        """
        check_value(nb_epochs, "nb_epochs", integer=True)
        self.estimator = estimator
        self.ops = get_backend(estimator)
        self.nb_epochs = nb_epochs
        self.desc = desc
        self.verbose = verbose
        self.model = self.ops.model_of(estimator)
        self.weights = self.ops.trainable_weights(self.model)
        self.optimizer = self._optimizer(optimizer, learning_rate)
        self.compile = compile
        self.catch_interrupt = _CATCH_INTERRUPT[0] if catch_interrupt is None else catch_interrupt
        self.input_dtypes = input_dtypes
        check_lr_schedule(lr_schedule)
        self.lr_schedule = lr_schedule

    def _optimizer(self, optimizer: Any, learning_rate: float | None) -> Any:
        ops = self.ops
        if optimizer is None:
            optimizer = ops.optimizer_of(self.estimator)
            if optimizer is not None and learning_rate is not None:
                ops.set_learning_rate(optimizer, learning_rate)
        if optimizer is None:
            optimizer = ops.make_optimizer(self.weights, "adam", 1e-3 if learning_rate is None else learning_rate)
        return optimizer

    def _tensors(self, batch: tuple) -> tuple:
        ops = self.ops
        device = ops.device_of(self.estimator)
        dtypes = self.input_dtypes or ("float32",) * len(batch)
        return tuple(None if b is None else ops.asarray(b, dtype=dt, device=device) for b, dt in zip(batch, dtypes))

    def run(
        self,
        loss_fn: Callable[..., Any],
        batches: Callable[[int], Iterable[tuple]],
        on_epoch_end: Callable[[int, float], dict | None] | None = None,
    ) -> LoopResult:
        """
        Train.

        :param loss_fn: ``loss_fn(*batch_tensors)`` returns the scalar loss of one batch.
        :param batches: ``batches(epoch)`` yields the epoch's batches as tuples of numpy arrays.
        :param on_epoch_end: Optional ``f(epoch, mean_loss)`` returning extra progress-bar fields.
        :return: The :class:`LoopResult`.
        """
        step = make_step(self.ops, self.model, self.optimizer, loss_fn, self.weights, compile=self.compile)
        result = LoopResult(history=[])
        bar = progress(range(self.nb_epochs), desc=self.desc, disable=not self.verbose)  # rank 0 only
        base_lr = None if self.lr_schedule is None else self.ops.get_learning_rate(self.optimizer)
        try:
            for epoch in bar:
                if base_lr is not None:
                    lr = base_lr * lr_factor(self.lr_schedule, epoch, self.nb_epochs)
                    self.ops.set_learning_rate(self.optimizer, lr)
                losses = [float(self.ops.to_numpy(step(*self._tensors(batch)))) for batch in batches(epoch)]
                mean = mean_over_ranks(float(np.mean(losses)) if losses else float("nan"))
                result.history.append(mean)
                postfix = {"loss": f"{mean:.4f}"}
                if on_epoch_end is not None:
                    postfix.update(on_epoch_end(epoch, mean) or {})
                bar.set_postfix(postfix)
        except KeyboardInterrupt:
            if not self.catch_interrupt:
                raise
            result.interrupted = True
            message = (
                f"{self.desc} interrupted after {len(result.history)} of {self.nb_epochs} epochs; keeping the weights "
                "trained so far (call art_ext.defences.trainer.set_catch_interrupt(False) to get the "
                "KeyboardInterrupt instead)."
            )
            logger.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)
        finally:
            if base_lr is not None:  # the user's optimizer as it was handed over
                self.ops.set_learning_rate(self.optimizer, base_lr)
        return result
