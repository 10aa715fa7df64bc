"""Model builders of the compatibility suite (imported by its conftest and tests)."""

from __future__ import annotations

import numpy as np

NB_FEATURES = 64
NB_CLASSES = 10


def mlp_model(framework: str, seed: int = 0, softmax: bool = False):
    """64 -> 32 (tanh) -> 10, logits (or probabilities with `softmax`)."""
    from art_ext.utils.seed import set_seed

    set_seed(seed, framework)
    if framework == "pytorch":
        import torch

        layers = [torch.nn.Linear(NB_FEATURES, 32), torch.nn.Tanh(), torch.nn.Linear(32, NB_CLASSES)]
        if softmax:
            layers.append(torch.nn.Softmax(dim=1))
        return torch.nn.Sequential(*layers)
    import keras

    return keras.Sequential(
        [
            keras.Input((NB_FEATURES,)),
            keras.layers.Dense(32, activation="tanh"),
            keras.layers.Dense(NB_CLASSES, activation="softmax" if softmax else None),
        ]
    )


def framework_classifier(framework: str, seed: int = 0, softmax: bool = False, **kwargs):
    """An untrained ART ``PyTorchClassifier`` / ``TensorFlowV2Classifier`` with Adam."""
    model = mlp_model(framework, seed, softmax)
    kwargs.setdefault("clip_values", (0.0, 1.0))
    if framework == "pytorch":
        import torch
        from art.estimators.classification import PyTorchClassifier

        loss = torch.nn.NLLLoss() if softmax else torch.nn.CrossEntropyLoss()
        return PyTorchClassifier(
            model,
            loss=loss,
            optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
            input_shape=(NB_FEATURES,),
            nb_classes=NB_CLASSES,
            **kwargs,
        )
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier

    return TensorFlowV2Classifier(
        model,
        nb_classes=NB_CLASSES,
        input_shape=(NB_FEATURES,),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax),
        optimizer=tf.keras.optimizers.Adam(1e-2),
        **kwargs,
    )


def keras_classifier(seed: int = 0, softmax: bool = True, **kwargs):
    """An untrained ART ``KerasClassifier`` (Keras 3 model compiled with Adam), as in ART's own tests."""
    import keras
    from art.estimators.classification import KerasClassifier

    model = mlp_model("tensorflow", seed, softmax)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy", metrics=["accuracy"])
    kwargs.setdefault("clip_values", (0.0, 1.0))
    return KerasClassifier(model, use_logits=not softmax, **kwargs)


def make_estimator(kind: str, framework: str, seed: int = 0, **kwargs):
    """An untrained estimator of `kind` (``"framework"`` or ``"keras"``)."""
    if kind == "keras":
        return keras_classifier(seed, **kwargs)
    return framework_classifier(framework, seed, **kwargs)


def fit(classifier, data, nb_epochs: int = 30):
    """Train with the estimator's own ``fit`` (ART's path) and return it."""
    (x_train, y_train), _ = data
    classifier.fit(x_train, np.eye(NB_CLASSES, dtype=np.float32)[y_train], nb_epochs=nb_epochs, batch_size=64)
    return classifier


def accuracy(classifier, x, y) -> float:
    return float(np.mean(classifier.predict(x).argmax(1) == y))
