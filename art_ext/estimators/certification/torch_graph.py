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
from art_ext.estimators.certification.torch_modules import (
    NOT_NONNEGATIVE,
    RESAMPLE_MODES,
    activation_tables,
    conv_fields,
    group_sort_class,
    module_node,
    pair,
    refuse,
    sorted_values,
)

__all__ = ["read_torch"]


def read_torch(model: Any, nodes: list[LayerRecord], ops: Any, example: Any = None) -> int:
    """
    Append the nodes of `model`'s traced graph to `nodes` (whose last node is the model's input).

    :param model: The ``torch.nn.Module``.
    :param nodes: Graph nodes so far; the model's input is ``nodes[-1]``.
    :param ops: The PyTorch backend.
    :param example: An example input batch (numpy), needed to read a TorchScript model (its shape checks are
                    resolved on it).
    :return: Index of the output node.
    :raises TypeError: When the model cannot be traced or a node cannot be bounded (the message names it).
    """
    import torch
    from torch import fx, nn

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m: Any, qualname: str) -> bool:
            if type(m) is group_sort_class():
                return True
            return type(m).__module__.startswith("torch.nn.") and not isinstance(
                m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)
            )

    if isinstance(model, torch.jit.ScriptModule):
        from art_ext.estimators.certification.torch_script import script_to_fx

        if example is None:
            raise TypeError("A TorchScript model is read on an example input; none was given.")
        graph, root = script_to_fx(model, example)
        return read_fx(graph, root, nodes, ops, type(model).__name__)
    if isinstance(model, nn.Sequential) and type(model).forward is not nn.Sequential.forward:
        raise TypeError(
            f"{type(model).__name__} subclasses nn.Sequential with its own forward, which ART's PyTorchClassifier "
            "ignores (it runs the children in order): the classifier and the model compute different functions. "
            "Subclass nn.Module instead."
        )
    was_training = model.training
    model.eval()  # parametrizations (spectral_norm...) compute their eval-mode weight while the graph is read
    try:
        try:
            graph = Tracer().trace(model)
        except Exception as err:  # torch.fx raises many kinds of errors on untraceable code
            raise TypeError(
                f"torch.fx cannot trace {type(model).__name__}.forward ({type(err).__name__}: {err}); write forward "
                "without data-dependent control flow so that its computation graph can be bounded."
            ) from err
        return read_fx(graph, model, nodes, ops, type(model).__name__)
    finally:
        model.train(was_training)


def read_fx(graph: Any, root: Any, nodes: list[LayerRecord], ops: Any, label: str) -> int:
    """
    Append the nodes of a ``torch.fx`` graph to `nodes`; ``get_attr`` and ``call_module`` targets are looked up on
    `root`. Returns the index of the output node.
    """
    from torch import fx
    from torch.nn import functional as F

    model = root
    functions, methods, modules = activation_tables()
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
        if "label" in node.meta:  # a TorchScript node: its aten operation and source line
            name = node.meta["label"]
        elif node.op == "call_module":
            name = f"{node.target} ({type(attr(node.target)).__name__})"
        else:
            name = f"{node.name} ({getattr(node.target, '__name__', node.target)})"
        if node.op == "placeholder":
            if seen_input:
                raise refuse(name, "a second input", "the model must take one input tensor")
            seen_input = True
            index[node] = len(nodes) - 1
            continue
        if node.op == "get_attr":
            consts[node] = attr(node.target)
            continue
        if node.op == "output":
            output = index.get(node.args[0])
            if output is None:
                raise refuse(name, "output", "the model must return one tensor computed from its input")
            continue
        tensors = [a for a in node.all_input_nodes if a not in consts]
        if not tensors:
            raise refuse(name, "a constant", "it does not depend on the input")
        meta = all(nodes[index[a]].kind == "meta" for a in tensors)
        if node.op == "call_module":
            index[node] = module_node(attr(node.target), name, node, nodes, index, modules, ops)
            continue
        target = node.target
        if target is getattr and node.args[1] not in ("shape", "ndim", "dtype", "device"):
            raise refuse(name, f"attribute {node.args[1]!r}", "only shape attributes of a tensor can be read")
        if meta or target in (getattr, "size", "dim"):
            index[node] = add("meta", name, node.args, node.kwargs, _callable(target))
            continue
        x = node.args[0]
        dependent = [a for a in tensors if nodes[index[a]].kind != "meta"]
        if target in functions or target in methods or target in (F.elu, F.leaky_relu):
            if dependent != [x]:
                raise refuse(name, str(target), "an activation parameter depends on the input")
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
            if record.note in ("avgpool", "adaptive_maxpool", "resample") and len(record.inputs) != 1:
                raise refuse(name, str(target), "its parameters depend on the input")
            if record.note in ("avgpool", "resample"):
                record.factor_fn = lambda rec: schur_factor(ops, rec.forward, rec.in_shape)
            elif record.note == "adaptive_maxpool":
                axes = record.extra.get("axes", 2)
                out = _axes(node.args[1] if len(node.args) > 1 else node.kwargs["output_size"], axes)
                record.factor_fn = lambda rec, out=out, axes=axes: math.sqrt(
                    math.prod(
                        adaptive_cover(size, o or size) for size, o in zip(rec.in_shape[-axes:], out, strict=True)
                    )
                )
    if output is None:
        raise TypeError(f"The traced graph of {label} has no output.")
    return output


