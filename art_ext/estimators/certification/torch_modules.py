"""
The ``torch.nn`` modules :mod:`~art_ext.estimators.certification.torch_graph` reads as leaves of a traced graph:
matched by exact type and rebuilt as functional calls from the module's attributes (so a subclass, a hook or a
patched method is never mistaken for the module), with the Lipschitz factor of each; and the tables of activation
functions and methods recognised by identity.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from art_ext.estimators.certification.graph import LayerRecord, adaptive_cover, pool_cover, schur_factor

__all__ = [
    "NOT_NONNEGATIVE",
    "RESAMPLE_MODES",
    "activation_tables",
    "conv_fields",
    "group_sort_class",
    "group_sort_function",
    "module_node",
    "pair",
    "refuse",
    "sorted_values",
]

#: Resampling modes whose linear map has non-negative weights (bounded by ``sqrt(max row sum * max column sum)``).
RESAMPLE_MODES = ("nearest", "nearest-exact", "bilinear")
NOT_NONNEGATIVE = "only nearest and bilinear resampling (non-negative weights) are bounded"


def pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) == 2 else (int(v[0]), int(v[0]))
    return int(v), int(v)


def refuse(name: str, what: str, why: str = "") -> TypeError:
    return TypeError(
        f"Node {name!r} ({what}) cannot be bounded{': ' + why if why else ''}. Certifiable: Linear, Conv2d (any "
        "padding mode), ConvTranspose2d, BatchNorm (eval), these under torch.nn.utils.parametrizations, ReLU/LeakyReLU/"
        "ELU/Tanh/Sigmoid/GELU/SiLU/Softplus/Hardtanh, clamp, abs, art_ext.models MaxMin/GroupSort, max/avg/adaptive "
        "pooling, Upsample (nearest/bilinear), padding, flatten/view/reshape, dropout, +/- of branches, torch.cat, "
        "scaling by a constant."
    )


def group_sort_function(x: Any, group_size: int, axis: int) -> Any:
    """Sort the values along `axis` in consecutive groups of `group_size` (ascending); 1-Lipschitz in l2."""
    dim = axis % x.dim()
    if dim == 0:
        raise TypeError("GroupSort along the batch axis mixes samples; sort along a feature axis.")
    n = int(x.shape[dim])
    if n % group_size:
        raise ValueError(f"GroupSort: axis {axis} has {n} values, not a multiple of group_size={group_size}.")
    return x.unflatten(dim, (n // group_size, group_size)).sort(dim=dim + 1).values.flatten(dim, dim + 1)


def sorted_values(x: Any, dim: int = -1, descending: bool = False) -> Any:
    """``torch.sort(x, dim, descending).values``: sorting each vector is 1-Lipschitz in l2 (TorchScript's
    ``aten::sort`` when its indices are not used, as in a scripted GroupSort)."""
    if dim % x.dim() == 0:
        raise TypeError("A sort along the batch axis mixes the samples of a batch; it cannot be certified.")
    return x.sort(dim=dim, descending=descending).values


def group_sort_class() -> Any:
    """art_ext's GroupSort module class (exact type), if its module was imported (it is never imported from here)."""
    return getattr(sys.modules.get("art_ext.models.pytorch"), "_GROUP_SORT_CLASS", None)


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


def _single(v: Any) -> tuple[int]:
    return (int(v[0]),) if isinstance(v, (tuple, list)) else (int(v),)


def conv_fields(weight: Any, dilation: Any, groups: int) -> dict:
    """The fields of a ``conv`` record for a 1-D or 2-D ``torch`` convolution weight: a 1-D convolution is a 2-D one
    of height 1 (weight ``(c_out, c_in / groups, 1, k)``, ``extra["conv1d"]``)."""
    w = weight.detach().cpu().double().numpy()
    if w.ndim == 3:
        return {
            "weight": w[:, :, None, :],
            "dilation": (1, _single(dilation)[0]),
            "groups": int(groups),
            "extra": {"conv1d": True},
        }
    return {"weight": w, "dilation": pair(dilation), "groups": int(groups)}


