"""
Helpers on ART classifiers that the library itself needs: wrap a model with a loss and an optimizer, clone a
classifier, give a logit classifier a probability twin, read its preprocessing.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from art_ext.backend import framework_of
from art_ext.utils.seed import set_seed

__all__ = [
    "OPTIMIZERS",
    "clone_classifier",
    "clone_keras_model",
    "preprocessing_of",
    "probability_nll_loss",
    "to_probability_classifier",
    "wrap_model",
]

#: Optimizers :func:`wrap_model` builds (SGD with momentum 0.9).
OPTIMIZERS = ("adam", "sgd")


def probability_nll_loss() -> Any:
    """Negative log-likelihood of a PyTorch model that outputs probabilities (``CrossEntropyLoss`` wants logits)."""
    import torch
    from torch import nn

    class ProbabilityNLLLoss(nn.Module):
        def forward(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            if target.dim() == 2:
                target = target.argmax(dim=1)
            return nn.functional.nll_loss(torch.log(probs.clamp_min(1e-12)), target.long())

    return ProbabilityNLLLoss()


def _check_preprocessing(preprocessing: Any) -> None:
    if preprocessing is None:
        return
    try:
        _, divisor = preprocessing
    except (TypeError, ValueError):
        raise ValueError(f"`preprocessing` must be a (subtrahend, divisor) pair, got {preprocessing!r}.") from None
    import numpy as np

    arr = np.asarray(divisor, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr == 0):
        raise ValueError(
            f"`preprocessing` divides the inputs by {divisor!r}: the divisor must be finite and non-zero "
            "(e.g. (0.0, 1.0) for no preprocessing)."
        )


def wrap_model(
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
    Wrap a logit-output ``torch.nn.Module`` or Keras model as an ART ``PyTorchClassifier`` or
    ``TensorFlowV2Classifier`` with a cross-entropy loss and an optimizer.

    :param model: A ``torch.nn.Module`` or Keras model outputting logits.
    :param input_shape: Input shape without the batch dimension.
    :param nb_classes: Number of classes.
    :param output: ``"logits"``, or ``"probabilities"`` to append a softmax (the loss follows).
    :param optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
    :param learning_rate: Learning rate.
    :param clip_values: Input range.
    :param preprocessing: ART ``(subtrahend, divisor)`` preprocessing; the divisor must be non-zero.
    :param device_type: ``"gpu"`` (CUDA when present) or ``"cpu"``; PyTorch only.
    :return: The ART classifier.
    :raises ValueError: On an unknown `output` or `optimizer`, a non-positive learning rate or a zero divisor.
    """
    if output not in ("logits", "probabilities"):
        raise ValueError(f"`output` must be 'logits' or 'probabilities', got {output!r}.")
    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"`optimizer` must be one of {OPTIMIZERS}, got {optimizer!r} "
            "(or wrap the model with ART's classifier and your own optimizer)."
        )
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, numbers.Real)
        or not math.isfinite(learning_rate)
        or learning_rate <= 0
    ):
        raise ValueError(f"`learning_rate` must be a positive number, got {learning_rate!r}.")
    if isinstance(nb_classes, bool) or not isinstance(nb_classes, numbers.Integral) or nb_classes < 2:
        raise ValueError(f"`nb_classes` must be an int >= 2, got {nb_classes!r}.")
    if device_type not in ("gpu", "cpu"):
        raise ValueError(f"`device_type` must be 'gpu' or 'cpu', got {device_type!r}.")
    _check_preprocessing(preprocessing)
    framework = framework_of(model)
    if framework == "pytorch":
        import torch
        from art.estimators.classification import PyTorchClassifier

        if output == "probabilities":
            model = torch.nn.Sequential(model, torch.nn.Softmax(dim=1))
        opt = (
            torch.optim.Adam(model.parameters(), lr=learning_rate)
            if optimizer == "adam"
            else torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9)
        )
        loss = torch.nn.CrossEntropyLoss() if output == "logits" else probability_nll_loss()
        return PyTorchClassifier(
            model=model,
            loss=loss,
            optimizer=opt,
            input_shape=tuple(input_shape),
            nb_classes=nb_classes,
            clip_values=clip_values,
            preprocessing=preprocessing,
            device_type=device_type,
        )
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier

    if output == "probabilities":
        model = tf.keras.Sequential([model, tf.keras.layers.Softmax()])
    opt = (
        tf.keras.optimizers.Adam(learning_rate)
        if optimizer == "adam"
        else tf.keras.optimizers.SGD(learning_rate, momentum=0.9)
    )
    loss_object = tf.keras.losses.CategoricalCrossentropy(from_logits=output == "logits")

    # ART's fit defines its tf.function inside fit, so every call traces it again (about half a second): ART trainers
    # that call fit once per batch (AdversarialTrainer) become 20x slower. A step traced once per classifier avoids it.
    @tf.function(reduce_retracing=True)
    def train_step(keras_model, images, labels):
        with tf.GradientTape() as tape:
            loss = loss_object(labels, keras_model(images, training=True))
        gradients = tape.gradient(loss, keras_model.trainable_variables)
        opt.apply_gradients(zip(gradients, keras_model.trainable_variables))

    if hasattr(opt, "_check_variables_are_known"):  # as ART does: Keras 3 optimizers built inside a tf.function
        opt._check_variables_are_known = lambda *args, **kwargs: None
    return TensorFlowV2Classifier(
        model=model,
        nb_classes=nb_classes,
        input_shape=tuple(input_shape),
        loss_object=loss_object,
        optimizer=opt,
        train_step=train_step,
        clip_values=clip_values,
        preprocessing=preprocessing,
        channels_first=False,
    )


