"""
Fresh networks the audit trains (the masking analysis's transfer surrogate and DFME's student), one for each input
kind: the reference ``digits_cnn`` / ``lenet5`` on their shapes, else a small CNN for images (any size, either
layout), a 1-D CNN for signals and an MLP for feature vectors and other shapes. Logits, Adam.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_student"]


def build_student(ctx, seed: int) -> Any:
    """A fresh ART classifier for the audited input shape and classes (see the module docstring)."""
    from art_ext.models import ARCHITECTURES, build_model, make_classifier
    from art_ext.utils.seed import set_seed

    shape, fw, k = tuple(ctx.classifier.input_shape), ctx.student_framework, ctx.nb_classes
    clip = ctx.classifier.clip_values
    for name in ("digits_cnn", "lenet5"):
        if shape == ARCHITECTURES[name][0 if fw == "pytorch" else 1] and k >= 2:
            return make_classifier(build_model(name, fw, nb_classes=k, seed=seed), shape, k, clip_values=clip)
    set_seed(seed, fw)
    model = _torch_student(ctx.kind, k) if fw == "pytorch" else _keras_student(ctx.kind, k)
    student = make_classifier(model, shape, k, clip_values=clip)
    student.set_params(channels_first=ctx.kind.channels_first)  # the layout of the audited inputs (DFME reads it)
    return student


def _torch_student(kind, k: int) -> Any:
    from torch import nn

    class _ChannelsFirst(nn.Module):
        """Channels-last inputs to the channels-first layout of PyTorch's convolutions."""

        def forward(self, x):  # noqa: D102
            return x.movedim(-1, 1)

    head = [nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU(), nn.Linear(128, k)]
    if kind.name == "image":
        layers = [] if kind.channels_first else [_ChannelsFirst()]
        layers += [nn.Conv2d(kind.channels, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU()]
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), *head)
    if kind.name == "signal":
        layers = [] if kind.channels_first else [_ChannelsFirst()]
        layers += [nn.Conv1d(kind.channels, 32, 3, padding=1), nn.ReLU(), nn.Conv1d(32, 64, 3, padding=1), nn.ReLU()]
        return nn.Sequential(*layers, nn.AdaptiveAvgPool1d(16), *head)
    features = 1
    for s in kind.shape:
        features *= s
    return nn.Sequential(
        nn.Flatten(), nn.Linear(features, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, k)
    )


def _keras_student(kind, k: int) -> Any:
    import keras

    layers = [keras.Input(kind.shape)]
    if kind.name == "image":
        h, w = kind.spatial
        if kind.channels_first:
            layers.append(keras.layers.Permute((2, 3, 1)))
        layers += [
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.AveragePooling2D((max(1, h // 4), max(1, w // 4))),
        ]
    elif kind.name == "signal":
        if kind.channels_first:
            layers.append(keras.layers.Permute((2, 1)))
        layers += [
            keras.layers.Conv1D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv1D(64, 3, padding="same", activation="relu"),
            keras.layers.AveragePooling1D(max(1, kind.spatial[0] // 16)),
        ]
    else:
        layers.append(keras.layers.Flatten())
        layers.append(keras.layers.Dense(256, activation="relu"))
    layers += [keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(k)]
    return keras.Sequential(layers)
