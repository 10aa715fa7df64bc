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

Text classifiers over right-padded int token ids (id 0 = padding), with frequency-normalised word embeddings
(Miyato et al., 2017), built by :func:`build_text_model` and wrapped by :func:`make_text_classifier`:

=============== =====================================================================
name            architecture
=============== =====================================================================
``text_lstm``   NormalizedEmbedding, LSTM (state at the last real token), Dense
``text_cnn``    NormalizedEmbedding, Conv1D 3 + ReLU, max over real tokens, Dense
=============== =====================================================================

Generators for data-free model extraction (:data:`GENERATORS`, :func:`build_generator`, :func:`make_generator`):
``generator_8x8``, ``generator_28x28`` and ``generator_32x32``, the DFME paper's generator shape at three image sizes.
"""

from __future__ import annotations

from typing import Any

from art_ext.backend import framework_of
from art_ext.utils.seed import set_seed

__all__ = [
    "ARCHITECTURES",
    "GENERATORS",
    "TEXT_ARCHITECTURES",
    "ResidualBlock",
    "build_generator",
    "build_model",
    "build_text_model",
    "clone_classifier",
    "make_classifier",
    "make_generator",
    "make_text_classifier",
    "to_probability_classifier",
]

#: name -> (input shape channels-first, input shape channels-last)
ARCHITECTURES = {
    "digits_mlp": ((1, 8, 8), (8, 8, 1)),
    "digits_cnn": ((1, 8, 8), (8, 8, 1)),
    "lenet5": ((1, 28, 28), (28, 28, 1)),
}

#: Text architectures over token ids (see :func:`build_text_model`).
TEXT_ARCHITECTURES = ("text_lstm", "text_cnn")

#: name -> (image side, default width ``ngf``) of the reference DFME generators.
GENERATORS = {
    "generator_8x8": (8, 16),
    "generator_28x28": (28, 64),
    "generator_32x32": (32, 64),
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


def ResidualBlock(body: Any, shortcut: Any = None) -> Any:  # noqa: N802 (a layer factory, named like a class)
    """
    A residual block ``y = body(x) + shortcut(x)`` for either framework: an ``nn.Module`` when `body` is a PyTorch
    module, a Keras layer when it is a Keras layer/model. The shortcut is the identity when ``None``.
    :class:`~art_ext.estimators.certification.LipschitzCertifier` bounds it by the sum of the branches' bounds.

    :param body: The residual branch (e.g. an ``nn.Sequential`` or ``keras.Sequential``).
    :param shortcut: The shortcut branch, or ``None`` for the identity.
    :return: The block.
    """
    if framework_of(body) == "pytorch":
        from art_ext.models.pytorch import residual_block
    else:
        from art_ext.models.tensorflow import residual_block
    return residual_block(body, shortcut)


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


def build_text_model(
    name: str,
    framework: str,
    vocab_size: int,
    frequencies: Any = None,
    embedding_dim: int = 64,
    nb_classes: int = 2,
    seed: int | None = None,
    **kwargs,
) -> Any:
    """
    Build a reference text model with a frequency-normalised embedding, ``embed`` and ``classify`` methods.

    :param name: ``"text_lstm"`` or ``"text_cnn"``.
    :param framework: ``"pytorch"`` or ``"tensorflow"``.
    :param vocab_size: Vocabulary size (id 0 is padding).
    :param frequencies: Token counts for the embedding normalisation, e.g. ``Vocabulary.counts``; uniform if ``None``.
    :param embedding_dim: Embedding size.
    :param nb_classes: Number of output logits.
    :param seed: Seed for the weight initialisation.
    :param kwargs: ``hidden`` (LSTM) or ``filters``/``kernel_size`` (CNN).
    :return: A ``torch.nn.Module`` or Keras model outputting logits.
    """
    if name not in TEXT_ARCHITECTURES:
        raise ValueError(f"Unknown text architecture {name!r}; choose from {list(TEXT_ARCHITECTURES)}.")
    from art_ext.utils.checks import check_positive

    check_positive(vocab_size, "vocab_size", integer=True)
    check_positive(embedding_dim, "embedding_dim", integer=True)
    framework = framework_of(framework)
    set_seed(seed, framework)
    if framework == "pytorch":
        from art_ext.models import pytorch as module
    else:
        from art_ext.models import tensorflow as module
    return getattr(module, name)(
        vocab_size, frequencies=frequencies, embedding_dim=embedding_dim, nb_classes=nb_classes, **kwargs
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


def build_generator(
    name: str,
    framework: str,
    channels: int = 1,
    encoding_length: int = 100,
    ngf: int | None = None,
    seed: int | None = None,
) -> Any:
    """
    Build a reference DFME generator (``nn.Module`` channels-first, or Keras model channels-last).

    :param name: One of :data:`GENERATORS`.
    :param framework: ``"pytorch"`` or ``"tensorflow"``.
    :param channels: Image channels.
    :param encoding_length: Length of the noise vector.
    :param ngf: Width of the convolution blocks (default: the size's entry in :data:`GENERATORS`).
    :param seed: Seed for the weight initialisation.
    :return: The generator model; it outputs unbounded images that the attack squashes into the input range.
    """
    if name not in GENERATORS:
        raise ValueError(f"Unknown generator {name!r}; choose from {sorted(GENERATORS)}.")
    framework = framework_of(framework)
    size, default_ngf = GENERATORS[name]
    set_seed(seed, framework)
    if framework == "pytorch":
        from art_ext.models.pytorch import dfme_generator
    else:
        from art_ext.models.tensorflow import dfme_generator
    return dfme_generator(encoding_length=encoding_length, img_size=size, channels=channels, ngf=ngf or default_ngf)


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
