"""
Reference architectures in PyTorch and TensorFlow with identical shapes, and helpers that wrap them as ART
classifiers with a sensible loss and optimizer.

=============== ============== =========================================
name            input          architecture
=============== ============== =========================================
``digits_mlp``  8x8x1          Flatten, Dense 128, ReLU, Dense 10
``digits_cnn``  8x8x1          Conv 16, Conv 32, MaxPool, Dense 64, Dense 10
``lenet5``      28x28x1        LeNet-5 (ReLU, max-pooling)
=============== ============== =========================================
"""

from __future__ import annotations

from typing import Any

from art_ext.backend import framework_of
from art_ext.utils.seed import set_seed

__all__ = ["ARCHITECTURES", "build_model", "clone_classifier", "make_classifier", "to_probability_classifier"]

#: name -> (input shape channels-first, input shape channels-last)
ARCHITECTURES = {
    "digits_mlp": ((1, 8, 8), (8, 8, 1)),
    "digits_cnn": ((1, 8, 8), (8, 8, 1)),
    "lenet5": ((1, 28, 28), (28, 28, 1)),
}


def build_model(name: str, framework: str, nb_classes: int = 10, seed: int | None = None) -> Any:
    """
    Build a reference architecture.

    :param name: One of :data:`ARCHITECTURES`.
    :param framework: ``"pytorch"`` or ``"tensorflow"``.
    :param nb_classes: Number of output logits.
    :param seed: Seed for the weight initialisation.
    :return: A ``torch.nn.Module`` or a Keras model that outputs logits.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {name!r}; choose from {sorted(ARCHITECTURES)}.")
    framework = framework_of(framework)
    set_seed(seed, framework)
    if framework == "pytorch":
        from art_ext.models import pytorch as module
    else:
        from art_ext.models import tensorflow as module
    return getattr(module, name)(nb_classes=nb_classes)


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
    :param optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
    :param learning_rate: Learning rate.
    :param clip_values: Input range.
    :param preprocessing: ART ``(subtrahend, divisor)`` preprocessing.
    :param device_type: ``"gpu"`` (CUDA when present) or ``"cpu"``; PyTorch only.
    :return: The ART classifier.
    """
    if output not in ("logits", "probabilities"):
        raise ValueError(f"`output` must be 'logits' or 'probabilities', got {output!r}.")
    if isinstance(model, tuple):
        model = build_model(model[0], model[1], nb_classes=nb_classes)
    framework = framework_of(model)
    if framework == "pytorch":
        import torch
        from art.estimators.classification import PyTorchClassifier

        from art_ext.models.pytorch import probability_nll_loss

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
    return TensorFlowV2Classifier(
        model=model,
        nb_classes=nb_classes,
        input_shape=tuple(input_shape),
        loss_object=tf.keras.losses.CategoricalCrossentropy(from_logits=output == "logits"),
        optimizer=opt,
        clip_values=clip_values,
        preprocessing=preprocessing,
        channels_first=False,
    )


def to_probability_classifier(classifier: Any) -> Any:
    """
    A probability-output twin of a logit-output ART classifier: same weights (shared, not copied), a softmax on top.

    :param classifier: A ``PyTorchClassifier`` or ``TensorFlowV2Classifier`` whose model outputs logits.
    :return: A new classifier of the same framework returning probabilities.
    """
    framework = framework_of(classifier)
    twin = make_classifier(
        classifier.model,
        input_shape=classifier.input_shape,
        nb_classes=classifier.nb_classes,
        output="probabilities",
        clip_values=classifier.clip_values,
        preprocessing=_preprocessing_of(classifier),
    )
    if framework == "pytorch":
        twin._device = classifier._device
        twin.model.to(classifier._device)
    return twin


def _preprocessing_of(classifier: Any) -> tuple:
    from art.preprocessing.standardisation_mean_std.numpy import StandardisationMeanStd

    for op in getattr(classifier, "preprocessing_operations", []) or []:
        if isinstance(op, StandardisationMeanStd) or type(op).__name__.startswith("StandardisationMeanStd"):
            return (op.mean, op.std)
    return (0.0, 1.0)


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
    preprocessing = _preprocessing_of(classifier)
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
        clone = PyTorchClassifier(
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
        return clone
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier

    try:
        model = tf.keras.models.clone_model(classifier.model)
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
