"""
The computation graph a Lipschitz certificate is computed on, written once for both frameworks.

A framework reader (:mod:`~art_ext.estimators.certification.torch_graph` for ``torch.fx``,
:mod:`~art_ext.estimators.certification.keras_graph` for Keras functional graphs) turns a model into a list of
:class:`LayerRecord` nodes in topological order. Every node carries its own ``forward``, rebuilt from the extracted
parameters (never the model's layer objects called as black boxes), so :meth:`LipschitzGraph.run` recomputes the
model from the graph alone; :meth:`LipschitzGraph.verify` compares that with the classifier's own output and refuses
any mismatch (hooks, custom ``forward`` methods, layers whose semantics differ from what was read).

Bounds on the graph (l2, per sample), with ``L(n)`` the bound from the input to node ``n``:

* one-input nodes: ``L(n) = factor(n) * L(input)``;
* sums (residual additions, subtractions): ``L(n) = sum L(inputs)``;
* concatenations: ``L(n) = sqrt(sum L(inputs)^2)``.

| Paper link: https://arxiv.org/abs/1802.04034
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["LayerRecord", "LipschitzGraph", "conv_spectral_bound", "sound_layer_bound"]

LINEAR_KINDS = ("dense", "conv")


@dataclass(eq=False)
class LayerRecord:
    """
    One node of a model's computation graph as the bound arithmetic sees it.

    ``kind`` is one of:

    * ``"input"``: the network input (node 0).
    * ``"dense"``: ``weight`` of shape ``(out, in)``, applied along the last axis; ``apply`` is the bias-free map.
    * ``"conv"``: ``weight`` of shape ``(c_out, c_in / groups, kh, kw)``, ``in_spatial``, ``dilation``, ``groups``;
      with ``extra["transposed"]`` a transposed convolution, the adjoint of the convolution with this ``weight``
      from its output grid to its input grid (the same operator norm, bounded on ``out_spatial``); with
      ``extra["conv1d"]`` a 1-D convolution, stored as a 2-D one of height 1.
    * ``"bn"``: batch normalisation in eval mode; ``scale`` is ``gamma / sqrt(var + eps)`` per channel and
      ``scale_fn`` returns it as a framework tensor (for training).
    * ``"constant"``: a map with Lipschitz constant ``factor`` (activations, pooling, reshapes, scaling); ``note``
      names the operation (``"relu"``, ``"identity"``...).
    * ``"add"``: the sum (or difference) of its inputs; ``"cat"``: their concatenation.
    * ``"meta"``: a value that is not a tensor of the sample (a shape); never part of a bound.

    ``inputs`` are the indices of the nodes whose outputs ``forward`` takes, in order.
    """

    kind: str
    name: str
    inputs: tuple = ()
    forward: Callable[..., Any] | None = None
    weight: np.ndarray | None = None
    in_shape: tuple = ()
    out_shape: tuple = ()
    channels_last: bool = False
    dilation: tuple = (1, 1)
    groups: int = 1
    apply: Callable[[Any], Any] | None = None
    weight_fn: Callable[[], Any] | None = None
    scale: np.ndarray | None = None
    scale_fn: Callable[[], Any] | None = None
    factor: float = 1.0
    factor_fn: Callable[[], float] | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def in_spatial(self) -> tuple[int, int]:
        """Height and width of a convolution's input (height 1 for a 1-D convolution)."""
        return self._spatial(self.in_shape)

    @property
    def out_spatial(self) -> tuple[int, int]:
        """Height and width of a convolution's output (height 1 for a 1-D convolution)."""
        return self._spatial(self.out_shape)

    def _spatial(self, shape: tuple) -> tuple[int, int]:
        if self.extra.get("conv1d"):
            return 1, int(shape[0] if self.channels_last else shape[-1])
        shape = shape[:2] if self.channels_last else shape[-2:]
        return int(shape[0]), int(shape[1])


