"""
Keras layers beyond the core ones of :mod:`~art_ext.estimators.certification.keras_graph`: 1-D convolutions and
pooling, transposed convolutions, upsampling, zero padding, GroupSort, and the ``keras.ops`` calls on Keras tensors
(``x + y``, ``x * c``, ``keras.ops.abs``/``clip``), each rebuilt with ``keras.ops`` and given its sound factor.
"""

from __future__ import annotations

import math
from typing import Any

from art_ext.estimators.certification.graph import pool_cover, schur_factor

__all__ = ["elementwise_op", "group_sort_function", "more_layers", "numpy_op"]


def _refuse(name: str, what: str, why: str = "") -> TypeError:
    return TypeError(
        f"Layer {name!r} ({what}) cannot be bounded{': ' + why if why else ''}. Certifiable: Dense, Conv2D, "
        "Conv1D, Conv2DTranspose, 1-D pooling, UpSampling2D (nearest/bilinear), ZeroPadding2D, keras.ops.abs/clip, "
        "art_ext.models MaxMin/GroupSort, "
        "BatchNormalization, ReLU (threshold 0)/LeakyReLU/ELU and relu/tanh/sigmoid/elu/gelu/silu/softplus "
        "activations, max/average/global pooling, Flatten/Reshape/Dropout, Rescaling, Add/Subtract/Concatenate, "
        "nested Sequential/functional models, art_ext.models.ResidualBlock."
    )


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) == 2 else (int(v[0]), int(v[0]))
    return int(v), int(v)


