"""
Thin framework backends.

Every algorithm in art_ext is written once against the small :class:`Backend` interface; the PyTorch and TensorFlow
backends below implement it. Framework modules are imported only when a backend is created, so importing art_ext
never imports torch or tensorflow.

Tensors of either framework support the Python arithmetic operators and slicing, so algorithm code mixes those with
the backend's functions (``ops.sum``, ``ops.log_softmax``, ``ops.value_and_grad``...).
"""

from __future__ import annotations

from typing import Any

from art_ext.backend.base import Backend
from art_ext.backend.estimator import apply_fit_defences, is_query_only

__all__ = ["Backend", "apply_fit_defences", "framework_of", "get_backend", "is_query_only"]

_CACHE: dict[str, Backend] = {}

_FRAMEWORK_ALIASES = {
    "pytorch": "pytorch",
    "torch": "pytorch",
    "tensorflow": "tensorflow",
    "tf": "tensorflow",
    "tensorflowv2": "tensorflow",
    "keras": "tensorflow",
}


def framework_of(obj: Any) -> str:
    """
    Name the framework of an ART estimator, a model, a tensor or a framework name.

    :param obj: An ART ``PyTorch*``/``TensorFlowV2*``/``Keras*`` estimator, an ``nn.Module``, a Keras model, a tensor,
                or one of the strings ``"pytorch"`` and ``"tensorflow"`` (``KerasClassifier`` runs on TensorFlow).
    :return: ``"pytorch"`` or ``"tensorflow"``.
    :raises TypeError: When the framework cannot be recognised.
    """
    if isinstance(obj, str):
        name = _FRAMEWORK_ALIASES.get(obj.lower())
        if name is None:
            raise ValueError(f"Unknown framework {obj!r}; expected 'pytorch' or 'tensorflow'.")
        return name
    for cls in type(obj).__mro__:
        module = cls.__module__ or ""
        qualname = cls.__name__
        if module.startswith("torch") or qualname.startswith("PyTorch"):
            return "pytorch"
        if module.startswith(("tensorflow", "keras", "tf_keras")) or qualname.startswith(("TensorFlowV2", "Keras")):
            return "tensorflow"
    raise TypeError(
        f"Cannot tell the framework of {type(obj).__name__}: expected an ART PyTorch, TensorFlowV2 or Keras "
        "estimator, a torch.nn.Module, a Keras model or a tensor."
    )


def get_backend(obj: Any) -> Backend:
    """
    Return the backend for an estimator, model, tensor or framework name (one instance per framework).

    :param obj: Anything :func:`framework_of` accepts.
    :return: The :class:`Backend` of that framework.
    """
    name = framework_of(obj)
    if name not in _CACHE:
        if name == "pytorch":
            from art_ext.backend.pytorch import PyTorchBackend

            _CACHE[name] = PyTorchBackend()
        else:
            from art_ext.backend.tensorflow import TensorFlowBackend

            _CACHE[name] = TensorFlowBackend()
    return _CACHE[name]
