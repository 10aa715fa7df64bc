"""Reference architectures, text models and DFME generators, built for either framework."""

from __future__ import annotations

from typing import Any

from art_ext.backend import framework_of
from art_ext.utils.checks import check_positive
from art_ext.utils.seed import set_seed

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
    "input_shape_of",
]

#: name -> (input shape channels-first, input shape channels-last)
ARCHITECTURES = {
    "digits_mlp": ((1, 8, 8), (8, 8, 1)),
    "digits_cnn": ((1, 8, 8), (8, 8, 1)),
    "lenet5": ((1, 28, 28), (28, 28, 1)),
    "lipschitz_mlp": ((1, 28, 28), (28, 28, 1)),
}

#: Text architectures over token ids (see :func:`build_text_model`).
TEXT_ARCHITECTURES = ("text_lstm", "text_cnn")

#: name -> (image side, default width ``ngf``, builder) of the reference DFME generators: the paper's shape for
#: 8x8 images, the multi-scale generator from 28x28 on (pixel-level noise teaches a student nothing there).
GENERATORS = {
    "generator_8x8": (8, 16, "dfme_generator"),
    "generator_28x28": (28, 64, "multiscale_generator"),
    "generator_32x32": (32, 64, "multiscale_generator"),
}


def input_shape_of(name: str, framework: Any) -> tuple[int, ...]:
    """
    The input shape of a reference architecture in a framework's layout.

    :param name: One of :data:`ARCHITECTURES`.
    :param framework: ``"pytorch"`` (channels first) or ``"tensorflow"`` (channels last), or a model, an ART
                      estimator or a tensor of that framework.
    :return: The input shape without the batch dimension, e.g. ``(1, 8, 8)`` or ``(8, 8, 1)``.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {name!r}; choose from {sorted(ARCHITECTURES)}.")
    return ARCHITECTURES[name][0 if framework_of(framework) == "pytorch" else 1]


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


def GroupSort(group_size: int = 2, framework: str = "pytorch", axis: int | None = None) -> Any:  # noqa: N802
    """
    GroupSort activation (Anil et al., 2019): the features along `axis` (default: the channel axis, 1 for PyTorch,
    -1 for Keras) split into consecutive groups of `group_size` values, each sorted in ascending order. A
    permutation inside each group, hence 1-Lipschitz in l2 and gradient-norm preserving;
    :class:`~art_ext.estimators.certification.LipschitzCertifier` bounds it by 1.

    | Paper link: https://arxiv.org/abs/1811.05381

    :param group_size: Values per group (at least 2; 2 is :func:`MaxMin`); the axis length must be a multiple of it.
    :param framework: ``"pytorch"`` (an ``nn.Module``) or ``"tensorflow"`` (a Keras layer).
    :param axis: Axis of the features to sort in groups.
    :return: The layer.
    """
    if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 2:
        raise ValueError(f"`group_size` must be an integer >= 2, got {group_size!r}.")
    if framework not in ("pytorch", "tensorflow"):
        raise ValueError(f"`framework` must be 'pytorch' or 'tensorflow', got {framework!r}.")
    if axis is not None and (not isinstance(axis, int) or isinstance(axis, bool) or axis == 0):
        raise ValueError(f"`axis` must be a non-zero integer (axis 0 is the batch), got {axis!r}.")
    if framework == "pytorch":
        from art_ext.models.pytorch import group_sort

        return group_sort(group_size, 1 if axis is None else axis)
    from art_ext.models.tensorflow import group_sort

    return group_sort(group_size, -1 if axis is None else axis)


def MaxMin(framework: str = "pytorch", axis: int | None = None) -> Any:  # noqa: N802
    """
    MaxMin activation (Anil et al., 2019): :func:`GroupSort` with groups of 2 (each pair sorted). 1-Lipschitz.

    :param framework: ``"pytorch"`` or ``"tensorflow"``.
    :param axis: Axis of the features (default: the channel axis).
    :return: The layer.
    """
    return GroupSort(2, framework, axis)


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
    size, default_ngf, builder = GENERATORS[name]
    set_seed(seed, framework)
    if framework == "pytorch":
        from art_ext.models import pytorch as module
    else:
        from art_ext.models import tensorflow as module
    return getattr(module, builder)(
        encoding_length=encoding_length, img_size=size, channels=channels, ngf=ngf or default_ngf
    )