def conv_spectral_bound(weight: np.ndarray, in_spatial: tuple[int, int], dilation=(1, 1), groups: int = 1) -> float:
    """
    Guaranteed upper bound of the l2 operator norm of a 2-D convolution (any zero padding, any stride).

    :param weight: Kernel ``(c_out, c_in / groups, kh, kw)``.
    :param in_spatial: Input height and width.
    :param dilation: Kernel dilation.
    :param groups: Number of groups (the operator is block diagonal over groups).
    :return: The exact norm of the circular convolution on a ``(h + dh (kh - 1)) x (w + dw (kw - 1))`` grid.
    """
    weight = np.asarray(weight, dtype=np.float64)
    c_out, c_in_g, kh, kw = weight.shape
    keh, kew = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    grid = (int(in_spatial[0]) + keh - 1, int(in_spatial[1]) + kew - 1)
    dilated = np.zeros((c_out, c_in_g, keh, kew))
    dilated[:, :, :: dilation[0], :: dilation[1]] = weight
    best = 0.0
    per_group = c_out // groups
    for g in range(groups):
        spectrum = np.fft.fft2(dilated[g * per_group : (g + 1) * per_group], s=grid, axes=(2, 3))
        blocks = spectrum.transpose(2, 3, 0, 1)  # (grid_h, grid_w, c_out, c_in)
        best = max(best, float(np.linalg.svd(blocks, compute_uv=False).max()))
    return best


def sound_layer_bound(record: LayerRecord) -> float:
    """Guaranteed upper bound of one node's l2 Lipschitz constant (float64)."""
    if record.kind == "dense":
        return float(np.linalg.norm(np.asarray(record.weight, dtype=np.float64), 2))
    if record.kind == "conv":
        # a transposed convolution is the adjoint of a convolution on its output grid: same norm
        spatial = record.out_spatial if record.extra.get("transposed") else record.in_spatial
        return conv_spectral_bound(record.weight, spatial, record.dilation, record.groups)
    if record.kind == "bn":
        return float(np.max(np.abs(record.scale)))
    if record.kind in ("constant", "input"):
        return float(record.factor)
    raise ValueError(f"Node {record.name!r} of kind {record.kind!r} has no single-layer bound.")


