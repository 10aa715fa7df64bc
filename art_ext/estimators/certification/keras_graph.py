"""
Read a Keras 3 model into a :class:`~art_ext.estimators.certification.graph.LipschitzGraph`: ``Sequential`` models
layer by layer, functional models through their graph of nodes (inbound tensors of every operation, so branches,
``Add``, ``Concatenate`` and ``x + y`` on Keras tensors are followed), nested models recursively. Layers are read by
exact type and rebuilt with ``keras.ops`` from their variables and configuration; activations are recognised by
function identity (``fn is keras.activations.relu``), never by name. Subclassed models and unknown layers are refused.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from art_ext.estimators.certification.graph import LayerRecord, pool_cover, schur_factor

__all__ = ["group_sort_function", "read_keras"]


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


def _refuse(name: str, what: str, why: str = "") -> TypeError:
    return TypeError(
        f"Layer {name!r} ({what}) cannot be bounded{': ' + why if why else ''}. Certifiable: Dense, Conv2D, "
        "Conv1D, Conv2DTranspose, 1-D pooling, UpSampling2D (nearest/bilinear), ZeroPadding2D, keras.ops.abs/clip, "
        "art_ext.models MaxMin/GroupSort, "
        "BatchNormalization, ReLU (threshold 0)/LeakyReLU/ELU and relu/tanh/sigmoid/elu/gelu/silu/softplus "
        "activations, max/average/global pooling, Flatten/Reshape/Dropout, Rescaling, Add/Subtract/Concatenate, "
        "nested Sequential/functional models, art_ext.models.ResidualBlock."
    )


def _activations() -> dict:
    import keras

    a = keras.activations
    return {
        a.linear: None,
        a.relu: 1.0,
        a.relu6: 1.0,
        a.tanh: 1.0,
        a.sigmoid: 0.25,
        a.hard_sigmoid: 1.0 / 6.0,
        a.softplus: 1.0,
        a.softsign: 1.0,
        a.elu: 1.0,
        a.leaky_relu: 1.0,
        a.gelu: 1.13,
        a.silu: 1.1,
        a.selu: 1.76,
    }


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) == 2 else (int(v[0]), int(v[0]))
    return int(v), int(v)


def read_keras(model: Any, nodes: list[LayerRecord], ops: Any) -> int:
    """
    Append the nodes of a Keras model to `nodes` (whose last node is the model's input).

    :param model: The Keras model.
    :param nodes: Graph nodes so far; the model's input is ``nodes[-1]``.
    :param ops: The TensorFlow backend.
    :return: Index of the output node.
    :raises TypeError: When a layer cannot be read or bounded (the message names it).
    """
    return _read(model, len(nodes) - 1, nodes, ops, "model")


def _read(obj: Any, src: int, nodes: list, ops: Any, prefix: str) -> int:
    import keras

    if isinstance(obj, keras.Sequential):
        for layer in obj.layers:
            src = _read(layer, src, nodes, ops, f"{prefix}.{layer.name}")
        return src
    if isinstance(obj, keras.Model):
        if not hasattr(obj, "_nodes_by_depth"):
            raise _refuse(
                prefix, type(obj).__name__, "a subclassed model's call() cannot be read; build it functionally"
            )
        return _read_functional(obj, src, nodes, ops, prefix)
    return _layer(obj, [src], nodes, ops, prefix, (), {})


def _read_functional(model: Any, src: int, nodes: list, ops: Any, prefix: str) -> int:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise _refuse(prefix, "functional model", "it must have one input and one output")
    where = {id(model.inputs[0]): src}
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            op = node.operation
            name = f"{prefix}.{op.name}"
            if len(node.outputs) != 1:
                raise _refuse(name, type(op).__name__, "it has several outputs")
            missing = [t for t in node.input_tensors if id(t) not in where]
            if missing:
                raise _refuse(name, type(op).__name__, "it takes a tensor that does not come from the model input")
            inputs = [where[id(t)] for t in node.input_tensors]
            if _is_model(op):
                if len(inputs) != 1:
                    raise _refuse(name, type(op).__name__, "a nested model must take one tensor")
                out = _read(op, inputs[0], nodes, ops, name)
            else:
                out = _layer(op, inputs, nodes, ops, name, node.arguments.args, node.arguments.kwargs)
            where[id(node.outputs[0])] = out
    return where[id(model.outputs[0])]


def _is_model(op: Any) -> bool:
    import keras

    return isinstance(op, keras.Model)


def _layer(layer: Any, inputs: list, nodes: list, ops: Any, name: str, args: tuple, kwargs: dict) -> int:
    import keras
    from keras import layers as L

    # art_ext's reference residual block (exact class): a layer of it exists only once its module was imported, so
    # it is looked up without importing the reference models into the library.
    residual_class = getattr(sys.modules.get("art_ext.models.tensorflow"), "_RESIDUAL_CLASS", None)

    t = type(layer)
    label = f"{name} ({t.__name__})"
    kwargs = {k: v for k, v in (kwargs or {}).items() if v is not None and not (k == "training" and not v)}
    if kwargs:
        raise _refuse(label, t.__name__, f"called with {sorted(kwargs)}")
    src = inputs[0]

    def new(kind: str, forward: Any, ins: Any = None, **fields) -> int:
        nodes.append(LayerRecord(kind=kind, name=label, inputs=tuple(ins or (src,)), forward=forward, **fields))
        return len(nodes) - 1

    def activation(fn: Any, at: int) -> int:
        table = _activations()
        if not any(fn is known for known in table):
            raise _refuse(label, f"activation {getattr(fn, '__name__', fn)!r}", "not one of keras.activations' own")
        factor = next(v for k, v in table.items() if k is fn)
        if factor is None:
            return at
        nodes.append(
            LayerRecord(
                kind="constant",
                name=f"{label} [{fn.__name__}]",
                inputs=(at,),
                forward=fn,
                factor=factor,
                note=fn.__name__,
            )
        )
        return len(nodes) - 1

    group_class = getattr(sys.modules.get("art_ext.models.tensorflow"), "_GROUP_SORT_CLASS", None)
    if group_class is not None and t is group_class:
        return new(
            "constant", lambda x, layer=layer: group_sort_function(x, layer.group_size, layer.axis), note="groupsort"
        )
    if residual_class is not None and t is residual_class:
        body = _read(layer.body, src, nodes, ops, f"{name}.body")
        short = src if layer.shortcut is None else _read(layer.shortcut, src, nodes, ops, f"{name}.shortcut")
        return new("add", lambda a, b: a + b, ins=(body, short), extra={"same_shape": True})
    if t is L.InputLayer:
        return src
    if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
        raise _refuse(label, t.__name__, "LoRA or quantised layers are not supported")
    if t is L.Dense:

        def dense(x, layer=layer):
            y = keras.ops.matmul(x, layer.kernel)
            return y + layer.bias if layer.use_bias else y

        at = new(
            "dense",
            dense,
            weight=layer.kernel.numpy().astype("float64").T,
            apply=lambda x, layer=layer: keras.ops.matmul(x, layer.kernel),
            weight_fn=lambda layer=layer: keras.ops.transpose(layer.kernel.value),
        )
        return activation(layer.activation, at)
    if t is L.Conv2D:
        channels_last = layer.data_format == "channels_last"

        def conv(x, layer=layer, channels_last=channels_last):
            y = layer.convolution_op(x, layer.kernel)
            if not layer.use_bias:
                return y
            return y + (layer.bias if channels_last else keras.ops.reshape(layer.bias, (-1, 1, 1)))

        at = new(
            "conv",
            conv,
            weight=layer.kernel.numpy().astype("float64").transpose(3, 2, 0, 1),
            channels_last=channels_last,
            dilation=_pair(layer.dilation_rate),
            groups=int(layer.groups),
            apply=lambda x, layer=layer: layer.convolution_op(x, layer.kernel),
        )
        return activation(layer.activation, at)
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
    if t is L.BatchNormalization:
        if not isinstance(layer.axis, int):
            raise _refuse(label, t.__name__, "normalisation over several axes")

        def scale_fn(layer=layer):
            var = layer.moving_variance.value
            gamma = layer.gamma.value if layer.gamma is not None else keras.ops.ones_like(var)
            return gamma / keras.ops.sqrt(var + layer.epsilon)

        def bn(x, layer=layer):
            shape = [1] * len(x.shape)
            shape[layer.axis] = -1
            y = (x - keras.ops.reshape(layer.moving_mean.value, shape)) * keras.ops.reshape(scale_fn(), shape)
            return y + keras.ops.reshape(layer.beta.value, shape) if layer.beta is not None else y

        axis = layer.axis - 1 if layer.axis > 0 else layer.axis
        return new(
            "bn",
            bn,
            scale=keras.ops.convert_to_numpy(scale_fn()).astype("float64"),
            scale_fn=scale_fn,
            extra={"axis": axis},
        )
    if t is L.Activation:
        return activation(layer.activation, src)
    if t is L.ReLU:
        if float(layer.threshold) != 0.0:
            raise _refuse(label, "ReLU", f"threshold={float(layer.threshold)} makes it discontinuous")
        slope = float(layer.negative_slope)
        plain = slope == 0.0 and layer.max_value is None
        return new(
            "constant",
            lambda x, layer=layer: keras.activations.relu(
                x, negative_slope=layer.negative_slope, max_value=layer.max_value
            ),
            factor=max(1.0, abs(slope)),
            note="relu" if plain else "relu_variant",
        )
    if t is L.LeakyReLU:
        return new(
            "constant",
            lambda x, layer=layer: keras.activations.leaky_relu(x, layer.negative_slope),
            factor=max(1.0, abs(float(layer.negative_slope))),
            note="leaky_relu",
        )
    if t is L.ELU:
        return new(
            "constant",
            lambda x, layer=layer: keras.activations.elu(x, layer.alpha),
            factor=max(1.0, abs(float(layer.alpha))),
            note="elu",
        )
    if t in (L.Flatten, L.Reshape, L.Permute):
        if t is L.Flatten and layer.data_format == "channels_first":
            raise _refuse(label, t.__name__, "data_format='channels_first' transposes; use the default")
        target = (-1,) if t is L.Flatten else None
        if t is L.Permute:
            return new("constant", lambda x, d=layer.dims: keras.ops.transpose(x, (0,) + tuple(d)), note="identity")
        return new(
            "constant",
            lambda x, s=target or layer.target_shape: keras.ops.reshape(x, (x.shape[0],) + tuple(s)),
            note="identity",
        )
    if t in (L.Dropout, L.SpatialDropout2D, L.GaussianNoise, L.GaussianDropout, L.Identity):
        return new("constant", lambda x: x, note="identity")
    if t is L.Rescaling:
        return new(
            "constant",
            lambda x, layer=layer: x * layer.scale + layer.offset,
            factor=float(abs(keras.ops.convert_to_numpy(layer.scale)).max()),
            note="scale",
            extra={"same_shape": True},
        )
    if t is L.MaxPooling2D:
        (kh, kw), (sh, sw) = _pair(layer.pool_size), _pair(layer.strides or layer.pool_size)
        return new(
            "constant",
            lambda x, layer=layer: keras.ops.max_pool(
                x, layer.pool_size, layer.strides, layer.padding, layer.data_format
            ),
            factor=math.sqrt(pool_cover(kh, sh) * pool_cover(kw, sw)),
            note="maxpool",
        )
    if t is L.AveragePooling2D:

        def avg(x, layer=layer):
            return keras.ops.average_pool(x, layer.pool_size, layer.strides, layer.padding, layer.data_format)

        return new("constant", avg, factor_fn=lambda rec, f=avg: schur_factor(ops, f, rec.in_shape), note="avgpool")
    if t in (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D):
        axes = (1, 2) if layer.data_format == "channels_last" else (2, 3)
        if t is L.GlobalMaxPooling2D:
            return new(
                "constant", lambda x, a=axes, k=layer.keepdims: keras.ops.max(x, axis=a, keepdims=k), note="maxpool"
            )

        def gap(x, a=axes, k=layer.keepdims):
            return keras.ops.mean(x, axis=a, keepdims=k)

        return new("constant", gap, factor_fn=lambda rec, f=gap: schur_factor(ops, f, rec.in_shape), note="avgpool")
    if t in (L.Add, L.Subtract):

        def combine(*xs, sub=t is L.Subtract):
            out = xs[0]
            for other in xs[1:]:
                out = out - other if sub else out + other
            return out

        return new("add", combine, ins=inputs, extra={"same_shape": True})
    if t is L.Concatenate:
        if layer.axis == 0:
            raise _refuse(label, t.__name__, "it concatenates along the batch axis")
        return new("cat", lambda *xs, a=layer.axis: keras.ops.concatenate(list(xs), axis=a), ins=inputs)
    module = t.__module__
    if module.startswith("keras.src.ops.numpy") and t.__name__ in ("Absolute", "Abs", "Clip"):
        if len(inputs) != 1 or any(isinstance(a, keras.KerasTensor) for a in args[1:]):
            raise _refuse(label, t.__name__, "its bounds depend on the input")
        if t.__name__ == "Clip":
            low, high = layer.x_min, layer.x_max
            return new("constant", lambda x: keras.ops.clip(x, low, high), note="clamp", extra={"same_shape": True})
        return new("constant", keras.ops.abs, note="abs")
    if module.startswith("keras.src.ops.numpy") and t.__name__ in (
        "Add",
        "Subtract",
        "Multiply",
        "Negative",
        "TrueDivide",
        "Divide",
    ):
        return _numpy_op(t.__name__, label, inputs, args, new)
    if t is L.Softmax:
        raise _refuse(label, t.__name__, "certification needs a model that outputs logits")
    raise _refuse(label, t.__name__)


def _numpy_op(kind: str, label: str, inputs: list, args: tuple, new: Any) -> int:
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
