"""
The operations :mod:`~art_ext.estimators.certification.torch_script` maps: Python functions for operations on
numbers and lists (constants and shapes), and for each ``aten`` operation on a tensor the function of the eager
reader (:mod:`~art_ext.estimators.certification.torch_graph`) with its arguments.
"""

from __future__ import annotations

import math
import operator
from typing import Any

from art_ext.estimators.certification.torch_modules import refuse, sorted_values

__all__ = ["SCALAR_OPS", "tensor_rules"]

# Operations on numbers and lists (constants or shapes), as Python functions.
SCALAR_OPS = {
    "aten::eq": operator.eq,
    "aten::ne": operator.ne,
    "aten::lt": operator.lt,
    "aten::le": operator.le,
    "aten::gt": operator.gt,
    "aten::ge": operator.ge,
    "aten::add": operator.add,
    "aten::sub": operator.sub,
    "aten::mul": operator.mul,
    "aten::div": operator.truediv,
    "aten::floordiv": operator.floordiv,
    "aten::floor_divide": operator.floordiv,
    "aten::remainder": operator.mod,
    "aten::neg": operator.neg,
    "aten::__not__": operator.not_,
    "aten::__and__": operator.and_,
    "aten::__or__": operator.or_,
    "aten::__is__": operator.is_,
    "aten::__isnot__": operator.is_not,
    "aten::len": len,
    "aten::__getitem__": operator.getitem,
    "aten::Int": int,
    "aten::Float": float,
    "aten::Bool": bool,
    "aten::ScalarImplicit": lambda v: v,
    "prim::NumToTensor": lambda v: v,
    "prim::unchecked_cast": lambda v: v,
    "aten::list": list,
    "prim::min": min,
    "prim::max": max,
    "aten::floor": math.floor,
    "aten::ceil": math.ceil,
    "aten::warn": lambda *a: None,
    "prim::Uninitialized": lambda: None,
    "aten::slice": lambda v, start=None, end=None, step=1: v[start:end:step],
}


def _const(label: str, kind: str, v: Any, what: str) -> Any:
    if v.kind != "const":
        raise refuse(label, kind, f"its {what} depends on the input")
    return v.value