class LipschitzGraph:
    """A model's computation graph (:class:`LayerRecord` nodes in topological order) and its bounds."""

    def __init__(self, nodes: list[LayerRecord], output: int) -> None:
        self.nodes = nodes
        self.output = output
        self.consumers: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
        for i, node in enumerate(nodes):
            for j in node.inputs:
                self.consumers[j].append(i)

    def tensor_inputs(self, node: LayerRecord) -> list[int]:
        """Inputs of `node` that are sample tensors (not shapes)."""
        return [i for i in node.inputs if self.nodes[i].kind != "meta"]

    # ------------------------------------------------------------------ forward
    def run(self, x: Any, record_shapes: bool = False, upto: int | None = None) -> Any:
        """
        Evaluate the graph from its own extracted parameters.

        :param x: A framework tensor ``(batch, ...)`` (the raw classifier input).
        :param record_shapes: Store each node's per-sample input and output shapes.
        :param upto: Return the output of this node instead of the graph's output.
        :raises TypeError: When a node mixes samples (its output's batch size differs from the input's).
        """
        batch = int(x.shape[0])
        values: list[Any] = [x]
        for i, node in enumerate(self.nodes[1:], start=1):
            value = node.forward(*[values[j] for j in node.inputs])
            if node.kind == "meta":
                if getattr(value, "ndim", 0) and hasattr(value, "dtype"):
                    raise TypeError(f"Node {node.name!r} was read as a shape but computes a tensor.")
            else:
                if node.kind != "input" and not self.tensor_inputs(node):
                    raise TypeError(f"Node {node.name!r} computes a tensor from shapes only; it cannot be bounded.")
                shape = tuple(int(d) for d in value.shape)
                if not shape or shape[0] != batch:
                    raise TypeError(
                        f"Node {node.name!r} changes the batch dimension ({batch} -> {shape[:1]}); a certificate "
                        "needs every operation to act on each sample separately."
                    )
                if record_shapes:
                    shapes = [tuple(int(d) for d in values[j].shape[1:]) for j in self.tensor_inputs(node)]
                    node.in_shape = shapes[0] if shapes else ()
                    node.out_shape = shape[1:]
                    if node.extra.get("same_shape") and any(s != node.out_shape for s in shapes):
                        raise TypeError(
                            f"Node {node.name!r} broadcasts its input {shapes} to {node.out_shape}, which repeats "
                            "coordinates; give both operands the same shape."
                        )
            values.append(value)
            if upto is not None and i == upto:
                return value
        return values[self.output]

    # ------------------------------------------------------------------ sound bounds
    def _folded_factors(self) -> tuple[list[float], list[str]]:
        """Per-node sound factors, each eval-mode batch norm folded into the dense/conv node feeding only it."""
        factors, names = [1.0] * len(self.nodes), [n.name for n in self.nodes]
        folded: set[int] = set()
        for i, node in enumerate(self.nodes):
            if node.kind != "bn" or len(node.inputs) != 1 or self.nodes[node.inputs[0]].kind not in LINEAR_KINDS:
                continue
            if self.nodes[node.inputs[0]].extra.get("transposed"):  # its output channels are the weight's axis 1
                continue
            j = node.inputs[0]
            prev = self.nodes[j]
            scale = np.asarray(node.scale, dtype=np.float64)
            out_channel_axis = 0 if prev.kind == "conv" and not prev.channels_last else len(prev.out_shape) - 1
            if (
                self.consumers[j] == [i]
                and node.extra.get("axis") == out_channel_axis
                and scale.size == len(prev.weight)
            ):
                shape = (-1,) + (1,) * (prev.weight.ndim - 1)
                twin = LayerRecord(**{**prev.__dict__, "weight": prev.weight * scale.reshape(shape)})
                factors[j], names[j] = sound_layer_bound(twin), f"{prev.name}+{node.name}"
                folded.add(j)
                folded.add(i)
        for i, node in enumerate(self.nodes):
            if i not in folded and node.kind in LINEAR_KINDS + ("bn", "constant", "input"):
                factors[i] = sound_layer_bound(node)
        return factors, names

    def sound_bounds(self) -> tuple[list[float], list[tuple[str, float]]]:
        """``(L(n) for every node, [(name, factor)] of the dense/conv nodes and every factor other than 1)``."""
        factors, names = self._folded_factors()
        bounds = [0.0] * len(self.nodes)
        for i, node in enumerate(self.nodes):
            ins = [bounds[j] for j in self.tensor_inputs(node)]
            if node.kind == "input":
                bounds[i] = factors[i]
            elif node.kind == "meta":
                bounds[i] = 0.0
            elif node.kind == "add":
                bounds[i] = float(sum(ins))
            elif node.kind == "cat":
                bounds[i] = math.sqrt(sum(b * b for b in ins))
            else:
                bounds[i] = factors[i] * ins[0]
        table = [
            (names[i], factors[i])
            for i, node in enumerate(self.nodes)
            if node.kind in LINEAR_KINDS or (node.kind in ("bn", "constant", "input") and factors[i] != 1.0)
        ]
        return bounds, table

    def last_dense(self) -> tuple[int, LayerRecord] | None:
        """``(index of its input, node)`` when the output is a dense layer on flat features (batch, features)."""
        i = self.output
        while self.nodes[i].kind == "constant" and self.nodes[i].note == "identity" and len(self.nodes[i].inputs) == 1:
            i = self.nodes[i].inputs[0]
        node = self.nodes[i]
        if node.kind != "dense" or len(node.in_shape) != 1 or len(self.nodes[self.output].out_shape) != 1:
            return None
        if node.out_shape != self.nodes[self.output].out_shape:
            return None
        return node.inputs[0], node

    def linear_nodes(self) -> list[LayerRecord]:
        """The dense and convolution nodes, in order."""
        return [n for n in self.nodes if n.kind in LINEAR_KINDS]

    def is_chain(self) -> bool:
        """Whether every node has exactly one tensor input (no branches)."""
        return all(len(self.tensor_inputs(n)) == 1 for n in self.nodes[1:] if n.kind != "meta")

    # ------------------------------------------------------------------ differentiable estimate (training)
    def estimate(self, state: Any, upto: int | None = None) -> Any:
        """Differentiable Lipschitz estimate following the same graph (power iteration for dense/conv nodes)."""
        end = self.output if upto is None else upto
        values: list[Any] = [1.0] * len(self.nodes)
        for i, node in enumerate(self.nodes[: end + 1]):
            ins = [values[j] for j in self.tensor_inputs(node)]
            if node.kind == "input":
                values[i] = float(node.factor)
            elif node.kind == "meta":
                values[i] = 0.0
            elif node.kind == "add":
                total = ins[0]
                for other in ins[1:]:
                    total = total + other
                values[i] = total
            elif node.kind == "cat":
                total = ins[0] * ins[0]
                for other in ins[1:]:
                    total = total + other * other
                values[i] = state.ops.sqrt(total) if state.ops.is_tensor(total) else math.sqrt(total)
            elif node.kind in LINEAR_KINDS:
                values[i] = state.spectral_norm(node) * ins[0]
            elif node.kind == "bn":
                values[i] = state.ops.max(state.ops.abs(node.scale_fn())) * ins[0]
            else:
                values[i] = ins[0] if node.factor == 1.0 else node.factor * ins[0]
        return values[end]


