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

Lipschitz-by-construction activations the certifier bounds by 1: :func:`GroupSort` and :func:`MaxMin`.

:func:`clone_classifier` and :func:`to_probability_classifier` live in
:mod:`art_ext.estimators.classification.utils` (the library needs them; this package re-exports them).

Generators for data-free model extraction (:data:`GENERATORS`, :func:`build_generator`, :func:`make_generator`):
``generator_8x8``, ``generator_28x28`` and ``generator_32x32``, the DFME paper's generator shape at three image sizes.
"""

from art_ext.estimators.classification.utils import clone_classifier, to_probability_classifier
from art_ext.models.architectures import (
    ARCHITECTURES,
    GENERATORS,
    TEXT_ARCHITECTURES,
    GroupSort,
    MaxMin,
    ResidualBlock,
    build_generator,
    build_model,
    build_text_model,
    input_shape_of,
)
from art_ext.models.wrappers import make_classifier, make_generator, make_text_classifier

__all__ = [
    "ARCHITECTURES",
    "GENERATORS",
    "TEXT_ARCHITECTURES",
    "GroupSort",
    "MaxMin",
    "ResidualBlock",
    "build_generator",
    "build_model",
    "build_text_model",
    "clone_classifier",
    "input_shape_of",
    "make_classifier",
    "make_generator",
    "make_text_classifier",
    "to_probability_classifier",
]