def preprocessing_of(classifier: Any) -> tuple:
    """
    The ``(mean, std)`` of a classifier's ART mean/std preprocessing, or ``(0.0, 1.0)`` when it has none.

    :param classifier: An ART classifier.
    :return: The pair, as ART's ``preprocessing=`` takes it.
    """
    from art.preprocessing.standardisation_mean_std.numpy import StandardisationMeanStd

    for op in getattr(classifier, "preprocessing_operations", []) or []:
        if isinstance(op, StandardisationMeanStd) or type(op).__name__.startswith("StandardisationMeanStd"):
            return (op.mean, op.std)
    return (0.0, 1.0)


def to_probability_classifier(classifier: Any) -> Any:
    """
    A probability-output twin of a logit-output ART classifier: same weights (shared, not copied), a softmax on top.

    :param classifier: A ``PyTorchClassifier`` or ``TensorFlowV2Classifier`` whose model outputs logits.
    :return: A new classifier of the same framework returning probabilities.
    """
    framework = framework_of(classifier)
    twin = wrap_model(
        classifier.model,
        input_shape=classifier.input_shape,
        nb_classes=classifier.nb_classes,
        output="probabilities",
        clip_values=classifier.clip_values,
        preprocessing=preprocessing_of(classifier),
    )
    if framework == "pytorch":
        twin._device = classifier._device
        twin.model.to(classifier._device)
    return twin


def clone_classifier(classifier: Any, reinitialise: bool = True, seed: int | None = None) -> Any:
    """
    A new ART classifier with the architecture, loss, optimizer type, clip values and preprocessing of `classifier`,
    with freshly initialised weights (or copied ones), and its own optimizer.

    :param classifier: A ``PyTorchClassifier`` or ``TensorFlowV2Classifier``.
    :param reinitialise: Draw new weights (``True``) or copy the current ones (``False``).
    :param seed: Seed of the new initialisation.
    :return: The new classifier (untrained when `reinitialise`).
    :raises TypeError: When the classifier is of neither framework or its model cannot be cloned.
    """
    framework = framework_of(classifier)
    set_seed(seed, framework)
    preprocessing = preprocessing_of(classifier)
    if framework == "pytorch":
        import copy

        import torch
        from art.estimators.classification import PyTorchClassifier

        model = copy.deepcopy(classifier.model)
        if reinitialise:
            for module in model.modules():
                if callable(getattr(module, "reset_parameters", None)):
                    module.reset_parameters()
        old = getattr(classifier, "_optimizer", None)
        optimizer = (
            type(old)(model.parameters(), **old.defaults)
            if old is not None
            else torch.optim.Adam(model.parameters(), lr=1e-3)
        )
        return PyTorchClassifier(
            model=model,
            loss=classifier._loss,
            optimizer=optimizer,
            input_shape=tuple(classifier.input_shape),
            nb_classes=classifier.nb_classes,
            channels_first=classifier.channels_first,
            clip_values=classifier.clip_values,
            preprocessing=preprocessing,
            device_type="cpu" if classifier._device.type == "cpu" else "gpu",
        )
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier

    try:
        model = clone_keras_model(classifier.model)
    except (ValueError, TypeError) as error:
        raise TypeError(f"Cannot clone the Keras model of this classifier: {error}") from error
    if not reinitialise:
        model.set_weights(classifier.model.get_weights())
    old = getattr(classifier, "_optimizer", None)
    optimizer = type(old).from_config(old.get_config()) if old is not None else tf.keras.optimizers.Adam(1e-3)
    return TensorFlowV2Classifier(
        model=model,
        nb_classes=classifier.nb_classes,
        input_shape=tuple(classifier.input_shape),
        loss_object=getattr(classifier, "_loss_object", None),
        optimizer=optimizer,
        channels_first=classifier.channels_first,
        clip_values=classifier.clip_values,
        preprocessing=preprocessing,
    )


def clone_keras_model(model: Any) -> Any:
    """
    ``keras.models.clone_model`` (same architecture, fresh weights from the layers' own initialisers), also for layers
    built with plain-function initialisers, regularisers or constraints (as ART's test models are), which Keras
    cannot rebuild from their serialised config: such a layer is rebuilt from its config with the very functions it
    holds, so the clone re-runs the model's own construction.

    :param model: A Keras model.
    :return: The clone (a new model; its weights are drawn again, not copied).
    :raises ValueError: When a layer can be rebuilt neither way.
    """
    import keras

    try:
        return keras.models.clone_model(model)
    except (ValueError, TypeError):
        pass

    def rebuild(layer: Any) -> Any:
        config = layer.get_config()
        for key, value in config.items():
            if (
                isinstance(value, dict)
                and value.get("class_name") == "function"
                and callable(getattr(layer, key, None))
            ):
                config[key] = getattr(layer, key)
        return layer.__class__.from_config(config)

    try:
        return keras.models.clone_model(model, clone_function=rebuild)
    except (ValueError, TypeError) as error:
        raise ValueError(f"Cannot rebuild the Keras model {model.name!r}: {error}") from error