class PowerIterationState:
    """Persistent power-iteration vectors, one per dense/conv node, for the differentiable Lipschitz estimate."""

    def __init__(self, ops: Any, rng: np.random.Generator) -> None:
        self.ops = ops
        self.rng = rng
        self.vectors: dict[int, Any] = {}

    def spectral_norm(self, record: LayerRecord) -> Any:
        """One power-iteration step on ``record.apply``; returns ``u^T A v`` (differentiable in the weights)."""
        ops = self.ops
        key = id(record)
        if key not in self.vectors:
            self.vectors[key] = ops.l2_normalize(ops.random_normal((1,) + tuple(record.in_shape), self.rng))
        v = self.vectors[key]
        u = ops.stop_gradient(ops.l2_normalize(record.apply(v)))
        _, (grad,) = ops.value_and_grad(lambda t: ops.sum(record.apply(t) * u), [v])
        v = ops.stop_gradient(ops.l2_normalize(grad))
        self.vectors[key] = v
        u = ops.stop_gradient(ops.l2_normalize(record.apply(v)))
        return ops.sum(u * record.apply(v))


def schur_factor(ops: Any, fn: Callable[[Any], Any], in_shape: tuple) -> float:
    """
    Sound l2 bound ``sqrt(max row sum * max column sum)`` of a linear map with non-negative entries (average
    pooling of any geometry): row sums are ``fn(1)``, column sums the adjoint applied to ``1``.
    """
    ones = ops.asarray(np.ones((1,) + tuple(in_shape), dtype=np.float32))
    _, (grad,) = ops.value_and_grad(lambda t: ops.sum(fn(t)), [ones])
    rows = float(np.max(np.abs(ops.to_numpy(fn(ones)))))
    cols = float(np.max(np.abs(ops.to_numpy(grad))))
    return math.sqrt(rows * cols) * (1.0 + 1e-6)


def pool_cover(kernel: int, stride: int, dilation: int = 1) -> int:
    """Most windows of a max pooling (per axis) that contain one input position."""
    effective = dilation * (kernel - 1) + 1
    return max(1, min(kernel, math.ceil(effective / stride)))


def adaptive_cover(size: int, out: int) -> int:
    """Most bins of an adaptive pooling from `size` to `out` (per axis) that contain one input position."""
    counts = np.zeros(size, dtype=int)
    for i in range(out):
        counts[(i * size) // out : -(-((i + 1) * size) // out)] += 1
    return int(counts.max())
