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


def lipschitz_mlp(nb_classes: int = 10, width: int = 1024, depth: int = 2) -> Any:
    """Keras twin of :func:`art_ext.models.pytorch.lipschitz_mlp`, for ``(28, 28, 1)`` inputs."""
    import tensorflow as tf

    layers = tf.keras.layers
    hidden = [layers.Dense(width, activation="relu") for _ in range(depth)]
    return tf.keras.Sequential([tf.keras.Input((28, 28, 1)), layers.Flatten(), *hidden, layers.Dense(nb_classes)])


def _frequencies(vocab_size: int, frequencies: Any) -> Any:
    from art_ext.models.pytorch import _frequencies as freqs

    return freqs(vocab_size, frequencies)


def normalized_embedding(vocab_size: int, embedding_dim: int, frequencies: Any = None) -> Any:
    """Keras twin of :func:`art_ext.models.pytorch.normalized_embedding` (frequency-weighted normalisation)."""
    import tensorflow as tf

    freqs = tf.constant(_frequencies(vocab_size, frequencies)[:, None])

    class NormalizedEmbedding(tf.keras.layers.Layer):
        def build(self, input_shape=None):
            self.weight = self.add_weight(
                shape=(vocab_size, embedding_dim),
                initializer=tf.keras.initializers.RandomNormal(stddev=0.1),
                name="embeddings",
            )

        def call(self, ids):
            w = tf.convert_to_tensor(self.weight)
            mean = tf.reduce_sum(freqs * w, axis=0, keepdims=True)
            var = tf.reduce_sum(freqs * (w - mean) ** 2, axis=0, keepdims=True)
            return tf.gather((w - mean) / tf.sqrt(var + 1e-6), tf.cast(ids, tf.int32))

    return NormalizedEmbedding()


def _text_model_class():
    import tensorflow as tf

    class TextModel(tf.keras.Model):
        """Keras text classifier: ``embed(ids)``, ``classify(embeddings, mask, training)``, call on ids."""

        def __init__(self, vocab_size, embedding, encoder, head):
            super().__init__()
            self.vocab_size = vocab_size
            self.embedding = embedding
            self.encoder = encoder
            self.head = head

        def embed(self, ids):
            return self.embedding(ids)

        def classify(self, embeddings, mask, training=False):
            return self.head(self.encoder(embeddings, mask, training))

        def call(self, ids, training=False):
            ids = tf.cast(ids, tf.int32)
            return self.classify(self.embed(ids), tf.cast(tf.not_equal(ids, 0), tf.float32), training=training)

    return TextModel


def text_lstm(vocab_size: int, frequencies: Any = None, embedding_dim: int = 64, hidden: int = 64, nb_classes: int = 2):
    """Normalised embedding -> LSTM (last real token's state) -> Dense, over right-padded ids (0 = padding)."""
    import tensorflow as tf

    lstm = tf.keras.layers.LSTM(hidden)

    def encoder(embeddings, mask, training):
        return lstm(embeddings, mask=tf.cast(mask, tf.bool), training=training)

    model = _text_model_class()(
        vocab_size,
        normalized_embedding(vocab_size, embedding_dim, frequencies),
        encoder,
        tf.keras.layers.Dense(nb_classes),
    )
    model.encoder_layers = [lstm]
    model(tf.ones((1, 4), dtype=tf.int32))
    return model


def text_cnn(
    vocab_size: int,
    frequencies: Any = None,
    embedding_dim: int = 64,
    filters: int = 64,
    kernel_size: int = 3,
    nb_classes: int = 2,
) -> Any:
    """Normalised embedding -> Conv1D + ReLU -> max over real tokens -> Dense, over right-padded ids."""
    import tensorflow as tf

    conv = tf.keras.layers.Conv1D(filters, kernel_size, padding="same", activation="relu")

    def encoder(embeddings, mask, training):
        h = conv(embeddings * mask[..., None])
        return tf.reduce_max(h - (1.0 - mask[..., None]) * 1e4, axis=1)

    model = _text_model_class()(
        vocab_size,
        normalized_embedding(vocab_size, embedding_dim, frequencies),
        encoder,
        tf.keras.layers.Dense(nb_classes),
    )
    model.encoder_layers = [conv]
    model(tf.ones((1, 4), dtype=tf.int32))
    return model


_RESIDUAL_CLASS: Any = None
_GROUP_SORT_CLASS: Any = None


def group_sort(group_size: int = 2, axis: int = -1) -> Any:
    """
    GroupSort activation (Anil et al., 2019) as a Keras layer: the features along `axis` split into consecutive
    groups of `group_size`, each sorted in ascending order; ``group_size=2`` is MaxMin. 1-Lipschitz in l2.
    """
    global _GROUP_SORT_CLASS
    if _GROUP_SORT_CLASS is None:
        import keras

        from art_ext.estimators.certification.keras_layers import group_sort_function

        class GroupSort(keras.layers.Layer):
            def __init__(self, group_size=2, axis=-1, **kwargs):
                super().__init__(**kwargs)
                self.group_size = group_size
                self.axis = axis

            def call(self, x):
                return group_sort_function(x, self.group_size, self.axis)

            def get_config(self):
                return {**super().get_config(), "group_size": self.group_size, "axis": self.axis}

        _GROUP_SORT_CLASS = GroupSort
    return _GROUP_SORT_CLASS(group_size, axis)


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


def multiscale_generator(
    encoding_length: int = 100, img_size: int = 28, channels: int = 1, ngf: int = 64, brightness: float = -1.0
) -> Any:
    """
    Multi-scale DFME generator for channels-last ``(img_size, img_size, channels)`` images, the twin of
    :func:`art_ext.models.pytorch.multiscale_generator` (bilinear upsampling with half-pixel centres in both).

    :param encoding_length: Length of the noise vector ``z``.
    :param img_size: Image side, a multiple of 4.
    :param channels: Number of image channels.
    :param ngf: Width of the quarter-size block (the half-size block has ``ngf // 2``).
    :param brightness: Initial shift of the output before the squashing (-1: images start darker than mid-range).
    """
    import tensorflow as tf

    if img_size % 4:
        raise ValueError(f"`img_size` must be a multiple of 4, got {img_size}.")
    init, half = img_size // 4, max(ngf // 2, 1)
    layers = tf.keras.layers
    bn = dict(epsilon=1e-5, momentum=0.9)  # PyTorch's BatchNorm2d defaults
    z = tf.keras.Input((encoding_length,))
    h = layers.Reshape((init, init, ngf))(layers.Dense(ngf * init * init)(z))
    h = layers.LeakyReLU(0.2)(layers.BatchNormalization(**bn)(h))
    h = layers.LeakyReLU(0.2)(layers.BatchNormalization(**bn)(layers.Conv2D(ngf, 3, padding="same")(h)))
    coarse = layers.Conv2D(channels, 3, padding="same")(h)
    f = layers.UpSampling2D(2, interpolation="bilinear")(h)
    f = layers.LeakyReLU(0.2)(layers.BatchNormalization(**bn)(layers.Conv2D(half, 3, padding="same")(f)))
    fine = layers.Conv2D(channels, 3, padding="same")(f)
    resize = dict(height=img_size, width=img_size, interpolation="bilinear")
    out = layers.Add()([layers.Resizing(**resize)(coarse), layers.Resizing(**resize)(fine)])
    out = layers.BatchNormalization(
        gamma_initializer=tf.keras.initializers.Constant(2.0),
        beta_initializer=tf.keras.initializers.Constant(brightness),
        **bn,
    )(out)
    return tf.keras.Model(z, out)
