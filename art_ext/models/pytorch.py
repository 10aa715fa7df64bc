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


_RESIDUAL_CLASS: Any = None


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
