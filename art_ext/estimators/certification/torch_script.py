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

from typing import Any

from art_ext.estimators.certification.torch_modules import refuse
from art_ext.estimators.certification.torch_script_ops import SCALAR_OPS, tensor_rules

__all__ = ["script_to_fx"]


class _Val:
    """A value of the TorchScript graph: its value on the example, its ``fx`` argument, its kind, list items."""

    __slots__ = ("value", "arg", "kind", "items")

    def __init__(self, value: Any, arg: Any, kind: str, items: list | None = None) -> None:
        self.value, self.arg, self.kind, self.items = value, arg, kind, items


_RANK = {"const": 0, "shape": 1, "tensor": 2}


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

        fn = SCALAR_OPS.get(kind)
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
        rule = tensor_rules().get(base)
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
