"""
Read a TorchScript model (``torch.jit.script`` or ``torch.jit.trace``) into a ``torch.fx`` graph that
:func:`~art_ext.estimators.certification.torch_graph.read_fx` reads with the same rules as an eager model's traced
graph.

The model is frozen (``torch.jit.freeze``: methods inlined, parameters and attributes such as ``training`` turned into
constants, which also folds eval-mode batch norms into the convolutions before them) and its graph is walked on an
example input. Each value is one of:

* ``const``: a constant (a parameter, a number, a list of them);
* ``shape``: a number computed from tensor shapes (``x.size(0)``, ``x.dim()``), kept symbolic in the ``fx`` graph so
  that the rebuilt graph takes any batch size;
* ``tensor``: a tensor computed from the input.

Control flow (``prim::If``, ``prim::Loop``) on constants or shapes (the shape checks scripted ``torch.nn`` modules
carry) is resolved on the example input; on a value computed from the input's data it is refused. Every ``aten``
operation on a tensor is mapped to the Python function the eager reader knows (``aten::linear`` to ``F.linear``...);
any other operation is refused with its name and source line. The rebuilt graph is then checked against the model's
own outputs, like any other.
"""

from __future__ import annotations

import math
import operator
from typing import Any

from art_ext.estimators.certification.torch_modules import refuse, sorted_values

__all__ = ["script_to_fx"]


class _Val:
    """A value of the TorchScript graph: its value on the example, its ``fx`` argument, its kind, list items."""

    __slots__ = ("value", "arg", "kind", "items")

    def __init__(self, value: Any, arg: Any, kind: str, items: list | None = None) -> None:
        self.value, self.arg, self.kind, self.items = value, arg, kind, items


_RANK = {"const": 0, "shape": 1, "tensor": 2}

