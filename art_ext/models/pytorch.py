"""Reference architectures in PyTorch (the TensorFlow twins in :mod:`art_ext.models.tensorflow` have equal shapes)."""

from __future__ import annotations

from typing import Any


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
    """LeNet-5 (LeCun et al., 1998) with ReLU and max-pooling, for ``(1, 28, 28)`` inputs."""
    from torch import nn

    return nn.Sequential(
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


def probability_nll_loss() -> Any:
    """Negative log-likelihood of a model that outputs probabilities (``CrossEntropyLoss`` wants logits)."""
    import torch
    from torch import nn

    class ProbabilityNLLLoss(nn.Module):
        def forward(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            if target.dim() == 2:
                target = target.argmax(dim=1)
            return nn.functional.nll_loss(torch.log(probs.clamp_min(1e-12)), target.long())

    return ProbabilityNLLLoss()


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