def _plain_type(m: Any, name: str) -> type:
    """
    The ``torch.nn`` class a module computes as: its own type, or for a module under
    ``torch.nn.utils.parametrize`` (``parametrizations.spectral_norm``, ``weight_norm``, ``orthogonal``) the class
    it parametrizes, whose ``forward`` it runs with the weight the parametrization computes (read from ``m.weight``,
    never assumed from the parametrization's name).
    """
    from torch.nn.utils import parametrize

    t = type(m)
    if not parametrize.is_parametrized(m):
        return t
    base = t.__bases__[0] if len(t.__bases__) == 1 else None
    if base is None or t.__name__ != f"Parametrized{base.__name__}" or "forward" in t.__dict__:
        raise refuse(name, t.__name__, "a parametrized module that is not a plain torch.nn layer")
    if set(m.parametrizations.keys()) - {"weight"}:
        raise refuse(name, t.__name__, f"parametrized {sorted(m.parametrizations.keys())}; only the weight may be")
    return base


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

    if m._forward_hooks or m._forward_pre_hooks:
        raise refuse(
            name,
            kind_name,
            "it has forward hooks, whose effect cannot be bounded (for torch.nn.utils.spectral_norm, use "
            "torch.nn.utils.parametrizations.spectral_norm)",
        )
    t = _plain_type(m, name)

    def resample(forward, note="resample"):
        return new("constant", forward, factor_fn=lambda rec: schur_factor(ops, forward, rec.in_shape), note=note)

    if t is group_sort_class():
        return new("constant", lambda x: group_sort_function(x, m.group_size, m.axis), note="groupsort")
    if t is nn.ConvTranspose2d:
        if m.padding_mode != "zeros":
            raise refuse(name, kind_name, f"padding_mode {m.padding_mode!r} (only 'zeros')")
        args = (m.stride, m.padding, m.output_padding, m.groups, m.dilation)
        return new(
            "conv",
            lambda x: F.conv_transpose2d(x, m.weight, m.bias, *args),
            weight=m.weight.detach().cpu().double().numpy(),
            dilation=pair(m.dilation),
            groups=int(m.groups),
            extra={"transposed": True},
            apply=lambda x: F.conv_transpose2d(x, m.weight, None, *args),
        )
    if t in (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d):
        if m.mode not in RESAMPLE_MODES:
            raise refuse(name, f"{kind_name} (mode {m.mode!r})", NOT_NONNEGATIVE)
        return resample(
            lambda x: F.interpolate(
                x, m.size, m.scale_factor, m.mode, m.align_corners, recompute_scale_factor=m.recompute_scale_factor
            )
        )
    pads = {nn.ZeroPad2d: "constant", nn.ConstantPad2d: "constant", nn.ReflectionPad2d: "reflect"}
    pads.update({nn.ReplicationPad2d: "replicate", nn.CircularPad2d: "circular"})
    if t in pads:
        return resample(
            lambda x: F.pad(x, m.padding, pads[t], getattr(m, "value", 0.0) if pads[t] == "constant" else None)
        )
    if t is nn.Linear:
        return new(
            "dense",
            lambda x: F.linear(x, m.weight, m.bias),
            weight=m.weight.detach().cpu().double().numpy(),
            apply=lambda x: F.linear(x, m.weight),
            weight_fn=lambda: m.weight,
        )
    if t in (nn.Conv1d, nn.Conv2d):
        conv = F.conv1d if t is nn.Conv1d else F.conv2d
        padding, at = m.padding, src
        if m.padding_mode != "zeros":
            # F.pad with the padding mode (a map with one 1 per output: its norm is the root of the most copies of
            # one input), then the convolution without padding
            pads, padding = m._reversed_padding_repeated_twice, 0
            at = resample(lambda x: F.pad(x, pads, mode=m.padding_mode))
        nodes.append(
            LayerRecord(
                kind="conv",
                name=name,
                inputs=(at,),
                forward=lambda x: conv(x, m.weight, m.bias, m.stride, padding, m.dilation, m.groups),
                **conv_fields(m.weight, m.dilation, m.groups),
                apply=lambda x: conv(x, m.weight, None, m.stride, padding, m.dilation, m.groups),
            )
        )
        return len(nodes) - 1
    if t in (nn.BatchNorm1d, nn.BatchNorm2d):  # on (N, C) or (N, C, L) / (N, C, H, W): the channel axis
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
    if t is nn.MaxPool1d:
        if m.return_indices:
            raise refuse(name, kind_name, "return_indices=True")
        (k,), (st,), (d,) = (_single(v) for v in (m.kernel_size, m.stride or m.kernel_size, m.dilation))
        return new(
            "constant",
            lambda x: F.max_pool1d(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode),
            factor=math.sqrt(pool_cover(k, st, d)),
            note="maxpool",
        )
    if t in (nn.AvgPool1d, nn.AdaptiveAvgPool1d):

        def fwd(x):
            if t is nn.AdaptiveAvgPool1d:
                return F.adaptive_avg_pool1d(x, m.output_size)
            return F.avg_pool1d(x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad)

        return new("constant", fwd, factor_fn=lambda rec: schur_factor(ops, fwd, rec.in_shape), note="avgpool")
    if t is nn.AdaptiveMaxPool1d:
        if m.return_indices:
            raise refuse(name, kind_name, "return_indices=True")
        (out,) = _single(m.output_size)
        return new(
            "constant",
            lambda x: F.adaptive_max_pool1d(x, m.output_size),
            factor_fn=lambda rec: math.sqrt(adaptive_cover(rec.in_shape[-1], out or rec.in_shape[-1])),
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
