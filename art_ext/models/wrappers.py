"""Wrap models as ART estimators with a sensible loss and optimizer."""

from __future__ import annotations

from typing import Any

from art_ext.backend import framework_of
from art_ext.estimators.classification.utils import wrap_model
from art_ext.models.architectures import build_model

__all__ = ["make_classifier", "make_generator", "make_text_classifier"]


def make_classifier(
    model: Any,
    input_shape: tuple[int, ...],
    nb_classes: int = 10,
    output: str = "logits",
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    clip_values: tuple[float, float] | None = (0.0, 1.0),
    preprocessing: tuple[float, float] = (0.0, 1.0),
    device_type: str = "gpu",
) -> Any:
    """
    Wrap a model (or a reference architecture's name) as an ART ``PyTorchClassifier`` or ``TensorFlowV2Classifier``
    with a cross-entropy loss and an optimizer.

    :param model: A ``torch.nn.Module`` or Keras model outputting logits, or a ``(name, framework)`` tuple.
    :param input_shape: Input shape without the batch dimension.
    :param nb_classes: Number of classes.
    :param output: ``"logits"``, or ``"probabilities"`` to append a softmax (the loss follows).
    :param optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9); anything else raises ``ValueError``.
    :param learning_rate: Learning rate.
    :param clip_values: Input range.
    :param preprocessing: ART ``(subtrahend, divisor)`` preprocessing; a zero divisor raises ``ValueError``.
    :param device_type: ``"gpu"`` (CUDA when present) or ``"cpu"``; PyTorch only.
    :return: The ART classifier.
    """
    if isinstance(model, tuple):
        if len(model) != 2:
            raise ValueError(f"`model` as a tuple must be (name, framework), got {model!r}.")
        model = build_model(model[0], model[1], nb_classes=nb_classes)
    return wrap_model(
        model,
        input_shape,
        nb_classes=nb_classes,
        output=output,
        optimizer=optimizer,
        learning_rate=learning_rate,
        clip_values=clip_values,
        preprocessing=preprocessing,
        device_type=device_type,
    )


def make_text_classifier(
    model: Any, max_len: int, nb_classes: int = 2, learning_rate: float = 1e-3, device_type: str = "gpu"
) -> Any:
    """
    Wrap a text model as a :class:`~art_ext.estimators.classification.PyTorchTextClassifier` or
    :class:`~art_ext.estimators.classification.TensorFlowV2TextClassifier` with cross-entropy and Adam.

    :param model: A model from :func:`build_text_model` (or any with ``embed`` and ``classify`` methods).
    :param max_len: Length of the padded token-id sequences.
    :param nb_classes: Number of classes.
    :param learning_rate: Adam's learning rate.
    :param device_type: ``"gpu"`` (CUDA when present) or ``"cpu"``; PyTorch only.
    :return: The ART text classifier.
    """
    if framework_of(model) == "pytorch":
        import torch

        from art_ext.estimators.classification.text import PyTorchTextClassifier

        return PyTorchTextClassifier(
            model,
            loss=torch.nn.CrossEntropyLoss(),
            max_len=max_len,
            nb_classes=nb_classes,
            optimizer=torch.optim.Adam(model.parameters(), lr=learning_rate),
            device_type=device_type,
        )
    import tensorflow as tf

    from art_ext.estimators.classification.text import TensorFlowV2TextClassifier

    return TensorFlowV2TextClassifier(
        model, max_len=max_len, nb_classes=nb_classes, optimizer=tf.keras.optimizers.Adam(learning_rate)
    )


def make_generator(model: Any, encoding_length: int = 100, clip_values: tuple | None = None, **kwargs) -> Any:
    """
    Wrap a generator model as an ART generator estimator of its framework: art_ext's
    :class:`~art_ext.estimators.generation.PyTorchGenerator` or ART's ``TensorFlowV2Generator``.

    :param model: A ``torch.nn.Module`` or Keras model mapping ``(nb_samples, encoding_length)`` noise to images.
    :param encoding_length: Length of the noise vector.
    :param clip_values: The range of the model's outputs when they are bounded (``(-1, 1)`` for a last ``tanh``,
                        ``(0, 1)`` for a sigmoid): DFME then uses them as they are (mapped onto the victim's range,
                        clipped). ``None`` (default) declares them unbounded: DFME squashes them with a scaled ``tanh``.
    :param kwargs: Passed to the estimator (e.g. ``device_type`` for PyTorch).
    :return: The generator estimator.
    """
    if framework_of(model) == "pytorch":
        from art_ext.estimators.generation import PyTorchGenerator

        return PyTorchGenerator(
            encoding_length=encoding_length, model=model, channels_first=True, clip_values=clip_values, **kwargs
        )
    from art.estimators.generation import TensorFlowV2Generator

    return TensorFlowV2Generator(
        encoding_length=encoding_length, model=model, channels_first=False, clip_values=clip_values, **kwargs
    )
