"""Keras models of :func:`art_ext.estimators.generation.build_auto_generator` (twins of ``auto_pytorch``)."""

from __future__ import annotations

import math
from typing import Any

from art_ext.estimators.generation.auto import GeneratorPlan, coarse_sizes
from art_ext.estimators.generation.auto_pytorch import CONTRAST, IMAGE_BRIGHTNESS

_BN = dict(epsilon=1e-5, momentum=0.9)  # PyTorch's BatchNorm defaults (eps 1e-5, running-average momentum 0.1)


def build(plan: GeneratorPlan, encoding_length: int, ngf: int) -> Any:
    """The Keras model for `plan`: dense, or multi-scale convolutional in 1-D or 2-D."""
    if plan.kind == "dense":
        return _dense(plan, encoding_length, ngf)
    return _multiscale(plan, encoding_length, ngf)


def _output_norm(brightness: float) -> Any:
    import tensorflow as tf

    constant = tf.keras.initializers.Constant
    return tf.keras.layers.BatchNormalization(
        gamma_initializer=constant(CONTRAST), beta_initializer=constant(brightness), **_BN
    )


def _dense(plan: GeneratorPlan, encoding_length: int, ngf: int) -> Any:
    import tensorflow as tf

    layers, width = tf.keras.layers, 8 * ngf
    return tf.keras.Sequential(
        [
            tf.keras.Input((encoding_length,)),
            layers.Dense(width),
            layers.BatchNormalization(**_BN),
            layers.LeakyReLU(0.2),
            layers.Dense(width),
            layers.BatchNormalization(**_BN),
            layers.LeakyReLU(0.2),
            layers.Dense(math.prod(plan.sample_shape)),
            _output_norm(0.0),
            layers.Reshape(plan.sample_shape),
        ]
    )


def _multiscale(plan: GeneratorPlan, encoding_length: int, ngf: int) -> Any:
    """
    Built channels-last in 2-D; a 1-D signal is a map of width 1 (kernels ``(3, 1)``, resizing along the length only),
    so both kinds share one graph. Channels-first samples are made by moving the channel axis at the end.
    """
    import tensorflow as tf

    layers = tf.keras.layers
    channels, spatial = plan.channels, plan.spatial
    one_d = len(spatial) == 1
    size = (spatial[0], 1) if one_d else spatial
    coarse_shape = coarse_sizes(size) if not one_d else (coarse_sizes(spatial)[0], 1)
    kernel, up = ((3, 1), (2, 1)) if one_d else (3, 2)
    half = max(ngf // 2, 1)
    brightness = 0.0 if one_d else IMAGE_BRIGHTNESS

    def block(h, width):
        return layers.LeakyReLU(0.2)(layers.BatchNormalization(**_BN)(layers.Conv2D(width, kernel, padding="same")(h)))

    z = tf.keras.Input((encoding_length,))
    h = layers.Reshape(coarse_shape + (ngf,))(layers.Dense(ngf * math.prod(coarse_shape))(z))
    h = block(layers.LeakyReLU(0.2)(layers.BatchNormalization(**_BN)(h)), ngf)
    coarse = layers.Conv2D(channels, kernel, padding="same")(h)
    fine = block(layers.UpSampling2D(up, interpolation="bilinear")(h), half)
    fine = layers.Conv2D(channels, kernel, padding="same")(fine)
    resize = dict(height=size[0], width=size[1], interpolation="bilinear")
    out = layers.Add()([layers.Resizing(**resize)(coarse), layers.Resizing(**resize)(fine)])
    out = _output_norm(brightness)(out)
    if one_d:
        out = layers.Reshape((spatial[0], channels))(out)  # drops the width-1 axis only
    if plan.channels_first:  # the samples' layout: a move of the channel axis, never a reshape
        out = layers.Permute((2, 1) if one_d else (3, 1, 2))(out)
    return tf.keras.Model(z, out)