def _axes(v: Any, axes: int) -> tuple:
    """A pooling parameter per spatial axis (1 or 2 of them)."""
    return pair(v) if axes == 2 else ((v[0] if isinstance(v, (tuple, list)) else v),)


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
            raise refuse(name, "linear", "its weight depends on the input")
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
    if target in (F.conv1d, F.conv2d):
        w = consts.get(other)
        if w is None:
            raise refuse(name, target.__name__, "its weight depends on the input")
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
            **conv_fields(w, dilation, groups),
            apply=lambda t, w=w, conv=target: conv(t, w, None, stride, padding, dilation, groups),
        )
    if target is F.conv_transpose2d:
        w = consts.get(other)
        if w is None:
            raise refuse(name, "conv_transpose2d", "its weight depends on the input")
        p = dict(zip(("stride", "padding", "output_padding", "groups", "dilation"), list(args[3:])))
        p.update({k: v for k, v in kwargs.items() if k != "bias"})
        stride, padding, out_pad = p.get("stride", 1), p.get("padding", 0), p.get("output_padding", 0)
        groups, dilation = p.get("groups", 1), p.get("dilation", 1)
        return add(
            "conv",
            name,
            args,
            kwargs,
            target,
            weight=w.detach().cpu().double().numpy(),
            dilation=pair(dilation),
            groups=int(groups),
            extra={"transposed": True},
            apply=lambda t, w=w: F.conv_transpose2d(t, w, None, stride, padding, out_pad, groups, dilation),
        )
    if target is F.batch_norm:
        p = dict(zip(("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"), args))
        p.update(kwargs)
        if p.get("training"):
            raise refuse(name, "batch_norm", "in training mode it mixes the samples of a batch")
        stats = [p.get(k) for k in ("running_mean", "running_var", "weight", "bias")]
        if any(v is not None and v not in consts for v in stats) or stats[1] is None:
            raise refuse(name, "batch_norm", "its statistics or affine parameters depend on the input")
        mean, var, gamma, _ = (consts[v] if v is not None else None for v in stats)
        eps = float(p.get("eps", 1e-5))

        def scale_fn(var=var, gamma=gamma, eps=eps):
            return (gamma if gamma is not None else torch.ones_like(var)) / torch.sqrt(var + eps)

        return add(
            "bn",
            name,
            args,
            kwargs,
            target,
            scale=scale_fn().detach().cpu().double().numpy(),
            scale_fn=scale_fn,
            extra={"axis": 0},
        )
    if target is F.interpolate:
        p = dict(zip(("input", "size", "scale_factor", "mode", "align_corners"), args))
        p.update(kwargs)
        if p.get("mode", "nearest") not in RESAMPLE_MODES:
            raise refuse(name, f"interpolate (mode {p.get('mode')!r})", NOT_NONNEGATIVE)
        return add("constant", name, args, kwargs, target, note="resample")
    if target is F.pad:
        mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
        if mode not in ("constant", "reflect", "replicate", "circular"):
            raise refuse(name, f"pad (mode {mode!r})")
        return add("constant", name, args, kwargs, target, note="resample", extra={"mode": mode})
    if target is sorted_values:
        if const_args != {x}:
            raise refuse(name, "sort", "its parameters depend on the input")
        return add("constant", name, args, kwargs, target, note="sort")
    if target in (torch.clamp, torch.clip, "clamp", "clip", torch.abs, "abs", operator.abs):
        if const_args != {x}:
            raise refuse(name, str(target), "its bounds depend on the input")
        note = "abs" if target in (torch.abs, "abs", operator.abs) else "clamp"
        return add("constant", name, args, kwargs, _callable(target), note=note, extra={"same_shape": True})
    if target is F.dropout:
        training = kwargs.get("training", args[2] if len(args) > 2 else True)
        if training:
            raise refuse(name, "dropout", "in training mode it is random")
        return add("constant", name, args, kwargs, target, note="identity")
    if target in (torch.flatten, "flatten", "unflatten", "view", "reshape", "contiguous", "squeeze", "unsqueeze"):
        return add("constant", name, args, kwargs, _callable(target), note="identity")
    if target in ("permute", torch.permute):
        dims = (
            args[1:] if len(args) > 2 or not isinstance(args[1] if len(args) > 1 else None, (list, tuple)) else args[1]
        )
        if not dims or dims[0] != 0:
            raise refuse(name, "permute", "it moves the batch axis")
        return add("constant", name, args, kwargs, _callable(target), note="identity")
    nd = sum(isinstance(a, fx.Node) and a in const_args for a in args[:2])
    if target in (operator.add, torch.add, "add", operator.sub, torch.sub, "sub"):
        if "alpha" in kwargs:
            raise refuse(name, str(target), "alpha is not supported")
        if nd == 2:
            return add("add", name, args, kwargs, _callable(target), extra={"same_shape": True})
        return add("constant", name, args, kwargs, _callable(target), note="shift", extra={"same_shape": True})
    if target in (operator.neg, torch.neg, "neg"):
        return add("constant", name, args, kwargs, _callable(target), note="negation")
    if target in (operator.mul, torch.mul, "mul", operator.truediv, torch.div, "div"):
        divide = target in (operator.truediv, torch.div, "div")
        if nd == 2 or (divide and args[1] in const_args) or "rounding_mode" in kwargs:
            raise refuse(name, str(target), "a product or quotient of input-dependent tensors is not Lipschitz")
        c = args[1] if args[0] in const_args else args[0]
        c = consts.get(c, c) if isinstance(c, fx.Node) else c
        if isinstance(c, torch.Tensor):
            c = c.detach().cpu().double().numpy()
        if not isinstance(c, (int, float, np.ndarray)):
            raise refuse(name, str(target), "only scaling by a constant is supported")
        c = np.abs(np.asarray(c, dtype=np.float64))
        factor = (1.0 / float(c.min()) if c.min() > 0 else math.inf) if divide else float(c.max())
        return add(
            "constant", name, args, kwargs, _callable(target), factor=factor, note="scale", extra={"same_shape": True}
        )
    if target is torch.cat or target is torch.concat:
        dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
        if dim == 0:
            raise refuse(name, "cat", "it concatenates along the batch axis")
        return add("cat", name, args, kwargs, target, extra={"dim": dim})
    if target in (F.max_pool1d, F.max_pool2d):
        p = dict(zip(("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"), args))
        p.update(kwargs)
        if p.get("return_indices"):
            raise refuse(name, target.__name__, "return_indices=True")
        axes = 1 if target is F.max_pool1d else 2
        k, st, d = (
            _axes(v, axes) for v in (p["kernel_size"], p.get("stride") or p["kernel_size"], p.get("dilation", 1))
        )
        cover = math.prod(pool_cover(*kst) for kst in zip(k, st, d))
        return add("constant", name, args, kwargs, target, factor=math.sqrt(cover), note="maxpool")
    if target in (F.avg_pool1d, F.adaptive_avg_pool1d):
        return add("constant", name, args, kwargs, target, note="avgpool")
    if target is F.adaptive_max_pool1d:
        if kwargs.get("return_indices") or (len(args) > 2 and args[2]):
            raise refuse(name, "adaptive_max_pool1d", "return_indices=True")
        return add("constant", name, args, kwargs, target, note="adaptive_maxpool", extra={"axes": 1})
    if target in (F.avg_pool2d, F.adaptive_avg_pool2d, torch.mean, "mean"):
        if "dtype" in kwargs:
            raise refuse(name, str(target), "dtype conversion")
        return add("constant", name, args, kwargs, _callable(target), note="avgpool")
    if target is F.adaptive_max_pool2d:
        if kwargs.get("return_indices") or (len(args) > 2 and args[2]):
            raise refuse(name, "adaptive_max_pool2d", "return_indices=True")
        return add("constant", name, args, kwargs, target, note="adaptive_maxpool")
    if target in (F.threshold, torch.threshold, F.hardshrink, torch.sign, torch.round, torch.floor, torch.ceil):
        raise refuse(name, getattr(target, "__name__", str(target)), "it is discontinuous")
    if target in (F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, "softmax", "log_softmax"):
        raise refuse(name, str(target), "certification needs a model that outputs logits")
    raise refuse(name, getattr(target, "__name__", str(target)))
