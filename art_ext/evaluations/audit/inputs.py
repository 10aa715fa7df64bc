"""
What the audited inputs are (feature vectors, 1-D signals, images, token ids), read from the ART classifier's
``input_shape`` and ``channels_first`` and never guessed from a layer's name, and the embedding-space view of a text
classifier that the attacks perturb (as :mod:`art_ext.estimators.classification.text`'s trainers do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["InputKind", "input_kind", "embedding_view"]


@dataclass(frozen=True)
class InputKind:
    """
    ``name`` is ``"vector"`` (``(features,)``), ``"signal"`` (``(channels, steps)`` channels first, ``(steps,
    channels)`` channels last), ``"image"`` (``(channels, height, width)`` or ``(height, width, channels)``),
    ``"tokens"`` (integer token ids of a text classifier) or ``"tensor"`` (any other shape).
    """

    name: str
    shape: tuple
    channels_first: bool
    channels: int | None = None
    spatial: tuple = ()

    @property
    def square_image(self) -> bool:
        """Whether ART's image-only attacks (``SquareAttack``) apply: a square image, 8 pixels or more a side."""
        return self.name == "image" and self.spatial[0] == self.spatial[1] and self.spatial[0] >= 8

    def describe(self) -> str:
        layout = "channels first" if self.channels_first else "channels last"
        if self.name == "vector":
            return f"feature vectors of {self.shape[0]} features"
        if self.name == "signal":
            return f"1-D signals of {self.channels} channel(s) x {self.spatial[0]} steps ({layout})"
        if self.name == "image":
            h, w = self.spatial
            colour = {1: "grayscale", 3: "RGB"}.get(self.channels, f"{self.channels}-channel")
            return f"{colour} images {h}x{w} ({layout})"
        if self.name == "tokens":
            return f"token ids of length {self.shape[0]} (attacks perturb the word embeddings)"
        return f"tensors of shape {self.shape}"


def input_kind(classifier: Any) -> InputKind:
    """The :class:`InputKind` of an ART classifier's inputs (its ``input_shape`` and ``channels_first``)."""
    shape = tuple(int(s) for s in classifier.input_shape)
    first = bool(getattr(classifier, "channels_first", True))
    if getattr(classifier, "is_text_classifier", False):
        return InputKind("tokens", shape, first)
    if len(shape) == 1:
        return InputKind("vector", shape, first)
    if len(shape) == 2:
        channels, steps = shape if first else shape[::-1]
        return InputKind("signal", shape, first, channels, (steps,))
    if len(shape) == 3:
        channels, h, w = shape if first else (shape[2], shape[0], shape[1])
        return InputKind("image", shape, first, channels, (h, w))
    return InputKind("tensor", shape, first)


# ----------------------------------------------------------------------------------------------- text classifiers
#: Value of the mask channel at real tokens in the embedding view; perturbations far below it never flip the mask.
MASK_ON = 1000.0


def embedding_view(classifier: Any, ids: np.ndarray, batch_size: int = 128) -> tuple[Any, np.ndarray, tuple]:
    """
    An ART classifier over the word embeddings of a text classifier, for ART's attacks: its inputs are
    ``(max_len, dim + 1)``, the normalised embeddings and a last channel holding the padding mask (``MASK_ON`` at real
    tokens, 0 at padding; the model reads it as ``channel > MASK_ON / 2`` with no gradient, so attacks within the
    audit's budgets never change which tokens are real).

    :param classifier: A ``PyTorchTextClassifier`` or ``TensorFlowV2TextClassifier``.
    :param ids: Token ids ``(nb_samples, max_len)``.
    :return: ``(view classifier, view inputs of ids, (lo, hi) range of the embedding values at real tokens)``.
    """
    from art_ext.backend import framework_of

    emb = classifier.embeddings(ids, batch_size=batch_size)
    mask = (np.asarray(ids) != 0).astype(np.float32)[..., None]
    z = np.concatenate([emb * mask, mask * MASK_ON], axis=-1).astype(np.float32)
    real = emb[mask[..., 0] > 0]
    lo, hi = (float(real.min()), float(real.max())) if real.size else (-1.0, 1.0)
    # Wide clip values: the embeddings are not bounded; clipping only keeps ART's attacks finite.
    span = max(hi - lo, 1e-6)
    clip = (min(lo - 10 * span, 0.0), max(hi + 10 * span, 2 * MASK_ON))
    shape = tuple(z.shape[1:])
    nb_classes = classifier.nb_classes
    if framework_of(classifier) == "pytorch":
        import torch
        from art.estimators.classification import PyTorchClassifier

        class _View(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.text_model = classifier.model  # registered: ART's eval() and .to(device) reach it

            def forward(self, z):  # noqa: D102
                real = (z[..., -1:] > MASK_ON / 2).to(z.dtype)
                return classifier.classify_tensor(z[..., :-1] * real, real, training=False)

        view = PyTorchClassifier(
            _View(),
            loss=torch.nn.CrossEntropyLoss(),
            input_shape=shape,
            nb_classes=nb_classes,
            clip_values=clip,
            channels_first=False,
            device_type="gpu" if next(classifier.model.parameters()).is_cuda else "cpu",
        )
    else:
        import keras
        import tensorflow as tf
        from art.estimators.classification import TensorFlowV2Classifier

        class EmbeddingView(keras.Model):
            def __init__(self) -> None:
                super().__init__(name="embedding_view")
                self.text_model = classifier.model

            def call(self, z, training=False):  # noqa: D102
                z = tf.convert_to_tensor(z, tf.float32)
                real = tf.cast(z[..., -1:] > MASK_ON / 2, tf.float32)
                return classifier.classify_tensor(z[..., :-1] * real, real, training=False)

        view_model = EmbeddingView()
        view_model(z[:1])
        view = TensorFlowV2Classifier(
            view_model,
            nb_classes=nb_classes,
            input_shape=shape,
            loss_object=tf.keras.losses.CategoricalCrossentropy(from_logits=True),
            clip_values=clip,
            channels_first=False,
        )
    return view, z, (lo, hi)
