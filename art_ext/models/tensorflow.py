"""Reference architectures in TensorFlow/Keras, channels-last, with the shapes of the PyTorch ones."""

from __future__ import annotations

from typing import Any


def digits_mlp(nb_classes: int = 10, hidden: int = 128) -> Any:
    """MLP for 8x8 digits: Flatten -> Dense(hidden) -> ReLU -> Dense(nb_classes)."""
    import tensorflow as tf

    layers = tf.keras.layers
    return tf.keras.Sequential(
        [tf.keras.Input((8, 8, 1)), layers.Flatten(), layers.Dense(hidden, activation="relu"), layers.Dense(nb_classes)]
    )


def digits_cnn(nb_classes: int = 10) -> Any:
    """Small CNN for ``(8, 8, 1)`` digits: two 3x3 convolutions, a 2x2 max-pool and two dense layers."""
    import tensorflow as tf

    layers = tf.keras.layers
    return tf.keras.Sequential(
        [
            tf.keras.Input((8, 8, 1)),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(nb_classes),
        ]
    )


def lenet5(nb_classes: int = 10) -> Any:
    """LeNet-5 with ReLU and max-pooling, for ``(28, 28, 1)`` inputs."""
    import tensorflow as tf

    layers = tf.keras.layers
    return tf.keras.Sequential(
        [
            tf.keras.Input((28, 28, 1)),
            layers.Conv2D(6, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(16, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(120, activation="relu"),
            layers.Dense(84, activation="relu"),
            layers.Dense(nb_classes),
        ]
    )


_RESIDUAL_CLASS: Any = None


def residual_block(body: Any, shortcut: Any = None) -> Any:
    """
    ``y = body(x) + shortcut(x)`` (identity shortcut when `shortcut` is ``None``), a Keras layer that
    :class:`~art_ext.estimators.certification.LipschitzCertifier` bounds as the sum of its branches' bounds.
    """
    global _RESIDUAL_CLASS
    if _RESIDUAL_CLASS is None:
        import keras

        class ResidualBlock(keras.layers.Layer):
            _art_ext_residual = True

            def __init__(self, body, shortcut=None, **kwargs):
                super().__init__(**kwargs)
                self.body = body
                self.shortcut = shortcut

            def call(self, x, training=None):
                out = self.body(x, training=training)
                return out + (x if self.shortcut is None else self.shortcut(x, training=training))

        _RESIDUAL_CLASS = ResidualBlock
    return _RESIDUAL_CLASS(body, shortcut)
