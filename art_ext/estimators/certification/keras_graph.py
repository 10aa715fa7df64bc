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
from art_ext.estimators.certification.keras_layers import (
    _pair,
    _refuse,
    elementwise_op,
    group_sort_function,
    more_layers,
    numpy_op,
)

__all__ = ["group_sort_function", "read_keras"]


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
    at = more_layers(layer, t, label, new, activation, ops)
    if at is not None:
        return at
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
        return elementwise_op(layer, t.__name__, label, inputs, args, new)
    if module.startswith("keras.src.ops.numpy") and t.__name__ in (
        "Add",
        "Subtract",
        "Multiply",
        "Negative",
        "TrueDivide",
        "Divide",
    ):
        return numpy_op(t.__name__, label, inputs, args, new)
    if t is L.Softmax:
        raise _refuse(label, t.__name__, "certification needs a model that outputs logits")
    raise _refuse(label, t.__name__)
