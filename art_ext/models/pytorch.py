"""Reference architectures in PyTorch (the TensorFlow twins in :mod:`art_ext.models.tensorflow` have equal shapes)."""

from __future__ import annotations

from typing import Any

from art_ext.estimators.classification.utils import probability_nll_loss  # noqa: F401 (its old home)


def digits_mlp(nb_classes: int = 10, hidden: int = 128) -> Any:
    """MLP for 8x8 digits: Flatten -> Linear(64, hidden) -> ReLU -> Linear(hidden, nb_classes)."""
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, nb_classes))


def digits_cnn(nb_classes: int = 10) -> Any:
    """Small CNN for ``(1, 8, 8)`` digits: two 3x3 convolutions, a 2x2 max-pool and two dense layers."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, nb_classes),
    )


def lenet5(nb_classes: int = 10) -> Any:
    """
    LeNet-5 (LeCun et al., 1998) with ReLU and max-pooling, for ``(1, 28, 28)`` inputs, initialised like its Keras twin
    (Glorot-uniform weights, zero biases). PyTorch's default initialisation gives this five-layer net without
    normalisation near-constant initial logits, on which a data-free student trained with DFME's l1 loss can stay at
    one class for hundreds of thousands of queries (see ``docs/dfme.rst``).
    """
    from torch import nn

    net = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, nb_classes),
    )
    for layer in net:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return net


def lipschitz_mlp(nb_classes: int = 10, width: int = 1024, depth: int = 2, input_dim: int = 784) -> Any:
    """
    The LMT reference network for ``(1, 28, 28)`` inputs: Flatten, then `depth` dense layers of `width` ReLU units,
    then the logits. Without max-pooling or convolutions its layer-wise Lipschitz bound is the product of exact
    spectral norms, which LMT training drives down: on MNIST it reaches the LMT anchor's verified accuracy at
    l2 1.58 where a convolutional network of the same training time does not (``docs/lmt.rst``, ``docs/results.rst``).
    """
    from torch import nn

    layers: list = [nn.Flatten()]
    for i in range(depth):
        layers += [nn.Linear(input_dim if i == 0 else width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width if depth else input_dim, nb_classes))


def _frequencies(vocab_size: int, frequencies: Any) -> Any:
    import numpy as np

    if frequencies is None:
        freqs = np.ones(vocab_size, dtype=np.float64)
    else:
        freqs = np.asarray(frequencies, dtype=np.float64)
        if freqs.shape != (vocab_size,) or freqs.min() < 0 or freqs.sum() <= 0:
            raise ValueError(f"`frequencies` must be {vocab_size} non-negative counts with a positive sum.")
    return (freqs / freqs.sum()).astype(np.float32)


def normalized_embedding(vocab_size: int, embedding_dim: int, frequencies: Any = None) -> Any:
    """
    Word embedding normalised with frequency-weighted statistics (Miyato et al., 2017, eq. 3):
    ``v_k <- (v_k - E(v)) / sqrt(Var(v))`` with ``E(v) = sum_j f_j v_j``, ``Var(v) = sum_j f_j (v_j - E(v))^2``.

    :param frequencies: Token counts (e.g. ``Vocabulary.counts``); uniform when ``None``.
    """
    import torch
    from torch import nn

    class NormalizedEmbedding(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(vocab_size, embedding_dim) * 0.1)
            self.register_buffer("freqs", torch.as_tensor(_frequencies(vocab_size, frequencies))[:, None])

        def normalized_weight(self) -> torch.Tensor:
            mean = (self.freqs * self.weight).sum(0, keepdim=True)
            var = (self.freqs * (self.weight - mean) ** 2).sum(0, keepdim=True)
            return (self.weight - mean) / torch.sqrt(var + 1e-6)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return nn.functional.embedding(ids.long(), self.normalized_weight())

    return NormalizedEmbedding()


def text_lstm(vocab_size: int, frequencies: Any = None, embedding_dim: int = 64, hidden: int = 64, nb_classes: int = 2):
    """Normalised embedding -> LSTM (last real token's state) -> Dense, over right-padded ids (0 = padding)."""
    import torch
    from torch import nn

    class TextLSTM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vocab_size = vocab_size
            self.embedding = normalized_embedding(vocab_size, embedding_dim, frequencies)
            self.lstm = nn.LSTM(embedding_dim, hidden, batch_first=True)
            self.out = nn.Linear(hidden, nb_classes)

        def embed(self, ids: torch.Tensor) -> torch.Tensor:
            return self.embedding(ids)

        def classify(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            states, _ = self.lstm(embeddings)
            last = (mask.sum(1).long() - 1).clamp_min(0)
            return self.out(states[torch.arange(states.shape[0], device=states.device), last])

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            ids = ids.long()
            return self.classify(self.embed(ids), (ids != 0).float())

    return TextLSTM()


def text_cnn(
    vocab_size: int,
    frequencies: Any = None,
    embedding_dim: int = 64,
    filters: int = 64,
    kernel_size: int = 3,
    nb_classes: int = 2,
) -> Any:
    """Normalised embedding -> Conv1d + ReLU -> max over real tokens -> Dense, over right-padded ids."""
    import torch
    from torch import nn

    class TextCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vocab_size = vocab_size
            self.embedding = normalized_embedding(vocab_size, embedding_dim, frequencies)
            self.conv = nn.Conv1d(embedding_dim, filters, kernel_size, padding=kernel_size // 2)
            self.out = nn.Linear(filters, nb_classes)

        def embed(self, ids: torch.Tensor) -> torch.Tensor:
            return self.embedding(ids)

        def classify(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.conv((embeddings * mask[..., None]).transpose(1, 2))).transpose(1, 2)
            h = h - (1.0 - mask[..., None]) * 1e4
            return self.out(h.amax(dim=1))

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            ids = ids.long()
            return self.classify(self.embed(ids), (ids != 0).float())

    return TextCNN()


_RESIDUAL_CLASS: Any = None
_GROUP_SORT_CLASS: Any = None


def group_sort(group_size: int = 2, axis: int = 1) -> Any:
    """
    GroupSort activation (Anil et al., 2019): the features along `axis` split into consecutive groups of
    `group_size`, each sorted in ascending order; ``group_size=2`` is MaxMin. A permutation of the sorted groups,
    so 1-Lipschitz in l2; :class:`~art_ext.estimators.certification.LipschitzCertifier` bounds it by 1.
    """
    global _GROUP_SORT_CLASS
    if _GROUP_SORT_CLASS is None:
        from torch import nn

        class GroupSort(nn.Module):
            def __init__(self, group_size: int = 2, axis: int = 1) -> None:
                super().__init__()
                self.group_size = group_size
                self.axis = axis

            def forward(self, x):  # written so that torch.jit.script compiles it
                dim = self.axis % x.dim()
                if dim == 0:
                    raise ValueError("GroupSort along the batch axis mixes samples; sort along a feature axis.")
                n = x.shape[dim]
                if n % self.group_size != 0:
                    raise ValueError("GroupSort: the axis length is not a multiple of group_size.")
                grouped = x.unflatten(dim, [n // self.group_size, self.group_size])
                return grouped.sort(dim=dim + 1)[0].flatten(dim, dim + 1)

            def extra_repr(self) -> str:
                return f"group_size={self.group_size}, axis={self.axis}"

        _GROUP_SORT_CLASS = GroupSort
    return _GROUP_SORT_CLASS(group_size, axis)


def residual_block(body: Any, shortcut: Any = None) -> Any:
    """
    ``y = body(x) + shortcut(x)`` (identity shortcut when `shortcut` is ``None``), an ``nn.Module`` that
    :class:`~art_ext.estimators.certification.LipschitzCertifier` bounds as the sum of its branches' bounds.
    """
    global _RESIDUAL_CLASS
    if _RESIDUAL_CLASS is None:
        from torch import nn

        class ResidualBlock(nn.Module):
            _art_ext_residual = True

            def __init__(self, body: nn.Module, shortcut: nn.Module | None = None) -> None:
                super().__init__()
                self.body = body
                self.shortcut = shortcut

            def forward(self, x):
                return self.body(x) + (x if self.shortcut is None else self.shortcut(x))

        _RESIDUAL_CLASS = ResidualBlock
    return _RESIDUAL_CLASS(body, shortcut)


def dfme_generator(encoding_length: int = 100, img_size: int = 32, channels: int = 1, ngf: int = 64) -> Any:
    """
    Generator of the DFME paper's shape (a DCGAN-style projection and two upsampling convolution blocks) for
    ``(channels, img_size, img_size)`` images. It outputs unbounded values normalised by a final affine-free batch
    normalisation; :class:`art_ext.attacks.extraction.DataFreeModelExtraction` squashes them into the victim's input
    range with a scaled ``tanh``.

    :param encoding_length: Length of the noise vector ``z``.
    :param img_size: Image side, a multiple of 4 (8, 28 and 32 are the reference sizes).
    :param channels: Number of image channels.
    :param ngf: Width of the convolution blocks.
    """
    import torch
    from torch import nn

    if img_size % 4:
        raise ValueError(f"`img_size` must be a multiple of 4, got {img_size}.")
    init = img_size // 4

    class DFMEGenerator(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.project = nn.Linear(encoding_length, 2 * ngf * init * init)
            self.blocks = nn.Sequential(
                nn.BatchNorm2d(2 * ngf),
                nn.Upsample(scale_factor=2),
                nn.Conv2d(2 * ngf, 2 * ngf, 3, padding=1),
                nn.BatchNorm2d(2 * ngf),
                nn.LeakyReLU(0.2),
                nn.Upsample(scale_factor=2),
                nn.Conv2d(2 * ngf, ngf, 3, padding=1),
                nn.BatchNorm2d(ngf),
                nn.LeakyReLU(0.2),
                nn.Conv2d(ngf, channels, 3, padding=1),
                nn.BatchNorm2d(channels, affine=False),
            )

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            out = self.project(z.reshape(z.shape[0], -1))
            return self.blocks(out.reshape(out.shape[0], 2 * ngf, init, init))

    return DFMEGenerator()


def multiscale_generator(
    encoding_length: int = 100, img_size: int = 28, channels: int = 1, ngf: int = 64, brightness: float = -1.0
) -> Any:
    """
    Multi-scale DFME generator for ``(channels, img_size, img_size)`` images: a projection to a quarter-size map, one
    convolution block there and one at half size, each with a one-convolution output head; both heads are upsampled
    bilinearly to full size, summed and normalised by a final *affine* batch normalisation (learnable contrast and
    brightness, initialised to 2 and `brightness`). Its samples are smooth at several scales and differ in brightness
    from the first step, which is what makes a victim answer with many classes; pixel-level noise (what generators
    ending in a per-pixel convolution produce at first) is put in one or two classes by image classifiers, and a
    student trained on it learns nothing (see ``docs/dfme.rst``). Outputs are unbounded:
    :class:`art_ext.attacks.extraction.DataFreeModelExtraction` squashes them into the input range with a scaled
    ``tanh``.

    :param encoding_length: Length of the noise vector ``z``.
    :param img_size: Image side, a multiple of 4.
    :param channels: Number of image channels.
    :param ngf: Width of the quarter-size block (the half-size block has ``ngf // 2``).
    :param brightness: Initial shift of the output before the squashing (-1: images start darker than mid-range).
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    if img_size % 4:
        raise ValueError(f"`img_size` must be a multiple of 4, got {img_size}.")
    init, half = img_size // 4, max(ngf // 2, 1)

    class MultiScaleGenerator(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.project = nn.Linear(encoding_length, ngf * init * init)
            self.coarse = nn.Sequential(
                nn.BatchNorm2d(ngf),
                nn.LeakyReLU(0.2),
                nn.Conv2d(ngf, ngf, 3, padding=1),
                nn.BatchNorm2d(ngf),
                nn.LeakyReLU(0.2),
            )
            self.coarse_head = nn.Conv2d(ngf, channels, 3, padding=1)
            self.fine = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear"),
                nn.Conv2d(ngf, half, 3, padding=1),
                nn.BatchNorm2d(half),
                nn.LeakyReLU(0.2),
            )
            self.fine_head = nn.Conv2d(half, channels, 3, padding=1)
            self.out = nn.BatchNorm2d(channels)
            nn.init.constant_(self.out.weight, 2.0)
            nn.init.constant_(self.out.bias, brightness)

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            h = self.coarse(self.project(z.reshape(z.shape[0], -1)).reshape(z.shape[0], ngf, init, init))
            size = (img_size, img_size)
            coarse = F.interpolate(self.coarse_head(h), size=size, mode="bilinear")
            fine = F.interpolate(self.fine_head(self.fine(h)), size=size, mode="bilinear")
            return self.out(coarse + fine)

    return MultiScaleGenerator()
