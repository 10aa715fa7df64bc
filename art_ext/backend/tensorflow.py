"""TensorFlow 2 / Keras 3 implementation of :class:`art_ext.backend.base.Backend`."""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from art_ext.backend.base import Backend, Tensor


class TensorFlowBackend(Backend):
    """TensorFlow operations (eager mode); TensorFlow places tensors on the GPU itself when one is visible."""

    name = "tensorflow"

    def __init__(self) -> None:
        import tensorflow as tf

        self.tf = tf
        self.device = None

    # conversion
    def asarray(self, x: Any, dtype: str = "float32", device: Any = None) -> Tensor:
        tf = self.tf
        if isinstance(x, (tf.Tensor, tf.Variable)):
            return tf.cast(x, getattr(tf, dtype))
        return tf.convert_to_tensor(np.asarray(x), dtype=getattr(tf, dtype))

    def to_numpy(self, x: Tensor) -> np.ndarray:
        if isinstance(x, (self.tf.Tensor, self.tf.Variable)):
            return x.numpy()
        return np.asarray(x)

    def is_tensor(self, x: Any) -> bool:
        return isinstance(x, (self.tf.Tensor, self.tf.Variable))

    def device_of(self, estimator: Any) -> Any:
        return None

    # autodiff
    def value_and_grad(
        self, fn: Callable[..., Any], wrt: Sequence[Tensor], has_aux: bool = False
    ) -> tuple[Any, list[Tensor]]:
        tf = self.tf
        wrt = list(wrt)
        # Keras 3 variables wrap a tf.Variable in `.value`; the tape needs the TensorFlow object.
        targets = [_tf_handle(t) for t in wrt]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            for t in targets:
                tape.watch(t)
            out = fn(*wrt)
            value = out[0] if has_aux else out
        grads = tape.gradient(value, targets, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
        if has_aux:
            return (value, out[1]), grads
        return value, grads

    def stop_gradient(self, x: Tensor) -> Tensor:
        return self.tf.stop_gradient(x)

    # models
    def model_of(self, estimator: Any) -> Any:
        import keras

        if isinstance(estimator, keras.Model):
            return estimator
        model = getattr(estimator, "model", None)
        if isinstance(model, keras.Model):
            return model
        if callable(model) and hasattr(model, "trainable_variables"):
            return model
        raise TypeError(f"{type(estimator).__name__} holds no Keras model.")

    def forward_with_pullback(self, model: Any, x: Tensor, training: bool = False) -> tuple[Tensor, Callable]:
        tf = self.tf
        module = self.model_of(model)
        weights = self.trainable_weights(module)
        targets = [_tf_handle(w) for w in weights]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            for t in targets:
                tape.watch(t)
            out = module(x, training=training)

        def step(optimizer: Any, cotangent: Tensor) -> None:
            grads = tape.gradient(
                out, targets, output_gradients=cotangent, unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            self.apply_gradients(optimizer, grads, weights)

        return tf.stop_gradient(out), step

    def call_model(self, model: Any, x: Tensor, training: bool = False) -> Tensor:
        return model(x, training=training)

    def trainable_weights(self, model: Any) -> list[Tensor]:
        return list(self.model_of(model).trainable_variables)

    def apply_gradients(self, optimizer: Any, grads: Sequence[Tensor], weights: Sequence[Tensor]) -> None:
        optimizer.apply_gradients(zip(grads, weights))

    def optimizer_of(self, estimator: Any) -> Any:
        optimizer = getattr(estimator, "_optimizer", None)
        if optimizer is None and type(estimator).__name__.startswith("Keras"):
            # KerasClassifier keeps the optimizer the model was compiled with.
            optimizer = getattr(self.model_of(estimator), "optimizer", None)
        return optimizer

    def make_train_step(
        self, optimizer: Any, loss_fn: Callable[..., Any], weights: Sequence[Tensor], compile: bool = False
    ) -> Callable[..., Tensor]:
        step = super().make_train_step(optimizer, loss_fn, weights, compile=False)
        if not compile:
            return step
        inner = getattr(optimizer, "optimizer", optimizer)
        if hasattr(inner, "build") and not getattr(inner, "built", True):
            inner.build(list(weights))
        return self.tf.function(step)

    def numpy_preprocessor(self, op: Any, x: Tensor) -> Tensor:
        tf = self.tf

        def run(a):
            out, _ = op(np.asarray(a), None)
            return np.asarray(out, dtype=np.float32)

        def run_grad(a, g):
            return np.asarray(op.estimate_gradient(np.asarray(a), np.asarray(g)), dtype=np.float32)

        @tf.custom_gradient
        def bpda(inputs):
            out = tf.numpy_function(run, [inputs], tf.float32)

            def grad(dy):
                g = tf.numpy_function(run_grad, [inputs, dy], tf.float32)
                g.set_shape(inputs.shape)
                return g

            return out, grad

        out = bpda(x)
        if tf.executing_eagerly():
            return tf.convert_to_tensor(out)
        return out

    def make_optimizer(
        self, weights: Sequence[Tensor], name: str = "adam", learning_rate: float = 1e-3, **kwargs
    ) -> Any:
        import keras

        name = name.lower()
        weight_decay = kwargs.get("weight_decay") or None
        if name == "adam":
            beta_1, beta_2 = kwargs.get("betas", (0.9, 0.999))
            if weight_decay:
                return keras.optimizers.AdamW(
                    learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, weight_decay=weight_decay
                )
            return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2)
        if name == "sgd":
            return _SGDWithL2(
                learning_rate=learning_rate,
                momentum=kwargs.get("momentum", 0.0),
                nesterov=kwargs.get("nesterov", False),
                l2=weight_decay or 0.0,
            )
        raise ValueError(f"Unknown optimizer {name!r}; expected 'adam' or 'sgd'.")

    def get_learning_rate(self, optimizer: Any) -> float:
        import keras

        inner = getattr(optimizer, "optimizer", optimizer)
        # Keras 3's `learning_rate` evaluates a schedule: look at what the optimizer holds.
        held = getattr(inner, "_learning_rate", inner.learning_rate)
        if isinstance(held, keras.optimizers.schedules.LearningRateSchedule) or (
            callable(held) and not hasattr(held, "numpy")
        ):
            raise ValueError(
                "`lr_schedule` cannot be combined with an optimizer whose learning rate is itself a schedule "
                f"({type(held).__name__}): pass lr_schedule=None or give the optimizer a constant learning rate."
            )
        lr = inner.learning_rate
        return float(lr.numpy() if hasattr(lr, "numpy") else lr)

    def set_learning_rate(self, optimizer: Any, learning_rate: float) -> None:
        inner = getattr(optimizer, "optimizer", optimizer)
        inner.learning_rate.assign(learning_rate)

    @contextlib.contextmanager
    def frozen_batchnorm_stats(self, model: Any) -> Iterator[None]:
        # Keras updates moving = momentum * moving + (1 - momentum) * batch; momentum 1 keeps them unchanged.
        import keras

        saved = []
        for layer in _all_layers(self.model_of(model)):
            if isinstance(layer, keras.layers.BatchNormalization):
                saved.append((layer, layer.momentum))
                layer.momentum = 1.0
        try:
            yield
        finally:
            for layer, momentum in saved:
                layer.momentum = momentum

    def get_weights(self, model: Any) -> list[np.ndarray]:
        return [np.array(w) for w in self.model_of(model).get_weights()]

    def set_weights(self, model: Any, weights: list[np.ndarray]) -> None:
        self.model_of(model).set_weights(weights)

    def cuda_available(self) -> bool:
        return bool(self.tf.config.list_physical_devices("GPU"))

    # math
    def sum(self, x, axis=None, keepdims=False):
        return self.tf.reduce_sum(x, axis=axis, keepdims=keepdims)

    def mean(self, x, axis=None, keepdims=False):
        return self.tf.reduce_mean(x, axis=axis, keepdims=keepdims)

    def max(self, x, axis=None, keepdims=False):
        return self.tf.reduce_max(x, axis=axis, keepdims=keepdims)

    def min(self, x, axis=None, keepdims=False):
        return self.tf.reduce_min(x, axis=axis, keepdims=keepdims)

    def argmax(self, x, axis=-1):
        return self.tf.argmax(x, axis=axis)

    def abs(self, x):
        return self.tf.abs(x)

    def sqrt(self, x):
        return self.tf.sqrt(x)

    def exp(self, x):
        return self.tf.exp(x)

    def log(self, x):
        return self.tf.math.log(x)

    def sign(self, x):
        return self.tf.sign(x)

    def tanh(self, x):
        return self.tf.tanh(x)

    def clip(self, x, low, high):
        tf = self.tf
        return tf.minimum(tf.maximum(x, tf.cast(low, x.dtype)), tf.cast(high, x.dtype))

    def maximum(self, x, y):
        return self.tf.maximum(x, self.tf.cast(y, x.dtype))

    def minimum(self, x, y):
        return self.tf.minimum(x, self.tf.cast(y, x.dtype))

    def where(self, cond, x, y):
        return self.tf.where(cond, x, y)

    def softmax(self, x, axis=-1):
        return self.tf.nn.softmax(x, axis=axis)

    def log_softmax(self, x, axis=-1):
        return self.tf.nn.log_softmax(x, axis=axis)

    def logsumexp(self, x, axis=-1, keepdims=False):
        return self.tf.reduce_logsumexp(x, axis=axis, keepdims=keepdims)

    def one_hot(self, indices, depth):
        return self.tf.one_hot(self.tf.cast(indices, self.tf.int32), depth, dtype=self.tf.float32)

    def reshape(self, x, shape):
        return self.tf.reshape(x, tuple(shape))

    def concat(self, xs, axis=0):
        return self.tf.concat(list(xs), axis=axis)

    def stack(self, xs, axis=0):
        return self.tf.stack(list(xs), axis=axis)

    def shape(self, x):
        # Inside a tf.function a dimension may be unknown at tracing: its dynamic size (a scalar tensor) then.
        return tuple(int(d) if d is not None else self.tf.shape(x)[i] for i, d in enumerate(x.shape))

    def cast(self, x, dtype):
        return self.tf.cast(x, getattr(self.tf, dtype))

    def zeros_like(self, x):
        return self.tf.zeros_like(x)

    def matmul(self, a, b):
        return self.tf.matmul(a, b)

    def transpose(self, x, perm=None):
        return self.tf.transpose(x, perm=perm)

    def gather_rows(self, x, indices):
        return self.tf.gather(x, self.tf.cast(indices, self.tf.int32), axis=1, batch_dims=1)


def _tf_handle(t: Any) -> Any:
    """The TensorFlow tensor or variable behind a Keras 3 variable (the object itself otherwise)."""
    import tensorflow as tf

    if isinstance(t, (tf.Tensor, tf.Variable)):
        return t
    inner = getattr(t, "value", None)
    return inner if isinstance(inner, (tf.Tensor, tf.Variable)) else t


def _all_layers(model: Any) -> list:
    """Every layer of a Keras model, nested models included."""
    layers = []
    for layer in getattr(model, "layers", []):
        layers.append(layer)
        if hasattr(layer, "layers"):
            layers.extend(_all_layers(layer))
    return layers


@functools.lru_cache(maxsize=1)
def _sgd_with_l2_class():
    import keras

    class SGDWithL2(keras.optimizers.SGD):
        """SGD with coupled L2 weight decay (``g + l2 * w``), as ``torch.optim.SGD(weight_decay=...)``."""

        def __init__(self, l2: float = 0.0, **kwargs):
            super().__init__(**kwargs)
            self.l2 = float(l2)

        def apply_gradients(self, grads_and_vars, *args, **kwargs):
            if self.l2:
                grads_and_vars = [(g + self.l2 * v, v) for g, v in grads_and_vars]
            return super().apply_gradients(grads_and_vars, *args, **kwargs)

    return SGDWithL2


def _SGDWithL2(**kwargs):  # noqa: N802 (factory behaving as a class)
    return _sgd_with_l2_class()(**kwargs)
