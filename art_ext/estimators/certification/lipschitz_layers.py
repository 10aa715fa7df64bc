"""
Thin adapters that read a PyTorch or Keras model into :class:`~art_ext.estimators.certification.lipschitz.LayerRecord`
lists. Only layer facts live here (weights, geometry, a bias-free linear map); every bound is computed in
:mod:`art_ext.estimators.certification.lipschitz`.

Lipschitz constants of the parameter-free layers (l2, per sample):

* ReLU, ReLU6, Tanh, Softplus, Hardtanh, identity, flatten, reshape, dropout (eval): 1. LeakyReLU: ``max(1, |slope|)``.
  ELU: ``max(1, alpha)``. Sigmoid: 1/4. Hard sigmoid: 1/6. SiLU/Swish: 1.1 (its largest slope is 1.0998). GELU: 1.13
  (largest slope 1.1290).
* Max pooling, kernel ``k``, stride ``s`` (per axis): each output is a max over its window, and ``|max a - max b| <=
  max |a - b| <= ||a - b||_2`` over that window, so ``||y - y'||^2`` is at most the sum over windows of the squared
  window differences, in which each input position appears in at most ``ceil(k_eff / s)`` windows per axis
  (``k_eff = dilation (k - 1) + 1``, and never more than ``k``): the constant is ``sqrt(cover_h * cover_w)`` (1 for
  non-overlapping pooling).
* Average pooling: a window average with ``m`` elements and divisor ``D`` satisfies ``|sum / D|^2 <= (m / D^2)
  sum^2``, so the constant is ``sqrt(cover_h * cover_w * max(m / D^2))``; ``1 / k`` for non-overlapping ``k x k``
  pooling without padding. Global average pooling over ``h x w``: ``1 / sqrt(h w)``; global max pooling: 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from art_ext.estimators.certification.lipschitz import LayerRecord

_IDENTITY = "linear-identity"

#: Lipschitz constants of element-wise activations, by lower-case name (PyTorch class or Keras function name).
ACTIVATION_CONSTANTS = {
    "relu": 1.0,
    "relu6": 1.0,
    "tanh": 1.0,
    "softplus": 1.0,
    "hardtanh": 1.0,
    "sigmoid": 0.25,
    "hard_sigmoid": 1.0 / 6.0,
    "hardsigmoid": 1.0 / 6.0,
    "silu": 1.1,
    "swish": 1.1,
    "gelu": 1.13,
    "elu": 1.0,
    "leaky_relu": 1.0,
}


def _cover(kernel: int, stride: int, dilation: int = 1) -> int:
    effective = dilation * (kernel - 1) + 1
    return max(1, min(kernel, math.ceil(effective / stride)))


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) == 2 else (int(v[0]), int(v[0]))
    return int(v), int(v)


def _unsupported(name: str, kind: str, why: str = "") -> TypeError:
    return TypeError(
        f"Layer {name!r} ({kind}) is not supported by the Lipschitz bound{': ' + why if why else ''}. Supported: "
        "dense/linear, Conv2d, BatchNorm (eval), ReLU/LeakyReLU/ELU/Tanh/Sigmoid/GELU/SiLU, max/avg/global pooling, "
        "Flatten, Dropout, art_ext.models.ResidualBlock."
    )


def _constant(name: str, factor: float, note: str = "") -> LayerRecord:
    return LayerRecord(kind="constant", name=name, factor=float(factor), note=note)


# ------------------------------------------------------------------------------------------------------ PyTorch
def parse_torch(model: Any, input_shape: tuple[int, ...]) -> list[LayerRecord]:
    """
    Read a ``torch.nn.Module`` (``nn.Sequential``, nested, with :func:`art_ext.models.ResidualBlock`) into records.

    :param model: The model.
    :param input_shape: Input shape without the batch dimension.
    :return: The layer records.
    """
    import torch

    shapes: dict[int, tuple[int, ...]] = {}

    def hook(module, args):
        if args and isinstance(args[0], torch.Tensor):
            shapes.setdefault(id(module), tuple(args[0].shape[1:]))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1,) + tuple(input_shape), device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return _torch_chain(model, shapes, "model")


def _torch_chain(module: Any, shapes: dict, prefix: str) -> list[LayerRecord]:
    from torch import nn

    if isinstance(module, nn.Sequential):
        records = []
        for name, child in module.named_children():
            if id(child) in shapes:
                records += _torch_chain(child, shapes, f"{prefix}.{name}")
        return records
    return [_torch_layer(module, shapes, prefix)]


def _torch_layer(m: Any, shapes: dict, name: str) -> LayerRecord:
    import torch
    from torch import nn
    from torch.nn import functional as F

    label = f"{name} ({type(m).__name__})"
    in_shape = shapes.get(id(m), ())
    if getattr(m, "_art_ext_residual", False):
        branches = [_torch_chain(m.body, shapes, f"{name}.body")]
        branches.append(
            _torch_chain(m.shortcut, shapes, f"{name}.shortcut")
            if m.shortcut is not None
            else [_constant(f"{name}.shortcut", 1.0)]
        )
        return LayerRecord(kind="residual", name=label, branches=branches)
    if isinstance(m, nn.Linear):
        return LayerRecord(
            kind="dense",
            name=label,
            weight=m.weight.detach().cpu().double().numpy(),
            in_shape=in_shape,
            apply=lambda x: F.linear(x, m.weight),
            weight_fn=lambda: m.weight,
        )
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            raise _unsupported(name, type(m).__name__, f"padding_mode {m.padding_mode!r} (only 'zeros')")
        return LayerRecord(
            kind="conv",
            name=label,
            weight=m.weight.detach().cpu().double().numpy(),
            in_shape=in_shape,
            in_spatial=tuple(in_shape[-2:]),
            dilation=_pair(m.dilation),
            groups=int(m.groups),
            apply=lambda x: F.conv2d(x, m.weight, None, m.stride, m.padding, m.dilation, m.groups),
        )
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        if m.running_var is None:
            raise _unsupported(name, type(m).__name__, "without running statistics it is not a fixed map")

        def scale_fn():
            gamma = m.weight if m.weight is not None else torch.ones_like(m.running_var)
            return gamma / torch.sqrt(m.running_var + m.eps)

        return LayerRecord(kind="bn", name=label, scale=scale_fn().detach().cpu().double().numpy(), scale_fn=scale_fn)
    if isinstance(m, (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)):
        return _constant(label, 1.0, _IDENTITY)
    if isinstance(m, nn.LeakyReLU):
        return _constant(label, max(1.0, abs(m.negative_slope)))
    if isinstance(m, nn.ELU):
        return _constant(label, max(1.0, float(m.alpha)))
    if isinstance(m, (nn.ReLU, nn.ReLU6, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Softplus, nn.GELU, nn.SiLU)):
        factor = ACTIVATION_CONSTANTS.get(type(m).__name__.lower(), 1.0)
        if isinstance(m, nn.Softplus):
            factor = 1.0
        return _constant(label, factor)
    if isinstance(m, nn.MaxPool2d):
        kh, kw = _pair(m.kernel_size)
        sh, sw = _pair(m.stride if m.stride is not None else m.kernel_size)
        dh, dw = _pair(m.dilation)
        return _constant(label, math.sqrt(_cover(kh, sh, dh) * _cover(kw, sw, dw)))
    if isinstance(m, nn.AvgPool2d):
        if m.ceil_mode:
            raise _unsupported(name, "AvgPool2d", "ceil_mode=True")
        kh, kw = _pair(m.kernel_size)
        sh, sw = _pair(m.stride if m.stride is not None else m.kernel_size)
        ph, pw = _pair(m.padding)
        if m.divisor_override:
            worst = kh * kw / float(m.divisor_override) ** 2
        elif m.count_include_pad:
            worst = 1.0 / (kh * kw)
        else:
            worst = 1.0 / max(1, (kh - ph) * (kw - pw))
        return _constant(label, math.sqrt(_cover(kh, sh) * _cover(kw, sw) * worst))
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        h, w = in_shape[-2:]
        oh, ow = _pair(m.output_size if m.output_size is not None else (h, w))
        oh, ow = oh or h, ow or w
        if h % oh or w % ow:
            raise _unsupported(name, type(m).__name__, "the input size is not a multiple of the output size")
        if isinstance(m, nn.AdaptiveMaxPool2d):
            return _constant(label, 1.0)
        return _constant(label, 1.0 / math.sqrt((h // oh) * (w // ow)))
    if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
        raise _unsupported(name, type(m).__name__, "certification needs a model that outputs logits")
    raise _unsupported(name, type(m).__name__)


# ------------------------------------------------------------------------------------------------------ Keras
def parse_keras(model: Any, input_shape: tuple[int, ...]) -> list[LayerRecord]:
    """
    Read a Keras model (``Sequential``, nested, or a functional chain, with :func:`art_ext.models.ResidualBlock`)
    into records. The chain is checked against the model's own output on a random input, so a functional graph that
    is not a chain is refused rather than bounded wrongly.

    :param model: The Keras model.
    :param input_shape: Input shape without the batch dimension.
    :return: The layer records.
    """
    import tensorflow as tf

    x0 = tf.constant(np.random.default_rng(0).uniform(0, 1, size=(2,) + tuple(input_shape)).astype(np.float32))
    not_a_chain = TypeError(
        f"Model {model.name!r} is not a chain of layers the Lipschitz bound can follow (a functional graph with "
        "branches such as Add or Concatenate?). Use a Sequential model, a functional chain, or "
        "art_ext.models.ResidualBlock."
    )
    try:
        records, out = _keras_chain(model, x0, "model")
    except ValueError as err:
        raise not_a_chain from err
    expected = model(x0, training=False)
    if tuple(out.shape) != tuple(expected.shape) or not np.allclose(
        out.numpy(), np.asarray(expected), rtol=1e-4, atol=1e-4
    ):
        raise not_a_chain
    return records


def _keras_layers(model: Any) -> list:
    import keras

    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _keras_chain(model: Any, x: Any, prefix: str) -> tuple[list[LayerRecord], Any]:
    records: list[LayerRecord] = []
    for layer in _keras_layers(model):
        new, x = _keras_layer(layer, x, f"{prefix}.{layer.name}")
        records += new
    return records, x


def _keras_activation(fn: Any, label: str) -> list[LayerRecord]:
    name = getattr(fn, "__name__", type(fn).__name__).lower()
    if name == "linear":
        return []
    if name in ("softmax", "log_softmax"):
        raise _unsupported(label, name, "certification needs a model that outputs logits")
    if name not in ACTIVATION_CONSTANTS:
        raise _unsupported(label, f"activation {name}")
    return [_constant(f"{label} [{name}]", ACTIVATION_CONSTANTS[name])]


def _same_pad_max(n: int, k: int, s: int) -> int:
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total - total // 2


def _keras_layer(layer: Any, x: Any, name: str) -> tuple[list[LayerRecord], Any]:
    import keras
    import tensorflow as tf

    layers = keras.layers
    label = f"{name} ({type(layer).__name__})"
    in_shape = tuple(int(d) for d in x.shape[1:])
    if getattr(layer, "_art_ext_residual", False):
        body, out_body = _keras_chain(layer.body, x, f"{name}.body")
        if layer.shortcut is not None:
            short, _ = _keras_chain(layer.shortcut, x, f"{name}.shortcut")
        else:
            short = [_constant(f"{name}.shortcut", 1.0)]
        return [LayerRecord(kind="residual", name=label, branches=[body, short])], layer(x, training=False)
    if isinstance(layer, keras.Model):
        return _keras_chain(layer, x, name)
    out = layer(x, training=False)
    if isinstance(layer, layers.Dense):
        kernel = layer.kernel

        def apply(t, kernel=kernel):
            return tf.tensordot(t, kernel, axes=[[len(t.shape) - 1], [0]])

        rec = LayerRecord(
            kind="dense",
            name=label,
            weight=np.asarray(kernel.numpy(), dtype=np.float64).T,
            in_shape=in_shape,
            apply=apply,
            weight_fn=lambda kernel=kernel: tf.transpose(tf.convert_to_tensor(kernel)),
        )
        return [rec] + _keras_activation(layer.activation, label), out
    if isinstance(layer, layers.Conv2D) and type(layer).__name__ == "Conv2D":
        kernel = layer.kernel
        spatial = in_shape[:2] if layer.data_format == "channels_last" else in_shape[1:]
        rec = LayerRecord(
            kind="conv",
            name=label,
            weight=np.asarray(kernel.numpy(), dtype=np.float64).transpose(3, 2, 0, 1),
            in_shape=in_shape,
            in_spatial=tuple(spatial),
            dilation=_pair(layer.dilation_rate),
            groups=int(layer.groups),
            apply=lambda t, layer=layer: layer.convolution_op(t, layer.kernel),
        )
        return [rec] + _keras_activation(layer.activation, label), out
    if isinstance(layer, layers.BatchNormalization):

        def scale_fn(layer=layer):
            var = tf.convert_to_tensor(layer.moving_variance)
            gamma = tf.convert_to_tensor(layer.gamma) if layer.gamma is not None else tf.ones_like(var)
            return gamma / tf.sqrt(var + layer.epsilon)

        return [LayerRecord(kind="bn", name=label, scale=scale_fn().numpy().astype(np.float64), scale_fn=scale_fn)], out
    if isinstance(layer, (layers.Flatten, layers.Dropout, layers.Reshape, layers.SpatialDropout2D)):
        return [_constant(label, 1.0, _IDENTITY)], out
    if isinstance(layer, layers.Activation):
        return _keras_activation(layer.activation, label), out
    if isinstance(layer, layers.ReLU):
        slope = float(np.asarray(layer.negative_slope)) if layer.negative_slope is not None else 0.0
        return [_constant(label, max(1.0, abs(slope)))], out
    if isinstance(layer, layers.LeakyReLU):
        return [_constant(label, max(1.0, abs(float(layer.negative_slope))))], out
    if isinstance(layer, layers.ELU):
        return [_constant(label, max(1.0, float(layer.alpha)))], out
    if isinstance(layer, layers.Rescaling):
        return [_constant(label, float(np.max(np.abs(np.asarray(layer.scale)))))], out
    if isinstance(layer, (layers.MaxPooling2D, layers.AveragePooling2D)):
        kh, kw = _pair(layer.pool_size)
        sh, sw = _pair(layer.strides if layer.strides is not None else layer.pool_size)
        cover = _cover(kh, sh) * _cover(kw, sw)
        if isinstance(layer, layers.MaxPooling2D):
            return [_constant(label, math.sqrt(cover))], out
        h, w = in_shape[:2] if layer.data_format == "channels_last" else in_shape[1:]
        if layer.padding == "same":
            smallest = max(1, (kh - _same_pad_max(h, kh, sh)) * (kw - _same_pad_max(w, kw, sw)))
        else:
            smallest = kh * kw
        return [_constant(label, math.sqrt(cover / smallest))], out
    if isinstance(layer, layers.GlobalMaxPooling2D):
        return [_constant(label, 1.0)], out
    if isinstance(layer, layers.GlobalAveragePooling2D):
        h, w = in_shape[:2] if layer.data_format == "channels_last" else in_shape[1:]
        return [_constant(label, 1.0 / math.sqrt(h * w))], out
    if isinstance(layer, layers.Softmax):
        raise _unsupported(name, "Softmax", "certification needs a model that outputs logits")
    raise _unsupported(name, type(layer).__name__)
