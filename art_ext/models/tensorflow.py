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


def dfme_generator(encoding_length: int = 100, img_size: int = 32, channels: int = 1, ngf: int = 64) -> Any:
    """
    Generator of the DFME paper's shape for channels-last ``(img_size, img_size, channels)`` images, the twin of
    :func:`art_ext.models.pytorch.dfme_generator` (unbounded outputs after an affine-free batch normalisation).

    :param encoding_length: Length of the noise vector ``z``.
    :param img_size: Image side, a multiple of 4 (8, 28 and 32 are the reference sizes).
    :param channels: Number of image channels.
    :param ngf: Width of the convolution blocks.
    """
    import tensorflow as tf

    if img_size % 4:
        raise ValueError(f"`img_size` must be a multiple of 4, got {img_size}.")
    init = img_size // 4
    layers = tf.keras.layers
    # PyTorch's BatchNorm2d defaults (eps 1e-5, running-average momentum 0.1).
    bn = dict(epsilon=1e-5, momentum=0.9)
    return tf.keras.Sequential(
        [
            tf.keras.Input((encoding_length,)),
            layers.Dense(2 * ngf * init * init),
            layers.Reshape((init, init, 2 * ngf)),
            layers.BatchNormalization(**bn),
            layers.UpSampling2D(2),
            layers.Conv2D(2 * ngf, 3, padding="same"),
            layers.BatchNormalization(**bn),
            layers.LeakyReLU(0.2),
            layers.UpSampling2D(2),
            layers.Conv2D(ngf, 3, padding="same"),
            layers.BatchNormalization(**bn),
            layers.LeakyReLU(0.2),
            layers.Conv2D(channels, 3, padding="same"),
            layers.BatchNormalization(center=False, scale=False, **bn),
        ]
    )
