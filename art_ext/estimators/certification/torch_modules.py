"""
The ``torch.nn`` modules :mod:`~art_ext.estimators.certification.torch_graph` reads as leaves of a traced graph:
matched by exact type and rebuilt as functional calls from the module's attributes (so a subclass, a hook or a
patched method is never mistaken for the module), with the Lipschitz factor of each; and the tables of activation
functions and methods recognised by identity.
"""

from __future__ import annotations

import math
from typing import Any

from art_ext.estimators.certification.graph import LayerRecord, adaptive_cover, pool_cover, schur_factor

__all__ = ["activation_tables", "module_node", "pair", "refuse"]


def pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) == 2 else (int(v[0]), int(v[0]))
    return int(v), int(v)


def refuse(name: str, what: str, why: str = "") -> TypeError:
    return TypeError(
        f"Node {name!r} ({what}) cannot be bounded{': ' + why if why else ''}. Certifiable: Linear, Conv2d, BatchNorm "
        "(eval), ReLU/LeakyReLU/ELU/Tanh/Sigmoid/GELU/SiLU/Softplus/Hardtanh, max/avg/adaptive pooling, flatten/view/"
        "reshape, dropout, +/- of branches, torch.cat, scaling by a constant."
    )


def activation_tables():
    import torch
    from torch import nn
    from torch.nn import functional as F

    functions = {
        F.relu: 1.0,
        torch.relu: 1.0,
        F.relu6: 1.0,
        torch.tanh: 1.0,
        F.tanh: 1.0,
        torch.sigmoid: 0.25,
        F.sigmoid: 0.25,
        F.gelu: 1.13,
        F.silu: 1.1,
        F.softplus: 1.0,
        F.hardtanh: 1.0,
        F.hardsigmoid: 1.0 / 6.0,
    }
    methods = {"relu": 1.0, "tanh": 1.0, "sigmoid": 0.25}
    modules = {
        nn.ReLU: (lambda m: lambda x: F.relu(x), 1.0),
        nn.ReLU6: (lambda m: lambda x: F.relu6(x), 1.0),
        nn.Tanh: (lambda m: torch.tanh, 1.0),
        nn.Sigmoid: (lambda m: torch.sigmoid, 0.25),
        nn.GELU: (lambda m: lambda x: F.gelu(x, approximate=m.approximate), 1.13),
        nn.SiLU: (lambda m: lambda x: F.silu(x), 1.1),
        nn.Softplus: (lambda m: lambda x: F.softplus(x, m.beta, m.threshold), 1.0),
        nn.Hardtanh: (lambda m: lambda x: F.hardtanh(x, m.min_val, m.max_val), 1.0),
        nn.Hardsigmoid: (lambda m: lambda x: F.hardsigmoid(x), 1.0 / 6.0),
        nn.LeakyReLU: (lambda m: lambda x: F.leaky_relu(x, m.negative_slope), None),
        nn.ELU: (lambda m: lambda x: F.elu(x, m.alpha), None),
    }
    return functions, methods, modules


def module_node(m, name, node, nodes, index, modules, ops) -> int:
    import torch
    from torch import nn
    from torch.nn import functional as F

    kind_name = type(m).__name__
    if len(node.args) != 1 or node.kwargs:
        raise refuse(name, kind_name, "called with more than one argument")
    src = index[node.args[0]]

    def new(kind, forward, **fields):
        nodes.append(LayerRecord(kind=kind, name=name, inputs=(src,), forward=forward, **fields))
        return len(nodes) - 1

    t = type(m)
    if t is nn.Linear:
        return new(
            "dense",
            lambda x: F.linear(x, m.weight, m.bias),
            weight=m.weight.detach().cpu().double().numpy(),
            apply=lambda x: F.linear(x, m.weight),
            weight_fn=lambda: m.weight,
        )
    if t is nn.Conv2d:
        if m.padding_mode != "zeros":
            raise refuse(name, kind_name, f"padding_mode {m.padding_mode!r} (only 'zeros')")
        return new(
            "conv",
            lambda x: F.conv2d(x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups),
            weight=m.weight.detach().cpu().double().numpy(),
            dilation=pair(m.dilation),
            groups=int(m.groups),
            apply=lambda x: F.conv2d(x, m.weight, None, m.stride, m.padding, m.dilation, m.groups),
        )
    if t in (nn.BatchNorm1d, nn.BatchNorm2d):
        if m.running_var is None:
            raise refuse(name, kind_name, "without running statistics it is not a fixed map")

        def scale_fn():
            gamma = m.weight if m.weight is not None else torch.ones_like(m.running_var)
            return gamma / torch.sqrt(m.running_var + m.eps)

        return new(
            "bn",
            lambda x: F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps),
            scale=scale_fn().detach().cpu().double().numpy(),
            scale_fn=scale_fn,
            extra={"axis": 0},
        )
    if t in modules:
        make, factor = modules[t]
        if factor is None:
            factor = max(1.0, abs(float(m.negative_slope if t is nn.LeakyReLU else m.alpha)))
        return new("constant", make(m), factor=factor, note=kind_name.lower())
    if t in (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout):
        return new("constant", lambda x: x, note="identity")
    if t is nn.Flatten:
        return new("constant", lambda x: torch.flatten(x, m.start_dim, m.end_dim), note="identity")
    if t is nn.MaxPool2d:
        if m.return_indices:
            raise refuse(name, kind_name, "return_indices=True")
        kh, kw = pair(m.kernel_size)
        sh, sw = pair(m.stride if m.stride is not None else m.kernel_size)
        dh, dw = pair(m.dilation)
        return new(
            "constant",
            lambda x: F.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode),
            factor=math.sqrt(pool_cover(kh, sh, dh) * pool_cover(kw, sw, dw)),
            note="maxpool",
        )
    if t is nn.AvgPool2d:

        def fwd(x):
            return F.avg_pool2d(
                x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override
            )

        return new("constant", fwd, factor_fn=lambda rec: schur_factor(ops, fwd, rec.in_shape), note="avgpool")
    if t is nn.AdaptiveAvgPool2d:

        def fwd(x):
            return F.adaptive_avg_pool2d(x, m.output_size)

        return new("constant", fwd, factor_fn=lambda rec: schur_factor(ops, fwd, rec.in_shape), note="avgpool")
    if t is nn.AdaptiveMaxPool2d:
        if m.return_indices:
            raise refuse(name, kind_name, "return_indices=True")

        def cover(rec):
            h, w = rec.in_shape[-2:]
            oh, ow = pair(m.output_size)
            return math.sqrt(adaptive_cover(h, oh or h) * adaptive_cover(w, ow or w))

        return new("constant", lambda x: F.adaptive_max_pool2d(x, m.output_size), factor_fn=cover, note="maxpool")
    if t in (nn.Softmax, nn.LogSoftmax, nn.Softmin):
        raise refuse(name, kind_name, "certification needs a model that outputs logits")
    if t in (nn.Threshold, nn.Hardshrink):
        raise refuse(name, kind_name, "it is discontinuous")
    raise refuse(name, kind_name)