def tensor_rules() -> dict:
    """``aten`` operation -> ``rule(label, inputs) -> (target, args, kwargs)`` for the eager reader."""
    import torch
    from torch.nn import functional as F

    def same(target, n=None):
        return lambda label, ins: (target, tuple(ins[:n] if n else ins), {})

    def arith(target):
        def rule(label, ins):
            if len(ins) > 2 and _const(label, "alpha", ins[2], "alpha") != 1:
                raise refuse(label, str(target.__name__), "alpha other than 1 is not supported")
            return target, (ins[0], ins[1]), {}

        return rule

    def div(label, ins):
        if len(ins) > 2:
            raise refuse(label, "aten::div", "rounding_mode is discontinuous")
        return operator.truediv, (ins[0], ins[1]), {}

    def convolution(label, ins):
        x, w, b, stride, padding, dilation, transposed, output_padding, groups = ins[:9]
        is_transposed = _const(label, "aten::_convolution", transposed, "transposed flag")
        if w.value.dim() != 4 and not (w.value.dim() == 3 and not is_transposed):
            raise refuse(label, "aten::_convolution", f"a {w.value.dim() - 2}-d convolution (1-d and 2-d only)")
        if is_transposed:
            return F.conv_transpose2d, (x, w, b, stride, padding, output_padding, groups, dilation), {}
        conv = F.conv1d if w.value.dim() == 3 else F.conv2d
        return conv, (x, w, b, stride, padding, dilation, groups), {}

    def batch_norm(label, ins):
        x, weight, bias, mean, var, training, momentum, eps = ins[:8]
        return F.batch_norm, (x, mean, var, weight, bias, training, momentum, eps), {}

    def elu(label, ins):
        if any(_const(label, "aten::elu", v, "scale") != 1 for v in ins[2:4]):
            raise refuse(label, "aten::elu", "scale or input_scale other than 1")
        return F.elu, (ins[0], ins[1]), {}

    def interpolate(mode):
        def rule(label, ins):
            if len(ins) != (4 if mode == "bilinear" else 3):
                raise refuse(label, f"upsample ({mode})", "this overload (per-axis scales) is not supported")
            kwargs = {"size": ins[1], "scale_factor": ins[-1], "mode": mode}
            if mode == "bilinear":
                kwargs["align_corners"] = ins[2]
            return F.interpolate, (ins[0],), kwargs

        return rule

    def mean(label, ins):
        if len(ins) > 3 and ins[3].value is not None:
            return torch.mean, tuple(ins[:3]), {"dtype": ins[3]}
        return torch.mean, tuple(ins[:3]), {}

    def pad(mode):
        return lambda label, ins: (F.pad, (ins[0], ins[1], mode), {})

    return {
        "aten::linear": same(F.linear),
        "aten::conv2d": same(F.conv2d),
        "aten::conv1d": same(F.conv1d),
        "aten::max_pool1d": same(F.max_pool1d),
        "aten::avg_pool1d": same(F.avg_pool1d),
        "aten::adaptive_avg_pool1d": same(F.adaptive_avg_pool1d),
        "aten::adaptive_max_pool1d": same(F.adaptive_max_pool1d),
        "aten::_convolution": convolution,
        "aten::conv_transpose2d": same(F.conv_transpose2d),
        "aten::batch_norm": batch_norm,
        "aten::relu": same(torch.relu),
        "aten::tanh": same(torch.tanh),
        "aten::sigmoid": same(torch.sigmoid),
        "aten::relu6": same(F.relu6),
        "aten::hardtanh": same(F.hardtanh),
        "aten::hardsigmoid": same(F.hardsigmoid),
        "aten::silu": same(F.silu),
        "aten::softplus": same(F.softplus),
        "aten::leaky_relu": same(F.leaky_relu),
        "aten::gelu": lambda label, ins: (F.gelu, (ins[0],), {"approximate": ins[1]} if len(ins) > 1 else {}),
        "aten::elu": elu,
        "aten::abs": same(torch.abs),
        "aten::clamp": same(torch.clamp),
        "aten::clip": same(torch.clamp),
        "aten::clamp_min": lambda label, ins: (torch.clamp, (ins[0],), {"min": ins[1]}),
        "aten::clamp_max": lambda label, ins: (torch.clamp, (ins[0],), {"max": ins[1]}),
        "aten::softmax": same(torch.softmax, 2),
        "aten::log_softmax": same(torch.log_softmax, 2),
        "aten::flatten": same(torch.flatten),
        "aten::view": same("view"),
        "aten::reshape": same("reshape"),
        "aten::contiguous": same("contiguous", 1),
        "aten::permute": same("permute"),
        "aten::squeeze": same("squeeze"),
        "aten::unsqueeze": same("unsqueeze"),
        "aten::dropout": same(F.dropout),
        "aten::feature_dropout": same(F.dropout),
        "aten::alpha_dropout": same(F.dropout),
        "aten::add": arith(operator.add),
        "aten::sub": arith(operator.sub),
        "aten::mul": same(operator.mul),
        "aten::div": div,
        "aten::neg": same(operator.neg),
        "aten::cat": same(torch.cat),
        "aten::concat": same(torch.cat),
        "aten::max_pool2d": same(F.max_pool2d),
        "aten::avg_pool2d": same(F.avg_pool2d),
        "aten::adaptive_avg_pool2d": same(F.adaptive_avg_pool2d),
        "aten::adaptive_max_pool2d": same(F.adaptive_max_pool2d),
        "aten::mean": mean,
        "aten::sort": lambda label, ins: (sorted_values, tuple(ins[:3]), {}),
        "aten::unflatten": same("unflatten"),
        "aten::upsample_nearest2d": interpolate("nearest"),
        "aten::_upsample_nearest_exact2d": interpolate("nearest-exact"),
        "aten::upsample_bilinear2d": interpolate("bilinear"),
        "aten::pad": lambda label, ins: (F.pad, tuple(ins), {}),
        "aten::constant_pad_nd": lambda label, ins: (F.pad, (ins[0], ins[1], "constant", ins[2]), {}),
        "aten::reflection_pad2d": pad("reflect"),
        "aten::replication_pad2d": pad("replicate"),
        "aten::_pad_circular": pad("circular"),
    }
