"""PyTorch implementation of :class:`art_ext.backend.base.Backend`."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from art_ext.backend.base import Backend, Tensor


class PyTorchBackend(Backend):
    """PyTorch operations; tensors default to CUDA when it is available, as ART's ``device_type="gpu"`` does."""

    name = "pytorch"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")

    # conversion
    def asarray(self, x: Any, dtype: str = "float32", device: Any = None) -> Tensor:
        torch = self.torch
        device = self.device if device is None else device
        if isinstance(x, torch.Tensor):
            return x.to(device=device, dtype=getattr(torch, dtype))
        return torch.as_tensor(np.asarray(x), dtype=getattr(torch, dtype), device=device)

    def to_numpy(self, x: Tensor) -> np.ndarray:
        if isinstance(x, self.torch.Tensor):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    def is_tensor(self, x: Any) -> bool:
        return isinstance(x, self.torch.Tensor)

    def device_of(self, estimator: Any) -> Any:
        device = getattr(estimator, "device", None)
        if isinstance(device, self.torch.device):
            return device
        model = self.model_of(estimator)
        for p in model.parameters():
            return p.device
        return self.device

    # autodiff
    def value_and_grad(
        self, fn: Callable[..., Any], wrt: Sequence[Tensor], has_aux: bool = False
    ) -> tuple[Any, list[Tensor]]:
        torch = self.torch
        inputs = [t if (t.is_leaf and t.requires_grad) else t.detach().clone().requires_grad_(True) for t in wrt]
        with torch.enable_grad():
            out = fn(*inputs)
            value = out[0] if has_aux else out
            grads = torch.autograd.grad(value, inputs, allow_unused=True)
        grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs)]
        if has_aux:
            return (value.detach(), out[1]), grads
        return value.detach(), grads

    def forward_with_pullback(self, model: Any, x: Tensor, training: bool = False) -> tuple[Tensor, Callable]:
        torch = self.torch
        module = self.model_of(model)
        weights = self.trainable_weights(module)
        with torch.enable_grad():
            out = self.call_model(module, x, training=training)

        def step(optimizer: Any, cotangent: Tensor) -> None:
            grads = torch.autograd.grad(out, weights, grad_outputs=cotangent, allow_unused=True)
            grads = [torch.zeros_like(w) if g is None else g for g, w in zip(grads, weights)]
            self.apply_gradients(optimizer, grads, weights)

        return out.detach(), step

    def stop_gradient(self, x: Tensor) -> Tensor:
        return x.detach()

    def numpy_preprocessor(self, op: Any, x: Tensor) -> Tensor:
        torch = self.torch

        class _BPDA(torch.autograd.Function):
            @staticmethod
            def forward(ctx, inputs):
                x_np = inputs.detach().cpu().numpy()
                ctx.save_for_backward(inputs)
                out, _ = op(x_np, None)
                return torch.as_tensor(np.asarray(out, dtype=np.float32), device=inputs.device)

            @staticmethod
            def backward(ctx, grad):
                (inputs,) = ctx.saved_tensors
                g = op.estimate_gradient(inputs.detach().cpu().numpy(), grad.detach().cpu().numpy())
                return torch.as_tensor(np.asarray(g, dtype=np.float32), device=grad.device)

        return _BPDA.apply(x)

    # models
    def model_of(self, estimator: Any) -> Any:
        if isinstance(estimator, self.torch.nn.Module):
            return estimator
        model = getattr(estimator, "model", None)
        if isinstance(model, self.torch.nn.Module):
            return model
        raise TypeError(f"{type(estimator).__name__} holds no torch.nn.Module.")

    def call_model(self, model: Any, x: Tensor, training: bool = False) -> Tensor:
        if model.training != training:
            model.train(training)
        return model(x)

    def trainable_weights(self, model: Any) -> list[Tensor]:
        return [p for p in self.model_of(model).parameters() if p.requires_grad]

    def apply_gradients(self, optimizer: Any, grads: Sequence[Tensor], weights: Sequence[Tensor]) -> None:
        for w, g in zip(weights, grads):
            w.grad = g
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def optimizer_of(self, estimator: Any) -> Any:
        return getattr(estimator, "_optimizer", None)

    def make_optimizer(
        self, weights: Sequence[Tensor], name: str = "adam", learning_rate: float = 1e-3, **kwargs
    ) -> Any:
        optim = self.torch.optim
        name = name.lower()
        if name == "adam":
            return optim.Adam(
                list(weights),
                lr=learning_rate,
                betas=kwargs.get("betas", (0.9, 0.999)),
                weight_decay=kwargs.get("weight_decay", 0.0),
            )
        if name == "sgd":
            return optim.SGD(
                list(weights),
                lr=learning_rate,
                momentum=kwargs.get("momentum", 0.0),
                weight_decay=kwargs.get("weight_decay", 0.0),
                nesterov=kwargs.get("nesterov", False),
            )
        raise ValueError(f"Unknown optimizer {name!r}; expected 'adam' or 'sgd'.")

    def get_learning_rate(self, optimizer: Any) -> float:
        return float(optimizer.param_groups[0]["lr"])

    def set_learning_rate(self, optimizer: Any, learning_rate: float) -> None:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate

    @contextlib.contextmanager
    def frozen_batchnorm_stats(self, model: Any) -> Iterator[None]:
        # With momentum 0 the running statistics are kept as they are, while the forward pass still
        # normalises with the batch statistics.
        bn_types = (self.torch.nn.modules.batchnorm._BatchNorm,)
        saved = []
        for module in self.model_of(model).modules():
            if isinstance(module, bn_types):
                saved.append((module, module.momentum, module.num_batches_tracked.clone()))
                module.momentum = 0.0
        try:
            yield
        finally:
            for module, momentum, tracked in saved:
                module.momentum = momentum
                module.num_batches_tracked.copy_(tracked)

    @contextlib.contextmanager
    def training_mode(self, model: Any, training: bool = True) -> Iterator[None]:
        module = self.model_of(model)
        previous = module.training
        module.train(training)
        try:
            yield
        finally:
            module.train(previous)

    def get_weights(self, model: Any) -> list[np.ndarray]:
        return [v.detach().cpu().numpy().copy() for v in self.model_of(model).state_dict().values()]

    def set_weights(self, model: Any, weights: list[np.ndarray]) -> None:
        module = self.model_of(model)
        state = module.state_dict()
        new_state = {k: self.torch.as_tensor(w) for k, w in zip(state.keys(), weights)}
        module.load_state_dict(new_state)

    def cuda_available(self) -> bool:
        return bool(self.torch.cuda.is_available())

    # math
    def sum(self, x, axis=None, keepdims=False):
        return x.sum() if axis is None else x.sum(dim=axis, keepdim=keepdims)

    def mean(self, x, axis=None, keepdims=False):
        return x.mean() if axis is None else x.mean(dim=axis, keepdim=keepdims)

    def max(self, x, axis=None, keepdims=False):
        return x.max() if axis is None else x.amax(dim=axis, keepdim=keepdims)

    def min(self, x, axis=None, keepdims=False):
        return x.min() if axis is None else x.amin(dim=axis, keepdim=keepdims)

    def argmax(self, x, axis=-1):
        return x.argmax(dim=axis)

    def abs(self, x):
        return x.abs()

    def sqrt(self, x):
        return x.sqrt()

    def exp(self, x):
        return x.exp()

    def log(self, x):
        return x.log()

    def sign(self, x):
        return x.sign()

    def tanh(self, x):
        return x.tanh()

    def _like(self, v, x):
        if isinstance(v, self.torch.Tensor):
            return v.to(device=x.device, dtype=x.dtype)
        if isinstance(v, np.ndarray):
            return self.torch.as_tensor(v, device=x.device, dtype=x.dtype)
        return v

    def clip(self, x, low, high):
        low, high = self._like(low, x), self._like(high, x)
        if isinstance(low, self.torch.Tensor) or isinstance(high, self.torch.Tensor):
            return self.torch.clamp(x, min=low, max=high)
        return x.clamp(min=low, max=high)

    def maximum(self, x, y):
        y = self._like(y, x)
        return self.torch.maximum(x, y if isinstance(y, self.torch.Tensor) else self.torch.full_like(x, y))

    def minimum(self, x, y):
        y = self._like(y, x)
        return self.torch.minimum(x, y if isinstance(y, self.torch.Tensor) else self.torch.full_like(x, y))

    def where(self, cond, x, y):
        return self.torch.where(cond, x, y)

    def softmax(self, x, axis=-1):
        return self.torch.softmax(x, dim=axis)

    def log_softmax(self, x, axis=-1):
        return self.torch.log_softmax(x, dim=axis)

    def logsumexp(self, x, axis=-1, keepdims=False):
        return self.torch.logsumexp(x, dim=axis, keepdim=keepdims)

    def one_hot(self, indices, depth):
        return self.torch.nn.functional.one_hot(indices.long(), depth).float()

    def reshape(self, x, shape):
        return x.reshape(tuple(shape))

    def concat(self, xs, axis=0):
        return self.torch.cat(list(xs), dim=axis)

    def stack(self, xs, axis=0):
        return self.torch.stack(list(xs), dim=axis)

    def shape(self, x):
        return tuple(x.shape)

    def cast(self, x, dtype):
        return x.to(getattr(self.torch, dtype))

    def zeros_like(self, x):
        return self.torch.zeros_like(x)

    def matmul(self, a, b):
        return a @ b

    def transpose(self, x, perm=None):
        if perm is None:
            return x.t() if x.dim() == 2 else x.permute(*reversed(range(x.dim())))
        return x.permute(*perm)

    def gather_rows(self, x, indices):
        return x.gather(1, indices.long().view(-1, 1)).squeeze(1)
