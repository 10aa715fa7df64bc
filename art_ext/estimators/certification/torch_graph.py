"""
Read a ``torch.nn.Module`` into a :class:`~art_ext.estimators.certification.graph.LipschitzGraph` with
``torch.fx`` symbolic tracing: every call, in ``forward`` methods of any module (``F.relu``, ``torch.flatten``, ``+``,
``torch.cat``...), becomes a node; reused modules become one node per use. Modules of ``torch.nn`` are read as leaves
(by exact type, rebuilt from their attributes); user modules are traced through. Each node's ``forward`` calls the
functional form with the extracted parameters, so the rebuilt graph can be checked against the model's own output.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from art_ext.estimators.certification.graph import LayerRecord, adaptive_cover, pool_cover, schur_factor

__all__ = ["read_torch"]


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) == 2 else (int(v[0]), int(v[0]))
    return int(v), int(v)


def _refuse(name: str, what: str, why: str = "") -> TypeError:
    return TypeError(
        f"Node {name!r} ({what}) cannot be bounded{': ' + why if why else ''}. Certifiable: Linear, Conv2d, BatchNorm "
        "(eval), ReLU/LeakyReLU/ELU/Tanh/Sigmoid/GELU/SiLU/Softplus/Hardtanh, max/avg/adaptive pooling, flatten/view/"
        "reshape, dropout, +/- of branches, torch.cat, scaling by a constant."
    )


def _activation_tables():
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


def read_torch(model: Any, nodes: list[LayerRecord], ops: Any) -> int:
    """
    Append the nodes of `model`'s traced graph to `nodes` (whose last node is the model's input).

    :param model: The ``torch.nn.Module``.
    :param nodes: Graph nodes so far; the model's input is ``nodes[-1]``.
    :param ops: The PyTorch backend.
    :return: Index of the output node.
    :raises TypeError: When the model cannot be traced or a node cannot be bounded (the message names it).
    """
    from torch import fx, nn
    from torch.nn import functional as F

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m: Any, qualname: str) -> bool:
            return type(m).__module__.startswith("torch.nn.") and not isinstance(
                m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)
            )

    if isinstance(model, nn.Sequential) and type(model).forward is not nn.Sequential.forward:
        raise TypeError(
            f"{type(model).__name__} subclasses nn.Sequential with its own forward, which ART's PyTorchClassifier "
            "ignores (it runs the children in order): the classifier and the model compute different functions. "
            "Subclass nn.Module instead."
        )
    was_training = model.training
    model.eval()
    try:
        graph = Tracer().trace(model)
    except Exception as err:  # torch.fx raises many kinds of errors on untraceable code
        raise TypeError(
            f"torch.fx cannot trace {type(model).__name__}.forward ({type(err).__name__}: {err}); write forward without "
            "data-dependent control flow so that its computation graph can be bounded."
        ) from err
    finally:
        model.train(was_training)
    functions, methods, modules = _activation_tables()
    index: dict[Any, int] = {}
    consts: dict[Any, Any] = {}
    output, seen_input = None, False

    def attr(target: str) -> Any:
        value = model
        for part in target.split("."):
            value = getattr(value, part)
        return value

    def add(kind: str, name: str, args: tuple, kwargs: dict, fn: Any, **fields) -> int:
        """A node whose forward is ``fn(*args, **kwargs)`` with graph nodes replaced by their values."""
        inputs: list[int] = []

        def mark(a):
            if a in consts:
                return _Const(consts[a])
            inputs.append(index[a])
            return _Slot(len(inputs) - 1)

        args_m = fx.node.map_arg(args, mark)
        kwargs_m = fx.node.map_arg(kwargs, mark)

        def forward(*vals, fn=fn, args_m=args_m, kwargs_m=kwargs_m):
            return fn(*_fill(args_m, vals), **_fill(kwargs_m, vals))

        nodes.append(LayerRecord(kind=kind, name=name, inputs=tuple(inputs), forward=forward, **fields))
        return len(nodes) - 1

    for node in graph.nodes:
        if node.op == "call_module":
            name = f"{node.target} ({type(attr(node.target)).__name__})"
        else:
            name = f"{node.name} ({getattr(node.target, '__name__', node.target)})"
        if node.op == "placeholder":
            if seen_input:
                raise _refuse(name, "a second input", "the model must take one input tensor")
            seen_input = True
            index[node] = len(nodes) - 1
            continue
        if node.op == "get_attr":
            consts[node] = attr(node.target)
            continue
        if node.op == "output":
            output = index.get(node.args[0])
            if output is None:
                raise _refuse(name, "output", "the model must return one tensor computed from its input")
            continue
        tensors = [a for a in node.all_input_nodes if a not in consts]
        if not tensors:
            raise _refuse(name, "a constant", "it does not depend on the input")
        meta = all(nodes[index[a]].kind == "meta" for a in tensors)
        if node.op == "call_module":
            index[node] = _module_node(attr(node.target), name, node, nodes, index, modules, ops)
            continue
        target = node.target
        if target is getattr and node.args[1] not in ("shape", "ndim", "dtype", "device"):
            raise _refuse(name, f"attribute {node.args[1]!r}", "only shape attributes of a tensor can be read")
        if meta or target in (getattr, "size", "dim"):
            index[node] = add("meta", name, node.args, node.kwargs, _callable(target))
            continue
        x = node.args[0]
        dependent = [a for a in tensors if nodes[index[a]].kind != "meta"]
        if target in functions or target in methods or target in (F.elu, F.leaky_relu):
            if dependent != [x]:
                raise _refuse(name, str(target), "an activation parameter depends on the input")
            factor = functions.get(target, methods.get(target))
            if factor is None:
                key, default = ("alpha", 1.0) if target is F.elu else ("negative_slope", 0.01)
                factor = max(1.0, abs(float(node.kwargs.get(key, node.args[1] if len(node.args) > 1 else default))))
            note = target if isinstance(target, str) else getattr(target, "__name__", str(target))
            if node.args[1:] or set(node.kwargs) - {"inplace"}:
                note += "_variant"
            # rebuilt out of place: if the model's in-place update changes what other nodes see, the check fails
            args = tuple(False if isinstance(a, bool) else a for a in node.args)
            kwargs = {**node.kwargs, "inplace": False} if "inplace" in node.kwargs else dict(node.kwargs)
            index[node] = add("constant", name, args, kwargs, _callable(target), factor=factor, note=note)
        else:
            index[node] = _function_node(target, name, node, x, set(dependent), consts, add)
            record = nodes[index[node]]
            if record.note in ("avgpool", "adaptive_maxpool") and len(record.inputs) != 1:
                raise _refuse(name, str(target), "its parameters depend on the input")
            if record.note == "avgpool":
                record.factor_fn = lambda rec: schur_factor(ops, rec.forward, rec.in_shape)
            elif record.note == "adaptive_maxpool":
                out = _pair(node.args[1] if len(node.args) > 1 else node.kwargs["output_size"])
                record.factor_fn = lambda rec, out=out: math.sqrt(
                    adaptive_cover(rec.in_shape[-2], out[0] or rec.in_shape[-2])
                    * adaptive_cover(rec.in_shape[-1], out[1] or rec.in_shape[-1])
                )
    if output is None:
        raise TypeError(f"The traced graph of {type(model).__name__} has no output.")
    return output


class _Slot:
    def __init__(self, i: int) -> None:
        self.i = i


class _Const:
    def __init__(self, value: Any) -> None:
        self.value = value


def _fill(structure: Any, vals: tuple) -> Any:
    if isinstance(structure, _Slot):
        return vals[structure.i]
    if isinstance(structure, _Const):
        return structure.value
    if isinstance(structure, (list, tuple)):
        return type(structure)(_fill(s, vals) for s in structure)
    if isinstance(structure, dict):
        return {k: _fill(v, vals) for k, v in structure.items()}
    return structure


def _callable(target: Any) -> Any:
    if target == "view":  # same values wherever view succeeds; our rebuilt tensors may be laid out differently
        target = "reshape"
    if isinstance(target, str):
        return lambda self, *a, **k: getattr(self, target)(*a, **k)
    return target


def _function_node(target, name, node, x, const_args, consts, add) -> int:
    import torch
    from torch import fx
    from torch.nn import functional as F

    args, kwargs = node.args, node.kwargs
    other = args[1] if len(args) > 1 else None
    if target is F.linear:
        if other not in consts or (len(args) > 2 and args[2] is not None and args[2] not in consts):
            raise _refuse(name, "linear", "its weight depends on the input")
        w = consts[other]
        return add(
            "dense",
            name,
            args,
            kwargs,
            target,
            weight=w.detach().cpu().double().numpy(),
            apply=lambda t, w=w: F.linear(t, w),
            weight_fn=lambda w=w: w,
        )
    if target is F.conv2d:
        w = consts.get(other)
        if w is None:
            raise _refuse(name, "conv2d", "its weight depends on the input")
        full = list(args) + [None] * (7 - len(args))
        stride, padding, dilation, groups = (
            kwargs.get(k, d)
            for k, d in zip(
                ("stride", "padding", "dilation", "groups"), (full[3] or 1, full[4] or 0, full[5] or 1, full[6] or 1)
            )
        )
        return add(
            "conv",
            name,
            args,
            kwargs,
            target,
            weight=w.detach().cpu().double().numpy(),
            dilation=_pair(dilation),
            groups=int(groups),
            apply=lambda t, w=w: F.conv2d(t, w, None, stride, padding, dilation, groups),
        )
    if target is F.dropout:
        training = kwargs.get("training", args[2] if len(args) > 2 else True)
        if training:
            raise _refuse(name, "dropout", "in training mode it is random")
        return add("constant", name, args, kwargs, target, note="identity")
    if target in (torch.flatten, "flatten", "view", "reshape", "contiguous", "squeeze", "unsqueeze"):
        return add("constant", name, args, kwargs, _callable(target), note="identity")
    if target in ("permute", torch.permute):
        dims = (
            args[1:] if len(args) > 2 or not isinstance(args[1] if len(args) > 1 else None, (list, tuple)) else args[1]
        )
        if not dims or dims[0] != 0:
            raise _refuse(name, "permute", "it moves the batch axis")
        return add("constant", name, args, kwargs, _callable(target), note="identity")
    nd = sum(isinstance(a, fx.Node) and a in const_args for a in args[:2])
    if target in (operator.add, torch.add, "add", operator.sub, torch.sub, "sub"):
        if "alpha" in kwargs:
            raise _refuse(name, str(target), "alpha is not supported")
        if nd == 2:
            return add("add", name, args, kwargs, _callable(target), extra={"same_shape": True})
        return add("constant", name, args, kwargs, _callable(target), note="shift", extra={"same_shape": True})
    if target in (operator.neg, torch.neg, "neg"):
        return add("constant", name, args, kwargs, _callable(target), note="negation")
    if target in (operator.mul, torch.mul, "mul", operator.truediv, torch.div, "div"):
        divide = target in (operator.truediv, torch.div, "div")
        if nd == 2 or (divide and args[1] in const_args) or "rounding_mode" in kwargs:
            raise _refuse(name, str(target), "a product or quotient of input-dependent tensors is not Lipschitz")
        c = args[1] if args[0] in const_args else args[0]
        c = consts.get(c, c) if isinstance(c, fx.Node) else c
        if isinstance(c, torch.Tensor):
            c = c.detach().cpu().double().numpy()
        if not isinstance(c, (int, float, np.ndarray)):
            raise _refuse(name, str(target), "only scaling by a constant is supported")
        c = np.abs(np.asarray(c, dtype=np.float64))
        factor = (1.0 / float(c.min()) if c.min() > 0 else math.inf) if divide else float(c.max())
        return add(
            "constant", name, args, kwargs, _callable(target), factor=factor, note="scale", extra={"same_shape": True}
        )
    if target is torch.cat or target is torch.concat:
        dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
        if dim == 0:
            raise _refuse(name, "cat", "it concatenates along the batch axis")
        return add("cat", name, args, kwargs, target, extra={"dim": dim})
    if target is F.max_pool2d:
        p = dict(zip(("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"), args))
        p.update(kwargs)
        if p.get("return_indices"):
            raise _refuse(name, "max_pool2d", "return_indices=True")
        kh, kw = _pair(p["kernel_size"])
        sh, sw = _pair(p.get("stride") or p["kernel_size"])
        dh, dw = _pair(p.get("dilation", 1))
        return add(
            "constant",
            name,
            args,
            kwargs,
            target,
            factor=math.sqrt(pool_cover(kh, sh, dh) * pool_cover(kw, sw, dw)),
            note="maxpool",
        )
    if target in (F.avg_pool2d, F.adaptive_avg_pool2d, torch.mean, "mean"):
        if "dtype" in kwargs:
            raise _refuse(name, str(target), "dtype conversion")
        return add("constant", name, args, kwargs, _callable(target), note="avgpool")
    if target is F.adaptive_max_pool2d:
        if kwargs.get("return_indices") or (len(args) > 2 and args[2]):
            raise _refuse(name, "adaptive_max_pool2d", "return_indices=True")
        return add("constant", name, args, kwargs, target, note="adaptive_maxpool")
    if target in (F.threshold, torch.threshold, F.hardshrink, torch.sign, torch.round, torch.floor, torch.ceil):
        raise _refuse(name, getattr(target, "__name__", str(target)), "it is discontinuous")
    if target in (F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, "softmax", "log_softmax"):
        raise _refuse(name, str(target), "certification needs a model that outputs logits")
    raise _refuse(name, getattr(target, "__name__", str(target)))


def _module_node(m, name, node, nodes, index, modules, ops) -> int:
    import torch
    from torch import nn
    from torch.nn import functional as F

    kind_name = type(m).__name__
    if len(node.args) != 1 or node.kwargs:
        raise _refuse(name, kind_name, "called with more than one argument")
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
            raise _refuse(name, kind_name, f"padding_mode {m.padding_mode!r} (only 'zeros')")
        return new(
            "conv",
            lambda x: F.conv2d(x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups),
            weight=m.weight.detach().cpu().double().numpy(),
            dilation=_pair(m.dilation),
            groups=int(m.groups),
            apply=lambda x: F.conv2d(x, m.weight, None, m.stride, m.padding, m.dilation, m.groups),
        )
    if t in (nn.BatchNorm1d, nn.BatchNorm2d):
        if m.running_var is None:
            raise _refuse(name, kind_name, "without running statistics it is not a fixed map")

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
            raise _refuse(name, kind_name, "return_indices=True")
        kh, kw = _pair(m.kernel_size)
        sh, sw = _pair(m.stride if m.stride is not None else m.kernel_size)
        dh, dw = _pair(m.dilation)
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
            raise _refuse(name, kind_name, "return_indices=True")

        def cover(rec):
            h, w = rec.in_shape[-2:]
            oh, ow = _pair(m.output_size)
            return math.sqrt(adaptive_cover(h, oh or h) * adaptive_cover(w, ow or w))

        return new("constant", lambda x: F.adaptive_max_pool2d(x, m.output_size), factor_fn=cover, note="maxpool")
    if t in (nn.Softmax, nn.LogSoftmax, nn.Softmin):
        raise _refuse(name, kind_name, "certification needs a model that outputs logits")
    if t in (nn.Threshold, nn.Hardshrink):
        raise _refuse(name, kind_name, "it is discontinuous")
    raise _refuse(name, kind_name)