def group_sort_function(x: Any, group_size: int, axis: int) -> Any:
    """Sort the values along `axis` in consecutive groups of `group_size` (ascending); 1-Lipschitz in l2."""
    import keras

    shape = list(x.shape)
    dim = axis % len(shape)
    if dim == 0:
        raise TypeError("GroupSort along the batch axis mixes samples; sort along a feature axis.")
    n = int(shape[dim])
    if n % group_size:
        raise ValueError(f"GroupSort: axis {axis} has {n} values, not a multiple of group_size={group_size}.")
    grouped = [-1] + shape[1:dim] + [n // group_size, group_size] + shape[dim + 1 :]
    y = keras.ops.sort(keras.ops.reshape(x, grouped), axis=dim + 1)
    return keras.ops.reshape(y, [-1] + shape[1:])


def more_layers(layer: Any, t: type, label: str, new: Any, activation: Any, ops: Any) -> int | None:
    """1-D convolutions and pooling, transposed convolutions, upsampling and zero padding: the node's index, or
    ``None`` when `layer` is none of these."""
    import keras
    from keras import layers as L

    if t is L.Conv1D:
        last = layer.data_format == "channels_last"

        def conv1d(x, layer=layer, bias=True):
            padding = layer.padding
            if padding == "causal":  # zeros on the left: an isometric embedding, then a valid convolution
                x, padding = keras.ops.pad(x, layer._compute_causal_padding()), "valid"
            y = keras.ops.conv(
                x,
                layer.kernel,
                strides=list(layer.strides),
                padding=padding,
                dilation_rate=layer.dilation_rate,
                data_format=layer.data_format,
            )
            if not (bias and layer.use_bias):
                return y
            return y + (layer.bias if layer.data_format == "channels_last" else keras.ops.reshape(layer.bias, (-1, 1)))

        at = new(
            "conv",
            conv1d,
            weight=layer.kernel.numpy().astype("float64").transpose(2, 1, 0)[:, :, None, :],
            channels_last=last,
            dilation=(1, int(_pair(layer.dilation_rate)[0])),
            groups=int(layer.groups),
            extra={"conv1d": True},
            apply=lambda x, f=conv1d: f(x, bias=False),
        )
        return activation(layer.activation, at)
    if t in (L.MaxPooling1D, L.AveragePooling1D):
        (k,), (st,) = (tuple(_pair(v)[:1]) for v in (layer.pool_size, layer.strides or layer.pool_size))

        def pool1d(x, layer=layer, t=t):
            fn = keras.ops.max_pool if t is L.MaxPooling1D else keras.ops.average_pool
            return fn(x, layer.pool_size, layer.strides, layer.padding, layer.data_format)

        if t is L.MaxPooling1D:
            return new("constant", pool1d, factor=math.sqrt(pool_cover(k, st)), note="maxpool")
        return new(
            "constant", pool1d, factor_fn=lambda rec, f=pool1d: schur_factor(ops, f, rec.in_shape), note="avgpool"
        )
    if t in (L.GlobalAveragePooling1D, L.GlobalMaxPooling1D):
        axis = 1 if layer.data_format == "channels_last" else 2
        if t is L.GlobalMaxPooling1D:
            return new(
                "constant", lambda x, a=axis, k=layer.keepdims: keras.ops.max(x, axis=a, keepdims=k), note="maxpool"
            )

        def gap1d(x, a=axis, k=layer.keepdims):
            return keras.ops.mean(x, axis=a, keepdims=k)

        return new("constant", gap1d, factor_fn=lambda rec, f=gap1d: schur_factor(ops, f, rec.in_shape), note="avgpool")
    if t is L.Conv2DTranspose:
        channels_last = layer.data_format == "channels_last"

        def conv_t(x, layer=layer, bias=True):
            y = keras.ops.conv_transpose(
                x,
                layer.kernel,
                strides=list(layer.strides),
                padding=layer.padding,
                output_padding=layer.output_padding,
                dilation_rate=layer.dilation_rate,
                data_format=layer.data_format,
            )
            if not (bias and layer.use_bias):
                return y
            return y + (
                layer.bias if layer.data_format == "channels_last" else keras.ops.reshape(layer.bias, (-1, 1, 1))
            )

        # the adjoint of the convolution from the output grid with kernel (kh, kw, filters, in) read as (in, filters)
        at = new(
            "conv",
            conv_t,
            weight=layer.kernel.numpy().astype("float64").transpose(3, 2, 0, 1),
            channels_last=channels_last,
            dilation=_pair(layer.dilation_rate),
            extra={"transposed": True},
            apply=lambda x, f=conv_t: f(x, bias=False),
        )
        return activation(layer.activation, at)
    if t is L.UpSampling2D:
        if layer.interpolation not in ("nearest", "bilinear"):
            raise _refuse(
                label,
                f"{t.__name__} ({layer.interpolation!r})",
                "only nearest and bilinear resampling (non-negative weights) are bounded",
            )

        def upsample(x, layer=layer):
            last = layer.data_format == "channels_last"
            (hf, wf), axes = layer.size, (1, 2) if last else (2, 3)
            if layer.interpolation == "nearest":
                return keras.ops.repeat(keras.ops.repeat(x, hf, axis=axes[0]), wf, axis=axes[1])
            size = (x.shape[axes[0]] * hf, x.shape[axes[1]] * wf)
            return keras.ops.image.resize(x, size, interpolation="bilinear", data_format=layer.data_format)

        return new(
            "constant", upsample, factor_fn=lambda rec, f=upsample: schur_factor(ops, f, rec.in_shape), note="resample"
        )
    if t is L.ZeroPadding2D:

        def zero_pad(x, layer=layer):
            (top, bottom), (left, right) = layer.padding
            spatial = [(top, bottom), (left, right)]
            widths = [(0, 0)] + (spatial + [(0, 0)] if layer.data_format == "channels_last" else [(0, 0)] + spatial)
            return keras.ops.pad(x, widths)

        return new("constant", zero_pad, note="identity")  # an isometric embedding
    return None


def elementwise_op(op: Any, kind: str, label: str, inputs: list, args: tuple, new: Any) -> int:
    """``keras.ops.abs`` and ``keras.ops.clip`` with constant bounds: 1-Lipschitz per coordinate."""
    import keras

    if len(inputs) != 1 or any(isinstance(a, keras.KerasTensor) for a in args[1:]):
        raise _refuse(label, kind, "its bounds depend on the input")
    if kind == "Clip":
        low, high = op.x_min, op.x_max
        return new("constant", lambda x: keras.ops.clip(x, low, high), note="clamp", extra={"same_shape": True})
    return new("constant", keras.ops.abs, note="abs")


def numpy_op(kind: str, label: str, inputs: list, args: tuple, new: Any) -> int:
    import keras
    import numpy as np

    tensors = [a for a in args if isinstance(a, keras.KerasTensor)]
    consts = [a for a in args if not isinstance(a, keras.KerasTensor)]
    if kind == "Negative":
        return new("constant", lambda x: -x, note="negation")
    if kind in ("Add", "Subtract"):
        sub = kind == "Subtract"
        if len(tensors) == 2:
            return new(
                "add", (lambda a, b: a - b) if sub else (lambda a, b: a + b), ins=inputs, extra={"same_shape": True}
            )
        c = consts[0]
        first = isinstance(args[0], keras.KerasTensor)
        return new(
            "constant",
            lambda x, c=c, first=first, sub=sub: (x - c if first else c - x) if sub else x + c,
            note="shift",
            extra={"same_shape": True},
        )
    if len(tensors) != 1 or len(consts) != 1 or (kind != "Multiply" and not isinstance(args[0], keras.KerasTensor)):
        raise _refuse(label, kind, "a product or quotient of input-dependent tensors is not Lipschitz")
    c = np.abs(np.asarray(keras.ops.convert_to_numpy(consts[0]), dtype=np.float64))
    if kind == "Multiply":
        return new(
            "constant", lambda x, c=consts[0]: x * c, factor=float(c.max()), note="scale", extra={"same_shape": True}
        )
    return new(
        "constant",
        lambda x, c=consts[0]: x / c,
        factor=1.0 / float(c.min()) if c.min() > 0 else math.inf,
        note="scale",
        extra={"same_shape": True},
    )
