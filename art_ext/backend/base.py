"""
The backend interface: the few framework operations art_ext's algorithms need.

Primitives are abstract and implemented per framework; composite helpers (losses, normalisations, training steps)
are written here once on top of them.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Any, Callable, Iterator, Sequence

import numpy as np

Tensor = Any


class Backend(abc.ABC):
    """
    Framework operations used by art_ext algorithms. Obtain one with :func:`art_ext.backend.get_backend`.
    """

    #: ``"pytorch"`` or ``"tensorflow"``.
    name: str = ""

    # ------------------------------------------------------------------ conversion
    @abc.abstractmethod
    def asarray(self, x: Any, dtype: str = "float32", device: Any = None) -> Tensor:
        """Convert a numpy array (or tensor) to a tensor of `dtype` on `device` (default: the backend's device)."""

    @abc.abstractmethod
    def to_numpy(self, x: Tensor) -> np.ndarray:
        """Convert a tensor to a numpy array (detached, on the host)."""

    @abc.abstractmethod
    def is_tensor(self, x: Any) -> bool:
        """Whether `x` is a tensor of this framework."""

    @abc.abstractmethod
    def device_of(self, estimator: Any) -> Any:
        """The device an estimator's model lives on (``None`` where the framework places tensors itself)."""

    # ------------------------------------------------------------------ autodiff
    @abc.abstractmethod
    def value_and_grad(
        self, fn: Callable[..., Any], wrt: Sequence[Tensor], has_aux: bool = False
    ) -> tuple[Any, list[Tensor]]:
        """
        Evaluate ``fn(*wrt)`` and its gradients with respect to `wrt`.

        :param fn: Function of the tensors in `wrt` returning a scalar, or ``(scalar, aux)`` when `has_aux`.
                   Model weights may be passed in `wrt` and ignored by `fn` (it then reads the model directly).
        :param wrt: Tensors or trainable weights to differentiate with respect to.
        :param has_aux: Whether `fn` returns ``(scalar, aux)``.
        :return: ``(value, grads)`` or ``((value, aux), grads)``; a weight `fn` does not depend on gets zeros.
        """

    @abc.abstractmethod
    def stop_gradient(self, x: Tensor) -> Tensor:
        """`x` without gradient flow."""

    # ------------------------------------------------------------------ models
    @abc.abstractmethod
    def model_of(self, estimator: Any) -> Any:
        """The framework model (``nn.Module`` or Keras model) behind an ART estimator, or the model itself."""

    @abc.abstractmethod
    def call_model(self, model: Any, x: Tensor, training: bool = False) -> Tensor:
        """Call a framework model on a tensor, in training or inference mode."""

    @abc.abstractmethod
    def trainable_weights(self, model: Any) -> list[Tensor]:
        """The trainable weights of a model (or of the model behind an estimator)."""

    @abc.abstractmethod
    def apply_gradients(self, optimizer: Any, grads: Sequence[Tensor], weights: Sequence[Tensor]) -> None:
        """Apply one optimizer update."""

    @abc.abstractmethod
    def optimizer_of(self, estimator: Any) -> Any:
        """The optimizer an ART classifier was built with, or ``None``."""

    @abc.abstractmethod
    def make_optimizer(
        self, weights: Sequence[Tensor], name: str = "adam", learning_rate: float = 1e-3, **kwargs
    ) -> Any:
        """
        Build an optimizer over `weights`.

        :param name: ``"adam"`` or ``"sgd"``. SGD accepts ``momentum``, ``weight_decay`` and ``nesterov``; Adam
                     accepts ``betas`` and ``weight_decay``.
        """

    @abc.abstractmethod
    def get_learning_rate(self, optimizer: Any) -> float:
        """An optimizer's current (constant) learning rate."""

    @abc.abstractmethod
    def set_learning_rate(self, optimizer: Any, learning_rate: float) -> None:
        """Change an optimizer's learning rate in place."""

    @abc.abstractmethod
    def frozen_batchnorm_stats(self, model: Any) -> contextlib.AbstractContextManager:
        """
        Context in which training-mode forward passes use batch statistics but do not update the running
        (moving) statistics of batch-normalisation layers.
        """

    @abc.abstractmethod
    def get_weights(self, model: Any) -> list[np.ndarray]:
        """A numpy copy of every weight and buffer of a model (for checkpoints and best-so-far snapshots)."""

    @abc.abstractmethod
    def set_weights(self, model: Any, weights: list[np.ndarray]) -> None:
        """Restore weights taken by :meth:`get_weights`."""

    @abc.abstractmethod
    def cuda_available(self) -> bool:
        """Whether this framework sees a CUDA device."""

    # ------------------------------------------------------------------ math primitives
    @abc.abstractmethod
    def sum(self, x: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor: ...

    @abc.abstractmethod
    def mean(self, x: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor: ...

    @abc.abstractmethod
    def max(self, x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor: ...

    @abc.abstractmethod
    def min(self, x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor: ...

    @abc.abstractmethod
    def argmax(self, x: Tensor, axis: int = -1) -> Tensor: ...

    @abc.abstractmethod
    def abs(self, x: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def sqrt(self, x: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def exp(self, x: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def log(self, x: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def sign(self, x: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def tanh(self, x: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def clip(self, x: Tensor, low: Any, high: Any) -> Tensor:
        """Elementwise clip; `low`/`high` may be scalars or broadcastable tensors/arrays."""

    @abc.abstractmethod
    def maximum(self, x: Tensor, y: Any) -> Tensor: ...

    @abc.abstractmethod
    def minimum(self, x: Tensor, y: Any) -> Tensor: ...

    @abc.abstractmethod
    def where(self, cond: Tensor, x: Tensor, y: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def softmax(self, x: Tensor, axis: int = -1) -> Tensor: ...

    @abc.abstractmethod
    def log_softmax(self, x: Tensor, axis: int = -1) -> Tensor: ...

    @abc.abstractmethod
    def logsumexp(self, x: Tensor, axis: int = -1, keepdims: bool = False) -> Tensor: ...

    @abc.abstractmethod
    def one_hot(self, indices: Tensor, depth: int) -> Tensor:
        """float32 one-hot encoding of integer indices."""

    @abc.abstractmethod
    def reshape(self, x: Tensor, shape: Sequence[int]) -> Tensor: ...

    @abc.abstractmethod
    def concat(self, xs: Sequence[Tensor], axis: int = 0) -> Tensor: ...

    @abc.abstractmethod
    def stack(self, xs: Sequence[Tensor], axis: int = 0) -> Tensor: ...

    @abc.abstractmethod
    def shape(self, x: Tensor) -> tuple[int, ...]: ...

    @abc.abstractmethod
    def cast(self, x: Tensor, dtype: str) -> Tensor: ...

    @abc.abstractmethod
    def zeros_like(self, x: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def matmul(self, a: Tensor, b: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def transpose(self, x: Tensor, perm: Sequence[int] | None = None) -> Tensor: ...

    @abc.abstractmethod
    def gather_rows(self, x: Tensor, indices: Tensor) -> Tensor:
        """``x[i, indices[i]]`` for each row `i` of a 2-D tensor."""

    # ------------------------------------------------------------------ composites (written once)
    def random_normal(self, shape: Sequence[int], rng: np.random.Generator, device: Any = None) -> Tensor:
        """Standard normal noise drawn from a numpy generator, so runs are reproducible across frameworks."""
        return self.asarray(rng.standard_normal(size=tuple(shape)).astype(np.float32), device=device)

    def random_uniform(
        self, shape: Sequence[int], rng: np.random.Generator, low: float = 0.0, high: float = 1.0, device: Any = None
    ) -> Tensor:
        """Uniform noise drawn from a numpy generator."""
        return self.asarray(rng.uniform(low, high, size=tuple(shape)).astype(np.float32), device=device)

    def flatten(self, x: Tensor) -> Tensor:
        """Flatten every dimension but the first."""
        return self.reshape(x, (self.shape(x)[0], -1))

    def per_sample_norm(self, x: Tensor, keepdims: bool = False) -> Tensor:
        """l2 norm of each sample (over all non-batch dimensions)."""
        flat = self.flatten(x)
        norm = self.sqrt(self.sum(flat * flat, axis=1) + 1e-30)
        if keepdims:
            return self.reshape(norm, (-1,) + (1,) * (len(self.shape(x)) - 1))
        return norm

    def l2_normalize(self, x: Tensor, eps: float = 1e-12) -> Tensor:
        """Scale each sample to unit l2 norm."""
        flat = self.flatten(x)
        norm = self.sqrt(self.sum(flat * flat, axis=1) + eps)
        return x / self.reshape(norm, (-1,) + (1,) * (len(self.shape(x)) - 1))

    def cross_entropy(self, logits: Tensor, labels: Tensor, reduce: bool = True) -> Tensor:
        """
        Cross-entropy of logits against labels.

        :param logits: ``(nb_samples, nb_classes)`` logits.
        :param labels: Integer indices ``(nb_samples,)`` or (soft) one-hot ``(nb_samples, nb_classes)``.
        """
        log_p = self.log_softmax(logits, axis=-1)
        if len(self.shape(labels)) == 1:
            labels = self.one_hot(labels, self.shape(logits)[-1])
        loss = -self.sum(labels * log_p, axis=-1)
        return self.mean(loss) if reduce else loss

    def kl_divergence_logits(self, p_logits: Tensor, q_logits: Tensor, reduce: bool = True) -> Tensor:
        """KL(softmax(p_logits) || softmax(q_logits)) per sample, or its mean."""
        log_p = self.log_softmax(p_logits, axis=-1)
        log_q = self.log_softmax(q_logits, axis=-1)
        kl = self.sum(self.exp(log_p) * (log_p - log_q), axis=-1)
        return self.mean(kl) if reduce else kl

    def entropy_logits(self, logits: Tensor, reduce: bool = True) -> Tensor:
        """Shannon entropy of softmax(logits) per sample, or its mean."""
        log_p = self.log_softmax(logits, axis=-1)
        ent = -self.sum(self.exp(log_p) * log_p, axis=-1)
        return self.mean(ent) if reduce else ent

    def forward(self, estimator: Any, x: Tensor, training: bool = False, fit: bool | None = None) -> Tensor:
        """
        Differentiable forward pass through an ART estimator: its preprocessing operations as ART applies them, then
        its model. Postprocessing defences are not applied (they are not differentiable in ART).

        :param estimator: An ART estimator (or a bare framework model).
        :param x: Input tensor.
        :param training: Call the model in training mode.
        :param fit: Apply the fit-time (``apply_fit``) rather than the predict-time (``apply_predict``) preprocessing;
                    default: `training`. At fit time the non-differentiable defences are skipped here: the trainers
                    apply them to each numpy batch first (:func:`art_ext.backend.apply_fit_defences`), as ART's fit.
        """
        x_pre = self.preprocess(estimator, x, fit=training if fit is None else fit)
        return self.call_model(self.model_of(estimator), x_pre, training=training)

    def preprocess(self, estimator: Any, x: Tensor, fit: bool = False) -> Tensor:
        """
        Apply an ART estimator's preprocessing operations to a tensor, in ART's order and with ART's
        ``apply_fit``/``apply_predict`` flags (identity for a bare model). Framework preprocessors and the mean/std
        standardisation are differentiable; any other (numpy) defence runs on numpy with its own
        ``estimate_gradient`` as backward pass (BPDA, as ART's loss gradients).

        :param estimator: An ART estimator.
        :param x: Input tensor.
        :param fit: Fit-time flags (non-differentiable defences skipped, see :meth:`forward`) or predict-time flags.
        """
        from art_ext.backend.estimator import is_framework_preprocessor, is_standardisation

        operations = getattr(estimator, "preprocessing_operations", None)
        if not operations or not hasattr(estimator, "predict"):
            return x
        for op in operations:
            if not (op.apply_fit if fit else op.apply_predict):
                continue
            if is_framework_preprocessor(op, self.name):
                x, _ = op.forward(x, None)
            elif is_standardisation(op):
                x = self._standardise(x, op)
            elif not fit:
                x = self.numpy_preprocessor(op, x)
        return x

    def _standardise(self, x: Tensor, op: Any) -> Tensor:
        from art.preprocessing.standardisation_mean_std.utils import broadcastable_mean_std

        mean = np.asarray(op.mean, dtype=np.float32)
        std = np.asarray(op.std, dtype=np.float32)
        mean, std = broadcastable_mean_std(np.broadcast_to(np.float32(0), self.shape(x)), mean, std)
        return (x - self.asarray(mean, device=self._device_of_tensor(x))) / self.asarray(
            std, device=self._device_of_tensor(x)
        )

    def _device_of_tensor(self, x: Tensor) -> Any:
        return getattr(x, "device", None) if self.name == "pytorch" else None

    @abc.abstractmethod
    def numpy_preprocessor(self, op: Any, x: Tensor) -> Tensor:
        """
        Apply a numpy ART preprocessor to a tensor; its backward pass is ``op.estimate_gradient`` (BPDA).

        :param op: An ART ``Preprocessor`` working on numpy arrays.
        :param x: Input tensor.
        """

    def train_step(
        self, model: Any, optimizer: Any, loss_fn: Callable[[], Any], weights: Sequence[Tensor] | None = None
    ) -> float:
        """
        One optimisation step: differentiate ``loss_fn()`` with respect to the model's trainable weights and apply
        the optimizer.

        :param model: Framework model (or an ART estimator) whose weights are updated.
        :param optimizer: An optimizer over those weights.
        :param loss_fn: Closure returning the scalar loss; it calls the model itself.
        :param weights: Weights to update (default: all trainable weights of `model`).
        :return: The loss value.
        """
        weights = list(self.trainable_weights(model) if weights is None else weights)
        value, grads = self.value_and_grad(lambda *_: loss_fn(), weights)
        self.apply_gradients(optimizer, grads, weights)
        return float(self.to_numpy(value))

    def make_train_step(
        self, optimizer: Any, loss_fn: Callable[..., Any], weights: Sequence[Tensor], compile: bool = False
    ) -> Callable[..., Tensor]:
        """
        A training step ``step(*batch) -> loss``: differentiate ``loss_fn(*batch)`` with respect to `weights` and
        apply the optimizer.

        :param optimizer: An optimizer over `weights`.
        :param loss_fn: Maps the batch tensors to the scalar loss (it calls the model itself).
        :param weights: The trainable weights.
        :param compile: Compile the step where the framework can (``tf.function``); `loss_fn` must then be pure
                        framework code (no numpy random draws, which would be frozen at tracing).
        """
        weights = list(weights)

        def step(*batch):
            value, grads = self.value_and_grad(lambda *_: loss_fn(*batch), weights)
            self.apply_gradients(optimizer, grads, weights)
            return value

        return step

    def forward_with_pullback(self, model: Any, x: Tensor, training: bool = False) -> tuple[Tensor, Callable]:
        """
        Call a model once and keep what is needed to train it later along an output gradient computed elsewhere
        (e.g. estimated from black-box queries).

        :param model: Framework model (or an ART estimator holding one).
        :param x: Input tensor.
        :param training: Training-mode forward pass.
        :return: ``(output, step)``: the output without gradient flow, and ``step(optimizer, cotangent)`` that applies
                 one optimizer update along the gradient of ``sum(output * cotangent)`` with respect to the model's
                 trainable weights. This default runs the model a second time (batch-norm statistics frozen);
                 backends override it to reuse the first pass.
        """
        out = self.stop_gradient(self.call_model(self.model_of(model), x, training=training))

        def step(optimizer: Any, cotangent: Tensor) -> None:
            with self.frozen_batchnorm_stats(model):
                self.train_step(
                    model,
                    optimizer,
                    lambda: self.sum(self.call_model(self.model_of(model), x, training=training) * cotangent),
                )

        return out, step

    @contextlib.contextmanager
    def training_mode(self, model: Any, training: bool = True) -> Iterator[None]:
        """Context that sets a model's train/eval mode and restores it (no-op for Keras, mode is per call)."""
        yield
