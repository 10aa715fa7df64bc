"""Logits or probabilities: ART returns whatever the model outputs, so art_ext detects the kind or is told it."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Accepted values of every ``output`` parameter.
OUTPUT_KINDS = ("auto", "logits", "probabilities")

#: Probabilities are floored here before the logarithm (the smallest normal float32).
PROBABILITY_FLOOR = float(np.finfo(np.float32).tiny)


def check_output_kind(output: str, name: str = "output") -> None:
    """:raises ValueError: When `output` is not one of :data:`OUTPUT_KINDS`."""
    if output not in OUTPUT_KINDS:
        raise ValueError(f"`{name}` must be one of {OUTPUT_KINDS}, got {output!r}.")


def detect_output_kind(outputs: np.ndarray) -> str:
    """
    Tell logits from probabilities: rows of values in ``[0, 1]`` summing to one are probabilities.

    :param outputs: Model outputs of shape ``(nb_samples, nb_classes)``.
    :return: ``"probabilities"`` or ``"logits"``.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        raise ValueError(f"Expected classifier outputs of shape (nb_samples, nb_classes), got {outputs.shape}.")
    if outputs.min() >= 0.0 and outputs.max() <= 1.0 and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3):
        return "probabilities"
    return "logits"


#: How many inputs every output-kind detection looks at.
PROBE_SIZE = 64


def output_kind_of(classifier: Any, x: np.ndarray, output: str = "auto", batch_size: int = 128) -> str:
    """
    The output kind of an ART classifier: `output` itself unless ``"auto"``, else detected on the first
    :data:`PROBE_SIZE` inputs.
    """
    check_output_kind(output)
    if output != "auto":
        return output
    return detect_output_kind(classifier.predict(np.asarray(x[:PROBE_SIZE], dtype=np.float32), batch_size=batch_size))


def logits_from_outputs(ops: Any, outputs: Any, output_kind: str) -> Any:
    """
    Logits from model outputs (differentiable): the outputs themselves, or the floored ``log p``, which equals the
    logits up to a per-row constant that every softmax (at any temperature) ignores.
    """
    if output_kind == "probabilities":
        return ops.log(ops.maximum(outputs, PROBABILITY_FLOOR))
    return outputs


def log_probabilities(ops: Any, outputs: Any, output_kind: str) -> Any:
    """Log-probabilities of model outputs: ``log_softmax`` of logits, or the floored logarithm of probabilities."""
    if output_kind == "logits":
        return ops.log_softmax(outputs, axis=-1)
    return ops.log(ops.clip(outputs, PROBABILITY_FLOOR, 1.0))


def predict_in_batches(classifier: Any, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """
    ``classifier.predict`` over `x` in batches of `batch_size` (``TensorFlowV2Classifier.predict`` ignores its
    ``batch_size`` and runs the whole input at once).
    """
    outputs = [classifier.predict(x[i : i + batch_size], batch_size=batch_size) for i in range(0, len(x), batch_size)]
    return np.concatenate(outputs, axis=0)