# Operations on numbers and lists (constants or shapes), as Python functions.
_SCALAR = {
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


def script_to_fx(model: Any, example: Any) -> tuple[Any, Any]:
    """
    ``(fx graph, root module holding its constants)`` of a TorchScript model, resolved on `example`.

    :raises TypeError: Naming the operation or construct that cannot be read.
    """
    import torch
    from torch import fx, nn

    was_training = model.training
    model.eval()
    try:
        frozen = torch.jit.freeze(model)
    except Exception as err:  # freezing fails on modules with interfaces, hooks or non-module attributes
        raise TypeError(
            f"The TorchScript model cannot be frozen for reading ({type(err).__name__}: {err}); save a model whose "
            "forward uses only its own parameters, or certify the eager nn.Module."
        ) from err
    finally:
        model.train(was_training)
    reader = _Reader(nn.Module(), fx.Graph())
    graph = frozen.graph
    inputs = list(graph.inputs())[1:]
    if len(inputs) != 1:
        raise refuse("forward", "TorchScript forward", f"it takes {len(inputs)} arguments; the model must take one")
    reader.env[inputs[0]] = _Val(example, reader.fx.placeholder("x"), "tensor")
    with torch.no_grad():
        reader.block(graph.nodes())
    outputs = [reader.get(o, "return") for o in graph.outputs()]
    if len(outputs) != 1 or outputs[0].kind != "tensor":
        raise refuse("return", "TorchScript output", "the model must return one tensor computed from its input")
    reader.fx.output(outputs[0].arg)
    return reader.fx, reader.root


def _label(node: Any) -> str:
    where = str(node).split(" # ")[-1].strip() if " # " in str(node) else ""
    name = next(iter(node.outputs())).debugName() if node.outputsSize() else "-"
    return f"%{name} ({node.kind()}{' at ' + where.rsplit('/', 1)[-1] if where else ''})"


class _Reader:
    def __init__(self, root: Any, graph: Any) -> None:
        self.root, self.fx, self.env, self.count = root, graph, {}, 0

    def get(self, value: Any, label: str) -> _Val:
        if value not in self.env:
            raise refuse(label, "TorchScript value", f"it uses %{value.debugName()}, which cannot be read")
        return self.env[value]

    def const(self, value: Any) -> _Val:
        import torch

        if isinstance(value, torch.Tensor):
            name = f"c{self.count}"
            self.count += 1
            self.root.register_buffer(name, value)
            return _Val(value, self.fx.get_attr(name), "const")
        if isinstance(value, (list, tuple)):
            items = [self.const(v) for v in value]
            return _Val(type(value)(v.value for v in items), type(value)(v.arg for v in items), "const", items)
        return _Val(value, value, "const")

    def block(self, nodes: Any) -> None:
        for node in nodes:
            self.node(node)

    def node(self, node: Any) -> None:
        kind, label = node.kind(), _label(node)
        outs = list(node.outputs())
        if kind == "prim::Constant":
            self.env[outs[0]] = self.const(outs[0].toIValue())
            return
        ins = [self.get(v, label) for v in node.inputs()]
        top = max((_RANK[v.kind] for v in ins), default=0)
        if kind in ("prim::If", "prim::Loop"):
            self.control(node, kind, label, ins, outs)
        elif kind == "prim::RaiseException":
            raise TypeError(f"The TorchScript model raises at {label} on an input of the classifier's shape.")
        elif kind in ("prim::ListConstruct", "prim::TupleConstruct"):
            make = list if kind == "prim::ListConstruct" else tuple
            kinds = [v.kind for v in ins]
            self.env[outs[0]] = _Val(
                make(v.value for v in ins), make(v.arg for v in ins), max(kinds, key=_RANK.get, default="const"), ins
            )
        elif kind in ("prim::ListUnpack", "prim::TupleUnpack"):
            if ins[0].items is None or len(ins[0].items) != len(outs):
                raise refuse(label, kind, "it unpacks a value that is not a list built in the graph")
            for out, item in zip(outs, ins[0].items):
                self.env[out] = item
        elif kind in ("prim::TupleIndex", "aten::__getitem__") and ins[0].items is not None and ins[1].kind == "const":
            self.env[outs[0]] = ins[0].items[ins[1].value]
        elif kind == "aten::append" and ins[0].items is not None:
            ins[0].items.append(ins[1])
            ins[0].value.append(ins[1].value)
            ins[0].arg.append(ins[1].arg)
            ins[0].kind = max(ins[0].kind, ins[1].kind, key=_RANK.get)
            self.env[outs[0]] = ins[0]
        elif top == 2:
            self.tensor_op(node, kind, label, ins, outs)
        else:
            self.scalar_op(kind, label, ins, outs, shape=top == 1)

    def control(self, node: Any, kind: str, label: str, ins: list, outs: list) -> None:
        if any(v.kind == "tensor" for v in ins[:2]):
            raise refuse(label, kind, "it branches on the input's values (data-dependent control flow)")
        blocks = list(node.blocks())
        if kind == "prim::If":
            block = blocks[0] if ins[0].value else blocks[1]
            self.block(block.nodes())
            for out, value in zip(outs, block.outputs()):
                self.env[out] = self.get(value, label)
            return
        body, trips, carried = blocks[0], ins[0].value, ins[2:]
        go, step = bool(ins[1].value), 0
        while go and step < trips:
            if step > 10000:
                raise refuse(label, kind, "a loop of more than 10000 steps")
            params = list(body.inputs())
            self.env[params[0]] = self.const(step)
            for param, value in zip(params[1:], carried):
                self.env[param] = value
            self.block(body.nodes())
            results = [self.get(v, label) for v in body.outputs()]
            if results[0].kind == "tensor":
                raise refuse(label, kind, "its condition depends on the input's values (data-dependent control flow)")
            go, carried, step = bool(results[0].value), results[1:], step + 1
        for out, value in zip(outs, carried):
            self.env[out] = value

    def scalar_op(self, kind: str, label: str, ins: list, outs: list, shape: bool) -> None:
        import torch

        fn = _SCALAR.get(kind)
        if fn is None or len(outs) != 1:
            if shape:
                raise refuse(label, kind, "an operation on the input's shape that cannot be read")
            if not kind.startswith("aten::"):
                raise refuse(label, kind)
            try:
                value = getattr(torch.ops.aten, kind[6:])(*[v.value for v in ins])
            except Exception as err:
                raise refuse(label, kind, f"it cannot be evaluated on constants ({type(err).__name__})") from err
            self.env[outs[0]] = self.const(value)
            return
        value = fn(*[v.value for v in ins])
        if shape:
            self.env[outs[0]] = _Val(value, self.fx.call_function(fn, tuple(v.arg for v in ins)), "shape")
        else:
            self.env[outs[0]] = self.const(value)

    def tensor_op(self, node: Any, kind: str, label: str, ins: list, outs: list) -> None:
        x = ins[0]
        if kind in ("aten::size", "aten::dim") and x.kind == "tensor":
            method = kind[6:]
            args = tuple(v.arg for v in ins)
            value = getattr(x.value, method)(*[v.value for v in ins[1:]])
            value = list(value) if isinstance(value, tuple) or type(value).__name__ == "Size" else value
            self.env[outs[0]] = _Val(value, self.fx.call_method(method, args), "shape")
            return
        if kind in ("prim::dtype", "prim::device"):
            import builtins

            attr = kind[6:]
            self.env[outs[0]] = _Val(
                getattr(x.value, attr), self.fx.call_function(builtins.getattr, (x.arg, attr)), "shape"
            )
            return
        base = kind[:-1] if kind.endswith("_") and not kind.endswith("__") else kind  # in-place forms, rebuilt
        rule = _tensor_rules().get(base)
        if base in ("aten::Bool", "aten::Int", "aten::Float", "aten::item", "aten::is_nonzero"):
            raise refuse(label, kind, "it reads the input's values as a number (data-dependent control flow?)")
        if rule is None:
            raise refuse(label, kind, "an operation on the input that has no known Lipschitz bound")
        target, args, kwargs = rule(label, ins)
        unused = outs[1:]
        if unused and base not in (
            "aten::adaptive_max_pool1d",
            "aten::adaptive_max_pool2d",
            "aten::sort",
        ):  # their indices are never read
            raise refuse(label, kind, "it has several outputs")
        value = _call(target, _values(args), _values(kwargs))
        if isinstance(target, str):
            arg = self.fx.call_method(target, _args(args), _args(kwargs))
        else:
            arg = self.fx.call_function(target, _args(args), _args(kwargs))
        arg.meta["label"] = label
        self.env[outs[0]] = _Val(value, arg, "tensor")


def _values(structure: Any) -> Any:
    if isinstance(structure, _Val):
        return structure.value
    if isinstance(structure, (list, tuple)):
        return type(structure)(_values(s) for s in structure)
    if isinstance(structure, dict):
        return {k: _values(v) for k, v in structure.items()}
    return structure


def _args(structure: Any) -> Any:
    if isinstance(structure, _Val):
        return structure.arg
    if isinstance(structure, (list, tuple)):
        return type(structure)(_args(s) for s in structure)
    if isinstance(structure, dict):
        return {k: _args(v) for k, v in structure.items()}
    return structure


def _call(target: Any, args: tuple, kwargs: dict) -> Any:
    if isinstance(target, str):
        return getattr(args[0], target)(*args[1:], **kwargs)
    return target(*args, **kwargs)


def _const(label: str, kind: str, v: _Val, what: str) -> Any:
    if v.kind != "const":
        raise refuse(label, kind, f"its {what} depends on the input")
    return v.value


def _tensor_rules() -> dict:
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
